"""The run directory: what a training run leaves behind, and how it is written.

config.toml      the resolved config: `resnet-cifar train --config config.toml` reruns it
train.log        everything printed, as printed
metrics.csv      one row per epoch (also metrics.jsonl, one JSON object per line)
last.pt          full training state after the latest epoch (atomic): what --resume reads
best.pt          best validation accuracy so far; best_on_test.pt when validation is the test set
model.pth        a plain state_dict, as the original repository saved, loadable by its code
summary.json     the final figures: accuracies, params, MACs, speed
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from resnet_cifar.atomic import atomic_write_text
from resnet_cifar.errors import ConfigError

METRIC_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "epoch_time",
    "img_per_s",
)
RUN_MARKERS = ("config.toml", "last.pt", "metrics.csv")


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    return Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def holds_run(path: Path) -> bool:
    return any((path / marker).exists() for marker in RUN_MARKERS)


def prepare_run_dir(path: Path, *, overwrite: bool) -> Path:
    """Create ``path``; refuse one that already holds a run unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a directory")
    if holds_run(path):
        if not overwrite:
            raise ConfigError(
                f"{path} already holds a run; pass --resume {path} to continue it, "
                "--overwrite to replace it, or another --out"
            )
        for leftover in ("metrics.csv", "metrics.jsonl", "train.log", "summary.json"):
            (path / leftover).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


class RunLog:
    """Prints a line and appends it to train.log; appends metric rows to the CSV and JSONL, and
    to TensorBoard event files in ``<run_dir>/tensorboard`` when asked.

    ``enabled=False`` (a non-zero DDP rank) turns every call into a no-op.
    """

    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = False):
        self.run_dir = run_dir
        self.enabled = enabled
        self.writer = None
        if tensorboard and enabled and run_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(
                    "--tensorboard needs the tensorboard package: "
                    "pip install 'resnet-cifar[tb]' (or pip install tensorboard)"
                ) from None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        print(message, flush=True)
        if self.run_dir is not None:
            with open(self.run_dir / "train.log", "a") as f:
                f.write(message + "\n")

    def metrics(self, row: dict[str, Any]) -> None:
        if not self.enabled or self.run_dir is None:
            return
        csv_path = self.run_dir / "metrics.csv"
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """On resume, drop rows of epochs past the checkpoint (written after it, then lost)."""
    jsonl = run_dir / "metrics.jsonl"
    if not jsonl.exists():
        return
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["epoch"] <= epochs_done]
    atomic_write_text(jsonl, "".join(json.dumps(r) + "\n" for r in rows))
    lines = [",".join(METRIC_FIELDS)]
    for r in rows:
        lines.append(",".join(str(r.get(k, "")) for k in METRIC_FIELDS))
    atomic_write_text(run_dir / "metrics.csv", "\n".join(lines) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a run, from metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise ConfigError(f"{run_dir} holds no metrics.jsonl; is it a resnet-cifar run directory?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_row(row: dict[str, Any], epochs: int) -> str:
    width = len(str(epochs))
    return (
        f"{row['epoch']:>{width}}/{epochs}  lr {row['lr']:<8.4g} "
        f"train {row['train_loss']:.4f} {100 * row['train_acc']:6.2f}%  "
        f"val {row['val_loss']:.4f} {100 * row['val_acc']:6.2f}%  "
        f"{row['epoch_time']:7.1f}s {row['img_per_s']:7.0f} img/s"
    )
