"""Training end to end through the real CLI entry point, on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import at_training_step, stop_after
from data_fixtures import make_cifar10_python_dir
from torch import nn

from resnet_cifar.cli import main
from resnet_cifar.config import TrainConfig, build_config
from resnet_cifar.engine.runtime import physical_cores
from resnet_cifar.engine.train import train
from resnet_cifar.models import create_model, registry

TINY = ["--epochs", "2", "--batch-size", "8", "--threads", "1", "--eval-batch-size", "64"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """40 training images (5 steps of 8 an epoch) and 20 test images."""
    root = tmp_path_factory.mktemp("data")
    return make_cifar10_python_dir(
        root, n_train_per_class=4, n_test_per_class=2, seed=0, learnable=True
    )


def run_cli(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.mark.parametrize("model", [pytest.param("resnet20", marks=pytest.mark.real_curves),
                                   "resnet20_convrnn", "resnet20_convgru"])
def test_two_epoch_run_writes_a_complete_run_dir(tiny_data, tmp_path, model):
    out = tmp_path / "run"
    assert run_cli("train", "--model", model, "--data", tiny_data, "--out", out, *TINY) == 0
    for name in (
        "config.toml",
        "metrics.csv",
        "metrics.jsonl",
        "train.log",
        "last.pt",
        "best_on_test.pt",
        "model.pth",
        "summary.json",
        "curves.png",  # drawn by matplotlib for resnet20 (real_curves), a stand-in for the others
    ):
        assert (out / name).is_file(), name
    if model == "resnet20":
        from PIL import Image

        assert Image.open(out / "curves.png").size == (1100, 420)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    jsonl = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["epoch"] for r in jsonl] == [1, 2]
    for r in jsonl:
        assert 0 <= r["val_acc"] <= 1 and r["val_loss"] > 0 and r["img_per_s"] > 0
    # model.pth is a plain state_dict that loads strictly into a fresh model
    state = torch.load(out / "model.pth", weights_only=True)
    create_model(model).load_state_dict(state, strict=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == model and summary["epochs"] == 2 and summary["val_is_test"]
    assert summary["test_acc"] == pytest.approx(jsonl[-1]["val_acc"])
    log = (out / "train.log").read_text()
    assert "TEST set" in log  # validation on the test set is said plainly
    # the saved config reruns the same experiment
    rerun = build_config(recipe=None, config_file=out / "config.toml")
    assert rerun.model == model and rerun.epochs == 2 and rerun.batch_size == 8


def test_loss_goes_down_on_a_learnable_set(tiny_data, tmp_path):
    # One batch of all 40 images a step: with batches of 8, BatchNorm's noise let one epoch's
    # loss rise past the first's on some CPUs' rounding (a Zen 5), though training worked.
    config = build_config(
        overrides={
            "epochs": 5,
            "batch_size": 40,
            "lr": 0.05,
            "milestones": [],
            "threads": 1,
            "out": str(tmp_path / "run"),
            "data": {"path": str(tiny_data), "augment": "none"},
        }
    )
    result = train(config, progress=False)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("extra_steps", [0, 2], ids=["epoch-boundary", "mid-epoch"])
def test_interrupted_run_resumes_to_bitwise_identical_weights(tiny_data, tmp_path, extra_steps):
    interrupted_and_resumed_equals_uninterrupted(tiny_data, tmp_path, extra_steps, "none")


def test_interrupted_cpu_bf16_run_resumes_to_bitwise_identical_weights(tiny_data, tmp_path):
    """The same under bf16 autocast, which this CPU may only emulate (heavy: many times slower)."""
    interrupted_and_resumed_equals_uninterrupted(tiny_data, tmp_path, 2, "bf16")


class DropoutNet(nn.Module):
    """Draws from the global RNG at every training step, as any model with dropout does."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.5)
        self.linear = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.drop(torch.relu(self.conv(x)))
        return self.linear(x.mean((2, 3)))


def test_a_model_with_dropout_resumes_mid_epoch_to_bitwise_identical_weights(
        tiny_data, tmp_path, monkeypatch):
    """The loader draws from its own (seed, epoch) generator; a registered model that draws from
    the global one resumes exactly because the checkpoint carries the global RNG's state."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_model(DropoutNet)
    def tiny_dropout(pretrained=False, **kwargs):
        """test-only: a conv, dropout, a linear layer"""
        return registry.build_model("tiny_dropout", pretrained, **kwargs)

    interrupted_and_resumed_equals_uninterrupted(tiny_data, tmp_path, 2, "none",
                                                 model="tiny_dropout")


def interrupted_and_resumed_equals_uninterrupted(tiny_data, tmp_path, extra_steps, amp,
                                                 model="resnet20"):
    from resnet_cifar.engine.runtime import StopRequested

    def config(out):
        return build_config(
            overrides={
                "model": model,
                "epochs": 3,
                "batch_size": 8,
                "milestones": [2],
                "deterministic": True,
                "threads": 1,
                "seed": 3,
                "amp": amp,
                "out": str(out),
                "data": {"path": str(tiny_data)},
            }
        )

    full = train(config(tmp_path / "full"), progress=False)
    with pytest.raises(StopRequested) as stop:
        train(config(tmp_path / "cut"), progress=False, callbacks=[stop_after(1, extra_steps)])
    assert stop.value.exit_code == 130
    assert "resnet-cifar train --resume" in str(stop.value)
    resumed = train(resume=tmp_path / "cut", progress=False)

    a = torch.load(tmp_path / "full" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pth", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    rows = [json.loads(line) for line in open(tmp_path / "cut" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for x, y in zip(full.history, rows, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"])
        assert x["val_acc"] == y["val_acc"]


class SimulatedKill(Exception):
    """A hard kill (SIGKILL, power loss): the process ends mid-step and saves nothing."""


def kill_after(epoch: int, steps: int):
    """A callback that ends the run as a hard kill would, ``steps`` training steps into the epoch
    after ``epoch``: the next step's forward raises, and no stop handler saves anything."""

    def kill(trainer, model):
        raise SimulatedKill

    return at_training_step(epoch, steps + 1, kill)


@pytest.mark.parametrize("save_every, kept", [(1e-9, (1, 3)), (0.0, (1, 0))],
                         ids=["saves-within-the-epoch", "off-epoch-ends-only"])
def test_a_hard_kill_mid_epoch_loses_no_more_than_save_every(tiny_data, tmp_path, save_every,
                                                              kept):
    """`save_every` saves last.pt within the epoch (here after every step): a run killed with no
    chance to save resumes from its last step, not its last epoch, to bitwise the weights of a
    run never stopped. The saves change nothing in the computation."""
    def config(out, every):
        return build_config(overrides={
            "epochs": 2, "batch_size": 8, "deterministic": True, "threads": 1, "seed": 5,
            "ema_decay": 0.9, "save_every": every, "out": str(out),
            "data": {"path": str(tiny_data)}})

    full = train(config(tmp_path / "full", 0.0), progress=False)
    with pytest.raises(SimulatedKill):
        train(config(tmp_path / "cut", save_every), progress=False, callbacks=[kill_after(1, 3)])
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == kept  # 5 steps per epoch: killed in the 4th
    log = (tmp_path / "cut" / "train.log").read_text()
    assert ("every 1e-09 min within one" in log) == (save_every > 0)
    resumed = train(resume=tmp_path / "cut", progress=False)
    a = torch.load(tmp_path / "full" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pth", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for x, y in zip(full.history, resumed.history, strict=True):
        assert (x["train_loss"], x["train_acc"], x["val_acc"]) == \
            (y["train_loss"], y["train_acc"], y["val_acc"])


def test_save_every_is_checked_and_may_change_on_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            run_cli("train", "--data", tiny_data, "--out", out, "--save-every", bad, *TINY)
        assert "--save-every" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli("train", "--data", tiny_data, "--out", out, *TINY, "--epochs", "1") == 0
    assert run_cli("train", "--resume", out, "--epochs", "2", "--save-every", "0.5") == 0
    assert build_config(recipe=None, config_file=out / "config.toml").save_every == 0.5


@pytest.mark.skipif(physical_cores() < 2,
                    reason="needs 2 cores (affinity mask) to change the thread count")
def test_each_epochs_thread_count_reaches_the_summary_when_a_resume_changes_it(tiny_data,
                                                                              tmp_path):
    from resnet_cifar.engine.runtime import StopRequested

    out = tmp_path / "run"
    config = build_config(overrides={"epochs": 3, "batch_size": 8, "threads": 1,
                                     "out": str(out), "data": {"path": str(tiny_data)}})
    with pytest.raises(StopRequested):
        train(config, progress=False, callbacks=[stop_after(1, 0)])
    train(resume=out, overrides={"threads": 2}, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    # not just the last count: epoch 1 ran on one thread, epochs 2-3 on two
    assert summary["thread_spans"] == [[1, 1, 1], [2, 3, 2]]
    assert summary["threads"] == 2
    # metrics.csv keeps its columns, so runs started before this column still resume cleanly
    assert "threads" not in open(out / "metrics.csv").readline()


def test_thread_spans_guess_nothing_for_rows_without_a_thread_count():
    from resnet_cifar.engine.report import thread_spans

    rows = [{"epoch": 1, "threads": 1}, {"epoch": 2, "threads": 1}, {"epoch": 3, "threads": 2},
            {"epoch": 4, "threads": 1}]
    assert thread_spans(rows) == [[1, 2, 1], [3, 3, 2], [4, 4, 1]]
    assert thread_spans([{"epoch": 1}, {"epoch": 2, "threads": 2}]) is None
    assert thread_spans([]) is None


def test_describe_threads_names_the_epochs_of_each_count():
    from resnet_cifar.engine.report import describe_threads

    assert describe_threads({"threads": 2, "thread_spans": [[1, 5, 1], [6, 15, 2]]}) == \
        "1 (epochs 1-5), 2 (epochs 6-15)"
    assert describe_threads({"threads": 1, "thread_spans": [[1, 1, 2], [2, 3, 1]]}) == \
        "2 (epoch 1), 1 (epochs 2-3)"
    assert describe_threads({"threads": 2, "thread_spans": [[1, 15, 2]]}) == "2"
    assert describe_threads({"threads": 1, "thread_spans": None}) == "1"  # an older run


def test_sigterm_saves_and_prints_the_resume_command(tiny_data, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resnet_cifar",
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--epochs",
            "500",
            "--batch-size",
            "8",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert f"resnet-cifar train --resume {out}" in stderr
    assert "Traceback" not in stderr
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] >= 1


def test_existing_run_dir_is_refused_without_resume_or_overwrite(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        tiny_data,
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
    ]
    assert run_cli(*args) == 0
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--resume" in err and "--overwrite" in err
    assert run_cli(*args, "--overwrite") == 0


def test_runs_started_in_one_second_without_out_get_a_folder_each(tiny_data, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20261208-120000")
    args = ["train", "--data", tiny_data, "--epochs", "1", "--batch-size", "8", "--threads", "1",
            "--train-subset", "16"]
    assert run_cli(*args) == 0 and run_cli(*args) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["resnet20-20261208-120000", "resnet20-20261208-120000-2"]
    assert all((tmp_path / "runs" / r / "summary.json").is_file() for r in runs)


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_good_checkpoint(
    tiny_data, tmp_path, capsys
):
    from resnet_cifar.engine.train import TrainingDiverged

    # Through the CLI, a loss that is NaN from the first step: one line, exit 2, nothing saved.
    poisoned = tmp_path / "nan"
    code = run_cli("train", "--data", tiny_data, "--out", poisoned, "--batch-size", "8",
                   "--threads", "1", "--epochs", "2", "--lr", "1e30")
    assert code == 2
    err = capsys.readouterr().err
    assert "loss became" in err and "no epoch had finished" in err and "Traceback" not in err
    assert poisoned.is_dir() and not (poisoned / "last.pt").exists()
    assert not (poisoned / "model.pth").exists()

    # A run whose loss goes NaN in its second epoch (the weights poisoned once epoch 1 is saved):
    # its own last.pt and best checkpoint keep epoch 1, byte for byte.
    out = tmp_path / "run"
    kept = {}

    def poison(trainer, row):
        if row["epoch"] == 1:
            kept.update({n: (out / n).read_bytes() for n in ("last.pt", "best_on_test.pt")})
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.fill_(float("nan"))

    config = build_config(overrides={"epochs": 3, "batch_size": 8, "threads": 1,
                                     "out": str(out), "data": {"path": str(tiny_data)}})
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 1"):
        train(config, progress=False, callbacks=[poison])
    assert set(kept) == {"last.pt", "best_on_test.pt"}
    for name, content in kept.items():
        assert (out / name).read_bytes() == content, name
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (out / "model.pth").exists() and not (out / "summary.json").exists()
    assert "last.pt holds epoch 1" in (out / "train.log").read_text()


def test_a_loss_gone_nan_after_a_mid_epoch_save_names_the_step_last_pt_holds(tiny_data,
                                                                            tmp_path):
    from resnet_cifar.engine.train import TrainingDiverged

    out = tmp_path / "run"

    def poison(trainer, model):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))

    # in step 3 of epoch 2, after saves at its steps 1 and 2
    poison_in_step_3 = at_training_step(1, 3, poison)

    config = build_config(overrides={"epochs": 3, "batch_size": 8, "threads": 1,
                                     "save_every": 1e-9, "out": str(out),
                                     "data": {"path": str(tiny_data)}})
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 3"):
        train(config, progress=False, callbacks=[poison_in_step_3])
    state = torch.load(out / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert "last.pt holds epoch 1 and 2 steps of epoch 2" in (out / "train.log").read_text()


def test_config_precedence_recipe_then_file_then_flags(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('epochs = 7\nlr = 0.05\n[data]\naugment = "none"\n')
    config = build_config("seed", cfg_file, {"lr": 0.2})
    assert config.epochs == 7  # file over recipe
    assert config.lr == 0.2  # flag over file
    assert config.batch_size == 64 and config.milestones == [80]  # recipe
    assert config.data.augment == "none"


@pytest.mark.parametrize(
    "content,needle",
    [
        ("epoch = 3\n", "unknown config key 'epoch'"),
        ("epochs = 'three'\n", "epochs: expected int"),
        ("[data]\naugmentation = 'none'\n", "unknown config key 'data.augmentation'"),
        ("schedule = 'linear'\n", "schedule: 'linear' is not one of"),
    ],
)
def test_config_errors_name_the_key_and_the_valid_ones(tmp_path, capsys, content, needle):
    cfg_file = tmp_path / "bad.toml"
    cfg_file.write_text(content)
    assert run_cli("train", "--config", cfg_file) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    if "unknown" in needle:
        assert "valid keys" in err


def test_bad_flags_get_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli("train", "--epochs", "many")
    assert exit_.value.code == 2
    assert "expected a whole number" in capsys.readouterr().err
    assert run_cli("train", "--model", "resnet21") == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet21'" in err and "resnet20" in err


def test_tensorboard_logging_or_a_clear_install_hint(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli("train", "--data", tiny_data, "--out", out, "--epochs", "1", "--batch-size",
                   "8", "--threads", "1", "--tensorboard")
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert code == 2
        assert "pip install 'resnet-cifar[tb]'" in capsys.readouterr().err
        return
    assert code == 0
    assert any((out / "tensorboard").iterdir())


def test_header_names_the_peak_lr_and_the_optimizer_options():
    """The recipe line states the lr the user asked for, not the schedule's first value."""
    from resnet_cifar.engine.report import optimizer_words

    onecycle = TrainConfig(schedule="onecycle", lr=0.2, nesterov=True, label_smoothing=0.1,
                           weight_decay=5e-4)
    words = optimizer_words(onecycle, lr0=0.008)
    assert words.startswith("SGD nesterov lr 0.2, onecycle (starting at 0.008)")
    assert "wd 0.0005" in words and "label smoothing 0.1" in words
    seed = TrainConfig()
    assert optimizer_words(seed, lr0=0.1) == \
        "SGD lr 0.1, x0.1 at epoch(s) [80], momentum 0.9, wd 0.0001"
    scaled = TrainConfig(lr_scaling="linear")
    assert optimizer_words(scaled, lr0=0.2, world_size=2).startswith("SGD lr 0.2,")


def test_the_fast_recipe_is_the_searched_one_and_trains(tmp_path):
    """configs/fast.toml holds the options experiments/fast_search.sh chose (its candidate
    ema-alt-nodecay), and `train --recipe fast` runs with them, flags still overriding it."""
    fast = build_config("fast", None, {})
    assert (fast.model, fast.epochs, fast.batch_size, fast.lr, fast.schedule) == \
        ("resnet20", 15, 128, 0.2, "onecycle")
    assert (fast.nesterov, fast.label_smoothing, fast.weight_decay) == (True, 0.1, 5e-4)
    assert (fast.ema_decay, fast.no_decay_bn_bias, fast.data.flip) == (0.999, True, "alternating")
    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=4, n_test_per_class=2)
    out = tmp_path / "run"
    assert main(["train", "--recipe", "fast", "--data", str(data), "--epochs", "1",
                 "--batch-size", "16", "--threads", "1", "--out", str(out)]) == 0
    recorded = build_config(recipe=None, config_file=out / "config.toml")
    assert (recorded.epochs, recorded.ema_decay, recorded.data.flip) == (1, 0.999, "alternating")
