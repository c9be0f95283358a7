"""The run directory: what a training run leaves behind, how it is written and read back.

config.toml   the resolved config: `resnet-cifar train --config config.toml` reruns it
train.log     everything printed; metrics.csv and metrics.jsonl: one row per epoch
last.pt       full training state after the latest epoch or within it: what --resume reads
best.pt       best validation accuracy so far; best_on_test.pt when validation is the test set
model.pth     a plain state_dict, as the original repository saved; summary.json: the figures
.lock         held (flock) by the training process writing the directory
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_cifar.atomic import atomic_write_text, os_error_cause
from resnet_cifar.config_files import read_toml
from resnet_cifar.errors import CheckpointError, ConfigError
from resnet_cifar.log import logger

try:  # advisory locks: POSIX. Elsewhere runs are not locked (documented in the README).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

METRIC_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time",
                 "img_per_s")
# Columns only with the option behind them (`ema_decay`, `tta`)
OPTIONAL_METRIC_FIELDS = ("ema_val_loss", "ema_val_acc", "val_tta_acc", "ema_val_tta_acc")
# metrics.jsonl only: a run started before they existed keeps a CSV header that matches on resume.
JSONL_ONLY_FIELDS = ("threads",)


def metric_fields(row: dict[str, Any]) -> tuple[str, ...]:
    return METRIC_FIELDS + tuple(k for k in OPTIONAL_METRIC_FIELDS if k in row)


LAST, BEST, BEST_ON_TEST, WEIGHTS = "last.pt", "best.pt", "best_on_test.pt", "model.pth"
RUN_MARKERS = ("config.toml", LAST, "metrics.csv")
LOCK_FILE = ".lock"
# Every file a run directory can hold (train, eval --plot, show, report, export): what --overwrite
# removes, and nothing else.
TRAINING_CHECKPOINTS = (LAST, BEST, BEST_ON_TEST)  # full training states
CHECKPOINTS = (*TRAINING_CHECKPOINTS, WEIGHTS)
EXPORT_SUFFIXES = (".onnx", ".torchscript.pt", ".pt2")  # export.FORMATS' (a test checks)
RUN_FILES = (
    "config.toml", "train.log", "metrics.csv", "metrics.jsonl", "summary.json", *CHECKPOINTS,
    "curves.png", "predictions.png", "confusion.png", "per_class.png", "report.html",
    *(Path(c).stem + suffix for c in CHECKPOINTS for suffix in EXPORT_SUFFIXES))
RUN_SUBDIRS = ("tensorboard",)


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """runs/NAME-DATE-TIME, or its first free -2, -3 ...: two runs started in one second must
    not meet in one folder."""
    first = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = first, 1
    while path.exists():
        n += 1
        path = first.with_name(f"{first.name}-{n}")
    return path


def holds_run(path: Path) -> bool:
    return any((path / marker).exists() for marker in RUN_MARKERS)


def check_new_run_dir(path: Path, *, overwrite: bool) -> None:
    """Refuse, before anything is read or created, an ``out`` that cannot take a new run."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"`out` (--out) {path} is a file; give a directory")
    if not holds_run(path) or overwrite:
        return
    if not (path / LAST).exists():
        raise ConfigError(
            f"{path} holds a run that saved no checkpoint (it stopped before its first epoch "
            "ended), so there is nothing to resume; pass `overwrite` (--overwrite) to start it "
            "again, or another `out` (--out)")
    if (holder := RunLock.holder(path)) is not None:
        raise ConfigError(f"{path} holds a run that is training now (pid {holder}); wait for it "
                          "to finish or stop it, or choose another `out` (--out)")
    if (path / "summary.json").exists():
        raise ConfigError(
            f"{path} holds a finished run; pass `overwrite` (--overwrite) to replace it, `resume` "
            f"(--resume) {path} with more `epochs` (--epochs) to train it longer, or another "
            "`out` (--out)")
    raise ConfigError(f"{path} already holds a run; pass `resume` (--resume) {path} to continue "
                      "it, `overwrite` (--overwrite) to replace it, or another `out` (--out)")


def create_run_dir(path: Path, *, overwrite: bool) -> RunLock:
    """Create and lock ``path`` for a new run (with ``overwrite``, cleared); returns the lock."""
    check_new_run_dir(path, overwrite=overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create run directory {path}: {os_error_cause(err)}; choose a "
                          "writable `out` (--out)") from None
    lock = RunLock(path)
    try:
        check_new_run_dir(path, overwrite=overwrite)  # again, now that no other run can start
        if overwrite:
            clear_run_dir(path)
    except BaseException:
        lock.release()
        raise
    return lock


def clear_run_dir(path: Path) -> None:
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
        for leftover in path.glob(f".{name}.*"):  # an atomic write interrupted by kill -9
            leftover.unlink(missing_ok=True)
    for name in RUN_SUBDIRS:
        if (path / name).is_dir():
            shutil.rmtree(path / name)


class RunLock:
    """An exclusive flock on ``.lock``: a second training process is refused at once, and the
    kernel drops it when the process dies, so a crash never leaves a stale lock."""

    def __init__(self, run_dir: Path):
        self.file = None
        try:
            self.file = open(run_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the run's life
        except OSError as err:
            raise ConfigError(f"cannot write in run directory {run_dir}: {os_error_cause(err)}; "
                              "choose a writable `out` (--out)") from None
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            self.file = None
            raise ConfigError(f"{run_dir} is in use by another training run (pid {holder}); wait "
                              "for it to finish or stop it, or choose another `out` (--out)"
                              ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    @staticmethod
    def holder(run_dir: Path) -> str | None:
        """The pid of the process training in ``run_dir`` now, or None."""
        lock_path = run_dir / LOCK_FILE
        if fcntl is None or not lock_path.is_file():  # pragma: no cover
            return None
        with open(lock_path) as file:  # read-only: asking changes nothing
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return file.read().strip() or "unknown"
        return None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the flock
            self.file = None


class RunLog:
    """Lines to the ``resnet_cifar`` logger and train.log; metric rows to the CSV, the JSONL and
    TensorBoard when asked. ``enabled=False`` (a non-zero DDP rank): every call is a no-op."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = False):
        self.run_dir, self.enabled = run_dir, enabled
        self.writer = self.summary_writer = None  # the writer starts with the first metrics
        if tensorboard and enabled and run_dir is not None:
            try:  # checked now, before the run directory exists
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("`tensorboard` (--tensorboard) needs the tensorboard package: "
                                  "pip install 'resnet-cifar[tb]' (or pip install tensorboard)"
                                  ) from None
            self.summary_writer = SummaryWriter

    def info(self, message: str) -> None:
        """Log ``message`` at INFO and append it to train.log, whatever the logger's level."""
        if self.enabled:
            logger().info(message)
            self.write(message)

    def write(self, message: str) -> None:
        """Append ``message`` to train.log only (for what the CLI prints itself)."""
        if self.enabled and self.run_dir is not None and self.run_dir.is_dir():
            with open(self.run_dir / "train.log", "a") as f:
                f.write(message + "\n")

    def metrics(self, row: dict[str, Any]) -> None:
        if not self.enabled or self.run_dir is None:
            return
        if self.summary_writer is not None and self.writer is None:
            self.writer = self.summary_writer(str(self.run_dir / "tensorboard"))
        csv_path = self.run_dir / "metrics.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=metric_fields(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(strict_json(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()


def strict_json(value: Any, indent: int | None = None) -> str:
    """JSON that strict parsers read: a NaN or infinite number is written as null."""
    return json.dumps(_finite_or_null(value), indent=indent, allow_nan=False)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """On resume, drop rows of epochs past the checkpoint (written after it, then lost)."""
    jsonl = run_dir / "metrics.jsonl"
    if not jsonl.exists():
        return
    rows = [r for r in parse_metrics(jsonl) if r["epoch"] <= epochs_done]
    atomic_write_text(jsonl, "".join(strict_json(r) + "\n" for r in rows))
    fields = metric_fields(rows[0]) if rows else METRIC_FIELDS
    lines = [",".join(fields)] + [",".join(str(r.get(k, "")) for k in fields) for r in rows]
    atomic_write_text(run_dir / "metrics.csv", "\n".join(lines) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise ConfigError(f"{run_dir} holds no metrics.jsonl; is it a resnet-cifar run directory?")
    return parse_metrics(path)


def parse_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl. A torn last line is ignored with a warning; a bad line
    anywhere else is an error naming the line."""
    lines = [(i, line) for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if line.strip()]
    rows = []
    for position, (number, line) in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "epoch" not in row:
                raise ValueError("not a metrics row")
        except ValueError:
            if position == len(lines) - 1:
                warnings.warn(f"{path}: ignoring its torn last line {number} (the run stopped "
                              "while writing it)", RuntimeWarning, stacklevel=3)
                break
            raise ConfigError(f"{path}, line {number}, is not a metrics row (damaged file?); "
                              "remove that line to read the run") from None
        rows.append(row)
    return rows


def format_row(row: dict[str, Any], epochs: int) -> str:
    width = len(str(epochs))
    return (f"{row['epoch']:>{width}}/{epochs}  lr {row['lr']:<8.4g} "
            f"train {row['train_loss']:.4f} {100 * row['train_acc']:6.2f}%  "
            f"val {row['val_loss']:.4f} {100 * row['val_acc']:6.2f}%  "
            f"{row['epoch_time']:7.1f}s {row['img_per_s']:7.0f} img/s")


def best_checkpoint_name(val_is_test: bool) -> str:
    return BEST_ON_TEST if val_is_test else BEST


def pick_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``best``: best.pt, else last.pt (best_on_test.pt was chosen on the very test set a report
    evaluates on); ``last``: last.pt; anything else is a path, for load_checkpoint to judge."""
    names = {"best": (BEST, LAST, BEST_ON_TEST), "last": (LAST,)}
    if which not in names:
        return Path(which)
    for name in names[which]:
        if (run_dir / name).is_file():
            return run_dir / name
    raise CheckpointError(f"{run_dir} holds no {' or '.join(names[which])}; "
                          "has its first epoch finished?")


@dataclass
class RunInfo:
    path: Path
    rows: list[dict[str, Any]]  # metrics.jsonl, one row per epoch
    summary: dict[str, Any] | None  # summary.json; None while the run is in progress
    config: dict[str, Any] = field(default_factory=dict)  # config.toml

    def _get(self, key: str, default: Any = None) -> Any:
        if self.summary and self.summary.get(key) is not None:
            return self.summary[key]
        return self.config.get(key, default)

    @property
    def model(self) -> str:
        return self._get("model", "?")

    @property
    def name(self) -> str:
        return self._get("name") or self.model

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self._get("model_kwargs") or {})

    @property
    def seed(self) -> int | None:
        return self._get("seed")

    @property
    def val_is_test(self) -> bool:
        if "val_is_test" in (self.summary or {}):
            return bool(self.summary["val_is_test"])
        return not self.config.get("data", {}).get("val_split", 0)

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def data_fingerprint(self) -> str | None:
        return self.config.get("data", {}).get("fingerprint") or \
            (self.summary or {}).get("data_fingerprint")

    @property
    def num_classes(self) -> int | None:
        return (self.summary or {}).get("num_classes")


def each_once(paths: list[str | Path]) -> list[Path]:
    """``paths``, refused where two name one run (a symlink, another spelling)."""
    seen: dict[Path, str] = {}
    for given in map(str, paths):
        resolved = Path(given).resolve()
        if resolved in seen:
            both = given if seen[resolved] == given else f"{seen[resolved]} and {given}"
            raise ConfigError(f"{both}: {resolved} is given twice; give each run once")
        seen[resolved] = given
    return [Path(p) for p in paths]


def read_run(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory; give a run directory (one `resnet-cifar "
                          "train` wrote, holding metrics.jsonl)")
    rows = read_metrics(path)
    summary = None
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path / 'summary.json'} is not valid JSON ({err})") from None
    config = read_toml(path / "config.toml") if (path / "config.toml").is_file() else {}
    return RunInfo(path, rows, summary, config)
