"""eval and checkpoint loading: exact figures on a hand-built case, every bad-checkpoint error."""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings

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


def test_the_architecture_guess_reads_the_file_not_the_model_asked_for(tiny_data, tmp_path,
                                                                       capsys):
    path = tmp_path / "r20.pth"
    torch.save(create_model("resnet20").state_dict(), path)
    err = eval_error(capsys, path, "--model", "resnet56", "--data", tiny_data)
    assert "does not fit model 'resnet56'" in err and "looks like a resnet20 (shortcut B)" in err


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
def test_foreign_checkpoint_gives_its_stated_accuracy(jpeg_cache, capsys):
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
    assert result["correct"] == 8103 and result["total"] == 10000  # 81.03%: the data README's 81.0%
    assert not math.isnan(result["loss"])
    assert np.isclose(result["accuracy"], 0.8103)


# --------------------------------------------------------------------------- inference context


def checkpoint_of(model: torch.nn.Module, tmp_path, *, config=None, mean=None, std=None,
                  normalize=None):
    from resnet_cifar.engine.checkpoint import Checkpoint

    return Checkpoint(tmp_path / "last.pt", "resnet20", {}, 10, model.state_dict(),
                      mean=mean, std=std, normalize=normalize, config=config)


def test_val_split_is_drawn_with_the_runs_own_seed(tiny_data, tmp_path):
    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine.evaluate import evaluate_checkpoint
    from resnet_cifar.engine.inference import InferenceContext, load_arrays, make_splits

    data = DataConfig(path=str(tiny_data), val_split=6)
    ckpt = checkpoint_of(constant_model(3), tmp_path, config={"seed": 3,
                                                               "data": {"val_split": 6}})
    context = InferenceContext.build(ckpt, data, device="cpu")
    held_out = make_splits(load_arrays(data, progress=False), data, 3).val_images
    other = make_splits(load_arrays(data, progress=False), data, 0).val_images
    assert context.seed == 3 and not np.array_equal(held_out, other)  # the seed matters here
    np.testing.assert_array_equal(context.split("val")[0], held_out)
    result = evaluate_checkpoint(ckpt, data, split="val", device="cpu", progress=False)
    assert (result.correct, result.total) == (1, 6)  # stratified: one image of class 3


@pytest.mark.parametrize("recorded, asked, seed", [
    ({"seed": 3, "data": {"val_split": 6}}, 8, None),  # another size
    ({"seed": 3, "data": {"val_split": 6}}, 6, 0),  # another seed
    ({"seed": 3, "data": {"val_split": 0}}, 6, None),  # the run held out nothing
], ids=["size", "seed", "none-held-out"])
def test_a_val_split_other_than_the_runs_hold_out_is_refused(tiny_data, tmp_path, recorded,
                                                             asked, seed):
    """Images the run trained on must never be scored as held-out ones."""
    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine.inference import InferenceContext
    from resnet_cifar.errors import DataError

    ckpt = checkpoint_of(constant_model(3), tmp_path, config=recorded)
    context = InferenceContext.build(ckpt, DataConfig(path=str(tiny_data), val_split=asked),
                                     device="cpu", seed=seed)
    with pytest.raises(DataError, match="holds images it trained on"):
        context.split("val")
    assert len(context.split("test")[1]) > 0  # the test split stays usable


def test_normalization_rule_explicit_then_checkpoint_then_data(tiny_data, tmp_path):
    from resnet_cifar.config import DataConfig
    from resnet_cifar.data import NORMALIZATIONS
    from resnet_cifar.engine.inference import InferenceContext, load_arrays

    data = DataConfig(path=str(tiny_data))
    arrays = load_arrays(data, progress=False)
    recorded = checkpoint_of(constant_model(0), tmp_path, mean=(0.1, 0.2, 0.3),
                             std=(0.4, 0.5, 0.6), normalize="dataset")
    foreign = checkpoint_of(constant_model(0), tmp_path)

    def norm(ckpt, **kwargs):
        return InferenceContext.build(ckpt, data, device="cpu", **kwargs).normalization

    assert (norm(recorded, normalize="half").mean, norm(recorded, normalize="half").std) == \
        NORMALIZATIONS["half"]
    assert (norm(recorded).mean, norm(recorded).std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert norm(foreign).mean == pytest.approx(arrays.mean) and norm(foreign).mode == "dataset"
    no_data = InferenceContext.build(foreign, dataset=False, device="cpu")
    assert no_data.data is None and no_data.normalization.mode == "dataset"


def test_loader_and_wrapper_normalize_bit_identically():
    from resnet_cifar.data import DeviceLoader
    from resnet_cifar.data.normalization import Normalization
    from resnet_cifar.predict import NormalizedModel

    norm = Normalization.explicit((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    pixels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    (x, _), = list(DeviceLoader(pixels, np.zeros(8, np.int64), batch_size=8, train=False,
                                normalization=norm))
    wrapped = NormalizedModel(torch.nn.Identity(), normalization=norm)(pixels)
    assert torch.equal(x, wrapped)
    # the float64 derivation, rounded once: (x / 255 - mean) / std to float32 precision
    expected = (pixels.double() / 255 - torch.tensor(norm.mean, dtype=torch.float64)
                .view(1, 3, 1, 1)) / torch.tensor(norm.std, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-5)


def test_report_decodes_the_data_and_builds_the_model_once(tiny_data, tmp_path, monkeypatch):
    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine import inference as splits
    from resnet_cifar.engine.checkpoint import Checkpoint
    from resnet_cifar.report import evaluation_figures

    path = tmp_path / "model.pth"
    torch.save(constant_model(3).state_dict(), path)
    calls = {"load": 0, "build": 0}
    load, build = splits.load_arrays, Checkpoint.build_model

    def counted_load(*args, **kwargs):
        calls["load"] += 1
        return load(*args, **kwargs)

    def counted_build(self):
        calls["build"] += 1
        return build(self)

    monkeypatch.setattr(splits, "load_arrays", counted_load)
    monkeypatch.setattr(Checkpoint, "build_model", counted_build)
    figures, what = evaluation_figures(path, DataConfig(path=str(tiny_data)), device="cpu",
                                       n=4, seed=0)
    assert calls == {"load": 1, "build": 1} and len(figures) == 3
    assert "accuracy 10.00% (3/30)" in what


def test_evaluate_model_runs_a_cpu_batch_in_chunks(monkeypatch):
    from resnet_cifar.data import DeviceLoader
    from resnet_cifar.engine import evaluate
    from resnet_cifar.engine.evaluate import evaluate_model

    model = create_model("resnet20").eval()
    rng = np.random.default_rng(0)
    loader = DeviceLoader(rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8),
                          rng.integers(0, 10, 40), batch_size=40, train=False)
    classes = [str(i) for i in range(10)]
    seen = []
    hook = model.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    monkeypatch.setattr(evaluate, "CPU_EVAL_CHUNK", 16)
    evaluate_model(model, loader, classes)
    hook.remove()
    assert sorted(seen) == [8, 16, 16]


@pytest.fixture(scope="module")
def half_run(tiny_data, tmp_path_factory):
    """A 1-epoch run trained with --normalize half: its model.pth alone cannot say so."""
    run = tmp_path_factory.mktemp("half") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "16", "--threads", "1", "--normalize", "half"]) == 0
    return run


def eval_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["eval", *argv, "--json", "--threads", "1"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_runs_model_pth_is_evaluated_as_its_run_normalized(half_run, tiny_data, tmp_path,
                                                             capsys):
    """model.pth is a plain state_dict (the original code loads it); beside its run's last.pt
    it is read with the run's normalization, so eval gives the run's own figure. Copied away from
    the run, the normalization is a guess, and eval says so on stderr."""
    last = eval_json(capsys, str(half_run / "last.pt"))
    pth = eval_json(capsys, str(half_run / "model.pth"))
    assert (pth["correct"], pth["loss"]) == (last["correct"], last["loss"])
    assert pth["data"]["normalization"] == {"mode": "half", "mean": [0.5] * 3, "std": [0.5] * 3,
                                            "source": "checkpoint"}
    assert pth["data"]["matches_run"] is True  # the run's data fingerprint is checked too
    alone = tmp_path / "model.pth"
    alone.write_bytes((half_run / "model.pth").read_bytes())
    guessed = eval_json(capsys, str(alone), "--data", str(tiny_data))
    assert guessed["data"]["normalization"]["source"] == "data"
    assert "records no normalization" in guessed["data"]["normalization"]["note"]
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown again, though eval_json's call warned already
        assert main(["eval", str(alone), "--data", str(tiny_data), "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "guessed" in captured.out
    warned = [line for line in captured.err.splitlines() if "normalization" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: model.pth records no ")
    assert "pass `data.normalize` (--normalize)" in warned[0]  # one line, the key and the flag


def test_a_model_pth_beside_another_models_run_stays_foreign(half_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes((half_run / "last.pt").read_bytes())
    torch.save(create_model("resnet32").state_dict(), run / "model.pth")
    ckpt = load_checkpoint(run / "model.pth")
    assert ckpt.foreign and ckpt.model_name == "resnet32" and ckpt.normalize is None
    assert not load_checkpoint(half_run / "model.pth").foreign
