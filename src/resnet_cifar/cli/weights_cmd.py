"""resnet-cifar weights: the published weights, and (--add) publishing a finished run's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from resnet_cifar.cli.common import add_data_args, data_overrides, print_json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "weights", help="list the published weights (tag, accuracy, params, recipe)",
        description="Every published weight with its test accuracy on the data it was evaluated "
                    "on, parameters, MMACs, size and recipe. Use a tag with --pretrained (eval, "
                    "show, predict, export) or create_model(name, pretrained=TAG).")
    p.add_argument("--model", metavar="NAME", help="only this model's weights")
    p.add_argument("--json", action="store_true", help="print every entry's full metadata")
    p.add_argument("--save", nargs=2, metavar=("TAG", "DIR"),
                   help="write weights (a tag, a weights folder or a checkpoint file) as a "
                        "folder: model.safetensors, config.json and a model card (README.md); "
                        "a DIR ending in .pth gets a plain state_dict, as the original code "
                        "loads")
    add = p.add_argument_group("publishing a finished run (maintainers)")
    add.add_argument("--add", metavar="RUN_DIR",
                     help="publish this finished run's model.pth, evaluated on the test split")
    add.add_argument("--tag", help="its tag: <model>.<recipe><epochs>_<data> in lowercase "
                                   "letters, digits and underscores, e.g. "
                                   "resnet20.original150_jpeg")
    add.add_argument("--provenance", help="the data, stated plainly (required with --add)")
    add.add_argument("--default", action="store_true",
                     help="make it the model's pretrained=True weights")
    add.add_argument("--replace", action="store_true", help="replace a published tag")
    add_data_args(p, training=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.add:
        return run_add(args)
    if args.save:
        return run_save(*args.save)
    from resnet_cifar.models import get_model_entry
    from resnet_cifar.models.pretrained import list_weights

    if args.model:
        get_model_entry(args.model)  # an unknown name is an error listing the models, not "none"
    entries = list_weights(args.model)
    if args.json:
        print_json({e.tag: e.meta for e in entries})
        return 0
    if not entries:
        print("no published weights" + (f" for {args.model}" if args.model else ""))
        return 0
    rows = [table_row(e) for e in entries]
    header = ("tag", "test %", "params", "MMACs", "MB", "train min", "recipe")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) if i in (0, 6) else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    print("\ntrain min: training minutes (steps only) on the device and threads the entry records "
          "(--json: training)")
    print("\n".join(provenance_lines(entries)))
    return 0


def provenance_lines(entries) -> list[str]:
    """The data each entry was trained on, once per distinct statement, not once per tag."""
    tags_of: dict[str, list[str]] = {}
    for e in entries:
        tags_of.setdefault(e.meta["data"]["provenance"], []).append(e.tag)
    if len(tags_of) == 1 and len(entries) > 1:
        return [f"data, every entry: {next(iter(tags_of))}"]
    return [f"{', '.join(tags)}: {text}" for text, tags in sorted(tags_of.items())]


def table_row(entry) -> tuple[Any, ...]:
    meta = entry.meta
    config = meta.get("config") or {}
    minutes = (meta.get("training") or {}).get("wall_minutes")
    recipe = (f"{config.get('epochs')} epochs, batch {config.get('batch_size')}, lr "
              f"{config.get('lr')} {config.get('schedule')}")
    return (tag_label(entry),
            f"{100 * entry.test_acc:.2f}", f"{meta['params']:,}", f"{meta['macs'] / 1e6:.1f}",
            f"{meta['size_bytes'] / 1e6:.2f}", "–" if minutes is None else f"{minutes:.0f}", recipe)


def tag_label(entry) -> str:
    """"resnet20.original150_jpeg (default; alias: resnet20.seed150_jpeg)"."""
    notes = (["default"] if entry.default else []) + [f"alias: {a}" for a in entry.aliases]
    return entry.tag + (f" ({'; '.join(notes)})" if notes else "")


def run_save(source: str, dest: str) -> int:
    """weights --save: the weights ``source`` names as a weights folder, or as a plain
    state_dict where ``dest`` ends in .pth."""
    from resnet_cifar.engine.inference import load_named
    from resnet_cifar.models.hub import save_pretrained

    model = load_named(source, None, None).build_model()
    if dest.endswith(".pth"):
        from resnet_cifar.atomic import check_target
        from resnet_cifar.engine.checkpoint import atomic_save

        atomic_save(model.state_dict(), check_target(dest, "the state_dict", "DIR"))
        print(f"wrote {dest}: a plain state_dict (torch.load it, then load_state_dict)")
        return 0
    folder = save_pretrained(model, dest)
    record = model.pretrained_cfg
    print(f"wrote {folder}/: model.safetensors, config.json, README.md"
          f" ({record.get('tag') or record['architecture']})")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from resnet_cifar.errors import UserError
    from resnet_cifar.publish import publish_run

    if not args.tag or not args.provenance:
        raise UserError("--add needs --tag and --provenance")
    entry = publish_run(args.add, args.tag, provenance=args.provenance,
                        command=train_command(args.add),
                        data_flags=data_overrides(args),
                        default=args.default, replace=args.replace)
    metrics = entry.meta["metrics"]
    print(f"published {entry.tag}: {entry.path} (sha256 {entry.meta['sha256'][:12]}…), test "
          f"accuracy {100 * metrics['test_acc']:.2f}% ({metrics['correct']}/{metrics['total']})")
    return 0


def train_command(run_dir: str) -> str:
    """The run's recipe as a train command: every setting that differs from the defaults (the
    data by its file's name; other paths, threads and devices left out)."""
    from resnet_cifar.config import FLAG_OF, TrainConfig, to_dict
    from resnet_cifar.config_files import read_toml
    from resnet_cifar.engine.recipes import flatten
    from resnet_cifar.models.pretrained import shipped_config

    config = flatten(shipped_config(read_toml(Path(run_dir) / "config.toml")))
    defaults = flatten(to_dict(TrainConfig()))
    skip = {"out", "name", "threads", "device", "tensorboard", "data.cache_dir",
            "data.fingerprint", "data.allow_other_data"}
    words = ["resnet-cifar", "train", "--model", str(config.get("model"))]
    for key, value in config.items():
        if key in skip or key == "model" or value == defaults.get(key):
            continue
        if key.startswith("model_kwargs."):
            words += ["--model-opt", f"{key.split('.', 1)[1]}={value}"]
            continue
        if (flag := FLAG_OF.get(key)) is None:
            continue
        if isinstance(value, bool):
            words.append(flag if value else f"{flag[:2]}no-{flag[2:]}")  # --no-channels-last
        elif isinstance(value, list):
            words += [flag, ",".join(map(str, value))]
        else:
            words += [flag, str(value)]
    return " ".join(words)
