import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

# Threads that wait for work spin by default (OpenMP's ACTIVE policy): on two cores shared by two
# xdist workers, a test that runs on two threads then spins against the other worker, and a few
# steps take tens of seconds instead of one. PASSIVE sleeps instead; it is read once, when torch
# loads its OpenMP runtime, so it is set before torch is imported (here, or in any subprocess).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402  (a dependency of torch)

from resnet_cifar.models import list_models  # noqa: E402

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # so test modules can `import data_fixtures`

# The real data beside the clone; RESNET_CIFAR_TEST_SHARED=/nonexistent runs the suite as CI does,
# without it (the `slow` tests skip).
SHARED = Path(os.environ.get("RESNET_CIFAR_TEST_SHARED") or TESTS.parents[1] / "shared")
JPEG_TARBALL = SHARED / "data" / "cifar10-jpeg.tar.gz"
FOREIGN_CHECKPOINT = SHARED / "data" / "foreign" / "resnet20-12fca82f.th"

# The heavy tests, marked here rather than in their files so that one table says what
# `make test-fast` (-m "not heavy") leaves out; `make test` runs them all. Each starts processes
# or compilers (torchrun, a subprocess, torch.compile, chromium), repeats one job over everything
# (every model exported in every format), or trains again what a test in test-fast already guards
# (a second case of it, its comment says which): test-fast keeps one test of each guarantee. Each
# entry is a test file and a test function in it (or one case of it, "function[id]"), or None
# for the whole file. A function or a case that no longer exists stops the run, so a renamed
# test cannot silently become fast.
HEAVY: dict[str, tuple[str, ...] | None] = {
    "test_distributed.py": None,  # torchrun launches of two ranks
    "test_docs_examples.py": (
        "test_benchmark_examples_run",  # torch.compile, a dozen benchmarks
        # the docs that train, evaluate and export most; the shorter docs run in test-fast
        "test_doc_examples_run[README.md]", "test_doc_examples_run[docs/inference.md]",
        "test_doc_examples_run[docs/results.md]", "test_doc_examples_run[docs/training.md]",
    ),
    "test_export.py": (
        "test_every_model_round_trips_in_every_format_with_a_dynamic_batch",
        "test_dynamo_onnx_exporter",
        # the other formats of [resnet20-torchscript-half] and [torchscript]
        "test_included_normalization_equals_normalize_then_model[resnet20_convrnn-onnx-None]",
        "test_included_normalization_equals_normalize_then_model[resnet20_convrnn-torchscript-None]",
        "test_included_normalization_equals_normalize_then_model[resnet20_convrnn-pt2-None]",
        "test_verify_reports_random_and_real_image_parity[onnx]",
        "test_verify_reports_random_and_real_image_parity[pt2]",
        # fold: test_fold.py's model-level tests and test_cli_export_fold_bn_says_what_it_wrote
        "test_fold_bn_writes_the_folded_graph_and_checks_it_against_the_unfolded_model",
    ),
    "test_hub.py": ("test_hubconf_finds_the_package_in_src_without_an_install",),  # subprocess
    "test_notebook.py": ("test_the_quickstart_runs_on_tiny_data",),  # a Jupyter kernel, two runs
    "test_report.py": ("test_report_renders_in_headless_chromium",),
    "test_compiled.py": ("test_compiled_logits_equal_eager_for_any_batch_with_one_compilation",
                         "test_eval_compile_counts_what_eager_eval_counts"),  # torch.compile
    "test_speed_paths.py": (
        "test_compiled_block_gives_the_same_output",  # torch.compile
        # benchmark rounds: test_the_benchmark_levers_reach_the_parts_it_times stays fast
        "test_bench_command_emits_json_with_the_expected_keys",
        "test_bench_variants_get_only_the_pipelines_they_change",
        "test_bench_train_levers_switch_what_they_name_in_their_own_rounds_only",
        "test_bench_times_bf16_evaluation_only_where_bf16_runs_in_hardware",
        "test_bench_times_the_float32_peak_and_bounds_each_ratio_by_it",
        # bf16 runs and evaluations, emulated on most CPUs: the autocast of training and of
        # each evaluation chunk is checked on a few images, fast
        "test_cpu_bf16_run_logs_the_accuracy_eval_reproduces",
        "test_eval_amp_says_so_and_refuses_what_the_device_cannot_run",
    ),
    "test_train.py": (
        "test_sigterm_saves_and_prints_the_resume_command",  # subprocess
        # exact resume: [mid-epoch] and the hard kill [saves-within-the-epoch] stay fast
        "test_interrupted_cpu_bf16_run_resumes_to_bitwise_identical_weights",
        "test_interrupted_run_resumes_to_bitwise_identical_weights[epoch-boundary]",
        "test_a_hard_kill_mid_epoch_loses_no_more_than_save_every[off-epoch-ends-only]",
        # the run directory: [resnet20] stays fast
        "test_two_epoch_run_writes_a_complete_run_dir[resnet20_convrnn]",
        "test_two_epoch_run_writes_a_complete_run_dir[resnet20_convgru]",
        "test_loss_goes_down_on_a_learnable_set",  # 5 epochs
        "test_each_epochs_thread_count_reaches_the_summary_when_a_resume_changes_it",
        "test_save_every_is_checked_and_may_change_on_resume",
        # NaN: test_nan_loss_stops_with_a_clear_message_and_keeps_last_good_checkpoint stays fast
        "test_a_loss_gone_nan_after_a_mid_epoch_save_names_the_step_last_pt_holds",
    ),
    "test_ema.py": ("test_the_header_says_when_the_warm_up_keeps_the_decay_below_ema_decay",),
    "test_init.py": ("test_a_run_with_both_starts_there_says_so_and_resumes_bitwise",),  # 5 runs
    "test_augment_options.py": (  # the options' batches are checked without training, fast
        "test_training_with_the_options_resumes_mid_epoch_to_identical_weights",),
    "test_viz.py": (  # more figures of the shared runs: show, curves and confusion stay fast
        "test_eval_plot_writes_both_figures",  # and test_outputs.py's eval --plot
        "test_plot_overlays_runs_one_colour_each",
        "test_show_split_val_uses_the_validation_split_the_run_recorded",
        "test_only_wrong_shows_only_red_titles",
        "test_write_run_curves_is_cheap",  # a timing
    ),
    "test_cli.py": ("test_the_models_table_rounds_the_exact_mac_count_once",),  # every model
    "test_weights.py": (
        "test_every_shipped_tag_reproduces_its_published_accuracy_on_the_jpeg_copy",  # 10,000
        # images per tag; figures and exports of the tiny published run
        "test_eval_plot_and_show_of_published_weights_write_here_and_name_each_file",
        "test_show_and_export_of_published_weights_write_here_not_into_the_package",
        "test_a_run_made_under_the_old_names_resumes_and_evaluates",
    ),
}


# Tests parametrized over every model run in test-fast for the depth-20 models, which hold every
# block and every cell; the deeper ones (the same blocks, repeated) are heavy.
DEPTH_20 = [name for name in list_models() if "20" in name]
DEEP_MODELS = frozenset(list_models()) - set(DEPTH_20)


def pytest_configure(config):
    config.pluginmanager.register(LongestFilesFirst(getattr(config, "cache", None)))
    config.addinivalue_line("markers", "real_curves: the training loop draws curves.png with "
                            "matplotlib (elsewhere tests/conftest.py writes a stand-in)")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    seen: dict[tuple[str, str], set[str]] = {}  # (file, function) -> the parameter ids collected
    for item in items:
        callspec = getattr(item, "callspec", None)
        seen.setdefault((item.path.name, item.originalname), set()).add(
            callspec.id if callspec is not None else "")
        if callspec is not None and any(isinstance(value, str) and value in DEEP_MODELS
                                        for value in callspec.params.values()):
            item.add_marker(pytest.mark.heavy)
            continue
        file = item.path.name
        if file not in HEAVY:
            continue
        names = HEAVY[file]
        if names is not None:
            missing = [name for name in names
                       if not hasattr(item.module, name.split("[")[0])]
            if missing:
                raise pytest.UsageError(f"tests/conftest.py HEAVY names {', '.join(missing)}, "
                                        f"which {file} no longer has: update the table")
            if item.originalname not in names and item.name not in names:
                continue
        item.add_marker(pytest.mark.heavy)
    if any("::" in arg for arg in config.args):
        return  # tests picked by id: the other cases of a function are not collected
    for file, names in HEAVY.items():
        for name in names or ():
            function, _, case = name.partition("[")
            ids = seen.get((file, function))
            if case and ids is not None and case[:-1] not in ids:
                raise pytest.UsageError(f"tests/conftest.py HEAVY names {name}, a case that "
                                        f"{file} no longer has: update the table")


class LongestFilesFirst:
    """Runs the longest files first, so that the two xdist workers, which take whole files in
    this order (the Makefile's --no-loadscope-reorder), finish together. A file's length is the
    sum of its selected tests' times in their last run, which pytest's cache keeps; in a fresh
    clone (or with -p no:cacheprovider), the files with heavy tests come first."""

    KEY = "resnet_cifar/test_seconds"

    def __init__(self, cache):
        self.cache = cache
        self.seconds = cache.get(self.KEY, {}) if cache is not None else {}

    @pytest.hookimpl(trylast=True)  # after -m has deselected
    def pytest_collection_modifyitems(self, items):
        files: dict[Path, float] = {}
        for item in items:
            files[item.path] = files.get(item.path, 0.0) + self.seconds.get(item.nodeid, 0.0)
        items.sort(key=lambda item: (-files[item.path], item.get_closest_marker("heavy") is None))

    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = (self.seconds.get(report.nodeid, 0.0) + report.duration
                                       if report.when != "setup" else report.duration)

    def pytest_sessionfinish(self, session):
        if self.cache is not None and not hasattr(session.config, "workerinput"):  # once
            self.cache.set(self.KEY, self.seconds)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches gain nothing from threads, and threads that spin for a core busy with other
    work make the tests many times slower on a shared two-core machine. Set for every test: a
    command run in-process (eval, show...) sets its own count and would leave it behind."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _one_thread_in_fixtures():
    """The same for the module-scoped fixtures, which are set up before _one_thread; and the
    thread count a command picks by itself (`threads` 0, the default of every command) is one
    too, at once: engine/runtime.py's auto_threads samples the load for 0.2 s each time (half a
    minute of the suite), and its answer would depend on what else the machine runs. Every other
    core is said to be busy, which under xdist is close to true. The tests of the choice itself
    (test_run_safety.py) patch auto_threads and CpuMeter as they need."""
    from resnet_cifar.engine import runtime

    def auto_threads(sample_seconds: float = 0.2) -> tuple[int, float | None]:
        others = float(runtime.physical_cores() - 1)
        return runtime.threads_for_load(runtime.physical_cores(), others), others

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "auto_threads", auto_threads)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decoded-array cache for the session, shared by the xdist workers: a data set is
    decoded once, not per test or per worker (cache files are written atomically)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process
        return tmp_path_factory.mktemp("cache")
    cache = tmp_path_factory.getbasetemp().parent / "cache"  # the workers' common folder
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(session_cache):
    """Never read or write the user's real cache, and never reach the network, from a test or a
    fixture: set for the session, since module-scoped fixtures (a shared run) are set up before
    any function-scoped one. A test's own monkeypatch.setenv goes back to these values."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_CIFAR_CACHE", str(session_cache))
        patch.delenv("RESNET_CIFAR_DATA", raising=False)
        yield


def arrays_digest(arrays) -> str:
    """sha256 of the decoded pixels and labels, both splits."""
    digest = hashlib.sha256()
    for array in (arrays.train_images, arrays.train_labels, arrays.test_images,
                  arrays.test_labels):
        digest.update(array.tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def jpeg_cache(session_cache) -> dict:
    """The real JPEG copy decoded into the session cache once, by the first worker to ask (the
    others wait, then read the cache): the record of that first load, which test_data_real.py
    checks, as {"cache_file", "seconds", "digest"} (digest: arrays_digest of the decode)."""
    if not JPEG_TARBALL.is_file():
        pytest.skip(f"{JPEG_TARBALL} is absent")
    from resnet_cifar.data import load_cifar

    record = session_cache / "jpeg-first-load.json"
    with FileLock(session_cache / "jpeg.lock"):
        if not record.exists():
            start = time.perf_counter()
            arrays = load_cifar(JPEG_TARBALL, cache_dir=session_cache, progress=False)
            seconds = time.perf_counter() - start
            record.write_text(json.dumps({"cache_file": arrays.cache_file, "seconds": seconds,
                                          "digest": arrays_digest(arrays)}))
    return json.loads(record.read_text())


_PLACEHOLDER_PNG = bytes.fromhex(  # a 1x1 grey PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c63680000008200817766d5f50000000049454e44ae426082")


_REAL_CURVES = {"on": False}  # set for the tests marked real_curves


@pytest.fixture(scope="session", autouse=True)
def _curves_stand_in():
    """A training run redraws curves.png after its first epoch and at its end: about half the
    time of a tiny run here, and a plotting failure would only be a warning in train.log. So the
    loop's drawing (viz.curves.write_run_curves, through engine/report.py's draw_curves) reads the
    run as the drawing does, then writes a 1x1 PNG, atomically, in its place; tests marked
    real_curves get the real figure, and test_viz.py draws it directly. Session-scoped, so that
    it holds in the module-scoped fixtures that train."""
    from resnet_cifar.atomic import atomic_write
    from resnet_cifar.engine.rundir import read_run
    from resnet_cifar.viz import curves

    real = curves.write_run_curves

    def write_run_curves(run_dir):
        if _REAL_CURVES["on"]:
            return real(run_dir)
        curves.curves_title(read_run(run_dir))
        path = Path(run_dir) / "curves.png"
        with atomic_write(path) as f:
            f.write(_PLACEHOLDER_PNG)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(curves, "write_run_curves", write_run_curves)
        yield


@pytest.fixture(autouse=True)
def _real_curves_where_marked(request):
    _REAL_CURVES["on"] = request.node.get_closest_marker("real_curves") is not None
    yield
    _REAL_CURVES["on"] = False


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
