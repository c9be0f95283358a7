"""Training and evaluation throughput: our pipeline next to a torchvision-style baseline.

Ours is the training loop itself, unchanged: the DeviceLoader (the data set on the device as one
uint8 tensor, crop + flip + normalization batched) feeding ``train_one_epoch``, and ``validate``
(inference_mode, batch 1000), built by the same train_setup functions as ``train()``. Each lever
is a parameter of the code it switches (the optimizer kernels, the compile mode, the CPU eval
chunk, the cells' zero-state skipping): this module calls the library and patches nothing.

The baseline is what the torchvision CIFAR tutorials do: a map-style Dataset that pads, crops,
flips, converts and normalizes one image at a time, a DataLoader with N worker processes, an eager
NCHW model, the default SGD, and a ``loss.item()`` per step. Every pipeline runs in one process,
interleaved round by round (the order rotating), so that load from other jobs falls on all of them
alike; each figure is the median over the timed rounds, the warm-up rounds (where torch.compile
compiles) reported apart.

On the 2-core development CPU (ResNet-20, batch 64): see docs/benchmarks.md for the ratios and the
command that measures them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import AMP_MODES, EVAL_BATCH_SIZE, TrainConfig
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine.compiled import compile_for_inference
from resnet_cifar.engine.distributed import DistContext
from resnet_cifar.engine.evaluate import EvalResult, cpu_chunk_pool, piece_size, with_amp
from resnet_cifar.engine.train import train_one_epoch, validate
from resnet_cifar.engine.train_setup import (
    COMPILE_MODES,
    OPTIMIZER_IMPLS,
    TrainParts,
    build_loaders,
    build_parts,
    cpu_has_native_bf16,
    lr_at,
)
from resnet_cifar.engine.train_state import EpochStats
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import set_materialize_zero_state
from resnet_cifar.models.fold import fold_batchnorm

OPTIMIZERS = ("default", *OPTIMIZER_IMPLS)  # default: whatever optimizer_impl picks
# Fields of BenchConfig a variant of our pipeline may override (benchmarks/bench_train.py --levers).
VARIANT_FIELDS = ("channels_last", "compile", "compile_mode", "amp", "optimizer", "threads",
                  "eval_batch_size", "eval_chunk", "plain_cat", "fold_bn", "compile_eval",
                  "eval_amp")
# A variant that changes only EVAL_ONLY fields gets no training pipeline; TRAIN_ONLY, no eval one.
EVAL_ONLY = {"eval_batch_size", "eval_chunk", "fold_bn", "compile_eval", "eval_amp"}
FOLDED = "ours_fold_bn"  # the variant that evaluates with BatchNorm folded (BenchConfig.folded)
COMPILED = "ours_compiled"  # folded, frozen, compiled (engine/compiled.py): compiled_eval
EVAL_BF16 = "ours_eval_bf16"  # under bf16 autocast, as `eval --amp bf16`: BenchConfig.bf16_eval
TRAIN_ONLY = {"compile", "compile_mode", "optimizer"}
# The CPU's float32 multiply-add peak, timed in the same rounds (BenchConfig.peak): a product of
# two square matrices, large enough for oneDNN's matmul to run at its peak (on a 2-core Zen 4,
# 2048 measured 1.12x the rate of 1024 and level with 3072), small enough for about 0.2 s per
# product on one core.
PEAK = "matmul_fp32"
PEAK_SIZE = 2048
PEAK_PRODUCTS = 4  # matrix products per round


@dataclass
class BenchConfig:
    """What to measure. The defaults are the original recipe's shape: ResNet-20, batch 64."""

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
    amp: str = "none"  # ours: none | bf16 | fp16 (autocast in training; see train_setup)
    optimizer: str = "default"  # ours: default (optimizer_impl) | fused | foreach | loop
    plain_cat: bool = False  # ours: cells materialize their zero state (set_materialize_zero_state)
    eval_chunk: int = 0  # ours on CPU: images per forward in evaluation; 0: evaluate.py's own
    fold_bn: bool = False  # ours: evaluate a copy with BatchNorm folded into the convs (fold.py)
    folded: bool = True  # also time our evaluation with fold_bn on, as the variant FOLDED
    compile_eval: bool = False  # ours: evaluate as `eval --compile` does (engine/compiled.py)
    compiled_eval: bool = False  # also time our evaluation with compile_eval on, as COMPILED
    eval_amp: str = "none"  # ours: evaluate under this autocast (`eval --amp`; not float32)
    # also time our evaluation under bf16 autocast, as EVAL_BF16, where bf16 runs in hardware
    # (a GPU, or a CPU with AVX512-BF16 or AMX): not the float32 figure, so never the default
    bf16_eval: bool = True
    # on a CPU, also time a float32 matrix product (PEAK): the fastest any float32 pipeline of
    # these FLOPs could run, so the report can say how far each ratio could go (its "ceiling")
    peak: bool = True
    threads: int = 0  # torch intra-op threads; 0: one per core
    data: str | None = None  # real images (any CIFAR layout); None: synthetic random uint8
    seed: int = 0
    baseline: bool = True  # also run the baseline pipelines
    evaluate: bool = True  # also measure evaluation
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # more of ours, by name


# --------------------------------------------------------------------------- data


def bench_splits(cfg: BenchConfig):
    """A Splits of ``steps * batch_size`` training and ``eval_images`` evaluation images: real
    ones with ``cfg.data``, else random uint8 of CIFAR's shape (speed does not depend on pixels)."""
    from resnet_cifar.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar
    from resnet_cifar.engine.splits import Splits

    n_train, n_eval = cfg.steps * cfg.batch_size, cfg.eval_images
    if cfg.data:
        arrays = load_cifar(cfg.data, progress=False)
        if n_train > len(arrays.train_labels) or n_eval > len(arrays.test_labels):
            raise ConfigError(
                f"{arrays.source} has {len(arrays.train_labels)} training and "
                f"{len(arrays.test_labels)} test images; `steps` x `batch_size` needs {n_train} "
                f"and `eval_images` {n_eval}")
        train_x, train_y = arrays.train_images[:n_train], arrays.train_labels[:n_train]
        eval_x, eval_y = arrays.test_images[:n_eval], arrays.test_labels[:n_eval]
        classes, mean, std, source = arrays.classes, arrays.mean, arrays.std, arrays.source
    else:
        rng = np.random.default_rng(cfg.seed)
        train_x = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
        eval_x = rng.integers(0, 256, (n_eval, 3, 32, 32), dtype=np.uint8)
        train_y = rng.integers(0, 10, n_train, dtype=np.int64)
        eval_y = rng.integers(0, 10, n_eval, dtype=np.int64)
        classes, mean, std, source = list(CIFAR10_CLASSES), CIFAR10_MEAN, CIFAR10_STD, "synthetic"
    return Splits(train_images=train_x, train_labels=train_y, val_images=eval_x,
                  val_labels=eval_y, test_images=eval_x, test_labels=eval_y,
                  classes=list(classes), mean=tuple(mean), std=tuple(std), val_is_test=True,
                  source=source)


# --------------------------------------------------------------------------- our pipeline


@dataclass
class OurPipeline:
    """Our training epoch and evaluation, as the Trainer runs them."""

    config: TrainConfig
    parts: TrainParts
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    classes: list[str]
    eval_chunk: int | None  # images per forward in CPU evaluation; None: evaluate's own
    device: torch.device
    fold_bn: bool = False  # evaluate a BatchNorm-folded copy of the current weights
    compile_eval: bool = False  # evaluate a compiled copy (its first call compiles, untimed)
    eval_amp: str = "none"  # evaluate under this autocast (evaluate.with_amp)
    epoch: int = 0
    compiled: nn.Module | None = None

    def train_epoch(self) -> None:
        stats = EpochStats.zeros(self.device)
        train_one_epoch(self.parts, self.train_loader, stats, epoch=self.epoch,
                        lr=lambda progress: lr_at(self.config, progress))
        self.epoch += 1  # a fresh shuffle and augmentation each round, as in training

    def validate(self) -> EvalResult:
        model = self.parts.model
        if self.fold_bn:  # folded from the weights as they are now: its cost is timed too
            model = fold_batchnorm(model)
        if self.compile_eval:  # compiled once, in the warm-up round: an eval-only variant's
            if self.compiled is None:  # weights never change (it trains in no round)
                size = piece_size(self.device, self.val_loader.batch_size, self.eval_chunk)
                self.compiled = compile_for_inference(model, size)
            model = self.compiled
        model = with_amp(model, self.eval_amp)
        return validate(model, self.val_loader, self.classes,
                        autocast=self.parts.eval_autocast(), chunk=self.eval_chunk)


def build_pipeline(cfg: BenchConfig, splits, device: torch.device) -> OurPipeline:
    """Loaders, model, optimizer and wrappers exactly as ``train()`` builds them (no run
    directory, no DDP), with the levers ``cfg`` sets."""
    config = TrainConfig(model=cfg.model, batch_size=cfg.batch_size,
                         eval_batch_size=cfg.eval_batch_size, device=str(device),
                         channels_last=cfg.channels_last, compile=cfg.compile, amp=cfg.amp,
                         threads=cfg.threads, seed=cfg.seed)
    config.data.path = cfg.data
    torch.manual_seed(cfg.seed)
    dist = DistContext()
    train_loader, val_loader = build_loaders(config, splits, device, dist)
    parts = build_parts(config, splits.num_classes, device, dist, optimizer=cfg.optimizer,
                        compile_mode=cfg.compile_mode)
    set_materialize_zero_state(parts.model, cfg.plain_cat)
    return OurPipeline(config, parts, train_loader, val_loader, splits.classes,
                       cfg.eval_chunk or None, device, fold_bn=cfg.fold_bn,
                       compile_eval=cfg.compile_eval, eval_amp=cfg.eval_amp)


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """torch intra-op threads set to ``threads`` (0: leave as is) within the block."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Pipeline:
    """One thing to time: ``run()`` does ``steps`` steps over ``images`` images."""

    name: str
    kind: str  # "train" | "eval"
    run: Callable[[], Any]
    images: int
    steps: int
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    batch: int = 0  # images per step
    macs: int = 0  # forward multiply-adds per image, for GFLOP/s


def our_pipelines(name: str, cfg: BenchConfig, splits, device: torch.device,
                  varied: set[str] = frozenset()) -> list[Pipeline]:
    """train_one_epoch over a ``steps``-batch epoch, and validate. A variant (``varied``: the
    fields it changes) gets only the pipelines those fields can affect."""
    ours = build_pipeline(cfg, splits, device)
    macs = ours.parts.macs

    def context() -> contextlib.AbstractContextManager:
        return thread_count(cfg.threads)

    steps = len(ours.train_loader)
    found = []
    if not varied or varied - EVAL_ONLY:
        found.append(Pipeline(name, "train", ours.train_epoch, steps * cfg.batch_size, steps,
                              context, cfg.batch_size, macs))
    if cfg.evaluate and (not varied or varied - TRAIN_ONLY):
        images = ours.val_loader.num_samples
        found.append(Pipeline(name, "eval", ours.validate, images, len(ours.val_loader),
                              context, min(cfg.eval_batch_size, images), macs))
    return found


# --------------------------------------------------------------------------- the baseline


class PerSampleDataset(torch.utils.data.Dataset):
    """The torchvision recipe, one image at a time: RandomCrop(32, padding=4),
    RandomHorizontalFlip(), ToTensor(), Normalize(mean, std), on HWC uint8 as CIFAR10 keeps it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, train: bool,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        self.images = np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1))  # (N, H, W, C)
        self.labels = np.asarray(labels)
        self.train = train
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]  # (32, 32, 3) uint8
        if self.train:
            padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))  # (40, 40, 3), zeros
            top, left = torch.randint(0, 9, (2,)).tolist()
            image = padded[top:top + 32, left:left + 32]
            if torch.rand(1).item() < 0.5:
                image = image[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
        tensor = tensor.float().div(255)  # ToTensor: (3, 32, 32) in [0, 1]
        return tensor.sub_(self.mean).div_(self.std), int(self.labels[index])  # Normalize


def baseline_pipelines(cfg: BenchConfig, splits, device: torch.device,
                       workers: int) -> list[Pipeline]:
    """The torchvision-tutorial loop with ``workers`` DataLoader processes."""
    from resnet_cifar.models import count_macs, create_model

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=splits.num_classes).to(device)
    macs = count_macs(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    pin = device.type == "cuda"

    def loader(images, labels, train: bool) -> torch.utils.data.DataLoader:
        dataset = PerSampleDataset(images, labels, train, splits.mean, splits.std)
        return torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, shuffle=train, drop_last=train,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=pin)

    train_loader = loader(splits.train_images, splits.train_labels, True)
    eval_loader = loader(splits.val_images, splits.val_labels, False)

    def train_epoch() -> float:
        model.train()
        running = 0.0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        return running

    def evaluate() -> int:
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in eval_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                correct += (model(x).argmax(1) == y).sum().item()
        return correct

    name = f"baseline_w{workers}"
    found = [Pipeline(name, "train", train_epoch, len(train_loader) * cfg.batch_size,
                      len(train_loader), batch=cfg.batch_size, macs=macs)]
    if cfg.evaluate:
        found.append(Pipeline(name, "eval", evaluate, len(eval_loader.dataset), len(eval_loader),
                              batch=cfg.batch_size, macs=macs))
    return found


# --------------------------------------------------------------------------- the float32 peak


def peak_pipeline(cfg: BenchConfig) -> Pipeline:
    """PEAK_PRODUCTS float32 products of PEAK_SIZE-square matrices per thread and round, one
    single-threaded product per thread at a time, as our CPU evaluation runs its chunks
    (evaluate.cpu_chunk_pool): the multiply-add rate the CPU reaches with its best kernel and no
    barrier between threads. A float32 pipeline that computes a model's FLOPs cannot run much
    faster, so the peak (its fastest round) over a baseline's GFLOP/s bounds the ratio a float32
    pipeline can reach against it (``result["ceiling"]``). CPU only: a GPU's convolutions may
    run in TF32, which a float32 product does not bound."""
    generator = torch.Generator().manual_seed(cfg.seed)
    a, b = (torch.randn(PEAK_SIZE, PEAK_SIZE, generator=generator) for _ in range(2))
    with thread_count(cfg.threads):
        products = PEAK_PRODUCTS * torch.get_num_threads()

    def run() -> None:
        with cpu_chunk_pool(torch.device("cpu")) as pool:
            for _ in pool.map(lambda _: torch.mm(a, b), range(products)):
                pass

    # one "image" is one product; summarize counts 2 FLOPs per multiply-add of a non-training kind
    return Pipeline(PEAK, "peak", run, products, products, lambda: thread_count(cfg.threads),
                    PEAK_SIZE, PEAK_SIZE ** 3)


def ceilings(result: dict) -> dict[str, float]:
    """Per kind with a baseline: the float32 peak's GFLOP/s in its fastest round over the best
    baseline's (median) GFLOP/s, i.e. about the largest speed-up over it that a float32 pipeline
    of the same FLOPs could show here."""
    fastest = fastest_peak(result)
    if fastest is None:
        return {}
    return {kind: fastest / result[kind][best]["gflop_per_s"]
            for kind, best in result["best_baseline"].items()}


def fastest_peak(result: dict) -> float | None:
    """The float32 peak's GFLOP/s in its fastest round; None where it was not timed."""
    peak = result["peak"].get(PEAK)
    return None if peak is None else peak["gflop_per_s"] * peak["img_per_s_max"] / peak["img_per_s"]


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``fn()`` takes, including the device work it queued."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleave(pipelines: list[Pipeline], device: torch.device, warmup: int, repeats: int,
               report: Callable[[str], None] | None = None) -> dict[tuple[str, str], dict]:
    """Run every pipeline once per round, ``warmup + repeats`` rounds, rotating the order."""
    record = {(p.name, p.kind): {"warmup_s": [], "seconds": []} for p in pipelines}
    for index in range(warmup + repeats):
        shift = index % len(pipelines)
        for p in pipelines[shift:] + pipelines[:shift]:
            with p.context():
                seconds = time_call(p.run, device)
            key = "warmup_s" if index < warmup else "seconds"
            record[(p.name, p.kind)][key].append(seconds)
            if report is not None:
                tag = "warm-up" if index < warmup else f"round {index - warmup + 1}/{repeats}"
                report(f"{tag:>12}  {p.kind:5} {p.name:20} {p.images / seconds:8.1f} img/s")
    return record


def summarize(p: Pipeline, seconds: list[float], warmup_s: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    flops_per_image = (6 if p.kind == "train" else 2) * p.macs  # backward ~ 2x forward
    return {
        "img_per_s": p.images / median,
        "ms_per_step": 1e3 * median / p.steps,
        "gflop_per_s": p.images * flops_per_image / median / 1e9,
        "img_per_s_min": p.images / max(seconds),
        "img_per_s_max": p.images / min(seconds),
        "round_s": [round(s, 4) for s in seconds],
        "warmup_s": [round(s, 4) for s in warmup_s],
        "images": p.images,
        "steps": p.steps,
        "batch": p.batch,
    }


def run_benchmark(cfg: BenchConfig, report: Callable[[str], None] | None = None) -> dict:
    """Measure, interleaved, our pipeline (and its ``variants``) and the baseline at each worker
    count. Returns a JSON-ready dict; ``ratio`` compares "ours" with the best baseline."""
    from resnet_cifar.engine.runtime import (
        configure_determinism,
        configure_threads,
        resolve_device,
    )

    check(cfg)
    device = resolve_device(cfg.device)
    threads = configure_threads(cfg.threads)
    configure_determinism(False, device)  # as train() does: cudnn.benchmark on CUDA
    splits = bench_splits(cfg)
    variants = {"ours": {}, **bench_variants(cfg)}
    pipelines: list[Pipeline] = []
    for name, overrides in variants.items():
        pipelines += our_pipelines(name, dataclasses.replace(cfg, **overrides), splits, device,
                                   set(overrides))
    if cfg.baseline:
        for workers in cfg.workers:
            pipelines += baseline_pipelines(cfg, splits, device, workers)
    if cfg.peak and device.type == "cpu":
        pipelines.append(peak_pipeline(cfg))
    record = interleave(pipelines, device, cfg.warmup, cfg.repeats, report)

    result: dict[str, Any] = {
        "config": {k: v for k, v in dataclasses.asdict(cfg).items()},
        "environment": environment(device, threads),
        "variants": variants,
        "train": {}, "eval": {}, "peak": {},
    }
    result["config"]["workers"] = list(cfg.workers)
    result["model"] = {"name": cfg.model, "macs": pipelines[0].macs,
                       "train_mflop_per_image": 6 * pipelines[0].macs / 1e6,
                       "data": splits.source}
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
    result["ceiling"] = ceilings(result)
    return result


def bench_variants(cfg: BenchConfig) -> dict[str, dict[str, Any]]:
    """cfg.variants, after the folded, the compiled and the bf16 evaluation where cfg.folded,
    cfg.compiled_eval and cfg.bf16_eval ask for them (bf16 only where it runs in hardware)."""
    folded = {FOLDED: {"fold_bn": True}} if cfg.folded and cfg.evaluate and not cfg.fold_bn else {}
    compiled = {COMPILED: {"compile_eval": True}} \
        if cfg.compiled_eval and cfg.evaluate and not cfg.compile_eval else {}
    bf16 = {EVAL_BF16: {"eval_amp": "bf16"}} \
        if cfg.bf16_eval and cfg.evaluate and cfg.eval_amp == "none" and native_bf16(cfg) else {}
    return {**folded, **compiled, **bf16, **cfg.variants}


def native_bf16(cfg: BenchConfig) -> bool:
    """Whether the benchmark's device computes bfloat16 in hardware."""
    from resnet_cifar.engine.runtime import resolve_device

    device = resolve_device(cfg.device)
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def compile_seconds(result: dict, variants: dict[str, dict]) -> dict[str, float]:
    """Per compiled variant: its first (warm-up) round minus a steady round, i.e. what
    torch.compile cost on top of the steps themselves (training: `compile`; evaluation:
    `compile_eval`)."""
    found = {}
    for kind, field_name in (("train", "compile"), ("eval", "compile_eval")):
        for name, timed in result[kind].items():
            compiled = variants.get(name, {}).get(field_name, result["config"][field_name])
            if name in variants and compiled and timed["warmup_s"]:
                steady = statistics.median(timed["round_s"])
                key = name if kind == "train" else f"{name} (eval)"
                found[key] = round(timed["warmup_s"][0] - steady, 2)
    return found


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    from resnet_cifar.engine.runtime import physical_cores

    env = {"torch": torch.__version__, "python": platform.python_version(),
           "device": str(device), "threads": threads, "cores": physical_cores(),
           "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def check(cfg: BenchConfig) -> None:
    """Refuse what cannot be measured, with the flag to change."""
    from resnet_cifar.engine.runtime import resolve_device
    from resnet_cifar.engine.train_setup import check_amp

    if cfg.steps < 1 or cfg.repeats < 1 or cfg.warmup < 0 or cfg.batch_size < 1:
        raise ConfigError("`steps`, `repeats` and `batch_size` must be >= 1 and `warmup` >= 0")
    if cfg.eval_images < 1 or cfg.eval_batch_size < 1:
        raise ConfigError("`eval_images` and `eval_batch_size` must be >= 1")
    if any(w < 0 for w in cfg.workers):
        raise ConfigError(f"`workers` must be >= 0, got {list(cfg.workers)}")
    for name, overrides in {"ours": {}, **bench_variants(cfg)}.items():
        unknown = set(overrides) - set(VARIANT_FIELDS)
        if unknown:
            raise ConfigError(f"variant {name!r}: cannot vary {', '.join(sorted(unknown))}; "
                              f"choose from {', '.join(VARIANT_FIELDS)}")
        merged = dataclasses.replace(cfg, **overrides)
        if merged.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {merged.optimizer!r}: choose from {OPTIMIZERS}")
        if merged.compile_mode not in (None, *COMPILE_MODES):
            raise ConfigError(f"compile mode {merged.compile_mode!r}: choose from {COMPILE_MODES}")
        for key, amp in (("amp", merged.amp), ("eval_amp", merged.eval_amp)):
            if amp not in AMP_MODES:
                raise ConfigError(f"{key} {amp!r}: choose none, bf16 or fp16")
            if amp == "fp16":  # as train and eval refuse it: a CPU would time float32 instead
                check_amp(amp, resolve_device(cfg.device))
    from resnet_cifar.models import create_model  # an unknown model fails here, listing names

    create_model(cfg.model)


# --------------------------------------------------------------------------- report


def format_report(result: dict) -> str:
    """A plain-text table: one line per pipeline, then the ratios."""
    env, model = result["environment"], result["model"]
    cfg = result["config"]
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
