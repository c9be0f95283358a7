# The README's two commands are `make demo` (set up, then a short real training run) and
# `make test` (set up, then lint and the test suite). Everything installs into $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/resnet-cifar
DATA ?= ../shared/data/cifar10-jpeg.tar.gz
EPOCHS ?= 150
RUN ?= runs/demo
# torch first and pinned: a bare `pip install torch` may pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup demo train test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,onnx]'
	touch $@

# A short real run of the original recipe (2 epochs on a 10,000-image subset, milestone scaled),
# then the test-set evaluation and the prediction grid of its weights.
demo: setup
	$(CLI) train --model resnet20 --data $(DATA) --epochs 2 --milestones 1 \
		--train-subset 10000 --out $(RUN) --overwrite
	$(CLI) eval $(RUN)/last.pt --data $(DATA)
	$(CLI) show $(RUN)/last.pt --data $(DATA) --out $(RUN)/predictions.png

# The full original experiment: ResNet-20, 150 epochs (about 8 h on 2 CPU cores).
train: setup
	$(CLI) train --model resnet20 --data $(DATA) --epochs $(EPOCHS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks hubconf.py

test: lint
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build *.egg-info
