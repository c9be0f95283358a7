"""Run configuration: dataclasses whose fields carry their default, help, choices and flag.

Precedence, lowest to highest: the recipe (``configs/<recipe>.toml``), a ``--config FILE``, then
flags. A TOML file mirrors the dataclasses (``[data]`` and ``[model_kwargs]`` tables); unknown
keys and values of the wrong type are refused with the valid names.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_cifar.config_files import read_toml, recipe_path
from resnet_cifar.errors import ConfigError

# Choices that several settings and commands share: one home each.
NORMALIZE_MODES = ("dataset", "half", "imagenet")
AMP_MODES = ("none", "bf16", "fp16")
SCHEDULES = ("step", "cosine", "onecycle")
EVAL_BATCH_SIZE = 1000  # evaluation is inference only: large batches are faster
TTA_MODES = ("none", "flip", "flip-translate")  # test-time views averaged (engine/evaluate.py)
FLIP_MODES = ("random", "alternating")  # how training images are flipped (data/loader.py)
X_AXES = ("epoch", "time")  # the horizontal axis of plot and compare (viz/curves.py)
CROP_PADDING = 4  # "standard" augmentation: a random 32x32 crop of the image zero-padded by 4
STEM_INITS = ("kaiming", "whitening")  # how the first convolution starts (models/init.py)
# minutes between saves of last.pt within an epoch: what a hard kill loses at most
SAVE_EVERY_MINUTES = 10.0


def opt(help: str, *, choices: tuple[str, ...] | None = None, flag: bool | str = True,
        metavar: str | None = None, minimum: int | None = None, negatable: bool = False,
        group: str | None = None, train_only: bool = False, help_order: int = 0) -> dict[str, Any]:
    """A field's metadata, from which the CLI builds its flag. ``flag``: --lr-scaling for
    lr_scaling by default, another flag ("--data"), or False for none; ``negatable``: a bool also
    gets its negative (--no-nesterov); ``group``: the --help section, ordered by ``help_order``
    then field order; ``train_only``: a data option that eval and show lack."""
    return {"help": help, "choices": choices, "flag": flag, "metavar": metavar,
            "minimum": minimum, "negatable": negatable, "group": group,
            "train_only": train_only, "help_order": help_order}


@dataclass
class DataConfig:
    """Where the images come from and how they are fed. Shared by train, eval, show, data..."""

    path: str | None = field(default=None, metadata=opt(
        "CIFAR in any layout: python/binary tarball or folder, image-folder tree "
        "or its .tar/.tar.gz/.zip (default: $RESNET_CIFAR_DATA, the cache, then download)",
        flag="--data", metavar="PATH"))
    dataset: str | None = field(default=None, metadata=opt(
        "which CIFAR: downloaded when no `data.path` (--data) is given (default cifar10), checked "
        "against the data when one is (default: the data says)",
        choices=("cifar10", "cifar100")))
    cache_dir: str | None = field(default=None, metadata=opt(
        "decoded-array cache (default $RESNET_CIFAR_CACHE or ~/.cache/resnet_cifar)",
        metavar="DIR"))
    coarse: bool = field(default=False, metadata=opt("CIFAR-100: use the 20 coarse labels"))
    resize: bool = field(default=False, metadata=opt(
        "resize images that are not 32x32 (bicubic) instead of refusing them"))
    val_split: int = field(default=0, metadata=opt(
        "hold out N training images (stratified) for validation; "
        "without it validation is the test set", metavar="N", minimum=0))
    train_subset: int = field(default=0, metadata=opt(
        "train on a stratified subset of N images (quick experiments)",
        metavar="N", minimum=0, train_only=True, help_order=2))
    normalize: str = field(default="dataset", metadata=opt(
        "dataset: the training split's mean/std (default); half: 0.5 as in the "
        "original notebooks; imagenet: ImageNet's statistics", choices=NORMALIZE_MODES,
        help_order=1))
    augment: str = field(default="standard", metadata=opt(
        "standard: 4-px padded random crop + flip (default); none: the original notebooks",
        choices=("standard", "none"), train_only=True, help_order=2))
    flip: str = field(default="random", metadata=opt(
        "random: each image flipped with probability 1/2 each epoch (default); alternating: "
        "flipped on alternate epochs, the first choice drawn from the seed (airbench)",
        choices=FLIP_MODES, train_only=True, help_order=2))
    crop_padding: int = field(default=CROP_PADDING, metadata=opt(
        "standard augmentation: the random crop is taken from the image zero-padded by N pixels "
        "(default 4, as the original; 2 is airbench's; 0 leaves flips only)",
        metavar="N", minimum=0, train_only=True, help_order=2))
    cutout: int = field(default=0, metadata=opt(
        "cut a random N x N square out of each training image, whatever the augmentation "
        "(0: off; DeVries & Taylor)",
        metavar="N", minimum=0, train_only=True, help_order=2))
    fingerprint: str | None = field(default=None, metadata=opt(
        "sha256 content fingerprint the data must have (a run records its own)", flag=False))
    allow_other_data: bool = field(default=False, metadata=opt(
        "use data whose content differs from the fingerprint the run (or config) recorded; "
        "every result then says so"))


@dataclass
class TrainConfig:
    """One training run. Defaults are the original experiment (configs/original.toml)."""

    model: str = field(default="resnet20", metadata=opt(
        "see `resnet-cifar models`", metavar="NAME", group="model"))
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata=opt(
        "model options, e.g. {shortcut = \"A\"}", flag=False))
    zero_init_residual: bool = field(default=False, metadata=opt(
        "start the last BatchNorm weight of every residual branch at 0, so that each block "
        "starts as its shortcut (Goyal et al.; an initialization, the architecture is unchanged)",
        group="model"))
    stem_init: str = field(default="kaiming", metadata=opt(
        "kaiming: the first convolution starts He-normal, as in the original; whitening: as "
        "+/- the top whitening filters of the training images' 3x3 patches (airbench)",
        choices=STEM_INITS, group="model"))
    data: DataConfig = field(default_factory=DataConfig, metadata=opt(
        "the data options", flag=False))
    epochs: int = field(default=150, metadata=opt(
        "passes over the training split", minimum=1, group="optimization"))
    batch_size: int = field(default=64, metadata=opt(
        "per process", minimum=1, group="optimization"))
    eval_batch_size: int = field(default=EVAL_BATCH_SIZE, metadata=opt(
        "evaluation batch (inference only: large batches are faster)", minimum=1,
        group="optimization"))
    lr: float = field(default=0.1, metadata=opt("peak learning rate", group="optimization"))
    momentum: float = field(default=0.9, metadata=opt("SGD momentum", group="optimization"))
    weight_decay: float = field(default=1e-4, metadata=opt(
        "L2 weight decay", group="optimization"))
    nesterov: bool = field(default=False, metadata=opt(
        "Nesterov momentum", negatable=True, group="optimization"))
    schedule: str = field(default="step", metadata=opt(
        "lr schedule", choices=SCHEDULES, group="optimization"))
    milestones: list[int] = field(default_factory=lambda: [80], metadata=opt(
        "0-based epochs where the step schedule multiplies lr by `gamma` (--gamma)",
        metavar="80[,120]", group="optimization"))
    gamma: float = field(default=0.1, metadata=opt(
        "the lr factor at each milestone", group="optimization"))
    warmup_epochs: int = field(default=0, metadata=opt(
        "linear warm-up from lr/10, before the schedule", minimum=0, group="optimization"))
    label_smoothing: float = field(default=0.0, metadata=opt(
        "cross-entropy label smoothing", group="optimization"))
    no_decay_bn_bias: bool = field(default=False, metadata=opt(
        "no weight decay on BatchNorm weights and biases (only conv and linear weights decay)",
        group="optimization"))
    ema_decay: float = field(default=0.0, metadata=opt(
        "keep an exponential moving average of the weights with this decay per step, warmed "
        "up as min(decay, (1 + step) / (10 + step)); validated beside the raw weights "
        "(0: off)", group="optimization"))
    tta: str = field(default="none", metadata=opt(
        "test-time augmentation of validation, reported beside the plain accuracy",
        choices=TTA_MODES, group="optimization"))
    lr_scaling: str = field(default="none", metadata=opt(
        "linear: scale lr by the number of DDP ranks (global batch / batch)",
        choices=("none", "linear"), group="optimization"))
    sync_bn: bool = field(default=False, metadata=opt(
        "DDP: SyncBatchNorm", group="runtime", help_order=1))
    seed: int = field(default=0, metadata=opt(
        "seed of the weights, the data order and the validation split", group="runtime"))
    deterministic: bool = field(default=False, metadata=opt(
        "deterministic kernels (bitwise-reproducible on CPU)", group="runtime"))
    device: str = field(default="auto", metadata=opt(
        "auto | cpu | cuda | cuda:N | mps", group="runtime"))
    threads: int = field(default=0, metadata=opt(
        "intra-op threads; 0 (default): one per core that other processes leave idle, "
        "chosen again as the load changes (one per core for a deterministic run)",
        minimum=0, group="runtime"))
    channels_last: bool = field(default=True, metadata=opt(
        "NHWC activations (default: on; faster on CPU and with cuDNN)",
        negatable=True, group="runtime"))
    compile: bool = field(default=False, metadata=opt(
        "torch.compile the model (compile time reported separately)", group="runtime"))
    amp: str = field(default="none", metadata=opt(
        "mixed precision: bf16 (CUDA, or a CPU with AVX512-BF16 or AMX) or fp16 (CUDA); "
        "the weights and BatchNorm statistics stay fp32", choices=AMP_MODES, group="runtime"))
    out: str | None = field(default=None, metadata=opt(
        "run directory (default runs/<name>-<YYYYmmdd-HHMMSS>)", metavar="DIR",
        group="output"))
    name: str | None = field(default=None, metadata=opt(
        "run name (default: the model name)", group="output"))
    save_every: float = field(default=SAVE_EVERY_MINUTES, metadata=opt(
        "also save last.pt within an epoch every MIN minutes, so that a hard kill (power loss, "
        "out of memory, a preempted job) loses at most that much training (0: at epoch ends "
        "only; Ctrl-C and SIGTERM always save)", metavar="MIN", minimum=0, group="output"))
    tensorboard: bool = field(default=False, metadata=opt(
        "also log to TensorBoard (needs the tb extra)", group="runtime", help_order=1))


def setting_fields(config_class: type = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every setting's dataclass field, by key (``lr``, ``data.val_split``)."""
    settings: dict[str, Any] = {}
    for f in dataclasses.fields(config_class):
        settings[prefix + f.name] = f
        if f.name == "data" and config_class is TrainConfig:
            settings.update(setting_fields(DataConfig, prefix=f"{prefix}data."))
    return settings


CHOICES: dict[str, tuple[str, ...]] = {
    key: f.metadata["choices"] for key, f in setting_fields().items() if f.metadata["choices"]
}


def field_flag(f: dataclasses.Field) -> str | None:
    """The flag of config field ``f`` (--lr-scaling for lr_scaling); None if it has none."""
    flag = f.metadata["flag"]
    return "--" + f.name.replace("_", "-") if flag is True else flag or None


# Settings that are not config fields but that messages name: model options, and parameters of
# library functions that only a command exposes (`split` of evaluate, `n` of the prediction grid).
PARAMETERS = ("recipe", "config", "resume", "overwrite", "split", "out_dir", "plot", "show", "n",
              "topk", "exact", "format", "opset", "include_normalization", "baseline",
              "allow_mixed_data", "steps", "repeats", "warmup", "workers", "eval_images",
              "replace")
PARAMETER_FLAGS = {**{name: "--" + name.replace("_", "-") for name in PARAMETERS},
                   "model_kwargs.shortcut": "--shortcut", "model_kwargs": "--model-opt",
                   "evaluate": "--no-eval"}

# The one table from a setting to its flag: the CLI builds its parser from it, and a message
# names a setting by key and flag, "`lr` (--lr)" (tests/test_cli_flags.py checks them all).
FLAG_OF: dict[str, str] = {
    **{k: flag for k, f in setting_fields().items() if (flag := field_flag(f))},
    **PARAMETER_FLAGS,
}


def key(name: str) -> str:
    """Setting ``name`` as a message names it: "`lr` (--lr)", or "`name`" without a flag."""
    flag = FLAG_OF.get(name)
    return f"`{name}` ({flag})" if flag else f"`{name}`"


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` if it fits ``annotation`` (ints are accepted for floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {annotation}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def merge_into(config: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set ``values`` onto the dataclass ``config`` in place, validating names and types."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    for name, value in values.items():
        where = f"{prefix}{name}"
        if name not in hints:
            raise ConfigError(f"unknown config key {where!r}; valid keys: {', '.join(names)}")
        current = getattr(config, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table of {type(current).__name__} keys")
            merge_into(current, value, prefix=f"{where}.")
            continue
        value = _check_type(value, hints[name], where)
        if where in CHOICES and value is not None and value not in CHOICES[where]:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(CHOICES[where])}")
        setattr(config, name, value)


def build_config(recipe: str | None = "original", config_file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Recipe, then config file, then overrides (a nested dict like a TOML file)."""
    config = TrainConfig()
    if recipe:
        merge_into(config, read_toml(recipe_path(recipe)))
    if config_file:
        merge_into(config, read_toml(config_file))
    if overrides:
        merge_into(config, overrides)
    validate(config)
    return todays_names(config)


# Each setting's valid range, and how a refusal says it (a float's must also be finite).
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: math.isfinite(v) and v > 0, "positive"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, ">= 0"),
    "gamma": (lambda v: math.isfinite(v) and v > 0, "> 0 (the lr factor at milestones)"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "ema_decay": (lambda v: 0 <= v < 1, "in [0, 1) (0: no EMA)"),
    "threads": (lambda v: v >= 0, ">= 0 (0: one per idle core)"),
    "save_every": (lambda v: math.isfinite(v) and v >= 0, "minutes >= 0 (0: at epoch ends only)"),
    "data.cutout": (lambda v: 0 <= v < 32, "a square side in [0, 32) pixels (0: off)"),
    "data.val_split": (lambda v: v >= 0, ">= 0 (0: off)"),
    "data.train_subset": (lambda v: v >= 0, ">= 0 (0: off)"),
}


def validate(config: TrainConfig) -> None:
    """Range and cross-field checks, before anything is read or created."""
    from resnet_cifar.models.registry import check_options

    for name in (k for k, f in setting_fields().items() if f.metadata["minimum"] == 1):
        if getattr(config, name) < 1:
            raise ConfigError(f"{key(name)} must be at least 1, got {getattr(config, name)}")
    for name, (fits, what) in RANGES.items():
        value = getattr(config.data if name.startswith("data.") else config,
                        name.removeprefix("data."))
        if not fits(value):
            raise ConfigError(f"{key(name)} must be {what}, got {value}")
    if config.warmup_epochs < 0 or config.warmup_epochs >= config.epochs:
        raise ConfigError(f"`warmup_epochs` (--warmup-epochs) must be in [0, `epochs` "
                          f"(--epochs)), got {config.warmup_epochs} for {config.epochs} epochs: "
                          "use fewer warm-up epochs or more epochs")
    if config.data.flip != "random" and config.data.augment == "none":
        raise ConfigError(f"`data.flip` (--flip) {config.data.flip!r} needs `data.augment` "
                          "(--augment) 'standard' (augment 'none' flips nothing); leave the flip "
                          "out or use the standard augmentation")
    if config.out is not None and not config.out.strip():  # "" would be the current folder
        raise ConfigError(f"`out` (--out) is empty ({config.out!r}): give the run's folder, or "
                          "leave it out for one under runs/")
    check_run_name(config.name)
    check_options(config.model, config.model_kwargs)  # an unknown model name raises first
    milestones = config.milestones
    steps_up = all(a < b for a, b in zip(milestones, milestones[1:], strict=False))
    if not steps_up or any(m < 0 for m in milestones):
        raise ConfigError(f"`milestones` (--milestones) must be strictly increasing epoch "
                          f"indices >= 0, got {milestones}")


def check_run_name(name: str | None) -> None:
    """A run name becomes one folder under runs/: no separators, no "..", nothing hidden."""
    if name is None:
        return
    if not name or "/" in name or "\\" in name or name.startswith(".") or Path(name).is_absolute():
        raise ConfigError(f"run name {name!r} must be a plain folder name (no '/', no leading "
                          "'.'); to choose the whole path, use `out` (--out) DIR instead")


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved with a run (config.toml or a checkpoint)."""
    config = TrainConfig()
    merge_into(config, values)
    return todays_names(config)


def todays_names(config: TrainConfig) -> TrainConfig:
    """``config`` with its model options under today's names (gru_variant "seed" is
    "original"), so that a run records, and resumes against, one name."""
    from resnet_cifar.models.registry import resolve_options

    config.model_kwargs = resolve_options(config.model, config.model_kwargs)
    return config
