"""Files given as a checkpoint that are not one: each is refused in one line naming the file, by
every command (they all read through read_checkpoint_file)."""

from __future__ import annotations

import datetime
import gzip
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from data_fixtures import make_cifar10_python_dir
from refusals import assert_refused

from resnet_cifar.cli import main
from resnet_cifar.models import create_model


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_cifar10_python_dir(tmp_path_factory.mktemp("data"), n_train_per_class=2,
                                   n_test_per_class=1, seed=3)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    """A real run directory: last.pt and best_on_test.pt (validation is the test set)."""
    out = tmp_path_factory.mktemp("runs") / "r20"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1",
                 "--batch-size", "10", "--threads", "1", "--device", "cpu"]) == 0
    return out


def ours(run: Path, path: Path, **changes) -> None:
    """A copy of the run's last.pt with some entries replaced."""
    payload = torch.load(run / "last.pt", weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def scalar_classifier(run: Path, path: Path) -> None:
    state = create_model("resnet20").state_dict()
    state["linear.weight"] = torch.tensor(1.0)
    torch.save(state, path)


def truncated(run: Path, path: Path) -> None:
    torch.save(create_model("resnet20").state_dict(), path)
    path.write_bytes(path.read_bytes()[:100_000])


def zip_of_text(run: Path, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.txt", "weights inside")


def torchscript(run: Path, path: Path) -> None:
    with warnings.catch_warnings():  # torch.jit is deprecated upstream; export still writes it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))


def write(content: bytes):
    return lambda run, path: path.write_bytes(content)


# Files given as a checkpoint that are not one: each is refused in one line naming the file.
NOT_CHECKPOINTS = {
    "text": write(b"hello\n"),
    "json": write(b'{"epoch": 3, "accuracy": 0.91}\n'),
    "html": write(b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n"),
    "git-lfs pointer": write(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"),
    "gzip": write(gzip.compress(b"x" * 100)),
    "png": write(b"\x89PNG\r\n\x1a\n" + bytes(64)),
    "damaged pickle": write(b"\x80\x02" + b"garbage" * 10),
    "empty": write(b""),
    "truncated zip": truncated,
    "zip of something else": zip_of_text,
    "torchscript export": torchscript,
    "dict with int keys": lambda run, path: torch.save({1: 2, 3: 4}, path),
    "scalar classifier weight": scalar_classifier,
    "ours without weights": lambda run, path: ours(run, path, model=None),
    "ours with an unknown model": lambda run, path: ours(run, path, model_name="resnet999"),
}


@pytest.mark.parametrize("case", list(NOT_CHECKPOINTS))
def test_a_file_that_is_no_checkpoint_is_refused_in_one_line(case, run, tmp_path, capsys):
    path = tmp_path / "model.pt"
    NOT_CHECKPOINTS[case](run, path)
    err = assert_refused(["eval", path, "--model", "resnet20"], path, tmp_path, capsys)
    assert "arbitrary pickle" not in err  # only a pickle that needs code is called unsafe


COMMANDS = {
    "eval": lambda ckpt, run: ["eval", ckpt],
    "predict": lambda ckpt, run: ["predict", ckpt, run / "curves.png"],
    "export": lambda ckpt, run: ["export", ckpt, "--out", ckpt.parent / "x.onnx"],
    "show": lambda ckpt, run: ["show", ckpt, "--out", ckpt.parent / "x.png"],
    "report --checkpoint": lambda ckpt, run: ["report", run, "--checkpoint", ckpt,
                                              "--out", ckpt.parent / "x.html"],
    "train --resume": lambda ckpt, run: ["train", "--resume", ckpt],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_text_file_named_pt(command, run, tmp_path, capsys):
    path = tmp_path / "x.pt"
    path.write_text("hello\n")
    assert_refused(COMMANDS[command](path, run), path, tmp_path, capsys)


def test_a_pickle_that_needs_code_is_refused_as_unsafe(tmp_path, capsys):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": create_model("resnet20").state_dict(), "when": datetime.date(2020, 1, 1)},
               path)
    err = assert_refused(["eval", path], path, tmp_path, capsys)
    assert "arbitrary pickle" in err


@pytest.mark.parametrize("holds_run", [True, False], ids=["run", "empty folder"])
def test_a_folder_is_refused_naming_the_checkpoints_it_holds(holds_run, run, tmp_path, capsys):
    folder = run if holds_run else tmp_path
    err = assert_refused(["eval", folder], folder, tmp_path, capsys)
    if holds_run:
        assert str(run / "last.pt") in err and str(run / "best_on_test.pt") in err
