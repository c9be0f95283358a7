"""Weights folders, as the Hugging Face libraries share weights (timm's _hub.py): model.safetensors,
config.json (the record models/pretrained.py reads) and README.md (a model card)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.atomic import atomic_write, atomic_write_text, check_folder
from resnet_cifar.errors import UserError
from resnet_cifar.models.pretrained import (
    CARD_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    get_weights,
    safetensors_bytes,
)
from resnet_cifar.models.registry import create_model, get_model_entry


def load_pretrained(source: str | os.PathLike) -> torch.nn.Module:
    """The model a weights folder or a tag holds, with its weights and ``pretrained_cfg`` (in
    training mode, as torch builds every model: call ``.eval()`` to predict)."""
    return create_model(get_weights(source).model, pretrained=source)


def save_pretrained(model: torch.nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``model`` as a weights folder. The record's tag and metrics are kept only while the
    weights are those it measured (same sha256): else it names the tag it came from instead."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not cfg:
        raise UserError("the model carries no pretrained_cfg (its classes and normalization): "
                        "build it with create_model(NAME, pretrained=TAG or DIR) or "
                        "load_checkpoint(PATH).build_model()")
    folder = check_folder(folder, "the weights folder", "folder")
    blob = safetensors_bytes(model.state_dict())
    sha256 = hashlib.sha256(blob).hexdigest()
    if sha256 != cfg.get("sha256"):
        cfg = {k: v for k, v in cfg.items() if k not in ("metrics", "evaluated")}
        cfg["derived_from"], cfg["tag"] = cfg.get("tag"), None
    record = {**cfg, "file": MODEL_FILE, "sha256": sha256, "size_bytes": len(blob)}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / MODEL_FILE) as f:
        f.write(blob)
    atomic_write_text(folder / CARD_FILE, model_card(record, folder.name))
    # last: a folder whose record names these weights is a complete one
    atomic_write_text(folder / CONFIG_FILE, json.dumps(record, indent=2) + "\n")
    return folder


def model_card(record: dict[str, Any], name: str) -> str:
    """A Hugging Face model card: YAML front matter (JSON values are YAML), then the model, its
    use, recipe, results and license."""
    tag = record.get("tag") or name
    metrics, data = record.get("metrics") or {}, record.get("data") or {}
    front = {"library_name": "pytorch", "license": "mit", "pipeline_tag": "image-classification",
             "tags": ["resnet-cifar", "image-classification", record["architecture"]],
             "datasets": ["cifar10"], "metrics": ["accuracy"]}
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in front.items()), "---", "",
             f"# {tag}", "",
             f"{get_model_entry(record['architecture']).description}: "
             f"{record.get('params', 0):,} parameters, {record.get('macs', 0) / 1e6:.1f} MMACs "
             f"for one 32×32 image, {record.get('num_classes')} classes.", "",
             "## Use", "", "```python",
             "from resnet_cifar import load_pretrained, Predictor", "",
             f'model = load_pretrained("{name}").eval()   # model.pretrained_cfg: mean, std, '
             "classes",
             f'predictor = Predictor("{name}")            # predictor.predict(images)', "```",
             "", "## Training", ""]
    if record.get("command"):
        lines += ["```", record["command"], "```", ""]
    if record.get("derived_from"):
        lines += [f"Trained further from `{record['derived_from']}`; its recorded results "
                  "describe those weights, not these, so none are given here.", ""]
    lines += ["## Results", ""]
    if metrics:
        lines += [f"Test accuracy {100 * metrics['test_acc']:.2f}% "
                  f"({metrics['correct']}/{metrics['total']}) on the test split of the data it "
                  f"was trained on: {data.get('provenance') or 'see config.json'}.", ""]
    else:
        lines += ["No results recorded for these weights.", ""]
    lines += ["## License", "", "MIT (the resnet-cifar package's license).", ""]
    return "\n".join(lines)
