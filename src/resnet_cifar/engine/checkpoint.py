"""Checkpoints: written atomically, read with ``weights_only=True``, foreign formats mapped.

Three shapes are read:
  * ours (``last.pt``/``best.pt``): a dict with ``format == FORMAT`` holding the model name and
    options, the state_dict, normalization, class names, and (for resume) optimizer, schedule,
    epoch and every RNG state; with `ema_decay`, also ``ema`` (the averaged weights) and
    ``weights`` ("ema" | "raw"): which of the two the checkpoint gives to eval, show, predict and
    export (``model`` always holds the raw trained weights, which resume continues from);
  * a plain ``state_dict`` (``model.pth``, as the original repository saved it), given ``--model``;
  * ``{'state_dict': ..., ...}`` as akamaster/pytorch_resnet_cifar10 and most training scripts
    save, whose keys may carry the ``module.`` prefix of DataParallel/DDP.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_cifar.atomic import atomic_write
from resnet_cifar.engine.rundir import TRAINING_CHECKPOINTS
from resnet_cifar.errors import CheckpointError, UserError
from resnet_cifar.models import create_model, get_model_entry

FORMAT = "resnet_cifar.checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save of ``obj`` with every tensor on the CPU (a file saved on a GPU loads anywhere,
    with a plain torch.load), never leaving a half-written file."""
    with atomic_write(path) as f:
        torch.save(on_cpu(obj), f)


def on_cpu(obj: Any) -> Any:
    """``obj`` with each tensor in its dicts, lists and tuples moved to the CPU (a no-op there)."""
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
                key = key[len(prefix) :]
        out[key] = value
    return out


@dataclass
class Checkpoint:
    """What a checkpoint file holds, mapped onto our names."""

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

    def build_model(self) -> nn.Module:
        """A fresh model of the checkpoint's architecture with its weights loaded."""
        model = create_model(self.model_name, num_classes=self.num_classes, **self.model_kwargs)
        load_state_dict_checked(model, self.state_dict, self.path, self.model_name)
        bad = sum(int((~t.isfinite()).sum()) for t in self.state_dict.values()
                  if t.is_floating_point())
        if bad:  # its every output is noise: a figure from it must not pass for a result
            warnings.warn(f"{self.path}: {bad:,} of its weights are NaN or infinite, so whatever "
                          "it computes is meaningless; use a checkpoint from before the run "
                          "diverged", RuntimeWarning, stacklevel=2)
        return model


def infer_model_name(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Guess a plain or seed-recurrent ResNet from its keys; None if it is not one of those."""
    blocks = {k.split(".")[1] for k in state_dict if k.startswith("layer1.")}
    if not blocks or "linear.weight" not in state_dict:
        return None
    depth = 6 * len(blocks) + 2
    if any(".rnn.conv_y." in k for k in state_dict):
        name = f"resnet{depth}_convgru"
    elif any(".rnn.conv_x." in k for k in state_dict):
        name = f"resnet{depth}_convrnn"
    else:
        name = f"resnet{depth}"
    try:
        get_model_entry(name)
    except CheckpointError:
        return None
    except Exception:
        return None
    return name


def infer_shortcut(state_dict: dict[str, torch.Tensor]) -> str:
    return "B" if "layer2.0.shortcut.0.weight" in state_dict else "A"


def load_state_dict_checked(
    model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path | str, name: str
) -> None:
    """load_state_dict(strict=True) whose failures say what was expected and what was found."""
    expected = model.state_dict()
    given = state_dict  # what the file holds, for the guess below (not the padded copy)
    # Checkpoints from PyTorch < 0.4.1 predate BatchNorm's num_batches_tracked counter; it only
    # matters for momentum=None, so the model's own (zero) counter stands in.
    state_dict = {
        **{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")},
        **state_dict,
    }
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
                "(`data.path`, `data.dataset`, `data.coarse`)"
            )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"missing key {missing[0]!r}"
                + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            )
        if unexpected:
            parts.append(
                f"unexpected key {unexpected[0]!r}"
                + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
            )
        guess = infer_model_name(given)
        hint = f"; it looks like a {guess} (shortcut {infer_shortcut(given)})" if guess else ""
        raise CheckpointError(f"{path} does not fit model {name!r}: {', '.join(parts)}{hint}")
    for key, tensor in state_dict.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, model {name!r} expects "
                f"{tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict, strict=True)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def load_checkpoint(
    path: str | Path,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Checkpoint:
    """Read any supported checkpoint. ``model``/``model_kwargs`` are needed for foreign files
    (``--model``, ``--shortcut``) and override what an inferred guess would give."""
    path = Path(path)
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("format"), str) and obj["format"] == FORMAT:
        return _from_ours(path, obj, model, model_kwargs)
    if isinstance(obj, dict) and _is_state_dict(obj.get("state_dict")):
        state_dict = obj["state_dict"]
    elif isinstance(obj, dict) and _is_state_dict(obj.get("model")):
        state_dict = obj["model"]
    elif _is_state_dict(obj):
        state_dict = obj
    else:
        kind = ("an empty " if isinstance(obj, dict) and not obj else "a ") + type(obj).__name__
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else ""
        raise CheckpointError(
            f"{path} is not a model checkpoint: found {kind}"
            + (f" with keys {keys}" if keys else "")
            + "; expected a state_dict, {'state_dict': ...} or a resnet-cifar checkpoint"
        )
    state_dict = strip_module_prefix(state_dict)
    name = model or infer_model_name(state_dict)
    if name is None:
        raise CheckpointError(
            f"{path} is a plain state_dict of an unknown architecture; pass `model` NAME"
        )
    kwargs = dict(model_kwargs or {})
    if "shortcut" not in kwargs and name.startswith("resnet") and "_" not in name:
        kwargs["shortcut"] = infer_shortcut(state_dict)
    weight = state_dict.get("linear.weight")
    num_classes = int(weight.shape[0]) if weight is not None and weight.dim() else 10
    plain = Checkpoint(path, name, kwargs, num_classes, state_dict, foreign=True)
    return described_by_its_run(plain, model, model_kwargs) or plain


def pretrained_checkpoint(tag: str) -> Checkpoint:
    """Published weights (models/pretrained.py) as a Checkpoint: the state_dict, checked
    against its sha256, with the normalization, classes, options and recipe its entry records,
    so that eval, show, predict and export treat it as the run that made it."""
    from resnet_cifar.models.pretrained import get_weights, load_weights

    entry = get_weights(tag)
    meta, norm = entry.meta, entry.meta.get("normalization") or {}
    return Checkpoint(
        path=entry.path, model_name=entry.model, model_kwargs=entry.model_kwargs,
        num_classes=entry.num_classes, state_dict=load_weights(entry),
        classes=meta.get("classes"),
        mean=tuple(norm["mean"]) if norm.get("mean") else None,
        std=tuple(norm["std"]) if norm.get("std") else None,
        normalize=norm.get("mode"), config=meta.get("config"))


def described_by_its_run(plain: Checkpoint, model: str | None,
                         model_kwargs: dict[str, Any] | None) -> Checkpoint | None:
    """A run's own model.pth (rundir.WEIGHTS) read with what the run's last.pt beside it
    records: the normalization it was trained with, the classes, the model options, the config
    and the data. The file itself is a plain state_dict so that the original code loads it, and
    without this, eval would normalize as the data's default and quietly report another accuracy
    for a run trained with `data.normalize` imagenet or half. None (the file stays foreign) when
    the file is not named so, no readable last.pt is beside it, ``model``/``model_kwargs`` name
    another architecture, or its tensors are not that run's model's."""
    from resnet_cifar.engine.rundir import LAST, WEIGHTS

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
    return Checkpoint(path=plain.path, model_name=run.model_name, model_kwargs=run.model_kwargs,
                      num_classes=run.num_classes, state_dict=plain.state_dict,
                      weights=run.weights, classes=run.classes, mean=run.mean, std=run.std,
                      normalize=run.normalize, config=run.config)


def _from_ours(
    path: Path, obj: dict[str, Any], model: str | None, model_kwargs: dict[str, Any] | None
) -> Checkpoint:
    missing = [key for key in ("model_name", "num_classes", "model") if key not in obj]
    if missing:
        raise CheckpointError(
            f"{path} is missing key {missing[0]!r}; it is truncated or from another tool"
        )
    saved_name = obj["model_name"]
    if not isinstance(saved_name, str):
        raise _bad_entry(path, "model_name", saved_name, "a model name")
    try:
        get_model_entry(saved_name)
    except UserError as err:
        raise CheckpointError(f"{path} holds a model this version does not know: {err}") from None
    if model and model != saved_name:
        raise CheckpointError(f"{path} holds a {saved_name!r}, not the {model!r} given by `model`")
    num_classes = obj["num_classes"]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise _bad_entry(path, "num_classes", num_classes, "a positive int")
    if not _is_state_dict(obj["model"]):
        raise _bad_entry(path, "model", obj["model"], "a state_dict (parameter name -> tensor)")
    saved_kwargs = obj.get("model_kwargs") or {}
    if not isinstance(saved_kwargs, dict) or not all(isinstance(k, str) for k in saved_kwargs):
        raise _bad_entry(path, "model_kwargs", saved_kwargs, "a dict of model options")
    classes = obj.get("classes")
    if classes is not None and not (
        isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)
    ):
        raise _bad_entry(path, "classes", classes, "a list of class names")
    norm = obj.get("normalization") or {}
    if not isinstance(norm, dict):
        raise _bad_entry(path, "normalization", norm, "a dict with mode, mean and std")
    stats = {}
    for key in ("mean", "std"):
        value = norm.get(key)
        if value is None:
            continue
        if not (
            isinstance(value, (list, tuple))
            and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise _bad_entry(path, f"normalization.{key}", value, "3 numbers, one per channel")
        stats[key] = tuple(float(v) for v in value)
    mode = norm.get("mode")
    if mode is not None and not isinstance(mode, str):
        raise _bad_entry(path, "normalization.mode", mode, "a `data.normalize` mode")
    config = obj.get("config")
    if config is not None and not isinstance(config, dict):
        raise _bad_entry(path, "config", config, "a dict (the run's config.toml)")
    weights = obj.get("weights", "raw")
    if weights not in WEIGHTS:
        raise _bad_entry(path, "weights", weights, f"one of {', '.join(WEIGHTS)}")
    if "ema" in obj and not _is_state_dict(obj["ema"]):
        raise _bad_entry(path, "ema", obj["ema"], "a state_dict (the averaged weights)")
    if weights == "ema" and "ema" not in obj:
        raise CheckpointError(f"{path} says its weights are the moving average but holds no "
                              f"'ema' entry; the file is damaged ({RESAVE})")
    return Checkpoint(
        path=path,
        model_name=saved_name,
        model_kwargs={**saved_kwargs, **(model_kwargs or {})},
        num_classes=num_classes,
        state_dict=obj["ema"] if weights == "ema" else obj["model"],
        weights=weights,
        raw_state_dict=obj["model"] if weights == "ema" else None,
        classes=list(classes) if classes else None,
        mean=stats.get("mean"),
        std=stats.get("std"),
        normalize=mode,
        config=config,
        training_state={k: obj[k] for k in TRAINING_STATE_KEYS if k in obj},
    )


def _bad_entry(path: Path, key: str, value: Any, wanted: str) -> CheckpointError:
    """The one-line error for an entry of our format that holds the wrong kind of value."""
    shown = clip(repr(value), 40) if isinstance(value, (str, int, float, bool)) or value is None \
        else ("an empty " if not _nonempty(value) else "a ") + type(value).__name__
    return CheckpointError(
        f"{path}: its {key!r} entry is {shown}, not {wanted}; the file is damaged or was not "
        f"written by resnet-cifar ({RESAVE})"
    )


def _nonempty(value: Any) -> bool:
    try:
        return len(value) > 0
    except TypeError:
        return True


WEIGHTS = ("raw", "ema")  # which weights a checkpoint gives to inference (its "weights" entry)
TRAINING_STATE_KEYS = (
    "ema",  # the moving average's state_dict (`ema_decay` > 0)
    "weights",
    "optimizer",
    "scaler",  # fp16's loss scale and growth tracker (`amp` fp16), which resume continues
    "scheduler",
    "epoch",
    "step",
    "rng",
    "loader",
    "best",
    "history",
)


def checkpoint_payload(
    model: nn.Module,
    *,
    model_name: str,
    model_kwargs: dict[str, Any],
    num_classes: int,
    classes: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    normalize: str,
    config: dict[str, Any],
    package_version: str,
    **training_state: Any,
) -> dict[str, Any]:
    """The dict written as last.pt/best.pt. Only plain containers, tensors and numbers, so it
    loads with weights_only=True."""
    unknown = set(training_state) - set(TRAINING_STATE_KEYS)
    assert not unknown, f"unknown training-state keys {unknown}"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs),
        "num_classes": num_classes,
        "classes": list(classes),
        "normalization": {"mode": normalize, "mean": list(mean), "std": list(std)},
        "config": config,
        "model": strip_module_prefix(model.state_dict()),
        **training_state,
    }


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_PROTO = b"\x80"  # the legacy format: a pickle, protocol 2 or later
_HEAD = 512  # bytes sniffed before torch.load
_JSON_SNIFF_LIMIT = 1 << 20  # a file that starts like JSON is parsed whole only up to this size
RESAVE = "save or download it again"


def read_checkpoint_file(path: str | Path) -> Any:
    """torch.load with weights_only=True, turning every failure into one clear line.

    The first bytes are sniffed first, so a file that is not a checkpoint at all (text, JSON, an
    HTML page, an empty or cut-off download) is named for what it is instead of reaching the
    unpickler, whose errors about such files are misleading (``KeyError: 101``, "needs arbitrary
    pickle")."""
    path = Path(path)
    head = _read_head(path)
    kind = _sniff(path, head)
    if kind == "zip":
        _check_zip(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if "Weights only load failed" in text and any(
            marker in text for marker in ("GLOBAL", "allowlisted", "add_safe_globals")
        ):
            detail = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
            reason = clip(detail[0] if detail else "it needs classes beyond tensors")
            raise CheckpointError(
                f"refusing to load {path}: it needs arbitrary pickle, which can run code "
                f"({reason}); re-save it as a plain state_dict"
            ) from None
        detail = [line for line in lines if "Weights only" not in line and "WeightsUnpickler"
                  not in line and "Check the documentation" not in line]
        reason = clip(detail[0] if detail else type(err).__name__)
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is a damaged {kind} ({reason}); {RESAVE}"
        ) from None
    except EOFError:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated (its pickle ends early); "
            f"{RESAVE}"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to decode a user's file is its fault
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(err).__name__}: {clip(first)})"
        ) from None


def clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_head(path: Path) -> bytes:
    """The first bytes of a checkpoint file, or a CheckpointError saying why there are none."""
    if path.is_dir():
        present = [name for name in TRAINING_CHECKPOINTS if (path / name).is_file()]
        if present:
            files = " or ".join(str(path / name) for name in present)
            raise CheckpointError(
                f"{path} is a directory (a run), not a checkpoint file; pass {files}"
            )
        others = sorted(
            p.name for p in path.glob("*") if p.suffix in (".pt", ".pth", ".th") and p.is_file()
        )
        hint = (
            f"pass one of its files: {', '.join(others[:3])}"
            + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            if others
            else f"it holds no {', '.join(TRAINING_CHECKPOINTS[:-1])} or "
            f"{TRAINING_CHECKPOINTS[-1]}; pass a checkpoint file"
        )
        raise CheckpointError(f"{path} is a directory, not a checkpoint file; {hint}")
    if not path.exists():
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        raise CheckpointError(f"checkpoint not found: {path}{broken}")
    if not path.is_file():
        raise CheckpointError(
            f"{path} is not a regular file (a pipe, socket or device); pass a checkpoint file"
        )
    try:
        with path.open("rb") as f:
            return f.read(_HEAD)
    except OSError as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {err.strerror or type(err).__name__}"
        ) from None


def _sniff(path: Path, head: bytes) -> str:
    """'zip' or 'pickle' when the file can be a PyTorch checkpoint; a CheckpointError saying
    what the file is otherwise."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_PICKLE_PROTO):
        return "pickle"
    if not head:
        raise CheckpointError(
            f"{path} is empty (0 bytes), not a PyTorch checkpoint; it was cut off while being "
            f"written or downloaded: {RESAVE}"
        )
    if head.startswith(b"PK\x05\x06"):
        raise CheckpointError(f"{path} is an empty zip archive, not a PyTorch checkpoint")
    if head.startswith(b"\x1f\x8b"):
        raise CheckpointError(
            f"{path} is gzip-compressed, not a PyTorch checkpoint; decompress it first "
            f"(gunzip -k) and pass the file inside"
        )
    text = _as_text(head)
    if text is None:
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (it starts with bytes {head[:8].hex(' ')}, "
            "neither a zip archive nor a pickle); pass a file written by torch.save"
        )
    stripped = text.lstrip()
    first_line = clip(stripped.splitlines()[0] if stripped else text, 40)
    if stripped.startswith("version https://git-lfs"):
        raise CheckpointError(
            f"{path} is a Git LFS pointer, not the checkpoint itself; fetch it with `git lfs pull`"
        )
    if stripped[:1] == "<" and "html" in stripped[:200].lower():
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (it is an HTML page, starting with "
            f"{first_line!r}: a download that returned a web page?); download the file itself"
        )
    if stripped[:1] in ("{", "[") and _is_json(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (it is JSON text, starting with "
            f"{first_line!r}); pass a file written by torch.save"
        )
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint (it starts with text {first_line!r}); "
        "pass a file written by torch.save"
    )


def _as_text(head: bytes) -> str | None:
    """The head decoded as UTF-8 text, or None if it holds binary bytes."""
    import codecs

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)  # a cut-off last char is ok
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in text):
        return None
    return text


def _is_json(path: Path) -> bool:
    import json

    if path.stat().st_size > _JSON_SNIFF_LIMIT:
        return True  # starts like JSON; too big to parse just to name it
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


def _check_zip(path: Path) -> None:
    """A zip that torch would misread: cut off, or an archive of something else."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        reason = str(err)
        if reason == "File is not a zip file":  # zipfile's words for "no end-of-archive record"
            reason = "its end, the zip directory, is missing"
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is a truncated or damaged zip archive "
            f"({clip(reason)}); {RESAVE}"
        ) from None
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        raise CheckpointError(
            f"{path} is a TorchScript archive (an export), not a checkpoint; pass the last.pt "
            "or best.pt it was exported from (run the archive itself with torch.jit.load)"
        )
    if not any(name.endswith("/data.pkl") for name in names):
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise CheckpointError(
            f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl inside; it "
            f"holds {listed or 'nothing'}); pass a file written by torch.save"
        )
