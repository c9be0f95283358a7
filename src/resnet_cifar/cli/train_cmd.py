"""resnet-cifar train: the original experiment by default; every recipe value is a flag."""

from __future__ import annotations

import argparse
import sys

from resnet_cifar.cli.common import (
    add_data_args,
    data_overrides,
    int_list,
    nonnegative_int,
    positive_int,
    thread_count,
)

# flag dest -> TrainConfig key (data flags are handled by add_data_args)
TRAIN_FLAGS = (
    "model",
    "epochs",
    "batch_size",
    "eval_batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "schedule",
    "milestones",
    "gamma",
    "warmup_epochs",
    "label_smoothing",
    "lr_scaling",
    "sync_bn",
    "seed",
    "deterministic",
    "device",
    "threads",
    "channels_last",
    "compile",
    "amp",
    "out",
    "name",
    "tensorboard",
)


def add_parser(sub) -> None:
    s = argparse.SUPPRESS
    p = sub.add_parser(
        "train",
        help="train a model (default: the original ResNet-20 recipe)",
        description="Train a model. Precedence: --recipe, then --config FILE, then flags.",
    )
    p.add_argument("--recipe", default="seed", help="shipped recipe (configs/<name>.toml)")
    p.add_argument("--config", metavar="FILE", help="TOML config; keys as in config.toml")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR|CHECKPOINT",
        help="continue a run where it stopped, with the same schedule",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tqdm bar within epochs (default: when stdout is a terminal)",
    )
    m = p.add_argument_group("model")
    m.add_argument("--model", metavar="NAME", default=s, help="see `resnet-cifar models`")
    m.add_argument("--shortcut", choices=("A", "B"), default=s, help="ResNet shortcut option")
    m.add_argument(
        "--model-opt",
        action="append",
        metavar="KEY=VALUE",
        default=s,
        help="other model option, e.g. gru_variant=textbook (repeatable)",
    )
    o = p.add_argument_group("optimization")
    o.add_argument("--epochs", type=positive_int, default=s)
    o.add_argument("--batch-size", type=positive_int, default=s, help="per process")
    o.add_argument("--eval-batch-size", type=positive_int, default=s)
    o.add_argument("--lr", type=float, default=s)
    o.add_argument("--momentum", type=float, default=s)
    o.add_argument("--weight-decay", type=float, default=s)
    o.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=s)
    o.add_argument("--schedule", choices=("step", "cosine", "onecycle"), default=s)
    o.add_argument(
        "--milestones",
        type=int_list("epoch indices", "80,120"),
        metavar="80[,120]",
        default=s,
        help="0-based epochs where lr is multiplied by --gamma (step schedule)",
    )
    o.add_argument("--gamma", type=float, default=s)
    o.add_argument("--warmup-epochs", type=nonnegative_int, default=s)
    o.add_argument("--label-smoothing", type=float, default=s)
    o.add_argument(
        "--lr-scaling",
        choices=("none", "linear"),
        default=s,
        help="linear: scale lr by the number of DDP ranks (global batch / batch)",
    )
    r = p.add_argument_group("runtime")
    r.add_argument("--seed", type=int, default=s)
    r.add_argument(
        "--deterministic",
        action="store_true",
        default=s,
        help="deterministic kernels (bitwise-reproducible on CPU)",
    )
    r.add_argument("--device", default=s, help="auto | cpu | cuda | cuda:N | mps")
    r.add_argument("--threads", type=thread_count, default=s,
                   help="intra-op threads; 0 (default): one per core that other processes leave "
                   "idle, chosen again each epoch")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=s,
                   help="NHWC activations (default: on; faster on CPU and with cuDNN)")
    r.add_argument("--compile", action="store_true", default=s, help="torch.compile the model")
    r.add_argument("--amp", choices=("none", "bf16", "fp16"), default=s, help="CUDA autocast")
    r.add_argument("--sync-bn", action="store_true", default=s, help="DDP: SyncBatchNorm")
    r.add_argument("--tensorboard", action="store_true", default=s)
    out = p.add_argument_group("output")
    out.add_argument(
        "--out",
        metavar="DIR",
        default=s,
        help="run directory (default runs/<name>-<YYYYmmdd-HHMMSS>)",
    )
    out.add_argument("--name", default=s, help="run name (default: the model name)")
    add_data_args(p)
    p.set_defaults(func=run)


def parse_model_opts(pairs: list[str]) -> dict:
    from resnet_cifar.errors import ConfigError

    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--model-opt {pair!r}: expected KEY=VALUE")
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
    data = data_overrides(args)
    if data:
        overrides["data"] = data
    return overrides


def run(args: argparse.Namespace) -> int:
    from resnet_cifar.config import build_config
    from resnet_cifar.engine.interrupt import StopRequested
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
        print(str(stop), file=sys.stderr)
        return stop.exit_code
    return 0
