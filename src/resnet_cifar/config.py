"""Run configuration: dataclasses with a commented default for every field.

Precedence, lowest to highest: the recipe (``configs/<recipe>.toml``), a ``--config FILE``, then
flags. A TOML file mirrors the dataclasses: top-level keys are TrainConfig fields and the ``[data]``
and ``[model_kwargs]`` tables hold the data options and model options. Unknown keys and values of
the wrong type are refused with the valid names.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from resnet_cifar.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class DataConfig:
    """Where the images come from and how they are fed. Shared by train, eval, show, data..."""

    # any CIFAR layout (tarball, folder, binary, image folders); None: cache, then download
    path: str | None = None
    dataset: str = "cifar10"  # what to download when no path is given: cifar10 | cifar100
    # decoded-array cache; None: $RESNET_CIFAR_CACHE or ~/.cache/resnet_cifar
    cache_dir: str | None = None
    coarse: bool = False  # CIFAR-100: the 20 coarse labels instead of the 100 fine ones
    resize: bool = False  # resize images that are not 32x32 instead of refusing them
    # hold out this many training images (stratified) for validation; 0: validate on test
    val_split: int = 0
    train_subset: int = 0  # train on a stratified subset of this many images; 0: all
    # dataset (train-split mean/std) | half (0.5, the notebooks') | imagenet
    normalize: str = "dataset"
    augment: str = "standard"  # standard (4-px pad crop + flip) | none (the original notebooks)
    # content fingerprint (sha256 of the decoded images and labels) the data must have; a run
    # records its own, so a rerun or a later eval is refused other data. None: not checked
    fingerprint: str | None = None
    # use the data even though its fingerprint differs (every output then says so)
    allow_other_data: bool = False


@dataclass
class TrainConfig:
    """One training run. Defaults are the original experiment (configs/seed.toml)."""

    model: str = "resnet20"  # any name from `resnet-cifar models`
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {shortcut = "A"}
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 150  # passes over the training split
    batch_size: int = 64  # per process (per rank under torchrun)
    eval_batch_size: int = 1000  # evaluation is inference only: large batches are faster
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "step"  # step | cosine | onecycle
    milestones: list[int] = field(default_factory=lambda: [80])  # 0-based epochs where lr *= gamma
    gamma: float = 0.1
    warmup_epochs: int = 0  # linear warm-up from lr/10, before the schedule
    label_smoothing: float = 0.0
    lr_scaling: str = "none"  # none | linear (scale lr by global batch / batch_size under DDP)
    sync_bn: bool = False  # DDP: convert BatchNorm to SyncBatchNorm
    seed: int = 0
    deterministic: bool = False  # deterministic kernels: bitwise-reproducible runs on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # torch intra-op threads; 0: one per core other processes leave idle, chosen again each
    # epoch (one per core for a deterministic run)
    threads: int = 0
    channels_last: bool = True  # NHWC activations: 1.23x faster training on CPU (benchmarks.md)
    compile: bool = False  # torch.compile the model (compile time reported separately)
    amp: str = "none"  # none | bf16 | fp16 (CUDA autocast; BatchNorm stays fp32)
    out: str | None = None  # run directory; None: runs/<name>-<YYYYmmdd-HHMMSS>
    name: str | None = None  # run name; None: the model name
    tensorboard: bool = False  # also log to TensorBoard (needs the tb extra)


SCHEDULES = ("step", "cosine", "onecycle")
CHOICES: dict[str, tuple[str, ...]] = {
    "schedule": SCHEDULES,
    "lr_scaling": ("none", "linear"),
    "amp": ("none", "bf16", "fp16"),
    "data.dataset": ("cifar10", "cifar100"),
    "data.normalize": ("dataset", "half", "imagenet"),
    "data.augment": ("standard", "none"),
}


def recipe_path(name: str) -> Path:
    """The shipped recipe ``name`` (configs/<name>.toml), or a ConfigError listing them."""
    folder = resources.files("resnet_cifar") / "configs"
    path = Path(str(folder / f"{name}.toml"))
    if not path.is_file():
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
        raise ConfigError(f"unknown recipe {name!r}; shipped recipes: {', '.join(known)}")
    return path


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        hint = " (the run's config is its config.toml)" if (Path(path) / "config.toml").is_file() \
            else ""
        raise ConfigError(f"config file {path} is a directory; give a .toml file{hint}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text; give a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` if it fits ``annotation`` (ints are accepted for floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
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
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in hints:
            raise ConfigError(f"unknown config key {where!r}; valid keys: {', '.join(names)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table of {type(current).__name__} keys")
            merge_into(current, value, prefix=f"{where}.")
            continue
        value = _check_type(value, hints[key], where)
        if where in CHOICES and value not in CHOICES[where]:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(CHOICES[where])}")
        setattr(config, key, value)


def build_config(
    recipe: str | None = "seed",
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Recipe, then config file, then overrides (a nested dict like a TOML file)."""
    config = TrainConfig()
    if recipe:
        merge_into(config, read_toml(recipe_path(recipe)))
    if config_file:
        merge_into(config, read_toml(config_file))
    if overrides:
        merge_into(config, overrides)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Cross-field and range checks a type check alone cannot make, run before anything is read
    or created: a bad value is refused at once, never found an epoch (or a directory) later."""
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("lr", "momentum", "weight_decay", "gamma", "label_smoothing"):
        if not math.isfinite(getattr(config, name)):
            raise ConfigError(f"{name} must be a finite number, got {getattr(config, name)}")
    if config.lr <= 0:
        raise ConfigError(f"lr must be positive, got {config.lr}")
    if not 0 <= config.momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {config.momentum}")
    if config.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {config.weight_decay}")
    if config.gamma <= 0:
        raise ConfigError(f"gamma (the lr factor at milestones) must be > 0, got {config.gamma}")
    if config.warmup_epochs < 0 or config.warmup_epochs >= config.epochs:
        raise ConfigError(
            f"warmup_epochs must be in [0, epochs), got {config.warmup_epochs} "
            f"for {config.epochs} epochs"
        )
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.data.val_split < 0 or config.data.train_subset < 0:
        raise ConfigError("val_split and train_subset must be >= 0")
    if config.threads < 0:
        raise ConfigError(f"threads must be >= 0 (0: one per core), got {config.threads}")
    check_run_name(config.name)
    check_model(config.model, config.model_kwargs)
    milestones = config.milestones
    steps_up = all(a < b for a, b in zip(milestones, milestones[1:], strict=False))
    if not steps_up or any(m < 0 for m in milestones):
        raise ConfigError(
            f"milestones must be strictly increasing epoch indices >= 0, got {milestones}"
        )


def check_run_name(name: str | None) -> None:
    """A run name becomes one folder under runs/: no separators, no "..", nothing hidden."""
    if name is None:
        return
    if not name or "/" in name or "\\" in name or name.startswith(".") or Path(name).is_absolute():
        raise ConfigError(
            f"run name {name!r} must be a plain folder name (no '/', no leading '.'); "
            "to choose the whole path, use out (--out DIR) instead"
        )


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved with a run (config.toml or a checkpoint)."""
    config = TrainConfig()
    merge_into(config, values)
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: TrainConfig) -> str:
    """The config as TOML that ``build_config(recipe=None, config_file=...)`` reads back.

    ``None`` has no TOML spelling, so unset optional fields are left out (they default to None).
    """
    values = to_dict(config)
    tables = {k: values.pop(k) for k in ("data", "model_kwargs")}
    lines = [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    for table, content in tables.items():
        lines += ["", f"[{table}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in content.items() if v is not None]
    return "\n".join(lines) + "\n"


def check_model(name: str, kwargs: dict[str, Any]) -> None:
    """Fail before any data is read if the model name or one of its options is unknown."""
    from resnet_cifar.models.registry import check_options

    check_options(name, kwargs)  # an unknown name raises first, listing the valid ones
