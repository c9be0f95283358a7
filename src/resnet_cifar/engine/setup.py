"""What a training run is built from: loaders, model, SGD, DDP / torch.compile, autocast, the
learning rate and the weights' moving average. Speed choices are parameters (the benchmark's)."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_cifar.config import AMP_MODES, TrainConfig
from resnet_cifar.data import DeviceLoader
from resnet_cifar.data.cache import dataset_of
from resnet_cifar.engine.checkpoint import strip_module_prefix
from resnet_cifar.engine.inference import Splits
from resnet_cifar.engine.runtime import DistContext
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import count_macs, count_parameters, create_model
from resnet_cifar.models.init import whiten_stem, zero_init_residual

# SGD kernels by name; "default" is optimizer_impl's pick for the device.
OPTIMIZER_IMPLS = {"fused": {"fused": True}, "foreach": {"foreach": True},
                   "loop": {"foreach": False}}
WHITENING_IMAGES = 5000  # as airbench: about 4.5 million 3x3 patches for a 27 x 27 covariance
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def lr_at(config: TrainConfig, progress: float, world_size: int = 1) -> float:
    base = config.lr * (world_size if config.lr_scaling == "linear" else 1)  # the global batch's
    return learning_rate(progress, base_lr=base, epochs=config.epochs, schedule=config.schedule,
                         milestones=config.milestones, gamma=config.gamma,
                         warmup_epochs=config.warmup_epochs)


def eval_loader(config: TrainConfig, splits: Splits, images, labels, device: torch.device,
                dist: DistContext) -> DeviceLoader:
    """Fixed order, no augmentation, sharded across ranks (counts are all-reduced)."""
    return DeviceLoader(images, labels, batch_size=config.eval_batch_size, train=False,
                        mean=splits.mean, std=splits.std, device=device,
                        channels_last=config.channels_last, rank=dist.rank,
                        world_size=dist.world_size)


def build_loaders(config: TrainConfig, splits: Splits, device: torch.device,
                  dist: DistContext) -> tuple[DeviceLoader, DeviceLoader]:
    train_loader = DeviceLoader(
        splits.train_images, splits.train_labels, batch_size=config.batch_size, train=True,
        augment=config.data.augment, seed=config.seed, mean=splits.mean, std=splits.std,
        device=device, channels_last=config.channels_last, rank=dist.rank,
        world_size=dist.world_size, flip=config.data.flip, cutout=config.data.cutout,
        crop_padding=config.data.crop_padding)
    if len(train_loader) == 0:
        raise ConfigError(
            f"batch size {config.batch_size} x {dist.world_size} process(es) exceeds the "
            f"{len(splits.train_labels)} training images; lower `batch_size` (--batch-size)")
    val = eval_loader(config, splits, splits.val_images, splits.val_labels, device, dist)
    return train_loader, val


def whitening_images(splits: Splits, seed: int, count: int = WHITENING_IMAGES) -> torch.Tensor:
    """``count`` random training images, normalized. Its own generator leaves the global RNG
    streams, which a resume replays, alone."""
    rows = np.random.default_rng(seed).permutation(len(splits.train_images))[:count]
    scale, shift = splits.normalization.scale_shift()
    return torch.from_numpy(splits.train_images[np.sort(rows)]).float() * scale - shift


def build_model(config: TrainConfig, num_classes: int, device: torch.device,
                dist: DistContext, stem_images: torch.Tensor | None = None
                ) -> tuple[nn.Module, int, int]:
    """(the unwrapped model on ``device``, its parameters, its MACs per image)."""
    model = create_model(config.model, num_classes=num_classes, **config.model_kwargs)
    if config.zero_init_residual:
        zero_init_residual(model)
    if config.stem_init == "whitening":
        if stem_images is None:
            raise ValueError('stem_init "whitening" needs the training images (stem_images)')
        whiten_stem(model, stem_images)
    params, macs = count_parameters(model), count_macs(model)
    if config.sync_bn and dist.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, params, macs


def optimizer_impl(device: torch.device, impl: str = "default") -> dict[str, Any]:
    """SGD kernels: fused on CUDA, foreach on the CPU; ``impl`` names one instead."""
    if impl != "default":
        return dict(OPTIMIZER_IMPLS[impl])
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]] | Any:
    """With `no_decay_bn_bias`, weights (ndim > 1) decay and BatchNorm scales and biases do not;
    without, one group (so old optimizer states still load)."""
    if not config.no_decay_bn_bias:
        return model.parameters()
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def compile_mode_for(device: torch.device, dist: DistContext, mode: str | None = None) -> str:
    """``mode``, else "reduce-overhead" (CUDA graphs) on one CUDA device, else "default"."""
    return mode or ("reduce-overhead" if device.type == "cuda" and not dist.enabled else "default")


def wrap_model(model: nn.Module, device: torch.device, dist: DistContext,
               compile_mode: str | None) -> nn.Module:
    """DDP and torch.compile (None: not compiled) around ``model``, which stays unwrapped."""
    wrapped: nn.Module = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=ids)
    if compile_mode is not None:
        wrapped = torch.compile(wrapped, mode=compile_mode)  # lazy: compiles at step 1
    return wrapped


def autocast_for(amp: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the forward's autocast context (amp: none | bf16 | fp16)."""
    if amp == "none" or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


@dataclass
class TrainParts:
    model: nn.Module  # unwrapped: what checkpoints hold
    forward_model: nn.Module  # model under DDP / torch.compile: what the step calls
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]  # the training step's
    # validation's: float32 on the CPU, so that `resnet-cifar eval` reproduces the logged accuracy
    eval_autocast: Callable[[], contextlib.AbstractContextManager]
    compile_mode: str | None  # None: eager
    params: int
    macs: int  # forward multiply-adds per image
    ema: ModelEma | None = None  # `ema_decay` > 0: the average, updated after every step


def build_parts(config: TrainConfig, num_classes: int, device: torch.device, dist: DistContext,
                *, optimizer: str = "default", compile_mode: str | None = None,
                stem_images: torch.Tensor | None = None) -> TrainParts:
    """Model, optimizer, loss, scaler and wrappers; ``optimizer`` and ``compile_mode`` override
    the measured defaults."""
    model, params, macs = build_model(config, num_classes, device, dist, stem_images)
    opt = torch.optim.SGD(param_groups(model, config), lr=lr_at(config, 0.0, dist.world_size),
                          momentum=config.momentum, weight_decay=config.weight_decay,
                          nesterov=config.nesterov, **optimizer_impl(device, optimizer))
    mode = compile_mode_for(device, dist, compile_mode) if config.compile else None
    return TrainParts(
        model=model, forward_model=wrap_model(model, device, dist, mode), optimizer=opt,
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        scaler=torch.amp.GradScaler("cuda", enabled=config.amp == "fp16"),
        autocast=autocast_for(config.amp, device),
        eval_autocast=autocast_for(config.amp if device.type == "cuda" else "none", device),
        compile_mode=mode, params=params, macs=macs,
        ema=ModelEma(model, config.ema_decay) if config.ema_decay > 0 else None)


def check_device_options(config: TrainConfig, device: torch.device) -> None:
    check_amp(config.amp, device)
    if config.sync_bn and device.type != "cuda":
        raise ConfigError(f"`sync_bn` (--sync-bn) needs CUDA: PyTorch's SyncBatchNorm has no "
                          f"{device.type} kernel; leave it out")


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse an autocast mode the device cannot run; warn where the CPU would emulate bf16."""
    if amp not in AMP_MODES:
        raise ConfigError(f"`amp` (--amp) {amp!r}: choose one of {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"`amp` (--amp) fp16 needs CUDA (the device is {device}); on a CPU use "
                          "bf16, or leave it out")
    if amp == "bf16" and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"`amp` (--amp) bf16 needs CUDA or the CPU (the device is {device}); "
                          "leave it out")
    if amp == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("`amp` (--amp) bf16: this CPU has no bfloat16 instructions (AVX512-BF16 or "
                      "AMX), so bf16 is emulated and slower than float32 here; leave `amp` (--amp) "
                      "out", RuntimeWarning, stacklevel=3)


def record_data(config: TrainConfig, splits: Splits) -> None:
    """Make config.toml name the data exactly: its path as loaded and its fingerprint."""
    if splits.source and Path(splits.source).exists():
        config.data.path = splits.source
    config.data.fingerprint = splits.fingerprint
    config.data.dataset = dataset_of(splits.classes)  # what the data is (load_cifar checked it)
    config.data.allow_other_data = False


def learning_rate(progress: float, *, base_lr: float, epochs: int, schedule: str = "step",
                  milestones: list[int] | tuple[int, ...] = (), gamma: float = 0.1,
                  warmup_epochs: int = 0) -> float:
    """lr at ``progress`` epochs into training (a float: epoch + fraction of the epoch done).

    step:     base_lr * gamma ** (number of milestones <= epoch); milestones are 0-based epoch
              indices, so milestones=[80] is the original's ``if epoch >= 80: lr = 0.01``.
    cosine:   half a cosine from base_lr to 0 over the epochs after warm-up, per step.
    onecycle: linear up from base_lr/25 to base_lr over the first 30%, then cosine down to ~0.
    warm-up:  linear from base_lr/10 to the schedule's value over ``warmup_epochs``.
    """
    if schedule == "step":
        lr = base_lr * gamma ** sum(1 for m in milestones if int(progress) >= m)
    elif schedule == "cosine":
        span = max(epochs - warmup_epochs, 1e-8)
        t = min(max(progress - warmup_epochs, 0.0) / span, 1.0)
        lr = base_lr * 0.5 * (1 + math.cos(math.pi * t))
    elif schedule == "onecycle":
        t = min(progress / epochs, 1.0)
        peak = 0.3
        if t < peak:
            lr = base_lr / 25 + (base_lr - base_lr / 25) * t / peak
        else:
            lr = base_lr * 0.5 * (1 + math.cos(math.pi * (t - peak) / (1 - peak)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_epochs and progress < warmup_epochs and schedule != "onecycle":
        start = base_lr / 10
        lr = start + (lr - start) * progress / warmup_epochs
    return lr


def ema_decay_at(decay: float, step: int) -> float:
    return min(decay, (1 + step) / (10 + step))


class ModelEma:
    """The averaged copy of ``model`` (the unwrapped one); ``module`` is what validation runs."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self._pairs: tuple[int, list, list, list, list] | None = None

    def pairs(self, model: nn.Module) -> tuple[list, list, list, list]:
        """(ema floats, model floats, ema integers, model integers), matched by key; built once
        per model (live tensors, updated in place)."""
        if self._pairs is None or self._pairs[0] != id(model):
            ema_state, model_state = self.module.state_dict(), model.state_dict()
            lists: tuple[list, list, list, list] = ([], [], [], [])
            for key, ema_value in ema_state.items():
                at = 0 if ema_value.is_floating_point() else 2
                lists[at].append(ema_value)
                lists[at + 1].append(model_state[key])
            self._pairs = (id(model), *lists)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Foreach ops on the device, no host sync."""
        d = ema_decay_at(self.decay, step)
        floats_ema, floats_model, ints_ema, ints_model = self.pairs(model)
        torch._foreach_mul_(floats_ema, d)
        torch._foreach_add_(floats_ema, floats_model, alpha=1 - d)
        if ints_ema:
            torch._foreach_copy_(ints_ema, ints_model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return strip_module_prefix(self.module.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)
