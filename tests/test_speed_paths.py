"""The speed options compute the same thing: channels_last, torch.compile, chunked CPU evaluation,
the split-weight cells; the benchmark's levers are real parameters, and benchmarks/bench_train.py's
own (the chunk, the plain cat) switch what they say; and `resnet-cifar bench` measures and
reports. No timing is asserted."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_cifar import bench, bench_pipelines
from resnet_cifar.cli import build_parser, main
from resnet_cifar.config import TrainConfig
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine import evaluate, setup
from resnet_cifar.engine.runtime import DistContext
from resnet_cifar.engine.setup import build_parts, compile_mode_for, optimizer_impl
from resnet_cifar.models import cells, create_model, list_models
from resnet_cifar.models.cells import ConvGRUCell, ConvLSTMCell
from resnet_cifar.models.recurrent import RecurrentBasicBlock

SPEED_MODELS = ["resnet20", "resnet20_convgru", "regnet20_convlstm"]
RECURRENT = [m for m in list_models() if m.startswith(("resnet20_", "regnet20_"))]


def bench_train():
    """benchmarks/bench_train.py as a module (benchmarks/ is no package)."""
    path = Path(__file__).parents[1] / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    compiler: without one the test is skipped; any other compile failure fails it."""
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        pytest.skip("torch.compile (inductor) needs a C++ compiler on CPU; none is installed")
    torch.manual_seed(0)
    block = RecurrentBasicBlock(8, 16, 2, ConvGRUCell(16, 16), "B").eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        expected, _ = block(x)
        got, _ = torch.compile(block)(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", RECURRENT)
def test_the_plain_cat_lever_keeps_every_cell_output_and_computes_the_zeros(name):
    """bench_train's plain_cat lever (the baseline of the cells' zero-state skip) gives the same
    logits, and really switches: the first cell of a stage, whose state is zero, then calls its
    gate conv as a module on the full input width (skipping, a plain conv is never called as a
    module; the grouped one of efficient cells always is)."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    first = model.layer1[0].rnn
    gate = first.conv if isinstance(first, ConvLSTMCell) else first.conv_x
    seen = []  # the input widths the first cell's gate conv is called with as a module
    gate.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    x, module, skip = images(2), bench_train(), cells.conv_cat
    with torch.no_grad():
        skipped = model(x)
        seen_skipping, seen[:] = list(seen), []
        with module.patched(cells, "conv_cat", module.plain_cat):
            plain = model(x)
    torch.testing.assert_close(plain, skipped, rtol=0, atol=1e-6)
    assert seen == [gate.in_channels]
    if isinstance(gate, torch.nn.Conv2d) and gate.groups == 1:
        assert seen_skipping == []
    assert cells.conv_cat is skip  # undone on leaving


@pytest.mark.parametrize("groups", [1, 2])
def test_the_plain_cat_is_the_conv_of_the_zero_filled_cat(groups):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 6, 3, padding=1, groups=groups)
    x, h = torch.randn(2, 2, 4, 5, 5)
    plain_cat = bench_train().plain_cat
    for parts in ([x, None], [x, None, None], [x, h, None]):
        conv.in_channels = 4 + 4 * (len(parts) - 1)  # the widths the plain cat reads
        conv.weight = torch.nn.Parameter(torch.randn(6, conv.in_channels // groups, 3, 3))
        zeros = [p if p is not None else torch.zeros_like(x) for p in parts]
        torch.testing.assert_close(plain_cat(conv, parts), conv(torch.cat(zeros, dim=1)),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_cpu_evaluation_equals_one_forward(threads, monkeypatch):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (150, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 150)
    loader = DeviceLoader(data, labels, batch_size=100, train=False)  # chunks of 32, the last short
    classes = [str(i) for i in range(10)]
    torch.set_num_threads(threads)
    chunked = evaluate.evaluate_model(model, loader, classes)
    assert torch.get_num_threads() == threads  # the pool's single-threading is undone
    monkeypatch.setattr(evaluate, "CPU_EVAL_CHUNK", 10**6)  # bench_train's eval_unchunked
    whole = evaluate.evaluate_model(model, loader, classes)
    assert chunked.confusion == whole.confusion and chunked.total == 150
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-5)


def test_baseline_dataset_is_the_torchvision_recipe():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    dataset = bench_pipelines.PerSampleDataset
    plain = dataset(data, np.array([3, 7]), train=False, mean=mean, std=std)
    x, y = plain[1]
    assert y == 7
    torch.testing.assert_close(x, (torch.from_numpy(data[1]).float() / 255 - m) / s)
    # A training sample is one of the 9 x 9 crops of the 4-px zero-padded image, maybe mirrored.
    augmented = dataset(data, np.array([3, 7]), train=True, mean=mean, std=std)
    padded = torch.nn.functional.pad(torch.from_numpy(data[0]).float() / 255, (4, 4, 4, 4))
    for _ in range(5):
        x, _ = augmented[0]
        crops = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.allclose(x, (c - m) / s, atol=1e-6) for c in crops)


def test_optimizer_and_compile_mode_by_device():
    assert optimizer_impl(torch.device("cpu")) == {"foreach": True}
    assert optimizer_impl(torch.device("cuda")) == {"fused": True}
    assert optimizer_impl(torch.device("cuda"), "loop") == {"foreach": False}
    for device, dist, mode in [("cpu", DistContext(), "default"),
                               ("cuda", DistContext(), "reduce-overhead"),
                               ("cuda", DistContext(rank=0, world_size=2), "default")]:
        assert compile_mode_for(torch.device(device), dist) == mode
        assert compile_mode_for(torch.device(device), dist, "max-autotune") == "max-autotune"


def test_the_benchmark_levers_reach_the_parts_it_times():
    """The optimizer kernels and the compile mode are parameters of train()'s own setup."""
    config = TrainConfig(compile=True)
    cpu = torch.device("cpu")
    parts = build_parts(config, 10, cpu, DistContext(), optimizer="loop",
                        compile_mode="max-autotune")
    assert parts.optimizer.defaults["foreach"] is False and parts.compile_mode == "max-autotune"
    assert parts.forward_model is not parts.model  # compiled lazily, the model stays unwrapped
    eager = build_parts(TrainConfig(), 10, cpu, DistContext())
    assert eager.optimizer.defaults["foreach"] is True and eager.compile_mode is None
    assert eager.forward_model is eager.model


def test_bench_train_takes_every_flag_of_resnet_cifar_bench():
    """benchmarks/bench_train.py builds its flags from BenchConfig, not from the CLI."""
    module = bench_train()
    ours = {o for a in module.build_parser()._actions for o in a.option_strings}
    bench_cmd = next(a for a in build_parser()._actions
                     if isinstance(a, argparse._SubParsersAction)).choices["bench"]
    cli = {o for a in bench_cmd._actions for o in a.option_strings}
    assert cli <= ours, cli - ours
    assert "resnet_cifar.cli" not in Path(module.__file__).read_text()


def test_bench_train_levers_switch_what_they_name_in_their_own_rounds_only(monkeypatch):
    """A lever with a chunk evaluates in chunks of that size (and gets no training pipeline), one
    with plain_cat runs the plain cat; each only inside its own runs, ours untouched."""
    module = bench_train()
    seen = []
    real_inference = evaluate.inference
    monkeypatch.setattr(evaluate, "inference", lambda model, x: seen.append(
        ("chunk", len(x))) or real_inference(model, x))
    real_plain = module.plain_cat
    monkeypatch.setattr(module, "plain_cat", lambda conv, parts: seen.append(
        ("plain", None)) or real_plain(conv, parts))
    cfg = bench.BenchConfig(model="resnet20_convgru", device="cpu", batch_size=4, steps=1,
                            eval_images=40, eval_batch_size=40, repeats=1, warmup=0, threads=1,
                            baseline=False, folded=False, bf16_eval=False)
    torch.set_num_threads(1)  # one chunk thread: the pieces come in order
    cpu = torch.device("cpu")
    splits = bench_pipelines.bench_splits(cfg)
    chunked = module.lever_pipelines("c16", {"chunk": 16}, cfg, splits, cpu)
    assert [p.kind for p in chunked] == ["eval"]
    with chunked[0].context():
        chunked[0].run()
    assert seen == [("chunk", 16), ("chunk", 16), ("chunk", 8)]
    assert evaluate.CPU_EVAL_CHUNK == 32  # undone
    seen.clear()
    plain = module.lever_pipelines("plain", {"plain_cat": True}, cfg, splits, cpu)
    assert [p.kind for p in plain] == ["train", "eval"]
    with plain[1].context():
        plain[1].run()
    assert ("plain", None) in seen
    seen.clear()
    ours = module.lever_pipelines("ours", {}, cfg, splits, cpu)
    with ours[1].context():
        ours[1].run()
    assert ("plain", None) not in seen and {n for _, n in seen} == {32, 8}


def check_figures(figures: dict, batch: int) -> None:
    for key in ("img_per_s", "ms_per_step", "gflop_per_s", "round_s", "warmup_s", "batch"):
        assert key in figures, key
    assert figures["batch"] == batch and figures["img_per_s"] > 0
    assert math.isclose(figures["img_per_s"], 1e3 * batch / figures["ms_per_step"], rel_tol=1e-6)


def test_bench_command_emits_json_with_the_expected_keys(capsys):
    argv = ["bench", "--model", "resnet20", "--device", "cpu", "--threads", "1", "--steps", "2",
            "--batch-size", "4", "--eval-images", "8", "--eval-batch-size", "8", "--repeats", "1",
            "--warmup", "1", "--workers", "0,1", "--no-bf16-eval", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("config", "environment", "model", "train", "eval", "ratio", "ratio_paired",
                "best_baseline", "compile_s"):
        assert key in result, key
    assert set(result["train"]) == {"ours", "baseline_w0", "baseline_w1"}
    # the folded evaluation is timed beside ours, and compared with the same baseline
    assert set(result["eval"]) == {"ours", bench.FOLDED, "baseline_w0", "baseline_w1"}
    check_figures(result["eval"][bench.FOLDED], 8)
    assert set(result["ratio"]["eval"]) == {"ours", bench.FOLDED}
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
    """CUDA-only options (fused SGD) and bf16 autocast must be harmless on CPU."""
    cfg = bench.BenchConfig(device="cpu", batch_size=4, steps=1, eval_images=4, repeats=1,
                            warmup=0, threads=1, baseline=False, amp="bf16", folded=False,
                            bf16_eval=False,
                            variants={"nchw": {"channels_last": False},
                                      "fused_sgd": {"optimizer": "fused"},
                                      "eval_64": {"eval_batch_size": 64}})
    result = bench.run_benchmark(cfg)
    assert set(result["train"]) == {"ours", "nchw", "fused_sgd"}
    assert set(result["eval"]) == {"ours", "nchw", "eval_64"}
    assert result["ratio"] == {}
    with pytest.raises(Exception, match="cannot vary"):
        bench.run_benchmark(bench.BenchConfig(variants={"bad": {"model": "resnet56"}}))


def test_bench_folded_evaluation_runs_a_folded_copy_of_the_current_weights(monkeypatch):
    """ours_fold_bn evaluates the training model's weights with no BatchNorm left, and agrees."""
    seen = []
    real = bench_pipelines.validate
    monkeypatch.setattr(bench_pipelines, "validate", lambda model, *a, **k: seen.append(model) or
                        real(model, *a, **k))
    cfg = bench.BenchConfig(device="cpu", batch_size=4, steps=1, eval_images=40, threads=1)
    splits = bench_pipelines.bench_splits(cfg)
    cpu = torch.device("cpu")
    plain = bench_pipelines.build_pipeline(cfg, splits, cpu)
    folded = bench_pipelines.build_pipeline(bench.dataclasses.replace(cfg, evaluation="folded"),
                                            splits, cpu)
    expected, got = plain.validate(), folded.validate()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in seen[1].modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.parts.model.modules())
    assert got.confusion == expected.confusion
    assert got.loss == pytest.approx(expected.loss, rel=1e-5)


# --------------------------------------------------------------------------- bf16 on the CPU


def test_cpu_bf16_trains_in_bfloat16_keeps_fp32_weights_and_validates_in_float32():
    """`--amp bf16` on the CPU: the training forward computes in bfloat16 (where oneDNN is fast on
    CPUs with AVX512-BF16 or AMX), the weights it updates stay float32, and validation stays float32
    so the logged accuracy is what `eval` reproduces."""
    cpu = torch.device("cpu")
    parts = build_parts(TrainConfig(amp="bf16"), 10, cpu, DistContext())
    x = images(4)
    with parts.autocast():
        assert parts.forward_model(x).dtype == torch.bfloat16
    with parts.eval_autocast():
        assert parts.model(x).dtype == torch.float32
    assert {p.dtype for p in parts.model.parameters()} == {torch.float32}
    plain = build_parts(TrainConfig(), 10, cpu, DistContext())
    with plain.autocast():
        assert plain.forward_model(x).dtype == torch.float32


def test_cpu_bf16_run_logs_the_accuracy_eval_reproduces(tmp_path, capsys):
    from data_fixtures import make_cifar10_python_dir

    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=2, n_test_per_class=1,
                                   learnable=True)  # small: bf16 may be emulated, and slow
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "16", "--threads", "1", "--amp", "bf16"]) == 0
    assert "bf16 autocast in training" in (run / "train.log").read_text()
    logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()
    assert main(["eval", str(run / "model.pth"), "--data", str(data), "--json",
                 "--threads", "1"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == logged["val_acc"]
    # bf16 would move the loss by about 1e-3 here; float32 chunks agree far closer than that
    assert evaluated["loss"] == pytest.approx(logged["val_loss"], rel=1e-5)


def test_amp_on_the_cpu_fp16_is_refused_and_bf16_without_hardware_support_warns(monkeypatch):
    from resnet_cifar.errors import ConfigError

    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="fp16 needs CUDA.*use bf16"):
        setup.check_device_options(TrainConfig(amp="fp16"), cpu)
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated and slower"):
        setup.check_device_options(TrainConfig(amp="bf16"), cpu)
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: True)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setup.check_device_options(TrainConfig(amp="bf16"), cpu)


# --------------------------------------------------------------------------- eval --amp


def test_eval_under_bf16_autocast_enters_it_in_every_chunk_thread(monkeypatch):
    """Autocast is thread-local: each of cpu_chunk_pool's threads must compute its chunk in
    bfloat16, and the logits that come back are float32 and close to, not equal to, float32's."""
    from resnet_cifar.engine.evaluate import evaluate_model, with_amp

    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: True)

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 32 * 32, 10)
            self.dtypes = []

        def forward(self, x):
            out = self.linear(x.flatten(1))
            self.dtypes.append(out.dtype)
            return out

    torch.manual_seed(0)
    probe = Probe()
    assert with_amp(probe, "none") is probe
    loader = [(torch.randn(70, 3, 32, 32), torch.randint(0, 10, (70,)))]
    classes = [str(i) for i in range(10)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a pool of two threads, each running chunks of 32
    try:
        plain = evaluate_model(probe, loader, classes)
        assert probe.dtypes == [torch.float32] * 3
        probe.dtypes.clear()
        low = evaluate_model(with_amp(probe, "bf16"), loader, classes)
    finally:
        torch.set_num_threads(threads)
    assert probe.dtypes == [torch.bfloat16] * 3  # 32 + 32 + 6 images, every chunk in bf16
    assert low.total == plain.total == 70
    assert low.loss != plain.loss and low.loss == pytest.approx(plain.loss, rel=2e-2)


def test_eval_amp_says_so_and_refuses_what_the_device_cannot_run(tmp_path, capsys,
                                                                 monkeypatch):
    from data_fixtures import make_cifar10_python_dir

    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: True)
    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=2, n_test_per_class=1,
                                   seed=0, learnable=True)  # small: bf16 may be emulated, and slow
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "16", "--threads", "1", "--device", "cpu"]) == 0
    checkpoint = str(run / "last.pt")
    capsys.readouterr()
    assert main(["eval", checkpoint, "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["amp"] == "none"
    assert main(["eval", checkpoint, "--threads", "1", "--amp", "bf16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["amp"] == "bf16" and result["total"] == 10
    assert main(["eval", checkpoint, "--threads", "1", "--amp", "bf16", "--tta", "flip"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("under bf16 autocast (leave --amp out for the float32 figure)")
    assert out[1].startswith("test accuracy with tta flip") and out[1].endswith("autocast")
    for extra, message in ((["--amp", "fp16"], "(--amp) fp16 needs CUDA"),
                           (["--amp", "bf16", "--compile"], "(--compile) and `amp` (--amp)")):
        assert main(["eval", checkpoint, "--threads", "1", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("native", [True, False])
def test_bench_times_bf16_evaluation_only_where_bf16_runs_in_hardware(monkeypatch, native):
    seen = []
    real = bench_pipelines.validate
    monkeypatch.setattr(bench_pipelines, "validate", lambda model, *a, **k: seen.append(model) or
                        real(model, *a, **k))
    monkeypatch.setattr(bench, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: native)
    cfg = bench.BenchConfig(device="cpu", batch_size=4, steps=1, eval_images=8, repeats=1,
                            warmup=0, threads=1, baseline=False, folded=False)
    result = bench.run_benchmark(cfg)
    assert set(result["eval"]) == ({"ours", bench.EVAL_BF16} if native else {"ours"})
    assert set(result["train"]) == {"ours"}  # an evaluation lever builds no training pipeline
    from resnet_cifar.engine.evaluate import AutocastForward

    assert [isinstance(m, AutocastForward) for m in seen] == \
        ([False, True] if native else [False])


def test_bench_times_the_float32_peak_and_bounds_each_ratio_by_it(monkeypatch, capsys):
    """The peak is PEAK_PRODUCTS square products per thread and round, and each kind's ceiling
    is its fastest round's GFLOP/s over the best baseline's, printed beside the ratios;
    --no-peak leaves both out."""
    monkeypatch.setattr(bench_pipelines, "PEAK_SIZE", 256)  # the real size: a second a product
    products_per_round = bench_pipelines.PEAK_PRODUCTS  # one thread
    products = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b, **k: products.append(
        (tuple(a.shape), tuple(b.shape), a.dtype)) or real_mm(a, b, **k))
    argv = ["bench", "--device", "cpu", "--threads", "1", "--steps", "1", "--batch-size", "4",
            "--eval-images", "8", "--repeats", "2", "--warmup", "0", "--workers", "0,1",
            "--no-folded", "--no-bf16-eval"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert products == [((256, 256), (256, 256), torch.float32)] * (2 * products_per_round)
    peak = result["peak"][bench.PEAK]
    flop = products_per_round * 2 * 256 ** 3
    assert peak["gflop_per_s"] == pytest.approx(  # round_s is rounded to 0.1 ms
        flop / statistics.median(peak["round_s"]) / 1e9, rel=0.05)
    fastest = flop / min(peak["round_s"]) / 1e9
    assert set(result["ceiling"]) == {"train", "eval"}
    for kind in ("train", "eval"):
        best = result["best_baseline"][kind]
        assert result["ceiling"][kind] == pytest.approx(
            fastest / result[kind][best]["gflop_per_s"], rel=0.05)
    text = bench.format_report(result)
    assert "float32 peak of this CPU (256x256 matrix products, one per thread, 1 threads)" in text
    assert f"eval ceiling in float32: {result['ceiling']['eval']:.2f}x" in text
    assert main([*argv, "--no-peak", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["peak"] == {} and result["ceiling"] == {}
