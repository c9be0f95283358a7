"""Reading a checkpoint file: first what kind of file it is, then torch.load(weights_only=True).

The first bytes are sniffed before the unpickler sees the file, so that text, JSON, an HTML page,
a Git LFS pointer, a compressed or cut-off download, a TorchScript export or a directory is named
for what it is, in one line, instead of reaching torch.load, whose errors about such files are
misleading (``KeyError: 101``, "needs arbitrary pickle"). What a checkpoint holds, and how it
maps onto a model, is checkpoint.py's.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.engine.rundir import TRAINING_CHECKPOINTS
from resnet_cifar.errors import CheckpointError

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
