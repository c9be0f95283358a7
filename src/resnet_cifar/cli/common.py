"""Argument groups shared by several commands, and their translation into library objects."""

from __future__ import annotations

import argparse
import json
from typing import Any

from resnet_cifar.config import DataConfig
from resnet_cifar.errors import ConfigError


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """A count that must be at least 1 (epochs, batch sizes, images...)."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A count where 0 means "none" or "the default" (--val-split 0, --threads 0...)."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def thread_count(text: str) -> int:
    """--threads: 0 (one per usable core) up to the usable cores. More only oversubscribes:
    threads that wait for a core spin, and throughput collapses."""
    from resnet_cifar.engine.runtime import physical_cores

    value = nonnegative_int(text)
    cores = physical_cores()
    if value > cores:
        raise argparse.ArgumentTypeError(
            f"{value} threads on {cores} usable core(s) would oversubscribe them; "
            f"use 0 (one per core) to {cores}"
        )
    return value


def int_list(what: str = "epoch indices", example: str = "80,120"):
    """An argparse type for a comma-separated list of whole numbers >= 0, named ``what`` in its
    message. Empty items (``1,,2``) are refused rather than dropped."""

    def parse(text: str) -> list[int]:
        parts = [part.strip() for part in text.split(",")]
        try:
            if not all(parts):
                raise ValueError
            values = [int(part) for part in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what} like {example}, got {text!r}"
            ) from None
        if any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected {what} >= 0, got {text!r}")
        return values

    return parse


def add_data_args(parser: argparse.ArgumentParser, *, training: bool = True) -> None:
    """--data, --cache-dir, ... Defaults are SUPPRESSed so that only given flags override."""
    g = parser.add_argument_group("data")
    s = argparse.SUPPRESS
    g.add_argument(
        "--data",
        metavar="PATH",
        default=s,
        help="CIFAR in any layout: python/binary tarball or folder, image-folder tree "
        "or its .tar/.tar.gz/.zip (default: $RESNET_CIFAR_DATA, the cache, "
        "then download)",
    )
    g.add_argument(
        "--dataset",
        choices=("cifar10", "cifar100"),
        default=s,
        help="what to download when no --data is given (default cifar10)",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=s,
        help="decoded-array cache (default $RESNET_CIFAR_CACHE or ~/.cache/resnet_cifar)",
    )
    g.add_argument(
        "--coarse", action="store_true", default=s, help="CIFAR-100: use the 20 coarse labels"
    )
    g.add_argument(
        "--resize",
        action="store_true",
        default=s,
        help="resize images that are not 32x32 (bicubic) instead of refusing them",
    )
    g.add_argument(
        "--val-split",
        type=nonnegative_int,
        metavar="N",
        default=s,
        help="hold out N training images (stratified) for validation; "
        "without it validation is the test set",
    )
    g.add_argument(
        "--allow-other-data",
        action="store_true",
        default=s,
        help="use data whose content differs from the fingerprint the run (or config) recorded; "
        "every result then says so",
    )
    g.add_argument(
        "--normalize",
        choices=("dataset", "half", "imagenet"),
        default=s,
        help="dataset: the training split's mean/std (default); half: 0.5 as in the "
        "original notebooks; imagenet: ImageNet's statistics",
    )
    if training:
        g.add_argument(
            "--train-subset",
            type=nonnegative_int,
            metavar="N",
            default=s,
            help="train on a stratified subset of N images (quick experiments)",
        )
        g.add_argument(
            "--augment",
            choices=("standard", "none"),
            default=s,
            help="standard: 4-px padded random crop + flip (default); none: the original notebooks",
        )


DATA_FLAGS = {
    "data": "path",
    "dataset": "dataset",
    "cache_dir": "cache_dir",
    "coarse": "coarse",
    "resize": "resize",
    "val_split": "val_split",
    "train_subset": "train_subset",
    "normalize": "normalize",
    "augment": "augment",
    "allow_other_data": "allow_other_data",
}


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The data flags the user gave, as a [data] table. $RESNET_CIFAR_DATA is not read here: the
    data layer reads it, only where neither a flag nor a recorded config names a path."""
    return {key: getattr(args, flag) for flag, key in DATA_FLAGS.items() if hasattr(args, flag)}


def data_config(args: argparse.Namespace) -> DataConfig:
    from resnet_cifar.config import merge_into

    config = DataConfig()
    merge_into(config, data_overrides(args), prefix="data.")
    return config


def run_data_config(args: argparse.Namespace, run_config: dict[str, Any] | None) -> DataConfig:
    """Data for a command on a trained model: the options its run recorded, overridden by the
    flags given now; $RESNET_CIFAR_DATA only when neither names a path."""
    from resnet_cifar.engine.splits import data_for_run

    return data_for_run(run_config, data_overrides(args))


def add_foreign_model_args(parser: argparse.ArgumentParser) -> None:
    """For checkpoints that do not say what they are (plain state_dicts, other repositories)."""
    g = parser.add_argument_group("foreign checkpoints")
    g.add_argument("--model", metavar="NAME", help="architecture of a plain state_dict")
    g.add_argument(
        "--shortcut",
        choices=("A", "B"),
        help="ResNet shortcut of a foreign checkpoint (A: parameter-free, B: 1x1 conv)",
    )


def foreign_model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"shortcut": args.shortcut} if getattr(args, "shortcut", None) else {}


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=thread_count, default=0,
                        help="CPU threads; 0 (default): one per core other processes leave idle")


def use_threads(args: argparse.Namespace) -> None:
    """Apply --threads (see add_threads_arg) before the command's work starts."""
    from resnet_cifar.engine.runtime import configure_inference_threads

    configure_inference_threads(args.threads)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
