"""Training on a GPU, on tiny synthetic data: 2 epochs of 10 steps per run, skipped without CUDA;
and the GPU check's refusal of missing data. benchmarks/gpu_check.py runs this file first."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import stop_after
from data_fixtures import make_cifar10_python_dir

from resnet_cifar.cli import main
from resnet_cifar.config import build_config
from resnet_cifar.engine.checkpoint import on_cpu
from resnet_cifar.engine.runtime import StopRequested, capture_rng_state, restore_rng_state
from resnet_cifar.engine.train import train

# cuBLAS reads this when the process first uses it: train() sets it too, but only for
# --deterministic runs, after other tests here may have used cuBLAS already.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def on_gpu(test):
    """Marked `cuda`, and skipped without a GPU."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return pytest.mark.cuda(skip(test))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 160 training images at batch 16: every batch has the same shape (no recompilation)
    return make_cifar10_python_dir(tmp_path_factory.mktemp("data"), n_train_per_class=16,
                                   n_test_per_class=4, learnable=True)


def fit(data, out, callbacks=(), **overrides):
    config = build_config(overrides={"epochs": 2, "batch_size": 16, "eval_batch_size": 64,
                                     "device": "cuda", "threads": 1, "seed": 3,
                                     "out": str(out), "data": {"path": str(data)}, **overrides})
    return train(config, progress=False, callbacks=list(callbacks))


def weights(run_dir):
    return torch.load(run_dir / "model.pth", weights_only=True)


def tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (dict, list, tuple)):
        for value in obj.values() if isinstance(obj, dict) else obj:
            yield from tensors(value)


def assert_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@on_gpu
def test_compile_records_cuda_graphs_without_skips_or_recompiles(data, tmp_path):
    from torch._dynamo.utils import counters  # here: importing dynamo costs every worker seconds

    torch._dynamo.reset()
    counters.clear()
    seen = []  # (compile mode, dynamo compilations so far) after each epoch

    def after_epoch(trainer, row):
        seen.append((trainer.parts.compile_mode, counters["frames"]["total"]))

    fit(data, tmp_path / "run", [after_epoch], compile=True)
    assert seen[0][0] == "reduce-overhead"  # train()'s pick on one GPU: CUDA graphs
    assert seen[0][1] >= 1 and seen[1][1] == seen[0][1]  # epoch 1 compiled, epoch 2 did not
    assert counters["inductor"]["cudagraph_skips"] == 0


@on_gpu
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_trains_fp32_weights(data, tmp_path, amp):
    scaler = []

    def after_epoch(trainer, row):
        scaler.append((trainer.parts.scaler.is_enabled(), trainer.parts.scaler.get_scale()))

    result = fit(data, tmp_path / "run", [after_epoch], amp=amp)
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    # fp16 needs the GradScaler (a finite, positive scale); bf16 has fp32's range and none
    enabled, scale = scaler[-1]
    assert enabled == (amp == "fp16") and (not enabled or 0 < scale < float("inf"))
    for value in weights(tmp_path / "run").values():  # autocast leaves the weights fp32
        assert value.dtype in (torch.float32, torch.int64) and torch.isfinite(value).all()


@on_gpu
def test_ema_is_what_the_run_gives(data, tmp_path):
    fit(data, tmp_path / "run", ema_decay=0.9)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert_equal(weights(tmp_path / "run"), last["ema"])
    assert any(not torch.equal(last["ema"][k], last["model"][k]) for k in last["model"])


@on_gpu
def test_deterministic_runs_give_equal_weights(data, tmp_path):
    fit(data, tmp_path / "a", deterministic=True)
    fit(data, tmp_path / "b", deterministic=True)
    assert_equal(weights(tmp_path / "a"), weights(tmp_path / "b"))


@on_gpu
@pytest.mark.parametrize("amp", ["none", "fp16"])
def test_interrupted_run_resumes_to_bitwise_identical_weights(data, tmp_path, amp):
    # A GPU acts on a stop every 50 steps (train_one_epoch): 80 steps per epoch at batch 2 make
    # the stop asked 3 steps into epoch 2 land mid-epoch, at step 50.
    fit(data, tmp_path / "full", deterministic=True, batch_size=2, amp=amp)
    with pytest.raises(StopRequested):
        fit(data, tmp_path / "cut", [stop_after(1, 3)], deterministic=True, batch_size=2, amp=amp)
    last = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert (last["epoch"], last["step"]) == (1, 50)
    assert isinstance(last["rng"]["cuda"], torch.Tensor)  # this device's generator alone
    assert bool(last["scaler"]) == (amp == "fp16")  # fp16's loss scale goes on where it was
    train(resume=tmp_path / "cut", progress=False)
    assert_equal(weights(tmp_path / "full"), weights(tmp_path / "cut"))


@on_gpu
def test_cuda_rng_state_is_one_tensor_that_restores():
    torch.cuda.init()
    state = on_cpu(capture_rng_state())  # as a checkpoint holds it
    assert isinstance(state["cuda"], torch.Tensor) and state["cuda"].dtype == torch.uint8
    expected = torch.rand(4, device="cuda")
    restore_rng_state(state)
    assert torch.equal(torch.rand(4, device="cuda"), expected)


@on_gpu
def test_checkpoints_saved_on_the_gpu_load_on_the_cpu(data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--device", "cuda",
                 "--epochs", "2", "--batch-size", "16", "--threads", "1", "--no-progress"]) == 0
    for name in ("last.pt", "model.pth"):
        found = list(tensors(torch.load(out / name, map_location=None, weights_only=True)))
        assert found and all(t.device.type == "cpu" for t in found), name


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm syncs ranks: 2 GPUs")
def test_sync_bn_trains_under_torchrun_on_two_gpus(data, tmp_path):
    # --sync-bn only acts under DDP; PyTorch's SyncBatchNorm has no CPU kernel, so this is the
    # only place it runs. Two ranks, one GPU each, as a user's torchrun launch.
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "resnet_cifar", "train", "--data", str(data), "--out", str(out), "--sync-bn",
         "--device", "cuda", "--epochs", "1", "--batch-size", "16", "--no-progress"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(out / "last.pt", weights_only=True)["model"]
    assert any("running_mean" in key for key in state)  # plain BatchNorm names: loads anywhere


def test_gpu_check_refuses_missing_data_in_one_line(tmp_path, capsys):
    path = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "out"
    assert gpu_check.main(["--data", str(tmp_path / "missing.tar.gz"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "no data at" in captured.err
    assert not out.exists()  # refused before anything was written
