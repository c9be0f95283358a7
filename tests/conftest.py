import signal
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # so test modules can `import data_fixtures`

SHARED = TESTS.parents[1] / "shared"
JPEG_TARBALL = SHARED / "data" / "cifar10-jpeg.tar.gz"
FOREIGN_CHECKPOINT = SHARED / "data" / "foreign" / "resnet20-12fca82f.th"

# The heavy tests, marked here rather than in their files so that one table says what
# `make test-fast` (-m "not heavy") leaves out: each starts processes or compilers (torchrun, a
# subprocess, torch.compile, chromium) or repeats one job over everything (every model exported in
# every format). Each entry is a test file and a test function in it, or None for the whole file.
# A function that no longer exists stops the run, so a renamed test cannot silently become fast.
HEAVY: dict[str, tuple[str, ...] | None] = {
    "test_distributed.py": None,  # torchrun launches of two ranks
    "test_docs_examples.py": ("test_benchmark_examples_run",),  # torch.compile, a dozen benchmarks
    "test_export.py": (
        "test_every_model_round_trips_in_every_format_with_a_dynamic_batch",
        "test_dynamo_onnx_exporter",
    ),
    "test_hub.py": ("test_hubconf_finds_the_package_in_src_without_an_install",),  # subprocess
    "test_notebook.py": ("test_the_quickstart_runs_on_tiny_data",),  # a Jupyter kernel, two runs
    "test_report.py": ("test_report_renders_in_headless_chromium",),
    "test_compiled.py": ("test_compiled_logits_equal_eager_for_any_batch_with_one_compilation",
                         "test_eval_compile_counts_what_eager_eval_counts"),  # torch.compile
    "test_speed_paths.py": ("test_compiled_block_gives_the_same_output",),  # torch.compile
    "test_train.py": ("test_sigterm_saves_and_prints_the_resume_command",),  # subprocess
    "test_weights.py": (  # the whole JPEG test split, once per shipped tag
        "test_every_shipped_tag_reproduces_its_published_accuracy_on_the_jpeg_copy",),
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        file = item.path.name
        if file not in HEAVY:
            continue
        names = HEAVY[file]
        if names is not None:
            missing = [name for name in names if not hasattr(item.module, name)]
            if missing:
                raise pytest.UsageError(f"tests/conftest.py HEAVY names {', '.join(missing)}, "
                                        f"which {file} no longer has: update the table")
            if item.originalname not in names:
                continue
        item.add_marker(pytest.mark.heavy)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches gain nothing from threads, and threads that spin for a core busy with other
    work make the tests many times slower on a shared two-core machine. Set for every test: a
    command run in-process (eval, show...) sets its own count and would leave it behind."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decoded-array cache for the session: the real data set is decoded once, not per test."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    """Never read or write the user's real cache, and never reach the network, from a test."""
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(session_cache))
    monkeypatch.delenv("RESNET_CIFAR_DATA", raising=False)


def at_training_step(epoch: int, step: int, action):
    """A callback that calls ``action(trainer, model)`` just before the forward of training step
    ``step`` (1-based) of the epoch after ``epoch``, and of no other step."""

    def callback(trainer, row):
        if row["epoch"] != epoch:
            return
        seen = {"n": 0}

        def hook(module, inputs):
            if module.training:
                seen["n"] += 1
                if seen["n"] == step:
                    action(trainer, module)

        trainer.model.register_forward_pre_hook(hook)

    return callback


def stop_after(epoch: int, extra_steps: int = 0):
    """A callback that interrupts the run as SIGINT would: after ``epoch`` epochs, plus
    ``extra_steps`` training steps into the next one (a mid-epoch stop)."""

    def stop(trainer, model=None):
        trainer.stop.request(signal.SIGINT)

    if extra_steps:  # asked during step extra_steps, which the loop finishes before stopping
        return at_training_step(epoch, extra_steps, stop)
    return lambda trainer, row: stop(trainer) if row["epoch"] == epoch else None
