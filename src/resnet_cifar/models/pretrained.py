"""Published weights: a registry of trained safetensors state_dicts shipped in the package, each
with the metadata (sha256, recipe, metrics, provenance) to trust it. A renamed tag keeps working as
an alias; a weights folder (Hugging Face's layout, models/hub.py) loads wherever a tag does."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.errors import CheckpointError, UserError

REGISTRY = "registry.json"
# a weights folder: the weights, their record, and the model card
MODEL_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"


def weights_dir() -> Path:
    """Where the shipped weights and their registry.json live."""
    return Path(str(resources.files("resnet_cifar") / "weights"))


@dataclass(frozen=True)
class WeightsEntry:
    """One published weight: ``tag`` is "<model>.<recipe>_<data>" (resnet20.original150_jpeg)."""

    tag: str
    meta: dict[str, Any]  # the registry's record, as written by publish.py
    folder: Path | None = None  # None: the package's weights

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.meta.get("model_kwargs") or {})

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def path(self) -> Path:
        return (self.folder or weights_dir()) / self.meta["file"]

    @property
    def aliases(self) -> list[str]:
        return list(self.meta.get("aliases") or ())

    @property
    def default(self) -> bool:
        return bool(self.meta.get("default"))

    @property
    def test_acc(self) -> float:
        return float(self.meta["metrics"]["test_acc"])


def read_registry(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """registry.json as {tag: record}; empty when none ships."""
    path = (folder or weights_dir()) / REGISTRY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); reinstall resnet-cifar") \
            from None


def canonical_tag(name: str, registry: dict[str, dict[str, Any]] | None = None) -> str | None:
    """The tag ``name`` is, or is an alias of, in ``registry`` (default: the shipped one)."""
    registry = read_registry() if registry is None else registry
    if name in registry:
        return name
    return next((tag for tag, meta in registry.items() if name in (meta.get("aliases") or ())),
                None)


def list_weights(model: str | None = None) -> list[WeightsEntry]:
    """Every published weight (of ``model``, when given), in registry order."""
    entries = [WeightsEntry(tag, meta) for tag, meta in read_registry().items()]
    return [e for e in entries if model is None or e.model == model]


def get_weights(pretrained: bool | str | os.PathLike, model: str | None = None) -> WeightsEntry:
    """The entry ``pretrained`` names: a weights folder, a tag or alias, or True for ``model``'s
    default tag. Anything else is a one-line UserError that lists what there is."""
    tags = ", ".join(e.tag for e in list_weights()) or "none yet"
    if isinstance(pretrained, (str, os.PathLike)) and os.path.isdir(pretrained):
        entry = read_folder(Path(pretrained))
        if model is not None and entry.model != model:
            raise UserError(f"weights folder {pretrained} holds {entry.model!r}, not {model!r}")
        return entry
    if pretrained is True:
        mine = list_weights(model)
        if not mine:
            raise UserError(f"no published weights for {model!r}: build it with "
                            f"pretrained=False and load your own checkpoint (published: {tags})")
        return next((e for e in mine if e.default), mine[0])
    if not isinstance(pretrained, str):
        raise UserError(f"pretrained must be True, False or a tag, not {pretrained!r}")
    registry = read_registry()
    tag = canonical_tag(pretrained, registry)
    if tag is None:
        raise UserError(f"unknown weights tag {pretrained!r}; published: {tags} "
                        "(`resnet-cifar weights` lists them)")
    entry = WeightsEntry(tag, registry[tag])
    if model is not None and entry.model != model:
        raise UserError(f"weights {pretrained!r} are for {entry.model!r}, not {model!r}")
    return entry


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_folder(folder: Path) -> WeightsEntry:
    """A weights folder as an entry: its config.json is the record (``architecture``: model)."""
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise UserError(f"{folder} is not a weights folder: it has no {CONFIG_FILE} (one is "
                        "written by `resnet-cifar weights --save TAG DIR` or save_pretrained)")
    try:
        meta = json.loads(config.read_text())
        meta = {**meta, "model": meta["architecture"]}
        return WeightsEntry(meta.get("tag") or folder.name, meta, folder)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{config} is not a weights record ({type(err).__name__}: {err}); "
                              "write the folder again with `resnet-cifar weights --save`") from None


def load_weights(entry: WeightsEntry) -> dict[str, torch.Tensor]:
    """The entry's state_dict, read once its sha256 matches (a .pth: weights_only=True)."""
    path = entry.path
    fix = "write the folder again" if entry.folder else "reinstall resnet-cifar"
    if not path.is_file():
        raise CheckpointError(f"weights {entry.tag!r}: {path} is missing; {fix}")
    found = sha256_of(path)
    if found != entry.meta.get("sha256"):
        raise CheckpointError(f"weights {entry.tag!r}: {path} has sha256 {found[:12]}…, not the "
                              f"recorded {str(entry.meta.get('sha256'))[:12]}…; the file is "
                              f"damaged or was replaced: {fix}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def pretrained_cfg(entry: WeightsEntry) -> dict[str, Any]:
    """``model.pretrained_cfg`` (timm's name): tag, architecture, input size, mean and std first,
    then the rest of the record. A weights folder's config.json is this, plus its file's name."""
    norm = entry.meta.get("normalization") or {}
    rest = {k: v for k, v in entry.meta.items()
            if k not in ("model", "file", "size_bytes", "default", "aliases", "tag")}
    return {"tag": entry.tag, "architecture": entry.model, "input_size": [3, 32, 32],
            "mean": norm.get("mean"), "std": norm.get("std"), **rest}


def shipped_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config without the trainer's folders: names only, no cache folder."""
    data = config.get("data") or {}
    return {**config, "out": name_only(config.get("out")),
            "data": {**data, "path": name_only(data.get("path")), "cache_dir": None}}


def name_only(path: str | None) -> str | None:
    """The last name of ``path``: what it was, not where."""
    return Path(path).name if path else path


def safetensors_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """``state_dict`` as safetensors bytes, of contiguous CPU tensors (channels-last's are not)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
                metadata={"format": "pt"})
