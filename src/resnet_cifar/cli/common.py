"""Argument groups shared by several commands, and their translation into library objects."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any

from resnet_cifar.config import FLAG_OF, DataConfig, TrainConfig, field_flag, setting_fields
from resnet_cifar.engine.rundir import strict_json
from resnet_cifar.errors import UserError


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def nonnegative_int(text: str) -> int:
    return _whole_number(text, 0)


def thread_count(text: str) -> int:
    """--threads: 0 (one per usable core) up to the usable cores; more would spin, not work."""
    from resnet_cifar.engine.runtime import physical_cores

    value, cores = nonnegative_int(text), physical_cores()
    if value > cores:
        raise argparse.ArgumentTypeError(f"{value} threads on {cores} usable core(s) would "
                                         f"oversubscribe them; use 0 (one per core) to {cores}")
    return value


def int_list(what: str = "epoch indices", example: str = "80,120"):
    """An argparse type: comma-separated whole numbers >= 0 (``what`` in its messages); an empty
    item (``1,,2``) is refused, not dropped."""

    def parse(text: str) -> list[int]:
        parts = [part.strip() for part in text.split(",")]
        try:
            if not all(parts):
                raise ValueError
            values = [int(part) for part in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what} like {example}, got {text!r}") from None
        if any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected {what} >= 0, got {text!r}")
        return values

    return parse


def minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes like 10 or 0.5, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected minutes >= 0 (0: off), got {text!r}")
    return value


def setting_type(key: str, f: dataclasses.Field, annotation: Any) -> dict[str, Any]:
    """The argparse type (or action) and choices of config field ``f``."""
    meta = f.metadata
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction if meta["negatable"] else "store_true"}
    if key in ("threads", "save_every"):  # checked more than the field's type says
        return {"type": thread_count if key == "threads" else minutes}
    if annotation is int:
        return {"type": {1: positive_int, 0: nonnegative_int}.get(meta["minimum"], int)}
    if annotation is float:
        return {"type": float}
    if typing.get_origin(annotation) is list:
        return {"type": int_list()}
    return {"choices": meta["choices"]} if meta["choices"] else {}


type_hints = functools.cache(typing.get_type_hints)  # slow: resolved once, not per flag


def add_setting(group, key: str) -> None:
    """The flag of config key ``key`` (``lr``, ``data.val_split``), all read from the field. Its
    default is SUPPRESSed: only the flags given override the recipe, config file or run."""
    f = setting_fields()[key]
    owner = DataConfig if key.startswith("data.") else TrainConfig
    annotation = type_hints(owner)[f.name]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # str | None: a str
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    extra = {"metavar": f.metadata["metavar"]} if f.metadata["metavar"] else {}
    group.add_argument(FLAG_OF[key], default=argparse.SUPPRESS,
                       help=f.metadata["help"].replace("%", "%%"),
                       **setting_type(key, f, annotation), **extra)


def data_settings(training: bool = True) -> list[str]:
    """The data options a command offers: all for train, less the train-only ones elsewhere."""
    return in_help_order(key for key, f in setting_fields().items()
                         if key.startswith("data.") and field_flag(f)
                         and (training or not f.metadata["train_only"]))


def in_help_order(keys) -> list[str]:
    """``keys`` as --help lists them: by their field's help_order, then in field order."""
    fields = setting_fields()
    order = list(fields)
    return sorted(keys, key=lambda k: (fields[k].metadata["help_order"], order.index(k)))


def add_data_args(parser: argparse.ArgumentParser, *, training: bool = True) -> None:
    group = parser.add_argument_group("data")
    for key in data_settings(training):
        add_setting(group, key)


# flag dest -> DataConfig key (the dest of --data is "data"; of the others, the key itself)
DATA_FLAGS = {FLAG_OF[key][2:].replace("-", "_"): key.removeprefix("data.")
              for key in data_settings()}


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The data flags given, as a [data] table ($RESNET_CIFAR_DATA is the data layer's)."""
    return {key: getattr(args, flag) for flag, key in DATA_FLAGS.items() if hasattr(args, flag)}


def data_config(args: argparse.Namespace) -> DataConfig:
    from resnet_cifar.config import merge_into

    config = DataConfig()
    merge_into(config, data_overrides(args), prefix="data.")
    return config


def run_data_config(args: argparse.Namespace, run_config: dict[str, Any] | None) -> DataConfig:
    """Data for a command on a trained model: its run's options, overridden by the flags."""
    from resnet_cifar.engine.inference import data_for_run

    return data_for_run(run_config, data_overrides(args))


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    """A checkpoint file, or --pretrained TAG|DIR; --model and --shortcut for foreign files."""
    from resnet_cifar.models.resnet import SHORTCUTS

    parser.add_argument("checkpoint", nargs="?", help="last.pt / best.pt / model.pth / a foreign "
                                                      "checkpoint (or --pretrained)")
    parser.add_argument("--pretrained", metavar="TAG|DIR",
                        help="published weights (see `resnet-cifar weights`) or a weights folder "
                             "(`weights --save`) instead of a checkpoint file")
    g = parser.add_argument_group("foreign checkpoints")
    g.add_argument("--model", metavar="NAME", help="architecture of a plain state_dict")
    g.add_argument("--shortcut", choices=SHORTCUTS,
                   help="ResNet shortcut of a foreign checkpoint (A: parameter-free, B: 1x1 conv)")


def checkpoint_from_args(args: argparse.Namespace):
    """The Checkpoint that the checkpoint argument or --pretrained names (exactly one)."""
    from resnet_cifar.engine.checkpoint import load_checkpoint, pretrained_checkpoint

    if (args.checkpoint is None) == (args.pretrained is None):
        raise UserError("give a checkpoint file or --pretrained TAG|DIR" +
                        (", not both" if args.checkpoint else ""))
    if args.pretrained is not None:
        if args.model or args.shortcut:
            raise UserError("--model and --shortcut describe a foreign checkpoint file; "
                            "--pretrained weights say what they are")
        return pretrained_checkpoint(args.pretrained)
    return load_checkpoint(args.checkpoint, args.model,
                           {"shortcut": args.shortcut} if args.shortcut else {})


def output_beside(args: argparse.Namespace, name: str) -> Path:
    """Where a command writes by default: beside the checkpoint file, or for --pretrained
    weights (inside the package) in the current folder, named after the tag or folder."""
    if args.pretrained:
        return Path(f"{Path(args.pretrained).name}-{name}")
    return Path(args.checkpoint).resolve().parent / name


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=thread_count, default=0,
                        help="CPU threads; 0 (default): one per core other processes leave idle")


def use_threads(args: argparse.Namespace) -> None:
    """Apply --threads before the command's work starts."""
    from resnet_cifar.engine.runtime import configure_inference_threads

    configure_inference_threads(args.threads)


def print_json(value: Any) -> None:
    print(strict_json(value, indent=2))
