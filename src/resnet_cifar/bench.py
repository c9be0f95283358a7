"""Training and evaluation throughput: our pipeline next to a torchvision-style baseline. The
pipelines (bench_pipelines.py) run interleaved round by round in one process, so that load from
other jobs falls on all alike; each figure is the median of the timed rounds."""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from resnet_cifar.bench_pipelines import (
    EVALUATIONS,
    PEAK,
    Pipeline,
    baseline_pipelines,
    bench_splits,
    our_pipelines,
    peak_pipeline,
    synchronize,
)
from resnet_cifar.config import AMP_MODES, EVAL_BATCH_SIZE
from resnet_cifar.engine.inference import Splits
from resnet_cifar.engine.runtime import (
    configure_determinism,
    configure_threads,
    physical_cores,
    resolve_device,
)
from resnet_cifar.engine.setup import COMPILE_MODES, OPTIMIZER_IMPLS, check_amp, cpu_has_native_bf16
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import create_model

OPTIMIZERS = ("default", *OPTIMIZER_IMPLS)  # default: whatever optimizer_impl picks
VARIANT_FIELDS = ("channels_last", "compile", "compile_mode", "amp", "optimizer", "threads",
                  "eval_batch_size", "evaluation")
# A variant that changes only EVAL_ONLY fields gets no training pipeline; TRAIN_ONLY, no eval one.
EVAL_ONLY = frozenset({"eval_batch_size", "evaluation"})
TRAIN_ONLY = frozenset({"compile", "compile_mode", "optimizer"})
# the evaluations timed beside ours (BenchConfig.folded, compiled_eval, bf16_eval)
FOLDED = "ours_fold_bn"
COMPILED = "ours_compiled"
EVAL_BF16 = "ours_eval_bf16"


@dataclass
class BenchConfig:
    """What to measure: a field per `resnet-cifar bench` flag, ``evaluation`` and ``variants``."""

    model: str = "resnet20"  # any name from `resnet-cifar models`
    batch_size: int = 64  # training batch of both pipelines; also the baseline's eval batch
    eval_batch_size: int = EVAL_BATCH_SIZE  # our evaluation batch, as training validates
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    steps: int = 10  # timed training steps per round (one "epoch" of that many batches)
    eval_images: int = 2000  # images evaluated per round
    repeats: int = 5  # timed rounds; medians are reported
    warmup: int = 1  # untimed rounds first: allocator, autotuning, torch.compile
    workers: tuple[int, ...] = (0, 2)  # baseline DataLoader workers; ours is compared to the best
    channels_last: bool = True  # ours: NHWC activations (TrainConfig.channels_last)
    compile: bool = False  # ours: torch.compile the training model
    compile_mode: str | None = None  # None: train()'s pick (reduce-overhead on one GPU)
    amp: str = "none"  # ours: none | bf16 | fp16 (autocast in training; see engine.setup)
    optimizer: str = "default"  # ours: default (optimizer_impl) | fused | foreach | loop
    evaluation: str = "eager"  # ours: how it evaluates, one of bench_pipelines.EVALUATIONS
    folded: bool = True  # also time our evaluation "folded", as FOLDED
    compiled_eval: bool = False  # also time our evaluation "compiled", as COMPILED
    bf16_eval: bool = True  # also time it under bf16 autocast, as EVAL_BF16, where bf16 is native
    peak: bool = True  # on a CPU, also time a float32 matrix product: each ratio's ceiling
    threads: int = 0  # torch intra-op threads; 0: one per core
    data: str | None = None  # real images (any CIFAR layout); None: synthetic random uint8
    seed: int = 0
    baseline: bool = True  # also run the baseline pipelines
    evaluate: bool = True  # also measure evaluation
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # more of ours, by name


def run_benchmark(cfg: BenchConfig, report: Callable[[str], None] | None = None) -> dict:
    """Measure our pipeline, its variants and the baseline at each worker count, interleaved.
    Returns a JSON-ready dict; ``ratio`` compares each of ours with the best baseline."""
    device, threads, splits = prepare(cfg)
    variants = {"ours": {}, **bench_variants(cfg)}
    pipelines = [p for name, overrides in variants.items()
                 for p in our_pipelines(name, dataclasses.replace(cfg, **overrides), splits,
                                        device, kinds_changed(overrides))]
    return measure(cfg, pipelines + reference_pipelines(cfg, splits, device), variants,
                   device, threads, splits.source, report)


def prepare(cfg: BenchConfig) -> tuple[torch.device, int, Splits]:
    """(device, threads, data), ``cfg`` checked and the process set up as train() sets it up."""
    check(cfg)
    device = resolve_device(cfg.device)
    threads = configure_threads(cfg.threads)
    configure_determinism(False, device)
    return device, threads, bench_splits(cfg)


def bench_variants(cfg: BenchConfig) -> dict[str, dict[str, Any]]:
    """cfg.variants, after the evaluations cfg.folded, cfg.compiled_eval and cfg.bf16_eval ask
    for (bf16 only where it is native), while ours evaluates eagerly."""
    device = resolve_device(cfg.device)
    native_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    asked = ((FOLDED, "folded", cfg.folded), (COMPILED, "compiled", cfg.compiled_eval),
             (EVAL_BF16, "bf16", cfg.bf16_eval and native_bf16))
    return {**{name: {"evaluation": evaluation} for name, evaluation, wanted in asked
               if wanted and cfg.evaluate and cfg.evaluation == "eager"}, **cfg.variants}


def kinds_changed(overrides: dict[str, Any], eval_only=EVAL_ONLY) -> set[str]:
    """The pipelines a variant that changes ``overrides`` needs: "train", "eval" or both."""
    return {kind for kind, only in (("train", eval_only), ("eval", TRAIN_ONLY))
            if not overrides or set(overrides) - only}


def reference_pipelines(cfg: BenchConfig, splits: Splits, device: torch.device
                        ) -> list[Pipeline]:
    """The baseline at each worker count, then the float32 peak (on a CPU)."""
    found = [p for workers in (cfg.workers if cfg.baseline else ())
             for p in baseline_pipelines(cfg, splits, device, workers)]
    return found + ([peak_pipeline(cfg)] if cfg.peak and device.type == "cpu" else [])


def interleave(pipelines: list[Pipeline], device: torch.device, warmup: int, repeats: int,
               report: Callable[[str], None] | None = None) -> dict[tuple[str, str], dict]:
    """Run every pipeline once per round, ``warmup + repeats`` rounds, rotating the order."""
    record = {(p.name, p.kind): {"warmup_s": [], "seconds": []} for p in pipelines}
    for index in range(warmup + repeats):
        shift = index % len(pipelines)
        for p in pipelines[shift:] + pipelines[:shift]:
            with p.context():
                synchronize(device)
                start = time.perf_counter()
                p.run()
                synchronize(device)
                seconds = time.perf_counter() - start
            record[(p.name, p.kind)]["warmup_s" if index < warmup else "seconds"].append(seconds)
            if report is not None:
                tag = "warm-up" if index < warmup else f"round {index - warmup + 1}/{repeats}"
                report(f"{tag:>12}  {p.kind:5} {p.name:20} {p.images / seconds:8.1f} img/s")
    return record


def summarize(p: Pipeline, seconds: list[float], warmup_s: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    flops_per_image = (6 if p.kind == "train" else 2) * p.macs  # backward ~ 2x forward
    return {"img_per_s": p.images / median, "ms_per_step": 1e3 * median / p.steps,
            "gflop_per_s": p.images * flops_per_image / median / 1e9,
            "img_per_s_min": p.images / max(seconds), "img_per_s_max": p.images / min(seconds),
            "round_s": [round(s, 4) for s in seconds],
            "warmup_s": [round(s, 4) for s in warmup_s],
            "images": p.images, "steps": p.steps, "batch": p.batch}


def measure(cfg: BenchConfig, pipelines: list[Pipeline], variants: dict[str, dict[str, Any]],
            device: torch.device, threads: int, data: str,
            report: Callable[[str], None] | None = None) -> dict:
    """Time ``pipelines`` into run_benchmark's result; ``data``: the images' source."""
    record = interleave(pipelines, device, cfg.warmup, cfg.repeats, report)
    result: dict[str, Any] = {
        "config": {**dataclasses.asdict(cfg), "workers": list(cfg.workers)},
        "environment": environment(device, threads),
        "variants": variants,
        "train": {}, "eval": {}, "peak": {},
        "model": {"name": cfg.model, "macs": pipelines[0].macs,
                  "train_mflop_per_image": 6 * pipelines[0].macs / 1e6, "data": data},
    }
    for p in pipelines:
        r = record[(p.name, p.kind)]
        result[p.kind][p.name] = summarize(p, r["seconds"], r["warmup_s"])
    result["compile_s"] = compile_seconds(result, variants)
    result["best_baseline"], result["ratio"], result["ratio_paired"] = {}, {}, {}
    for kind in ("train", "eval"):
        base = {n: r for n, r in result[kind].items() if n.startswith("baseline_")}
        if not base or "ours" not in result[kind]:
            continue
        best = max(base, key=lambda n: base[n]["img_per_s"])
        result["best_baseline"][kind] = best
        for name, r in result[kind].items():
            if name in base:
                continue
            result["ratio"].setdefault(kind, {})[name] = r["img_per_s"] / base[best]["img_per_s"]
            paired = [b / o for o, b in zip(r["round_s"], base[best]["round_s"], strict=True)]
            scale = r["images"] / base[best]["images"]
            result["ratio_paired"].setdefault(kind, {})[name] = scale * statistics.median(paired)
    # the most a float32 pipeline of these FLOPs could gain on the best baseline here
    fastest = fastest_peak(result)
    result["ceiling"] = {} if fastest is None else {
        kind: fastest / result[kind][best]["gflop_per_s"]
        for kind, best in result["best_baseline"].items()}
    return result


def fastest_peak(result: dict) -> float | None:
    """The float32 peak's GFLOP/s in its fastest round; None where it was not timed."""
    peak = result["peak"].get(PEAK)
    return None if peak is None else peak["gflop_per_s"] * peak["img_per_s_max"] / peak["img_per_s"]


def compile_seconds(result: dict, variants: dict[str, dict]) -> dict[str, float]:
    """Per compiled variant: its first (warm-up) round minus a steady one, what compiling cost."""
    found = {}
    for kind, key, compiled in (("train", "compile", True), ("eval", "evaluation", "compiled")):
        for name, timed in result[kind].items():
            if name in variants and timed["warmup_s"] and \
                    variants[name].get(key, result["config"][key]) == compiled:
                steady = statistics.median(timed["round_s"])
                found[name if kind == "train" else f"{name} (eval)"] = \
                    round(timed["warmup_s"][0] - steady, 2)
    return found


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(),
           "device": str(device), "threads": threads, "cores": physical_cores(),
           "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def check(cfg: BenchConfig) -> None:
    """Refuse what cannot be measured, naming the flag to change."""
    if cfg.steps < 1 or cfg.repeats < 1 or cfg.warmup < 0 or cfg.batch_size < 1:
        raise ConfigError("`steps` (--steps), `repeats` (--repeats) and `batch_size` "
                          "(--batch-size) must be >= 1 and `warmup` (--warmup) >= 0")
    if cfg.eval_images < 1 or cfg.eval_batch_size < 1:
        raise ConfigError("`eval_images` (--eval-images) and `eval_batch_size` "
                          "(--eval-batch-size) must be >= 1")
    if any(w < 0 for w in cfg.workers):
        raise ConfigError(f"`workers` (--workers) must be >= 0, got {list(cfg.workers)}")
    for name, overrides in {"ours": {}, **bench_variants(cfg)}.items():
        unknown = set(overrides) - set(VARIANT_FIELDS)
        if unknown:
            raise ConfigError(f"variant {name!r}: cannot vary {', '.join(sorted(unknown))}; "
                              f"choose from {', '.join(VARIANT_FIELDS)}")
        merged = dataclasses.replace(cfg, **overrides)
        for key, value, choices in (("optimizer", merged.optimizer, OPTIMIZERS),
                                    ("compile mode", merged.compile_mode, (None, *COMPILE_MODES)),
                                    ("evaluation", merged.evaluation, EVALUATIONS),
                                    ("amp", merged.amp, AMP_MODES)):
            if value not in choices:
                raise ConfigError(f"{key} {value!r}: choose from {', '.join(map(str, choices))}")
        if merged.amp == "fp16":  # as train refuses it: a CPU would time float32 instead
            check_amp(merged.amp, resolve_device(cfg.device))
    create_model(cfg.model)  # an unknown model fails here, listing names


def format_report(result: dict) -> str:
    """A plain-text table: one line per pipeline, then the ratios."""
    env, model, cfg = result["environment"], result["model"], result["config"]
    lines = [f"{model['name']} ({model['train_mflop_per_image']:.0f} MFLOP/img to train) on "
             f"{env['device']}, {env['threads']} threads, torch {env['torch']}, data "
             f"{model['data']}; median of {cfg['repeats']} rounds after {cfg['warmup']} warm-up",
             f"{'':6}{'pipeline':22}{'batch':>6}{'img/s':>9}{'ms/step':>9}{'GFLOP/s':>9}"
             f"{'min..max img/s':>18}"]
    for kind in ("train", "eval"):
        for name, r in result[kind].items():
            lines.append(f"{kind:6}{name:22}{r['batch']:>6}{r['img_per_s']:>9.1f}"
                         f"{r['ms_per_step']:>9.1f}{r['gflop_per_s']:>9.1f}"
                         f"{r['img_per_s_min']:>9.1f}..{r['img_per_s_max']:<7.1f}")
    for kind, ratios in result["ratio"].items():
        best = result["best_baseline"][kind]
        for name, ratio in ratios.items():
            paired = result["ratio_paired"][kind][name]
            lines.append(f"{kind} speed-up of {name} over {best}: {ratio:.2f}x "
                         f"(paired by round: {paired:.2f}x)")
    for name, seconds in result["compile_s"].items():
        lines.append(f"compile time of {name} (first round minus a steady one): {seconds:.1f} s")
    if PEAK in result["peak"]:
        peak = result["peak"][PEAK]
        fastest = fastest_peak(result)
        lines.append(f"float32 peak of this CPU ({peak['batch']}x{peak['batch']} matrix products, "
                     f"one per thread, {env['threads']} threads): {fastest:.1f} GFLOP/s in the "
                     f"fastest round, {peak['gflop_per_s']:.1f} median")
    for kind, ceiling in result.get("ceiling", {}).items():
        best = result["best_baseline"][kind]
        lines.append(f"{kind} ceiling in float32: {ceiling:.2f}x {best} (the peak over its "
                     f"{result[kind][best]['gflop_per_s']:.1f} GFLOP/s), about the most a "
                     "float32 pipeline of these FLOPs can reach here")
    return "\n".join(lines)
