"""What `resnet-cifar bench` times, each as a Pipeline: ours (the training loop itself, built as
``train()`` builds it), the baseline (the torchvision CIFAR tutorial: a per-image Dataset, a
DataLoader with N workers, eager NCHW, plain SGD, ``loss.item()`` per step) and the float32 peak."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import TrainConfig
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine.evaluate import EvalResult, cpu_chunk_pool, piece_size, with_amp
from resnet_cifar.engine.inference import Splits, compile_for_inference
from resnet_cifar.engine.runtime import DistContext
from resnet_cifar.engine.setup import TrainParts, build_loaders, build_parts, lr_at
from resnet_cifar.engine.state import EpochStats
from resnet_cifar.engine.train import train_one_epoch, validate
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import count_macs, create_model
from resnet_cifar.models.fold import fold_batchnorm

if TYPE_CHECKING:
    from resnet_cifar.bench import BenchConfig

# how ours evaluates: as `eval`, BatchNorm folded, as `eval --compile`, as `eval --amp bf16`
EVALUATIONS = ("eager", "folded", "compiled", "bf16")
# The CPU's float32 multiply-add peak: products of square matrices large enough for oneDNN to
# reach it (on a Zen 4, 2048 ran 1.12x the rate of 1024, level with 3072), about 0.2 s each.
PEAK = "matmul_fp32"
PEAK_SIZE = 2048
PEAK_PRODUCTS = 4  # matrix products per thread and round


@dataclass
class Pipeline:
    """One thing to time: ``run()`` does ``steps`` steps over ``images`` images."""

    name: str
    kind: str  # "train" | "eval" | "peak"
    run: Callable[[], Any]
    images: int
    steps: int
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    batch: int = 0  # images per step
    macs: int = 0  # forward multiply-adds per image, for GFLOP/s


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


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``, so that a timer sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def bench_splits(cfg: BenchConfig) -> Splits:
    """``steps * batch_size`` training and ``eval_images`` evaluation images: ``cfg.data``'s, else
    random uint8 (speed does not depend on pixels)."""
    from resnet_cifar.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_cifar

    n_train, n_eval = cfg.steps * cfg.batch_size, cfg.eval_images
    if cfg.data:
        arrays = load_cifar(cfg.data, progress=False)
        if n_train > len(arrays.train_labels) or n_eval > len(arrays.test_labels):
            raise ConfigError(
                f"{arrays.source} has {len(arrays.train_labels)} training and "
                f"{len(arrays.test_labels)} test images; `steps` (--steps) x `batch_size` "
                f"(--batch-size) needs {n_train} and `eval_images` (--eval-images) {n_eval}")
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


@dataclass
class OurPipeline:
    """Our training epoch and evaluation, as the Trainer runs them."""

    config: TrainConfig
    parts: TrainParts
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    classes: list[str]
    device: torch.device
    evaluation: str = "eager"  # one of EVALUATIONS
    epoch: int = 0
    compiled: nn.Module | None = None

    def train_epoch(self) -> None:
        stats = EpochStats.zeros(self.device)
        train_one_epoch(self.parts, self.train_loader, stats, epoch=self.epoch,
                        lr=lambda progress: lr_at(self.config, progress))
        self.epoch += 1  # a fresh shuffle and augmentation each round, as in training

    def validate(self) -> EvalResult:
        model = self.parts.model
        if self.evaluation == "folded":  # folded from the weights as they are now: timed too
            model = fold_batchnorm(model)
        elif self.evaluation == "compiled":  # compiled once, in the warm-up round: an eval-only
            if self.compiled is None:  # variant's weights never change (it trains in no round)
                size = piece_size(self.device, self.val_loader.batch_size)
                self.compiled = compile_for_inference(model, size)
            model = self.compiled
        elif self.evaluation == "bf16":
            model = with_amp(model, "bf16")
        return validate(model, self.val_loader, self.classes, autocast=self.parts.eval_autocast())


def build_pipeline(cfg: BenchConfig, splits: Splits, device: torch.device) -> OurPipeline:
    """Loaders, model, optimizer and wrappers as ``train()`` builds them, without run dir or DDP."""
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
    return OurPipeline(config, parts, train_loader, val_loader, splits.classes, device,
                       cfg.evaluation)


def our_pipelines(name: str, cfg: BenchConfig, splits: Splits, device: torch.device,
                  kinds: set[str] = frozenset({"train", "eval"})) -> list[Pipeline]:
    """train_one_epoch over ``steps`` batches, and validate (if ``cfg.evaluate``), of ``kinds``."""
    ours = build_pipeline(cfg, splits, device)
    macs, steps = ours.parts.macs, len(ours.train_loader)
    context = functools.partial(thread_count, cfg.threads)
    found = []
    if "train" in kinds:
        found.append(Pipeline(name, "train", ours.train_epoch, steps * cfg.batch_size, steps,
                              context, cfg.batch_size, macs))
    if cfg.evaluate and "eval" in kinds:
        images = ours.val_loader.num_samples
        found.append(Pipeline(name, "eval", ours.validate, images, len(ours.val_loader),
                              context, min(cfg.eval_batch_size, images), macs))
    return found


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


def baseline_pipelines(cfg: BenchConfig, splits: Splits, device: torch.device,
                       workers: int) -> list[Pipeline]:
    """The torchvision-tutorial loop with ``workers`` DataLoader processes."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=splits.num_classes).to(device)
    macs = count_macs(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def loader(images, labels, train: bool) -> torch.utils.data.DataLoader:
        dataset = PerSampleDataset(images, labels, train, splits.mean, splits.std)
        return torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, shuffle=train, drop_last=train,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda")

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


def peak_pipeline(cfg: BenchConfig) -> Pipeline:
    """PEAK_PRODUCTS single-threaded float32 matrix products per thread and round, as our CPU
    evaluation runs its chunks: a rate no float32 pipeline can much exceed, so it bounds bench's
    ratios. CPU only: a GPU's convolutions may run in TF32, which it does not bound."""
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
