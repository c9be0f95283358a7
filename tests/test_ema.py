"""The moving average of the weights (`ema_decay`), no weight decay on BatchNorm and biases
(`no_decay_bn_bias`) and TTA in training's validation (`tta`): the update by hand, the optimizer's
groups, the metrics columns, the checkpoint's weights and an exact resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import stop_after
from data_fixtures import make_cifar10_python_dir
from torch import nn

from resnet_cifar.config import build_config
from resnet_cifar.engine.inference import InferenceContext
from resnet_cifar.engine.rundir import JSONL_ONLY_FIELDS, METRIC_FIELDS
from resnet_cifar.engine.runtime import DistContext, StopRequested
from resnet_cifar.engine.setup import ModelEma, build_parts
from resnet_cifar.engine.state import resume_config
from resnet_cifar.engine.train import train

EMA_COLUMNS = ["ema_val_loss", "ema_val_acc", "val_tta_acc", "ema_val_tta_acc"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return make_cifar10_python_dir(root, n_train_per_class=4, n_test_per_class=2, seed=0,
                                   learnable=True)  # 5 steps of 8 an epoch


def config(data: Path, out: Path, **overrides):
    return build_config(overrides={
        "epochs": 3, "batch_size": 8, "milestones": [2], "deterministic": True, "threads": 1,
        "seed": 3, "eval_batch_size": 64, "out": str(out), "data": {"path": str(data)},
        **overrides,
    })


OPTIONS = {"ema_decay": 0.9, "no_decay_bn_bias": True, "tta": "flip"}


def test_ema_equals_a_hand_computed_update_with_warm_up():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = ModelEma(model, decay=0.2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    # warm-up min(0.2, (1 + step) / (10 + step)): 1/10 and 2/11, then the cap 0.2 (3/12 > 0.2)
    for step, d in enumerate([1 / 10, 2 / 11, 0.2]):
        model.train()
        loss = model(torch.randn(8, 4)).square().mean()  # BN's running stats move too
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model, step)
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                expected[key] = d * expected[key] + (1 - d) * value
            else:
                expected[key] = value.clone()
    got = ema.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=0, msg=key)
    # buffers follow: the running statistics are averaged, the batch counter copied
    assert int(got["1.num_batches_tracked"]) == 3
    assert not torch.equal(got["1.running_mean"], model.state_dict()["1.running_mean"])
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_no_decay_groups_hold_exactly_the_batchnorm_and_bias_parameters(tiny_data, tmp_path):
    cfg = config(tiny_data, tmp_path / "x", weight_decay=5e-4, no_decay_bn_bias=True)
    parts = build_parts(cfg, 10, torch.device("cpu"), DistContext())
    decay, no_decay = parts.optimizer.param_groups
    names = {id(p): n for n, p in parts.model.named_parameters()}
    bn = {n for n, m in parts.model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    expected = {n for n in names.values()
                if n.endswith(".bias") or n.rsplit(".", 1)[0] in bn}
    assert {names[id(p)] for p in no_decay["params"]} == expected
    assert "linear.bias" in expected and "bn1.weight" in expected
    assert {names[id(p)] for p in decay["params"]} == set(names.values()) - expected
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (5e-4, 0.0)
    # with zero gradients, only decay moves a weight: BN and biases stay, conv weights shrink
    for p in parts.model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in parts.model.named_parameters()}
    parts.optimizer.step()
    after = dict(parts.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in expected)
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])
    # off: one group, as the optimizer always was (old checkpoints' states still load)
    plain = build_parts(config(tiny_data, tmp_path / "y"), 10, torch.device("cpu"), DistContext())
    assert len(plain.optimizer.param_groups) == 1 and plain.ema is None


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """An uninterrupted run with every option on, and the same run stopped mid-epoch 2 and
    resumed."""
    root = tmp_path_factory.mktemp("runs")
    full = train(config(tiny_data, root / "full", **OPTIONS), progress=False)
    with pytest.raises(StopRequested):
        train(config(tiny_data, root / "cut", **OPTIONS), progress=False,
              callbacks=[stop_after(1, 2)])
    resumed = train(resume=root / "cut", progress=False)
    return root, full, resumed


def test_resume_mid_epoch_is_bitwise_with_ema_and_no_decay(runs):
    root, full, resumed = runs
    for name in ("model.pth",):  # the final weights: the average
        a = torch.load(root / "full" / name, weights_only=True)
        b = torch.load(root / "cut" / name, weights_only=True)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    a = torch.load(root / "full" / "last.pt", weights_only=True)
    b = torch.load(root / "cut" / "last.pt", weights_only=True)
    for entry in ("model", "ema"):
        assert all(torch.equal(a[entry][k], b[entry][k]) for k in a[entry]), entry
    assert a["weights"] == b["weights"] == "ema"
    assert [r["ema_val_acc"] for r in full.history] == [r["ema_val_acc"] for r in resumed.history]
    assert full.summary["test_acc"] == resumed.summary["test_acc"]
    # the average is not the raw weights (it would be with the update left out)
    assert any(not torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])


def test_metrics_columns_appear_only_with_the_options(runs, tiny_data, tmp_path):
    root, full, _ = runs
    header = next(csv.reader(open(root / "full" / "metrics.csv")))
    assert header == [*METRIC_FIELDS, *EMA_COLUMNS]
    rows = [json.loads(line) for line in open(root / "cut" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(set(EMA_COLUMNS) <= set(r) for r in rows)
    assert "ema " in (root / "full" / "train.log").read_text()
    summary = full.summary
    assert summary["final_weights"] == "ema" and 0 <= summary["test_acc_raw"] <= 1
    assert summary["final_val_acc"] == full.history[-1]["ema_val_acc"]

    plain = train(config(tiny_data, tmp_path / "plain", epochs=1), progress=False)
    assert next(csv.reader(open(tmp_path / "plain" / "metrics.csv"))) == list(METRIC_FIELDS)
    assert list(plain.history[0]) == [*METRIC_FIELDS, *JSONL_ONLY_FIELDS]
    assert "final_weights" not in plain.summary and "weights" not in plain.best
    assert "ema" not in torch.load(tmp_path / "plain" / "last.pt", weights_only=True)


def test_checkpoints_give_inference_the_weights_they_name_and_resume_the_raw(runs):
    root, full, _ = runs
    best = torch.load(root / "full" / "best_on_test.pt", weights_only=True)
    assert best["weights"] == best["best"]["weights"] == full.best["weights"]
    for name in ("last.pt", "best_on_test.pt"):
        saved = torch.load(root / "full" / name, weights_only=True)
        loaded = InferenceContext.build(root / "full" / name, device="cpu").model.state_dict()
        named = saved["ema"] if saved["weights"] == "ema" else saved["model"]
        assert all(torch.equal(loaded[k], named[k]) for k in named), name
    # a best checkpoint whose weights are the average: eval gets the average, resume the raw
    best["weights"] = "ema"
    path = root / "best_ema.pt"
    torch.save(best, path)
    loaded = InferenceContext.build(path, device="cpu").model.state_dict()
    assert all(torch.equal(loaded[k], best["ema"][k]) for k in best["ema"])
    assert any(not torch.equal(loaded[k], best["model"][k]) for k in best["model"])
    _, _, saved = resume_config(path, None)
    assert all(torch.equal(saved["model"][k], best["model"][k]) for k in best["model"])


def test_the_header_says_when_the_warm_up_keeps_the_decay_below_ema_decay(runs, tiny_data,
                                                                          tmp_path):
    """15 steps of 8 images: the warm-up ends at (1 + 14) / (10 + 14) = 0.625, below 0.9 (the
    note) but above 0.5 (no note)."""
    root, _, _ = runs
    log = (root / "full" / "train.log").read_text()
    assert "0.9 is never reached" in log and "for all 15 steps (0.62500 at the last)" in log
    train(config(tiny_data, tmp_path / "low", ema_decay=0.5, epochs=3), progress=False)
    assert "never reached" not in (tmp_path / "low" / "train.log").read_text()
