"""Files given as a checkpoint that are not what they claim: each is named for what it is, in one
line, by every command (they all read through read_checkpoint_file)."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest
import torch
from data_fixtures import make_cifar10_python_dir

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


def one_line_error(capsys, argv: list) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


def eval_error(capsys, path: Path, *extra) -> str:
    return one_line_error(capsys, ["eval", path, *extra])


def ours(run: Path, tmp_path: Path, **changes) -> Path:
    """A copy of the run's last.pt with some entries replaced."""
    payload = torch.load(run / "last.pt", weights_only=True)
    payload.update(changes)
    path = tmp_path / "changed.pt"
    torch.save(payload, path)
    return path


COMMANDS = {
    "eval": lambda ckpt, run: ["eval", ckpt],
    "predict": lambda ckpt, run: ["predict", ckpt, run / "curves.png"],
    "export": lambda ckpt, run: ["export", ckpt, "--out", run.parent / "x.onnx"],
    "show": lambda ckpt, run: ["show", ckpt, "--out", run.parent / "x.png"],
    "report --checkpoint": lambda ckpt, run: ["report", run, "--checkpoint", ckpt,
                                              "--out", run.parent / "x.html"],
    "train --resume": lambda ckpt, run: ["train", "--resume", ckpt],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_text_file_named_pt_is_called_text_by_every_command(command, run, tmp_path, capsys):
    path = tmp_path / "x.pt"
    path.write_text("hello\n")
    err = one_line_error(capsys, COMMANDS[command](path, run))
    assert f"{path} is not a PyTorch checkpoint (it starts with text 'hello')" in err


@pytest.mark.parametrize("content, what", [
    (b'{"epoch": 3, "accuracy": 0.91}\n', "it is JSON text, starting with '{\"epoch\": 3"),
    (b"# ResNet-20 weights\n\nDownload them from the releases page.\n",
     "it starts with text '# ResNet-20 weights'"),
    (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n", "it is an HTML page"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n", "Git LFS pointer"),
    (gzip.compress(b"x" * 100), "is gzip-compressed"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "it starts with bytes 89 50 4e 47 0d 0a 1a 0a"),
], ids=["json", "readme", "html", "git-lfs", "gzip", "png"])
def test_files_that_are_no_pickle_are_not_called_unsafe_pickles(content, what, tmp_path, capsys):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    err = eval_error(capsys, path)
    assert "arbitrary pickle" not in err and "can run code" not in err
    assert what in err and str(path) in err


def test_a_damaged_pickle_is_not_called_unsafe(tmp_path, capsys):
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"\x80\x02" + b"garbage" * 10)  # the legacy format's first bytes, then junk
    err = eval_error(capsys, path)
    assert "arbitrary pickle" not in err
    assert f"cannot read checkpoint {path}: it is a damaged pickle" in err


def test_an_empty_file_says_it_is_empty(tmp_path, capsys):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    err = eval_error(capsys, path)
    assert f"{path} is empty (0 bytes), not a PyTorch checkpoint" in err


def test_a_truncated_zip_checkpoint_says_its_zip_is_cut_off(tmp_path, capsys):
    path = tmp_path / "cut.pt"
    torch.save(create_model("resnet20").state_dict(), path)
    path.write_bytes(path.read_bytes()[:100_000])
    err = eval_error(capsys, path, "--model", "resnet20")
    assert f"cannot read checkpoint {path}: it is a truncated or damaged zip archive" in err
    assert "PytorchStreamReader" not in err  # miniz's internals are not the user's business


def test_a_zip_of_something_else_says_it_is_no_checkpoint(tmp_path, capsys):
    path = tmp_path / "bundle.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.txt", "weights inside")
    err = eval_error(capsys, path)
    assert f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl inside" in err
    assert "README.txt" in err


# `resnet-cifar export --format torchscript` writes such files; torch.jit is deprecated upstream
@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")
def test_a_torchscript_export_is_named_and_not_advised_to_be_loaded_unsafely(tmp_path, capsys):
    path = tmp_path / "model.torchscript.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    err = eval_error(capsys, path)
    assert f"{path} is a TorchScript archive (an export), not a checkpoint" in err
    assert "weights_only" not in err


def test_a_run_directory_names_the_checkpoints_to_pass(run, capsys):
    err = eval_error(capsys, run)
    assert "not found" not in err
    assert f"{run} is a directory (a run), not a checkpoint file; pass {run / 'last.pt'}" in err
    assert str(run / "best_on_test.pt") in err


def test_a_directory_without_a_run_says_so(tmp_path, capsys):
    err = eval_error(capsys, tmp_path)
    assert "not found" not in err
    assert f"{tmp_path} is a directory, not a checkpoint file; it holds no last.pt" in err


def test_our_checkpoint_whose_model_entry_is_not_a_state_dict(run, tmp_path, capsys):
    path = ours(run, tmp_path, model=None)
    err = eval_error(capsys, path)
    assert f"{path}: its 'model' entry is None, not a state_dict" in err


def test_our_checkpoint_whose_num_classes_is_not_an_int(run, tmp_path, capsys):
    path = ours(run, tmp_path, num_classes="ten")
    err = eval_error(capsys, path)
    assert f"{path}: its 'num_classes' entry is 'ten', not a positive int" in err


def test_our_checkpoint_whose_normalization_is_not_three_numbers(run, tmp_path, capsys):
    path = ours(run, tmp_path, normalization={"mode": "dataset", "mean": 0.5, "std": [1, 1, 1]})
    err = eval_error(capsys, path)
    assert f"{path}: its 'normalization.mean' entry is 0.5, not 3 numbers" in err


def test_a_dict_with_non_string_keys_is_described(tmp_path, capsys):
    path = tmp_path / "numbers.pt"
    torch.save({1: 2, 3: 4}, path)
    err = eval_error(capsys, path)
    assert f"{path} is not a model checkpoint: found a dict with keys 1, 3" in err


def test_a_state_dict_with_a_scalar_classifier_weight_is_a_one_line_error(tmp_path, capsys):
    state = create_model("resnet20").state_dict()
    state["linear.weight"] = torch.tensor(1.0)
    path = tmp_path / "scalar.pt"
    torch.save(state, path)
    err = eval_error(capsys, path, "--model", "resnet20")
    assert f"{path}: linear.weight has shape ()" in err
