"""The speed options compute the same thing: channels_last, torch.compile, chunked CPU evaluation,
the split-weight cells; and `resnet-cifar bench` measures and reports. No timing is asserted."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from resnet_cifar import bench
from resnet_cifar.cli import main
from resnet_cifar.config import TrainConfig
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine import evaluate
from resnet_cifar.engine.distributed import DistContext
from resnet_cifar.engine.train import Trainer, optimizer_impl
from resnet_cifar.models import create_model
from resnet_cifar.models.cells import ConvGRUCell
from resnet_cifar.models.recurrent import RecurrentBasicBlock

SPEED_MODELS = ["resnet20", "resnet20_convgru", "regnet20_convlstm"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", SPEED_MODELS)
@pytest.mark.parametrize("training", [False, True])
def test_channels_last_gives_the_same_logits(name, training):
    torch.manual_seed(0)
    model = create_model(name).train(training)
    x = images(4)
    expected = model(x)
    model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_compiled_block_gives_the_same_output():
    """One recurrent block (conv, BatchNorm, the ConvGRU cell's sliced weights, a projection
    shortcut) through inductor: ~15 s, most of it fixed cost. Inductor on CPU needs a C++
    compiler; if it cannot build here, say why and skip."""
    torch.manual_seed(0)
    block = RecurrentBasicBlock(8, 16, 2, ConvGRUCell(16, 16), "B").eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        expected, _ = block(x)
        try:
            got, _ = torch.compile(block)(x)
        except Exception as err:  # noqa: BLE001 - any inductor failure is an environment issue
            pytest.skip(f"torch.compile (inductor) cannot run here: {type(err).__name__}: {err}")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_cells_with_materialized_zeros_equal_the_split_weights():
    torch.manual_seed(0)
    model = create_model("resnet20_convgru").eval()
    x = images(2)
    with torch.no_grad():
        split = model(x)
        with bench.plain_cat_cells():
            plain = model(x)
    torch.testing.assert_close(split, plain, rtol=0, atol=1e-6)
    assert evaluate.CPU_EVAL_CHUNK == 64  # the context managers restore what they patch


@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_cpu_evaluation_equals_one_forward(threads, monkeypatch):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (150, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 150)
    loader = DeviceLoader(data, labels, batch_size=100, train=False)  # 100 + 50: chunks 64, 36
    classes = [str(i) for i in range(10)]
    torch.set_num_threads(threads)
    chunked = evaluate.evaluate_model(model, loader, classes)
    assert torch.get_num_threads() == threads  # the pool's single-threading is undone
    monkeypatch.setattr(evaluate, "CPU_EVAL_CHUNK", 10**6)
    whole = evaluate.evaluate_model(model, loader, classes)
    assert chunked.confusion == whole.confusion and chunked.total == 150
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-5)


def test_baseline_dataset_is_the_torchvision_recipe():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    plain = bench.PerSampleDataset(data, np.array([3, 7]), train=False, mean=mean, std=std)
    x, y = plain[1]
    assert y == 7
    torch.testing.assert_close(x, (torch.from_numpy(data[1]).float() / 255 - m) / s)
    # A training sample is one of the 9 x 9 crops of the 4-px zero-padded image, maybe mirrored.
    augmented = bench.PerSampleDataset(data, np.array([3, 7]), train=True, mean=mean, std=std)
    padded = torch.nn.functional.pad(torch.from_numpy(data[0]).float() / 255, (4, 4, 4, 4))
    for _ in range(5):
        x, _ = augmented[0]
        crops = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.allclose(x, (c - m) / s, atol=1e-6) for c in crops)


def test_optimizer_and_compile_mode_by_device():
    assert optimizer_impl(torch.device("cpu")) == {"foreach": True}
    assert optimizer_impl(torch.device("cuda")) == {"fused": True}
    for device, dist, mode in [("cpu", DistContext(), "default"),
                               ("cuda", DistContext(), "reduce-overhead"),
                               ("cuda", DistContext(rank=0, world_size=2), "default")]:
        trainer = Trainer(TrainConfig(), dist, torch.device(device), None, progress=False)
        assert trainer.compile_mode == mode
        trainer.compile_mode_override = "max-autotune"
        assert trainer.compile_mode == "max-autotune"


def check_figures(figures: dict, batch: int) -> None:
    for key in ("img_per_s", "ms_per_step", "gflop_per_s", "round_s", "warmup_s", "batch"):
        assert key in figures, key
    assert figures["batch"] == batch and figures["img_per_s"] > 0
    assert math.isclose(figures["img_per_s"], 1e3 * batch / figures["ms_per_step"], rel_tol=1e-6)


def test_bench_command_emits_json_with_the_expected_keys(capsys):
    argv = ["bench", "--model", "resnet20", "--device", "cpu", "--threads", "1", "--steps", "2",
            "--batch-size", "4", "--eval-images", "8", "--eval-batch-size", "8", "--repeats", "1",
            "--warmup", "1", "--workers", "0,1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("config", "environment", "model", "train", "eval", "ratio", "ratio_paired",
                "best_baseline", "compile_s"):
        assert key in result, key
    assert set(result["train"]) == set(result["eval"]) == {"ours", "baseline_w0", "baseline_w1"}
    for name in ("ours", "baseline_w0", "baseline_w1"):
        check_figures(result["train"][name], 4)
        assert len(result["train"][name]["round_s"]) == 1
    check_figures(result["eval"]["ours"], 8)
    check_figures(result["eval"]["baseline_w0"], 4)
    assert result["model"]["train_mflop_per_image"] == pytest.approx(245, rel=0.01)
    for kind in ("train", "eval"):
        best = result["best_baseline"][kind]
        expected = result[kind]["ours"]["img_per_s"] / result[kind][best]["img_per_s"]
        assert result["ratio"][kind]["ours"] == pytest.approx(expected)
    assert result["compile_s"] == {} and result["config"]["workers"] == [0, 1]


def test_bench_variants_get_only_the_pipelines_they_change():
    """CUDA-only options (bf16 autocast, fused SGD) must be harmless on CPU."""
    cfg = bench.BenchConfig(device="cpu", batch_size=4, steps=1, eval_images=4, repeats=1,
                            warmup=0, threads=1, baseline=False, amp="bf16",
                            variants={"nchw": {"channels_last": False},
                                      "fused_sgd": {"optimizer": "fused"},
                                      "eval_64": {"eval_batch_size": 64}})
    result = bench.run_benchmark(cfg)
    assert set(result["train"]) == {"ours", "nchw", "fused_sgd"}
    assert set(result["eval"]) == {"ours", "nchw", "eval_64"}
    assert result["ratio"] == {}
    with pytest.raises(Exception, match="cannot vary"):
        bench.run_benchmark(bench.BenchConfig(variants={"bad": {"model": "resnet56"}}))
