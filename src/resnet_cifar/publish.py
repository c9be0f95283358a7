"""A finished run's final weights -> published safetensors, sha256 and metadata in the registry
(models/pretrained.py), rewritten atomically. Test metrics come through the path ``eval
--pretrained`` takes, so that it reproduces them exactly; a replaced tag keeps its aliases."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from resnet_cifar.atomic import atomic_path, atomic_write_text
from resnet_cifar.engine.checkpoint import Checkpoint, load_checkpoint
from resnet_cifar.engine.evaluate import evaluate_split
from resnet_cifar.engine.inference import InferenceContext, data_for_run
from resnet_cifar.engine.recipes import minutes_by_epoch
from resnet_cifar.engine.rundir import LAST, WEIGHTS, read_run
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import count_macs, count_parameters, model_options, resolve_options
from resnet_cifar.models.pretrained import (
    REGISTRY,
    WeightsEntry,
    canonical_tag,
    name_only,
    read_registry,
    safetensors_bytes,
    sha256_of,
    shipped_config,
    weights_dir,
)

# <model>.<recipe>: the tag names the weights' file, so nothing in it may leave the folder
TAG = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")


def publish_run(run_dir: str | Path, tag: str, *, provenance: str, command: str | None = None,
                data_flags: dict[str, Any] | None = None, default: bool = False,
                replace: bool = False, folder: str | Path | None = None,
                device: str = "cpu") -> WeightsEntry:
    """Add ``run_dir``'s final weights to the registry in ``folder`` (default: the package's) as
    ``tag``, evaluated on the test split of the run's data (``data_flags`` override its options;
    the fingerprint must still match). ``default``: the tag ``pretrained=True`` gives its model."""
    if not TAG.fullmatch(tag):
        raise ConfigError(f"tag {tag!r} is not <model>.<recipe>: the model's name, a dot, then "
                          "lowercase letters, digits and underscores "
                          "(e.g. resnet20.original150_jpeg)")
    folder = Path(folder) if folder is not None else weights_dir()
    run = read_run(run_dir)
    if run.summary is None:
        raise ConfigError(f"{run.path} has not finished (no summary.json): publish the weights "
                          "of a finished run")
    registry = read_registry(folder)
    tag = canonical_tag(tag, registry) or tag
    if tag in registry and not replace:
        raise ConfigError(f"weights {tag!r} are published already; pass `replace` (--replace) "
                          "to replace them")
    if not tag.startswith(f"{run.model}."):
        raise ConfigError(f"tag {tag!r} must start with the model's name: {run.model}.<recipe>")
    last = load_checkpoint(run.path / LAST)
    data = data_for_run(last.config, data_flags or {})
    file = folder / f"{tag}.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    # Evaluate the file before it takes the tag's name: if anything fails on the way (the data,
    # an interrupt), the folder is as it was, and a replaced tag keeps its old, matching file.
    with atomic_path(file, suffix=".safetensors") as staged:
        state = torch.load(run.path / WEIGHTS, map_location="cpu", weights_only=True)
        staged.write_bytes(safetensors_bytes(state))
        checkpoint = Checkpoint(
            path=file, model_name=last.model_name, model_kwargs=last.model_kwargs,
            num_classes=last.num_classes, state_dict=load_file(staged),
            classes=last.classes, mean=last.mean, std=last.std, normalize=last.normalize,
            config=last.config)
        context = InferenceContext.build(checkpoint, data, device=device)
        result = evaluate_split(context, "test")
        sha256, size = sha256_of(staged), staged.stat().st_size
    model, summary = context.model, run.summary
    finished = datetime.datetime.fromtimestamp((run.path / "summary.json").stat().st_mtime,
                                               datetime.UTC).date().isoformat()  # of summary.json
    record = {
        "model": last.model_name,
        "model_kwargs": resolve_options(last.model_name,
                                        {**model_options(last.model_name), **last.model_kwargs}),
        "num_classes": last.num_classes,
        "file": file.name,
        "sha256": sha256,
        "size_bytes": size,
        "params": count_parameters(model),
        "macs": count_macs(model),
        "normalization": {"mode": last.normalize, "mean": list(last.mean or ()),
                          "std": list(last.std or ())},
        "classes": list(context.classes),
        "weights": last.weights,  # "ema": the run's moving average, its final weights
        "config": shipped_config(last.config),
        "command": command,
        "metrics": {"test_acc": result.accuracy, "test_loss": result.loss,
                    "correct": result.correct, "total": result.total,
                    "per_class_acc": dict(zip(result.classes, result.per_class_accuracy,
                                              strict=True)),
                    "epoch": summary.get("epochs"), "best_val_acc": summary.get("best_val_acc"),
                    "val_is_test": summary.get("val_is_test")},
        "data": {"provenance": provenance, "fingerprint": result.data["fingerprint"],
                 "source": name_only(str(result.data["source"])),
                 "train_images": summary.get("train_images")},
        "training": {"device": summary.get("device"), "threads": summary.get("threads"),
                     "thread_spans": summary.get("thread_spans"),
                     "world_size": summary.get("world_size"),
                     "wall_minutes": minutes_by_epoch(run.rows)[-1] if run.rows else None,
                     "sec_per_epoch": summary.get("sec_per_epoch"), "torch": summary.get("torch"),
                     "package_version": summary.get("package_version"), "finished": finished},
        "evaluated": {"torch": torch.__version__, "device": str(context.device),
                      "date": datetime.date.today().isoformat()},
        "default": default,
    }
    if registry.get(tag, {}).get("aliases"):
        record["aliases"] = registry[tag]["aliases"]
    if default:
        for other in registry.values():
            if other["model"] == record["model"]:
                other["default"] = False
    registry = with_entry(registry, tag, record)
    atomic_write_text(folder / REGISTRY, json.dumps(registry, indent=2) + "\n")
    return WeightsEntry(tag, record)


def with_entry(registry: dict[str, Any], tag: str, record: dict[str, Any]) -> dict[str, Any]:
    """The registry with ``record`` under ``tag``, beside its model's other entries (first when
    it is the default); a new model goes last, a republished tag keeps its place."""
    if tag in registry:
        return {t: record if t == tag else r for t, r in registry.items()}
    rows = list(registry.items())
    mine = [i for i, (_, r) in enumerate(rows) if r["model"] == record["model"]]
    at = len(rows) if not mine else mine[0] if record["default"] else mine[-1] + 1
    rows.insert(at, (tag, record))
    return dict(rows)

