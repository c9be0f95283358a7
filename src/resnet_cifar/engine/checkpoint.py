"""Checkpoints: written atomically, read with ``weights_only=True``, foreign formats mapped.

Read: ours (``format == FORMAT``; with `ema_decay`, ``ema`` and ``weights`` say which weights
inference gets, ``model`` stays the raw ones resume continues from), a plain state_dict, and
``{'state_dict': ...}``, keys perhaps prefixed ``module.`` (DataParallel/DDP).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_cifar.atomic import atomic_save_bytes
from resnet_cifar.engine.rundir import LAST, TRAINING_CHECKPOINTS, WEIGHTS
from resnet_cifar.errors import CheckpointError, UserError
from resnet_cifar.models import create_model, get_model_entry

FORMAT = "resnet_cifar.checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save of ``obj`` with every tensor on the CPU, never leaving a half-written file."""
    atomic_save_bytes(path, lambda f: torch.save(on_cpu(obj), f))


def on_cpu(obj: Any) -> Any:
    """``obj`` with each tensor in its dicts, lists and tuples moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key.removeprefix(prefix)
        out[key] = value
    return out


@dataclass
class Checkpoint:
    path: Path
    model_name: str
    model_kwargs: dict[str, Any]
    num_classes: int
    state_dict: dict[str, torch.Tensor]
    classes: list[str] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    normalize: str | None = None  # the --normalize mode it was trained with, when known
    config: dict[str, Any] | None = None
    training_state: dict[str, Any] = field(default_factory=dict)  # optimizer, rng, epoch...
    foreign: bool = False
    weights: str = "raw"  # "ema": state_dict is the weights' moving average (`ema_decay`)
    raw_state_dict: dict[str, torch.Tensor] | None = None  # the trained weights, when "ema"
    published: dict[str, Any] | None = None  # published weights' pretrained_cfg (their record)

    def build_model(self) -> nn.Module:
        model = create_model(self.model_name, num_classes=self.num_classes, **self.model_kwargs)
        load_state_dict_checked(model, self.state_dict, self.path, self.model_name)
        bad = sum(int((~t.isfinite()).sum()) for t in self.state_dict.values()
                  if t.is_floating_point())
        if bad:  # its every output is noise: a figure from it must not pass for a result
            warnings.warn(f"{self.path}: {bad:,} of its weights are NaN or infinite, so whatever "
                          "it computes is meaningless; use a checkpoint from before the run "
                          "diverged", RuntimeWarning, stacklevel=2)
        model.pretrained_cfg = self.published or self.pretrained_cfg()
        return model

    def pretrained_cfg(self) -> dict[str, Any]:
        """What its model needs beside the weights (models/pretrained.py)."""
        from resnet_cifar.models.pretrained import shipped_config

        mean, std = (list(v) if v else None for v in (self.mean, self.std))
        return {"tag": None, "architecture": self.model_name, "input_size": [3, 32, 32],
                "mean": mean, "std": std, "model_kwargs": dict(self.model_kwargs),
                "num_classes": self.num_classes,
                "classes": list(self.classes) if self.classes else None,
                "normalization": {"mode": self.normalize, "mean": mean, "std": std},
                "weights": self.weights,
                "config": shipped_config(self.config) if self.config else None}


def infer_model_name(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Guess a plain or seed-recurrent ResNet from its keys; None if it is not one of those."""
    blocks = {k.split(".")[1] for k in state_dict if k.startswith("layer1.")}
    if not blocks or "linear.weight" not in state_dict:
        return None
    cell = ("_convgru" if any(".rnn.conv_y." in k for k in state_dict) else
            "_convrnn" if any(".rnn.conv_x." in k for k in state_dict) else "")
    name = f"resnet{6 * len(blocks) + 2}{cell}"
    try:
        get_model_entry(name)
    except Exception:
        return None
    return name


def infer_shortcut(state_dict: dict[str, torch.Tensor]) -> str:
    return "B" if "layer2.0.shortcut.0.weight" in state_dict else "A"


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor],
                            path: Path | str, name: str) -> None:
    """load_state_dict(strict=True) whose failures say what was expected and what was found."""
    expected = model.state_dict()
    given = state_dict  # what the file holds, for the guess below
    # PyTorch < 0.4.1 saved no BatchNorm num_batches_tracked: the model's own (zero) stands in
    state_dict = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")},
                  **state_dict}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if "linear.weight" in state_dict and "linear.weight" in expected:
        weight = state_dict["linear.weight"]
        found = weight.shape[0] if weight.dim() else None
        want = expected["linear.weight"].shape[0]
        if found is not None and found != want:
            raise CheckpointError(
                f"{path}: class-count mismatch: the checkpoint has {found} classes, "
                f"expected {want}: evaluate it on a {found}-class dataset "
                "(`data.path` (--data), `data.dataset` (--dataset), `data.coarse` (--coarse))")
    if missing or unexpected:
        parts = [f"{what} key {keys[0]!r}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
                 for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        guess = infer_model_name(given)
        hint = f"; it looks like a {guess} (shortcut {infer_shortcut(given)})" if guess else ""
        raise CheckpointError(f"{path} does not fit model {name!r}: {', '.join(parts)}{hint}")
    for key, tensor in state_dict.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(tensor.shape)}, model {name!r} "
                                  f"expects {tuple(expected[key].shape)}")
    model.load_state_dict(state_dict, strict=True)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_checkpoint(path: str | Path, model: str | None = None,
                    model_kwargs: dict[str, Any] | None = None) -> Checkpoint:
    """Read any supported checkpoint. ``model``/``model_kwargs`` name a foreign file's
    architecture, over what an inferred guess would give."""
    path = Path(path)
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("format"), str) and obj["format"] == FORMAT:
        return _from_ours(path, obj, model, model_kwargs)
    found = [obj.get("state_dict"), obj.get("model"), obj] if isinstance(obj, dict) else [obj]
    state_dict = next((d for d in found if _is_state_dict(d)), None)
    if state_dict is None:
        kind = ("an empty " if isinstance(obj, dict) and not obj else "a ") + type(obj).__name__
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else ""
        raise CheckpointError(
            f"{path} is not a model checkpoint: found {kind}"
            + (f" with keys {keys}" if keys else "")
            + "; expected a state_dict, {'state_dict': ...} or a resnet-cifar checkpoint")
    state_dict = strip_module_prefix(state_dict)
    name = model or infer_model_name(state_dict)
    if name is None:
        raise CheckpointError(f"{path} is a plain state_dict of an unknown architecture; pass "
                              "`model` (--model) NAME")
    kwargs = dict(model_kwargs or {})
    if "shortcut" not in kwargs and name.startswith("resnet") and "_" not in name:
        kwargs["shortcut"] = infer_shortcut(state_dict)
    weight = state_dict.get("linear.weight")
    num_classes = int(weight.shape[0]) if weight is not None and weight.dim() else 10
    plain = Checkpoint(path, name, kwargs, num_classes, state_dict, foreign=True)
    return described_by_its_run(plain, model, model_kwargs) or plain


def pretrained_checkpoint(tag: str | os.PathLike) -> Checkpoint:
    """Published weights or a weights folder (models/pretrained.py) as a Checkpoint, with what
    its entry records, so that eval, predict and export treat it as the run that made it."""
    from resnet_cifar.models.pretrained import get_weights, load_weights, pretrained_cfg

    entry = get_weights(tag)
    return Checkpoint(
        path=entry.path, model_name=entry.model, model_kwargs=entry.model_kwargs,
        num_classes=entry.num_classes, state_dict=load_weights(entry),
        classes=entry.meta.get("classes"), config=entry.meta.get("config"),
        published=pretrained_cfg(entry), **_normalization(entry.meta))


def _normalization(record: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint's mean, std and normalize from a record's "normalization" table."""
    norm = record.get("normalization") or {}
    return {"mean": tuple(norm["mean"]) if norm.get("mean") else None,
            "std": tuple(norm["std"]) if norm.get("std") else None, "normalize": norm.get("mode")}


def described_by_its_run(plain: Checkpoint, model: str | None,
                         model_kwargs: dict[str, Any] | None) -> Checkpoint | None:
    """A run's own model.pth read with what its last.pt records (normalization, classes, options,
    config), or eval would quietly report another accuracy. None (it stays foreign) where last.pt
    is missing, unreadable, or of another architecture than ``model``/``model_kwargs``."""
    last_path = plain.path.parent / LAST
    if plain.path.name != WEIGHTS or not last_path.is_file():
        return None
    try:
        obj = read_checkpoint_file(last_path)
        if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
            return None
        run = _from_ours(last_path, obj, None, None)
    except UserError:
        return None  # a damaged last.pt: the weights file is read as a plain state_dict
    if (model and model != run.model_name) or any(
            run.model_kwargs.get(k) != v for k, v in (model_kwargs or {}).items()):
        return None
    shapes = {k: tuple(v.shape) for k, v in plain.state_dict.items()}
    if shapes != {k: tuple(v.shape) for k, v in run.state_dict.items()}:
        return None
    return dataclasses.replace(run, path=plain.path, state_dict=plain.state_dict,
                               training_state={}, raw_state_dict=None)


def _from_ours(path: Path, obj: dict[str, Any], model: str | None,
               model_kwargs: dict[str, Any] | None) -> Checkpoint:
    if not _is_state_dict(obj.get("model")) or not isinstance(obj.get("model_name"), str):
        raise CheckpointError(f"{path} is a damaged resnet-cifar checkpoint (no model name or "
                              "weights); save or download it again")
    saved_name = obj["model_name"]
    if model and model != saved_name:
        raise CheckpointError(f"{path} holds a {saved_name!r}, not the {model!r} given by "
                              "`model` (--model)")
    try:
        get_model_entry(saved_name)
    except UserError as err:
        raise CheckpointError(f"{path} holds a model this version does not know: {err}") from None
    weights = obj.get("weights", "raw")
    return Checkpoint(
        path=path, model_name=saved_name,
        model_kwargs={**(obj.get("model_kwargs") or {}), **(model_kwargs or {})},
        num_classes=obj["num_classes"], state_dict=obj["ema"] if weights == "ema" else obj["model"],
        weights=weights, raw_state_dict=obj["model"] if weights == "ema" else None,
        classes=list(obj["classes"]) if obj.get("classes") else None, config=obj.get("config"),
        **_normalization(obj), training_state={k: obj[k] for k in TRAINING_STATE_KEYS if k in obj})


# ema: the average's state_dict (`ema_decay`); scaler: fp16's loss scale, which resume continues
TRAINING_STATE_KEYS = ("ema", "weights", "optimizer", "scaler", "scheduler", "epoch", "step",
                       "rng", "loader", "best", "history")


def checkpoint_payload(model: nn.Module, *, model_name: str, model_kwargs: dict[str, Any],
                       num_classes: int, classes: list[str], mean: tuple[float, ...],
                       std: tuple[float, ...], normalize: str, config: dict[str, Any],
                       package_version: str, **training_state: Any) -> dict[str, Any]:
    """last.pt/best.pt: plain containers, tensors and numbers only (loads with weights_only)."""
    unknown = set(training_state) - set(TRAINING_STATE_KEYS)
    assert not unknown, f"unknown training-state keys {unknown}"
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": package_version,
            "model_name": model_name, "model_kwargs": dict(model_kwargs),
            "num_classes": num_classes, "classes": list(classes),
            "normalization": {"mode": normalize, "mean": list(mean), "std": list(std)},
            "config": config, "model": strip_module_prefix(model.state_dict()), **training_state}


def read_checkpoint_file(path: str | Path) -> Any:
    """torch.load(weights_only=True) of ``path``; a file it refuses is a CheckpointError."""
    path = Path(path)
    if path.is_dir():
        present = [str(path / name) for name in TRAINING_CHECKPOINTS if (path / name).is_file()]
        fix = f"pass {' or '.join(present)}" if present else "pass a checkpoint file"
        raise CheckpointError(f"{path} is a directory, not a checkpoint file; {fix}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's own advice for a file it refuses: not ours
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to decode a user's file is its fault
        text = str(err)
        if "Weights only load failed" in text and "GLOBAL" in text:
            raise CheckpointError(f"refusing to load {path}: it needs arbitrary pickle, which "
                                  "can run code; re-save it as a plain state_dict") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({why_not(path, err)}); "
                              "pass a file written by torch.save") from None


def why_not(path: Path, err: Exception) -> str:
    with path.open("rb") as f:
        head = f.read(256)
    if not head:
        return "it is empty: cut off while written or downloaded?"
    try:
        first_line = head.decode().strip().splitlines()[0][:40]
        return f"it is text, starting {first_line!r}"
    except (UnicodeDecodeError, IndexError):
        pass
    if head.startswith((b"PK", b"\x80")):  # torch.save's zip, or a legacy pickle
        return f"a damaged or truncated file ({type(err).__name__})"
    return "binary, neither a zip archive nor a pickle"
