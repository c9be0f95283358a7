# The README's two commands are `make demo` (set up, then a short real training run) and
# `make test` (set up, then lint and the test suite). Everything installs into $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/resnet-cifar
# The data of `make demo` and `make train`: DATA when given, else the shared JPEG copy where it
# exists. Empty (`make demo DATA=`, or no shared copy): the official CIFAR-10, which the CLI finds
# in its cache or downloads there with its md5 checked (offline: one line, exit code 2).
SHARED_DATA ?= ../shared/data/cifar10-jpeg.tar.gz
DATA ?= $(wildcard $(SHARED_DATA))
DATA_ARGS = $(if $(strip $(DATA)),--data $(DATA),--dataset cifar10)
EPOCHS ?= 150
RUN ?= runs/demo
# torch first and pinned: a bare `pip install torch` may pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup demo train test test-fast lint browser bench wheel-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,onnx]'
	touch $@

# A short real run of the original recipe (2 epochs on a 10,000-image subset, milestone scaled),
# then the test-set evaluation and the prediction grid of its weights, on the data the run
# recorded (and whose fingerprint it checks).
demo: setup
	$(CLI) train --model resnet20 $(DATA_ARGS) --epochs 2 --milestones 1 \
		--train-subset 10000 --out $(RUN) --overwrite
	$(CLI) eval $(RUN)/last.pt
	$(CLI) show $(RUN)/last.pt --out $(RUN)/predictions.png

# The full original experiment: ResNet-20, 150 epochs (5-8 h on 2 CPU cores of a Zen 3).
train: setup
	$(CLI) train --model resnet20 $(DATA_ARGS) --epochs $(EPOCHS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks hubconf.py

# Debian's chromium, for the test that renders the HTML report in a real browser
# (tests/test_report.py). Installed only where /usr/bin/chromium is absent, as root or with
# password-less sudo; otherwise a note, and that test skips (where CI is set it fails instead,
# and so does a failed install, so that a broken browser is seen).
CHROMIUM ?= /usr/bin/chromium
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	chromium
browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: no apt-get here; install chromium to run the browser test of the report"; \
		exit 0; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else \
		echo "note: chromium is not installed and installing it needs root or sudo" \
			"(apt-get install chromium); the browser test of the report will be skipped"; \
		exit 0; \
	fi; \
	echo "installing chromium (apt-get) for the browser test of the report..."; \
	start=$$(date +%s); log=$$(mktemp); \
	if { $$sudo apt-get update -qq && $$sudo env $(APT_CHROMIUM); } >"$$log" 2>&1; then \
		echo "chromium installed in $$(( $$(date +%s) - start )) s"; rm -f "$$log"; \
	else \
		tail -n 20 "$$log" >&2; rm -f "$$log"; \
		if [ "$${CI:-}" = true ] || [ "$${CI:-}" = 1 ]; then \
			echo "error: installing chromium failed" >&2; exit 1; \
		fi; \
		echo "note: installing chromium failed; the browser test of the report will be skipped"; \
	fi

# The whole suite, on two pytest-xdist workers (the dev extra), one per core, each taking whole
# files: a file's module fixtures (trained runs) are then built once, not once per worker.
# They take the files longest first (tests/conftest.py orders them), not the xdist default.
# test-fast leaves out the heavy tests (torchrun, subprocesses, torch.compile, every export, the
# browser: tests/conftest.py lists them) and the slow ones that decode the real data in ../shared.
XDIST := -n 2 --dist loadfile --no-loadscope-reorder
test: lint browser
	$(PY) -m pytest $(XDIST)

test-fast: lint
	$(PY) -m pytest -m "not heavy and not slow" $(XDIST)

bench: setup
	$(PY) benchmarks/bench_train.py

# The package as users get it: the sdist and the wheel built into dist/ and checked (twine), the
# wheel installed in a fresh venv after $(TORCH), then used from a folder outside the repository:
# the CLI, the published weights (logits equal to src/'s) and a one-epoch run on synthetic images.
wheel-check: setup
	PY=$(abspath $(PY)) TORCH=$(TORCH) bash .ci/wheel_check.sh

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info
