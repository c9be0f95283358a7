"""resnet-cifar train: the original experiment by default; every recipe value is a flag."""

from __future__ import annotations

import argparse
import sys

from resnet_cifar.cli.common import add_data_args, add_setting, data_overrides, in_help_order
from resnet_cifar.config import field_flag, setting_fields

# the TrainConfig keys with a flag of their own, whose dest is the key: a new field is a new flag
TRAIN_FLAGS = tuple(key for key, f in setting_fields().items() if "." not in key and field_flag(f))
GROUPS = ("model", "optimization", "runtime", "output")  # the --help sections, in order


def add_parser(sub) -> None:
    from resnet_cifar.models.resnet import SHORTCUTS

    p = sub.add_parser(
        "train", help="train a model (default: the original ResNet-20 recipe)",
        description="Train a model. Precedence: --recipe, then --config FILE, then flags.")
    p.add_argument("--recipe", default="original", help="shipped recipe (configs/<name>.toml)")
    p.add_argument("--config", metavar="FILE", help="TOML config; keys as in config.toml")
    p.add_argument("--resume", metavar="RUN_DIR|CHECKPOINT",
                   help="continue a run where it stopped, with the same schedule")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="tqdm bar within epochs (default: when stdout is a terminal)")
    for name in GROUPS:
        group = p.add_argument_group(name)
        for key in in_help_order(TRAIN_FLAGS):
            if setting_fields()[key].metadata["group"] == name:
                add_setting(group, key)
        if name == "model":  # model options: the [model_kwargs] table, which each model checks
            group.add_argument("--shortcut", choices=SHORTCUTS, default=argparse.SUPPRESS,
                               help="ResNet shortcut option")
            group.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                               default=argparse.SUPPRESS,
                               help="other model option, e.g. gru_variant=textbook (repeatable)")
    add_data_args(p)
    p.set_defaults(func=run)


def parse_model_opts(pairs: list[str]) -> dict:
    """KEY=VALUE pairs -> model options; a VALUE that reads as an int or float is one."""
    from resnet_cifar.errors import ConfigError

    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"`model_kwargs` (--model-opt) {pair!r}: expected KEY=VALUE")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        opts[key.strip()] = value
    return opts


def overrides_from_args(args: argparse.Namespace) -> dict:
    overrides = {k: getattr(args, k) for k in TRAIN_FLAGS if hasattr(args, k)}
    model_kwargs = parse_model_opts(getattr(args, "model_opt", []))
    if hasattr(args, "shortcut"):
        model_kwargs["shortcut"] = args.shortcut
    if model_kwargs:
        overrides["model_kwargs"] = model_kwargs
    if data := data_overrides(args):
        overrides["data"] = data
    return overrides


def run(args: argparse.Namespace) -> int:
    from resnet_cifar.config import build_config
    from resnet_cifar.engine.runtime import StopRequested
    from resnet_cifar.engine.train import train

    overrides = overrides_from_args(args)
    try:
        if args.resume:
            train(resume=args.resume, overrides=overrides, progress=args.progress)
        else:
            if "path" in overrides.get("data", {}):
                # --data chooses this new run's data: a fingerprint in --config named the data
                # of the run it came from, and this run records its own
                overrides["data"].setdefault("fingerprint", None)
            config = build_config(args.recipe, args.config, overrides)
            train(config, overwrite=args.overwrite, progress=args.progress)
    except StopRequested as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    return 0
