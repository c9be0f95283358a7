"""eval and checkpoint loading: exact figures on a hand-built case, every bad-checkpoint error."""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import FOREIGN_CHECKPOINT, JPEG_TARBALL
from data_fixtures import make_cifar10_python_dir

from resnet_cifar.cli import main
from resnet_cifar.engine.checkpoint import load_checkpoint
from resnet_cifar.models import create_model


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_cifar10_python_dir(
        tmp_path_factory.mktemp("data"), n_train_per_class=2, n_test_per_class=3, seed=1
    )


def constant_model(predicted_class: int, num_classes: int = 10) -> torch.nn.Module:
    """A resnet20 whose logits are the same for every image: zero linear weights, a chosen bias."""
    model = create_model("resnet20", num_classes=num_classes)
    with torch.no_grad():
        model.linear.weight.zero_()
        model.linear.bias.copy_(torch.arange(num_classes, dtype=torch.float32) * 0.1)
        model.linear.bias[predicted_class] = 5.0
    return model


def test_eval_json_matches_a_hand_computed_confusion_matrix(tiny_data, tmp_path, capsys):
    model = constant_model(predicted_class=3)
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    assert (
        main(
            [
                "eval",
                str(path),
                "--model",
                "resnet20",
                "--data",
                str(tiny_data),
                "--json",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    # every test image (3 per class, 10 classes) is predicted as class 3
    expected = [[0] * 10 for _ in range(10)]
    for true in range(10):
        expected[true][3] = 3
    assert result["confusion"] == expected
    assert result["total"] == 30 and result["correct"] == 3
    assert result["accuracy"] == pytest.approx(0.1)
    per_class = list(result["per_class_accuracy"].values())
    assert per_class == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    # mean loss: the logits are the bias for every image, so CE is -log softmax(bias)[true]
    bias = model.linear.bias.detach().double()
    log_probs = torch.log_softmax(bias, 0)
    assert result["loss"] == pytest.approx(float(-log_probs.mean()), rel=1e-5)


def test_eval_prints_per_class_accuracy_and_confusion(tiny_data, tmp_path, capsys):
    path = tmp_path / "model.pth"
    torch.save(constant_model(0).state_dict(), path)
    assert main(["eval", str(path), "--model", "resnet20", "--data", str(tiny_data)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy 10.00% (3/30)" in out
    assert "per-class accuracy" in out and "confusion matrix" in out


def test_state_dict_with_module_prefix_and_wrapper_loads(tmp_path):
    model = create_model("resnet20", shortcut="A")
    wrapped = {
        "best_prec1": 91.0,
        "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
    }
    path = tmp_path / "foreign.th"
    torch.save(wrapped, path)
    ckpt = load_checkpoint(path, "resnet20", {"shortcut": "A"})
    loaded = ckpt.build_model()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # without --model the architecture and shortcut are inferred from the keys
    guessed = load_checkpoint(path)
    assert guessed.model_name == "resnet20" and guessed.model_kwargs == {"shortcut": "A"}


def eval_error(capsys, *argv) -> str:
    assert main(["eval", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_truncated_checkpoint(tiny_data, tmp_path, capsys):
    path = tmp_path / "cut.pth"
    torch.save(create_model("resnet20").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = eval_error(capsys, path, "--model", "resnet20", "--data", tiny_data)
    assert "truncated" in err and str(path) in err


def test_checkpoint_for_a_different_model(tiny_data, tmp_path, capsys):
    path = tmp_path / "rnn.pth"
    torch.save(create_model("resnet20_convrnn").state_dict(), path)
    err = eval_error(capsys, path, "--model", "resnet20", "--data", tiny_data)
    assert "does not fit model 'resnet20'" in err
    assert "unexpected key 'layer1.0.rnn.conv_x.weight'" in err
    assert "looks like a resnet20_convrnn" in err


def test_missing_key_is_named(tiny_data, tmp_path, capsys):
    state = create_model("resnet20").state_dict()
    del state["layer3.2.bn2.running_var"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    err = eval_error(capsys, path, "--model", "resnet20", "--data", tiny_data)
    assert "missing key 'layer3.2.bn2.running_var'" in err


def test_class_count_mismatch(tiny_data, tmp_path, capsys):
    path = tmp_path / "c100.pth"
    torch.save(create_model("resnet20", num_classes=100).state_dict(), path)
    err = eval_error(capsys, path, "--model", "resnet20", "--data", tiny_data)
    assert "100 classes" in err and "10" in err


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_needing_arbitrary_pickle_is_refused(tiny_data, tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save(
        {"state_dict": create_model("resnet20").state_dict(), "x": Payload()},
        path,
        pickle_module=pickle,
    )
    err = eval_error(capsys, path, "--model", "resnet20", "--data", tiny_data)
    assert "arbitrary pickle" in err


def test_not_a_checkpoint(tiny_data, tmp_path, capsys):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    err = eval_error(capsys, path, "--model", "resnet20", "--data", tiny_data)
    assert "not a model checkpoint" in err
    err = eval_error(capsys, tmp_path / "nope.pth", "--data", tiny_data)
    assert "checkpoint not found" in err


@pytest.mark.slow
@pytest.mark.skipif(
    not (FOREIGN_CHECKPOINT.exists() and JPEG_TARBALL.exists()), reason="../shared/data not present"
)
def test_foreign_checkpoint_gives_its_stated_accuracy(capsys):
    assert (
        main(
            [
                "eval",
                str(FOREIGN_CHECKPOINT),
                "--model",
                "resnet20",
                "--shortcut",
                "A",
                "--normalize",
                "imagenet",
                "--data",
                str(JPEG_TARBALL),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["correct"] == 8103 and result["total"] == 10000  # its README: 81.03%
    assert not math.isnan(result["loss"])
    assert np.isclose(result["accuracy"], 0.8103)
