"""No silent wrong result and no lost or half-made run: which data a run used, run-directory
locking and clearing, resume traps, values refused before anything is created, and stops.

Every case here was a defect found by a newcomer's pass over bad inputs; each test is named for
what it protects.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
from pathlib import Path

import pytest
import torch
from data_fixtures import make_cifar10_python_dir
from refusals import assert_refused

from resnet_cifar.cli import main
from resnet_cifar.config import TrainConfig, build_config
from resnet_cifar.engine import rundir
from resnet_cifar.engine.train import Trainer, train
from resnet_cifar.errors import ConfigError

FAST = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--eval-batch-size", "64"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_cifar10_python_dir(tmp_path_factory.mktemp("data"), n_train_per_class=4,
                                   n_test_per_class=2, seed=0)


@pytest.fixture(scope="module")
def one_each(tmp_path_factory) -> Path:
    """One training and one test image a class: for the runs whose steps only count."""
    return make_cifar10_python_dir(tmp_path_factory.mktemp("one-each"), n_train_per_class=1,
                                   n_test_per_class=1, seed=0)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    """Same layout and size, other pixels: what a wrong path or $RESNET_CIFAR_DATA would give."""
    return make_cifar10_python_dir(tmp_path_factory.mktemp("other"), n_train_per_class=4,
                                   n_test_per_class=2, seed=1)


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def trained(data: Path, out: Path, *extra) -> Path:
    assert cli("train", "--data", data, "--out", out, *FAST, *extra) == 0
    return out


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> Path:
    """Finished runs on `data`, trained once for the tests that start from one (each works on its
    own copy, from `copy_run`): one/ (1 epoch, its --data given relative to the working folder, as
    a user types it) and two/ (2 epochs)."""
    root = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(data.parent)
    try:
        trained(Path(data.name), root / "one")
    finally:
        os.chdir(cwd)
    trained(data, root / "two", "--epochs", "2")
    return root


def copy_run(runs: Path, tmp_path: Path, name: str = "one") -> Path:
    return Path(shutil.copytree(runs / name, tmp_path / "run"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- which data a run used


def test_config_records_the_absolute_data_path_and_its_fingerprint(data, runs, tmp_path):
    run = copy_run(runs, tmp_path)  # trained with a relative path, as a user types it
    recorded = build_config(None, run / "config.toml").data
    assert recorded.path == str(data.resolve())
    assert recorded.fingerprint.startswith("sha256:") and len(recorded.fingerprint) == 71
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_fingerprint"] == recorded.fingerprint and summary["num_classes"] == 10


def test_eval_says_which_data_it_used_in_text_and_json(data, runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    capsys.readouterr()
    assert cli("eval", run / "last.pt") == 0
    assert f"data {data.resolve()} (sha256:" in capsys.readouterr().out
    assert cli("eval", run / "last.pt", "--json") == 0
    info = json.loads(capsys.readouterr().out)["data"]
    assert info["source"] == str(data.resolve()) and info["matches_run"] is True
    assert info["split"] == "test" and info["images"] == 20


def test_a_missing_recorded_data_path_is_an_error_not_a_fallback(data, other_data, tmp_path,
                                                                 capsys, monkeypatch):
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    run = trained(moved, tmp_path / "run")
    capsys.readouterr()
    shutil.rmtree(moved)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(other_data))  # the old silent fallback
    assert cli("eval", run / "last.pt") == 2
    line = one_line_error(capsys)
    assert str(moved) in line and "--data" in line


def test_other_data_is_refused_unless_allowed_and_then_reported(data, other_data, runs,
                                                                tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    capsys.readouterr()
    assert cli("eval", run / "last.pt", "--data", other_data) == 2
    line = one_line_error(capsys)
    assert "not the data the run recorded" in line and "--allow-other-data" in line
    assert cli("eval", run / "last.pt", "--data", other_data, "--allow-other-data",
               "--json") == 0
    info = json.loads(capsys.readouterr().out)["data"]
    assert info["matches_run"] is False and info["source"] == str(other_data.resolve())
    assert cli("eval", run / "last.pt", "--data", other_data, "--allow-other-data") == 0
    assert "NOT the data the run recorded" in capsys.readouterr().out


def test_moved_data_with_the_same_content_is_accepted_by_eval_and_resume(data, tmp_path,
                                                                         capsys):
    first = tmp_path / "first"
    shutil.copytree(data, first)
    run = trained(first, tmp_path / "run")
    second = tmp_path / "second"
    first.rename(second)  # moved (a copy to another machine looks the same)
    capsys.readouterr()
    assert cli("eval", run / "last.pt", "--data", second) == 0
    assert "the data the run recorded" in capsys.readouterr().out
    assert cli("train", "--resume", run, "--epochs", "2", "--data", second) == 0
    assert build_config(None, run / "config.toml").data.path == str(second.resolve())


def test_a_config_file_rerun_checks_the_data_it_records(data, other_data, runs, tmp_path,
                                                          capsys):
    run = copy_run(runs, tmp_path)
    text = (run / "config.toml").read_text().replace(str(data.resolve()), str(other_data))
    (tmp_path / "other.toml").write_text(text)
    capsys.readouterr()
    code = cli("train", "--config", tmp_path / "other.toml", "--out", tmp_path / "rerun")
    assert code == 2 and "not the data the run recorded" in one_line_error(capsys)
    assert not (tmp_path / "rerun").exists()


# --------------------------------------------------------------------------- the run directory


def test_a_second_run_on_a_locked_directory_is_refused(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    lock = rundir.RunLock(out)  # as a training process holds it
    try:
        assert cli("train", "--data", data, "--out", out, *FAST) == 2
        assert "in use by another training run" in one_line_error(capsys)
        assert not (out / "config.toml").exists()
    finally:
        lock.release()
    assert cli("train", "--data", data, "--out", out, *FAST) == 0  # released: free again


def test_overwrite_clears_everything_a_run_left_and_nothing_else(data, runs, tmp_path):
    run = copy_run(runs, tmp_path)
    stale = ["best_on_test.pt", "best.pt", "predictions.png", "report.html", "last.onnx",
             "confusion.png", ".last.pt.abc123.tmp"]
    for name in stale:
        (run / name).write_bytes(b"stale")
    (run / "tensorboard").mkdir()
    (run / "notes.txt").write_text("mine")
    trained(data, run, "--overwrite", "--val-split", "10")
    assert not (run / "best_on_test.pt").exists()  # validation is no longer the test set
    for name in stale[2:]:
        assert not (run / name).exists(), name
    assert not (run / "tensorboard").exists()
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "best.pt").read_bytes() != b"stale"


@pytest.mark.parametrize("flags, named", [
    (["--batch-size", "64"], ["64"]),  # 40 training images
    (["--val-split", "40"], ["--val-split", "40"]),
    (["--model", "resnet20_convgru", "--model-opt", "gru_variant=bogus"], ["bogus"]),
    (["--weight-decay", "-1"], ["--weight-decay", "-1.0"]),
    (["--train-subset", "41"], ["--train-subset", "41"]),
    (["--amp", "fp16"], ["--amp", "fp16"]),  # no CUDA here
    (["--sync-bn"], ["--sync-bn"]),
])
def test_a_refused_run_leaves_no_directory_behind(data, tmp_path, capsys, flags, named):
    args = ["train", "--data", data, "--out", tmp_path / "run", "--epochs", "1", "--threads",
            "1", "--batch-size", "16"]
    line = assert_refused([*args, *flags], named[0], tmp_path, capsys)
    assert all(word in line for word in named[1:]), line


def test_a_missing_tensorboard_extra_leaves_no_directory_behind(data, tmp_path, capsys,
                                                               monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "run"
    assert cli("train", "--data", data, "--out", out, *FAST, "--tensorboard") == 2
    assert "tensorboard" in one_line_error(capsys)
    assert not out.exists()


def test_an_unwritable_out_is_a_one_line_error(data, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli("train", "--data", data, "--out", blocker / "run", *FAST) == 2
    assert f"cannot create run directory {blocker / 'run'}" in one_line_error(capsys)
    monkeypatch.chdir(tmp_path)
    Path("runs").write_text("")  # the default runs/ cannot be made here
    assert cli("train", "--data", data, *FAST) == 2
    assert "cannot create run directory runs/" in one_line_error(capsys)


def test_a_full_disk_while_saving_is_a_one_line_error_with_the_way_back(data, tmp_path, capsys,
                                                                       monkeypatch):
    import resnet_cifar.engine.checkpoint as checkpoint

    def full(obj, f, *args, **kwargs):  # the file's write, from Python, on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    save = checkpoint.torch.save
    monkeypatch.setattr(checkpoint.torch, "save", full)
    out = tmp_path / "run"
    assert cli("train", "--data", data, "--out", out, *FAST) == 2
    line = one_line_error(capsys)
    assert f"cannot write {out / 'last.pt'}" in line
    assert not list(out.glob(".last.pt.*"))  # no half-written file left
    monkeypatch.setattr(checkpoint.torch, "save", save)  # space freed: the advice must work
    assert cli(*suggested(line)) == 0
    assert (out / "summary.json").exists()


def suggested(line: str) -> list[str]:
    """The arguments of the resnet-cifar command an error line suggests (after "with: ")."""
    words = shlex.split(line.rsplit("with: ", 1)[1])
    start = next(i for i, w in enumerate(words) if w.endswith(("resnet-cifar", "resnet_cifar")))
    return words[start + 1:]


def test_out_on_a_run_that_is_training_now_says_so(data, runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    lock = rundir.RunLock(run)  # as the training process holds it
    try:
        assert cli("train", "--data", data, "--out", run, *FAST) == 2
        assert str(os.getpid()) in one_line_error(capsys)  # the pid training it, not "--resume"
    finally:
        lock.release()


def test_config_that_is_a_directory_is_a_one_line_error(runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    capsys.readouterr()
    assert cli("train", "--config", run) == 2
    line = one_line_error(capsys)
    assert "is a directory" in line and "config.toml" in line


# --------------------------------------------------------------------------- resume traps


def test_resume_with_the_same_data_path_is_not_a_change(data, runs, tmp_path):
    run = copy_run(runs, tmp_path)
    assert cli("train", "--resume", run, "--epochs", "2", "--data", data) == 0
    assert cli("train", "--resume", run, "--epochs", "3", "--lr", "0.1") == 0  # same lr too


def test_resume_with_fewer_epochs_than_done_is_refused(runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path, "two")
    capsys.readouterr()
    config_before = (run / "config.toml").read_text()
    assert cli("train", "--resume", run, "--epochs", "1") == 2
    assert "fewer than the 2 epochs" in one_line_error(capsys)
    assert (run / "config.toml").read_text() == config_before


def test_resuming_a_finished_run_says_so_and_rewrites_nothing(runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert cli("train", "--resume", run) == 2
    line = one_line_error(capsys)
    assert "has finished its 1 epochs already" in line and "N > 1" in line, line
    assert "--epochs" in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_run_without_last_pt_offers_the_way_out(data, runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    (run / "last.pt").unlink()  # as after a double Ctrl-C in epoch 1
    capsys.readouterr()
    assert cli("train", "--data", data, "--out", run, *FAST) == 2
    assert "--overwrite" in one_line_error(capsys)
    assert cli("train", "--resume", run) == 2
    line = one_line_error(capsys)
    assert "no last.pt" in line and "--overwrite" in line
    assert cli("train", "--data", data, "--out", run, *FAST, "--overwrite") == 0


def test_the_nan_advice_is_a_command_that_works(data, tmp_path, capsys):
    out = tmp_path / "nan"
    assert cli("train", "--data", data, "--out", out, *FAST, "--lr", "1e30") == 2
    line = one_line_error(capsys)
    assert "then --resume" not in line
    command = line.split("warm-up: ", 1)[1].split(", or", 1)[0]
    argv = command.split()[1:]  # drop the program
    assert argv[:3] == ["train", "--config", str((out / "config.toml").resolve())]
    argv[argv.index("NEW_DIR")] = str(tmp_path / "again")
    # the advice runs as printed (a lr of 1e30 halved still diverges: lower it further)
    assert cli(*argv, "--epochs", "1", "--lr", "0.01") == 0


def test_the_printed_resume_command_works_from_anywhere(data, tmp_path, monkeypatch):
    from resnet_cifar.engine.runtime import StopRequested

    monkeypatch.chdir(tmp_path)
    config = build_config(overrides={"epochs": 2, "batch_size": 16, "threads": 1,
                                     "out": "rel/run", "data": {"path": str(data)}})
    with pytest.raises(StopRequested) as stop:
        train(config, progress=False, callbacks=[lambda t, row: t.stop.request()])
    command = str(stop.value).split("resume with: ", 1)[1]
    program, *argv = command.split()
    assert Path(program).is_absolute() and Path(program).exists()
    assert argv == ["train", "--resume", str((tmp_path / "rel/run").resolve())]


# --------------------------------------------------------------------------- values refused at once


@pytest.mark.parametrize("flags", [
    ["--lr", "nan"], ["--lr", "inf"], ["--momentum", "2"], ["--gamma", "0"], ["--gamma", "-1"],
    ["--weight-decay", "-1"], ["--milestones", "1,,2"], ["--name", "../../evil"],
    ["--name", "ABSOLUTE"], ["--threads", "1000"], ["--epochs", "0"], ["--batch-size", "0"],
], ids=lambda f: " ".join(f))
def test_bad_values_are_refused_before_anything_is_created(data, tmp_path, capsys,
                                                           monkeypatch, flags):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    flags = [str(tmp_path / "evil") if f == "ABSOLUTE" else f for f in flags]
    try:
        code = cli("train", "--data", data, "--epochs", "1", "--threads", "1", *flags)
    except SystemExit as exit_:  # argparse's usage error, for a flag's own type
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") or f"argument {flags[0]}" in err
    assert not ("at least 1" in err and ">= 0" in err)  # no contradictory pair
    made = [p.name for p in tmp_path.rglob("*") if p != work]
    assert not made, made  # nothing made, anywhere: not in runs/, not beside it, not at ABSOLUTE


@pytest.mark.parametrize("value", ["0", "-1"])
def test_count_flags_state_one_rule_for_every_bad_value(capsys, value):
    for flag in ("--epochs", "--batch-size"):
        with pytest.raises(SystemExit):
            cli("train", flag, value)
        err = capsys.readouterr().err
        assert ">= 1" in err and ">= 0" not in err, err


def test_data_val_split_larger_than_the_data_is_an_error(data, tmp_path, capsys):
    line = assert_refused(["data", "--data", data, "--val-split", "5000"], "5000", tmp_path,
                          capsys)
    assert "--val-split" in line, line


def test_bench_workers_message_speaks_of_workers(capsys):
    with pytest.raises(SystemExit):
        cli("bench", "--workers", "abc")
    err = capsys.readouterr().err
    assert "worker" in err and "epoch" not in err


def test_threads_from_a_config_file_are_capped_to_the_cores(monkeypatch):
    from resnet_cifar.engine import runtime

    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    with pytest.warns(RuntimeWarning, match="capped"):
        assert runtime.configure_threads(64) == 2
    torch.set_num_threads(1)


def test_a_run_name_cannot_leave_runs():
    for name in ("../evil", "a/b", ".hidden", "/abs"):
        with pytest.raises(ConfigError):
            build_config(overrides={"name": name})
    assert build_config(overrides={"name": "resnet20-lr0.2"}).name == "resnet20-lr0.2"


# --------------------------------------------------------------------------- stops


def test_a_signal_during_validation_stops_at_the_epoch_boundary(data, tmp_path, monkeypatch):
    from resnet_cifar.engine.runtime import StopRequested

    original = Trainer.validate

    def validate_then_signal(self):
        result = original(self)
        self.stop.request(signal.SIGTERM)  # arrives while validation runs
        return result

    monkeypatch.setattr(Trainer, "validate", validate_then_signal)
    out = tmp_path / "run"
    config = TrainConfig(epochs=3, batch_size=16, threads=1, milestones=[2], out=str(out))
    config.data.path = str(data)
    with pytest.raises(StopRequested) as stop:
        train(config, progress=False)
    assert stop.value.exit_code == 143
    state = torch.load(out / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 0)  # no step of epoch 2 was run
    assert "after epoch 1" in str(stop.value)


def test_interrupt_messages_are_written_to_train_log(data, tmp_path):
    from resnet_cifar.engine.runtime import StopRequested

    def sigint(trainer, row):
        trainer.stop._handle(signal.SIGINT, None)  # as the signal handler is called

    out = tmp_path / "run"
    config = TrainConfig(epochs=3, batch_size=16, threads=1, milestones=[2], out=str(out))
    config.data.path = str(data)
    with pytest.raises(StopRequested):
        train(config, progress=False, callbacks=[sigint])
    log = (out / "train.log").read_text()
    assert "SIGINT received" in log and "resume with:" in log


def test_a_torn_last_metrics_line_is_ignored_with_a_warning(runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path, "two")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "lr": 0.1, "train_lo')  # the process died mid-write
    with pytest.warns(RuntimeWarning, match="torn last line"):
        assert len(rundir.read_metrics(run)) == 2
    assert cli("plot", run, "--out", tmp_path / "curves.png") == 0
    assert cli("train", "--resume", run, "--epochs", "3") == 0
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1, 2, 3]


def test_overwrite_knows_every_export_name():
    """--overwrite clears exports by name (rundir cannot import the higher export module)."""
    from resnet_cifar.export import FORMATS

    assert set(rundir.EXPORT_SUFFIXES) == set(FORMATS.values())


# --------------------------------------------------------------------------- a busy machine


def test_default_threads_are_one_per_core_other_processes_leave_idle():
    from resnet_cifar.engine.runtime import threads_for_load

    assert [threads_for_load(2, busy) for busy in (0.0, 0.4, 0.6, 1.0, 1.9, 5.0)] == \
        [2, 2, 1, 1, 1, 1]
    assert threads_for_load(8, 2.2) == 6
    assert threads_for_load(4, None) == 4  # no /proc/stat: one per core, as before


def test_the_cpu_meter_counts_other_processes_only(monkeypatch):
    from resnet_cifar.engine import runtime

    clock = {"busy": 100.0, "own": 10.0, "wall": 50.0}
    monkeypatch.setattr(runtime, "_cpu_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(runtime, "_own_cpu_seconds", lambda: clock["own"])
    monkeypatch.setattr(runtime.time, "monotonic", lambda: clock["wall"])
    meter = runtime.CpuMeter()
    clock.update(busy=100.0 + 30.0, own=10.0 + 20.0, wall=50.0 + 10.0)  # we used 2 cores x 10 s
    assert meter.others() == pytest.approx(1.0)  # the other 10 busy seconds: one core


def test_threads_follow_the_load_each_epoch_unless_deterministic(one_each, tmp_path,
                                                                   monkeypatch):
    from resnet_cifar.engine import runtime

    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    monkeypatch.setattr(runtime, "auto_threads", lambda: (2, 0.0))  # idle at the start
    monkeypatch.setattr(runtime, "FOLLOW_SECONDS", 1e9)  # between epochs only (a slow machine)
    busy = iter([1.0, 0.0, 1.0])  # a neighbour comes, goes, comes back
    monkeypatch.setattr(runtime.CpuMeter, "others", lambda self: next(busy))
    seen = []

    def record(trainer, row):
        seen.append(torch.get_num_threads())

    config = TrainConfig(epochs=3, batch_size=10, milestones=[2], threads=0,
                         out=str(tmp_path / "auto"))  # one step an epoch
    config.data.path = str(one_each)
    train(config, progress=False, callbacks=[record])
    assert seen == [1, 2, 1]
    assert "threads    2 -> 1" in (tmp_path / "auto" / "train.log").read_text()
    seen.clear()
    config.out, config.deterministic = str(tmp_path / "det"), True
    train(config, progress=False, callbacks=[record])
    assert seen == [2, 2, 2]  # the numbers of a deterministic run must not depend on the load
    torch.set_num_threads(1)


def test_threads_follow_a_neighbour_who_starts_within_an_epoch(one_each, tmp_path,
                                                                monkeypatch):
    """Two threads with a busy neighbour collapse (19 img/s here): a run must not wait for the
    epoch's end to give the taken core back, nor to take it again once it is free."""
    from resnet_cifar.engine import runtime

    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    monkeypatch.setattr(runtime, "auto_threads", lambda: (2, 0.0))
    monkeypatch.setattr(runtime, "FOLLOW_SECONDS", 0.0)  # look again after every step
    looks = []

    def others(meter):  # idle before epoch 1; a neighbour from its step 2; gone in epoch 2
        looks.append(torch.get_num_threads())
        return 1.0 if 2 <= len(looks) <= 5 else 0.0

    monkeypatch.setattr(runtime.CpuMeter, "others", others)
    config = TrainConfig(epochs=2, batch_size=1, milestones=[2], threads=0,
                         out=str(tmp_path / "run"))  # 10 steps an epoch
    config.data.path = str(one_each)
    train(config, progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "threads    2 -> 1 (epoch 1, step 1): other processes kept 1.0" in log
    assert "threads    1 -> 2 (epoch 1, step 5)" in log
    assert looks[:7] == [2, 2, 1, 1, 1, 1, 2]
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in metrics.splitlines()]
    assert [row["threads"] for row in rows] == [2, 2]
    torch.set_num_threads(1)


def test_inference_commands_take_threads(runs, tmp_path, capsys, monkeypatch):
    import resnet_cifar.engine.runtime as runtime

    run = copy_run(runs, tmp_path)
    assert cli("eval", run / "last.pt", "--threads", "1") == 0
    assert torch.get_num_threads() == 1
    monkeypatch.setattr(runtime, "auto_threads", lambda: (1, 1.0))  # a busy neighbour
    torch.set_num_threads(2)
    assert cli("show", run / "last.pt", "--out", tmp_path / "grid.png") == 0
    assert torch.get_num_threads() == 1  # the default followed the load
    for command in (["eval", run / "last.pt"], ["show", run / "last.pt"], ["report", run],
                    ["predict", run / "last.pt", tmp_path], ["export", run / "last.pt"]):
        with pytest.raises(SystemExit):
            cli(*command, "--threads", "1000")
        assert "would oversubscribe" in capsys.readouterr().err


def test_bench_refuses_fp16_without_cuda_as_train_and_eval_do(capsys):
    """On a CPU, fp16 autocast would silently time float32 under an fp16 label."""
    assert cli("bench", "--device", "cpu", "--amp", "fp16", "--steps", "1", "--repeats", "1") == 2
    assert "fp16 needs CUDA" in one_line_error(capsys)


@pytest.mark.parametrize("argv, config, named", [
    (["--warmup-epochs", "5", "--epochs", "1"], None, ["5", "--warmup-epochs", "--epochs"]),
    ([], "[data]\nval_split = -3\n", ["-3", "--val-split"]),
    ([], "lr = -1.0\n", ["-1.0", "--lr"]),
], ids=["warmup", "val-split-in-a-config", "lr-in-a-config"])
def test_range_errors_name_the_flag_and_the_value(tmp_path, capsys, argv, config, named):
    if config is not None:
        (tmp_path / "c.toml").write_text(config)
        argv = [*argv, "--config", tmp_path / "c.toml"]
    line = assert_refused(["train", *argv, "--out", tmp_path / "run"], named[0], tmp_path, capsys)
    assert all(word in line for word in named[1:]), line


@pytest.mark.parametrize("flag, value", [
    ("--lr", "inf"), ("--lr", "0"), ("--momentum", "1"), ("--weight-decay", "-1"),
    ("--gamma", "0"), ("--label-smoothing", "1"), ("--ema-decay", "nan"), ("--threads", "-1"),
    ("--save-every", "-1"), ("--cutout", "32"), ("--val-split", "-1"), ("--train-subset", "-1"),
])
def test_each_setting_out_of_its_range_is_refused_naming_flag_and_value(tmp_path, capsys, flag,
                                                                        value):
    line = assert_refused(["train", flag, value, "--out", tmp_path / "run"], value, tmp_path,
                          capsys)
    assert flag in line, line
