"""How a training run's state goes to disk and comes back: the epoch's running sums and its
validation, last.pt and best.pt written by rank 0 with every rank's RNG state, and the one-line
error a failed mid-run write becomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.atomic import atomic_write_text, is_torch_write_failure, os_error_cause
from resnet_cifar.config import TrainConfig, to_dict, to_toml
from resnet_cifar.engine import rundir
from resnet_cifar.engine.checkpoint import atomic_save, checkpoint_payload
from resnet_cifar.engine.distributed import DistContext
from resnet_cifar.engine.evaluate import EvalResult, evaluate_model
from resnet_cifar.engine.runtime import capture_rng_state
from resnet_cifar.engine.train_report import restart_command, resume_command
from resnet_cifar.engine.train_setup import TrainParts
from resnet_cifar.errors import UserError
from resnet_cifar.version import __version__


@dataclass
class EpochStats:
    """Running sums of one training epoch, kept on the device (no sync per step)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    seconds: float = 0.0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochStats:
        return cls(
            torch.zeros((), dtype=torch.float64, device=device),
            torch.zeros((), dtype=torch.int64, device=device),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_sum": float(self.loss_sum),
            "correct": int(self.correct),
            "seen": self.seen,
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum.fill_(state["loss_sum"])
        self.correct.fill_(state["correct"])
        self.seen, self.seconds = state["seen"], state["seconds"]


@dataclass
class Validation:
    """One epoch's validation: the raw weights and, with `ema_decay`, their moving average;
    with `tta`, each again under test-time augmentation, reported beside the plain accuracy."""

    raw: EvalResult
    ema: EvalResult | None = None
    raw_tta: EvalResult | None = None
    ema_tta: EvalResult | None = None

    @property
    def best_weights(self) -> str:
        """The weights `best` keeps this epoch: the better PLAIN accuracy (a tie keeps raw). TTA
        never chooses: it is a report on the chosen weights, and choosing on it would make the
        best checkpoint depend on how it is later evaluated."""
        if self.ema is not None and self.ema.accuracy > self.raw.accuracy:
            return "ema"
        return "raw"

    @property
    def best_accuracy(self) -> float:
        return (self.ema if self.best_weights == "ema" else self.raw).accuracy

    def columns(self) -> dict[str, float]:
        """The metrics columns beyond val_loss and val_acc (the raw weights'): none at all
        without `ema_decay` and `tta`, so such rows are what they were before the options."""
        columns = {}
        if self.ema is not None:
            columns.update(ema_val_loss=self.ema.loss, ema_val_acc=self.ema.accuracy)
        if self.raw_tta is not None:
            columns["val_tta_acc"] = self.raw_tta.accuracy
        if self.ema_tta is not None:
            columns["ema_val_tta_acc"] = self.ema_tta.accuracy
        return columns


def validate_weights(parts: TrainParts, loader, classes: list[str], *, tta: str = "none",
                     dist: DistContext | None = None) -> Validation:
    """The raw weights and, when kept, their moving average over ``loader``; with ``tta``, each
    again under test-time augmentation. Exact across DDP ranks."""
    all_reduce = (dist or DistContext()).all_reduce

    def run(model: torch.nn.Module, mode: str = "none") -> EvalResult:
        return evaluate_model(model, loader, classes, autocast=parts.eval_autocast(),
                              all_reduce=all_reduce, tta=mode)

    ema = parts.ema.module if parts.ema is not None else None
    return Validation(
        raw=run(parts.model),
        ema=run(ema) if ema is not None else None,
        raw_tta=run(parts.model, tta) if tta != "none" else None,
        ema_tta=run(ema, tta) if ema is not None and tta != "none" else None,
    )


def training_payload(trainer: Any, stats: EpochStats | None,
                     weights: str | None = None) -> dict[str, Any]:
    """What ``trainer`` (engine.train.Trainer) saves: last.pt / best.pt. With `ema_decay` it
    holds the moving average too, and says which weights it gives to inference (``weights``;
    default: the run's final weights, the average)."""
    cfg, s, ema = trainer.config, trainer.splits, trainer.parts.ema
    steps = max(len(trainer.train_loader), 1)
    averaged = {} if ema is None else {"ema": ema.state_dict(),
                                       "weights": weights or trainer.final_weights}
    return checkpoint_payload(
        trainer.model, model_name=cfg.model, model_kwargs=cfg.model_kwargs,
        num_classes=s.num_classes, classes=s.classes, mean=s.mean, std=s.std,
        normalize=cfg.data.normalize, config=to_dict(cfg), package_version=__version__,
        optimizer=trainer.parts.optimizer.state_dict(),
        scaler=trainer.parts.scaler.state_dict(),  # {} unless `amp` fp16
        scheduler={
            "kind": cfg.schedule,
            "progress": trainer.epoch + trainer.step_in_epoch / steps,
            "partial_epoch": stats.state_dict() if stats is not None else None,
        },
        epoch=trainer.epoch, step=trainer.step_in_epoch, rng=capture_rng_state(),
        loader=trainer.train_loader.state_dict(), best=dict(trainer.best),
        history=list(trainer.history), **averaged,
    )


def save_state(payload: dict[str, Any], name: str, run_dir: Path | None,
               dist: DistContext) -> None:
    """Every rank calls this (to contribute its RNG state); rank 0 writes ``run_dir / name``."""
    if dist.enabled:
        ranks: list[Any] = [None] * dist.world_size
        torch.distributed.all_gather_object(ranks, payload["rng"])
        payload["rng"] = {**payload["rng"], "ranks": ranks}
    if dist.is_main and run_dir is not None:
        path = run_dir / name
        then = (f"; the previous last.pt is intact; free some space, then resume with: "
                f"{resume_command(run_dir)}" if (run_dir / "last.pt").exists() else
                f"; nothing was saved to resume from: free some space, then start it again with: "
                f"{restart_command(run_dir)}")
        write_checked(path, lambda: atomic_save(payload, path), then)


def write_outputs(run_dir: Path, model: torch.nn.Module, summary: dict[str, Any]) -> None:
    """A finished run's model.pth (a plain state_dict of ``model``: the final weights, the moving
    average with `ema_decay`) and summary.json."""
    for name, write in (
        ("model.pth", lambda p: atomic_save(model.state_dict(), p)),
        ("summary.json", lambda p: atomic_write_text(p, rundir.strict_json(summary, indent=2))),
    ):
        path = run_dir / name
        write_checked(path, lambda write=write, path=path: write(path),
                      "; last.pt holds the finished run: free some space and resume it")


def open_run_dir(run_dir: Path, config: TrainConfig, *, epochs_done: int, resumed: bool,
                 overwrite: bool) -> rundir.RunLock:
    """Create (or, resuming, lock and trim to ``epochs_done``) the run directory; write
    config.toml. Returns the lock the run holds while it trains."""
    lock = (rundir.RunLock(run_dir) if resumed
            else rundir.create_run_dir(run_dir, overwrite=overwrite))
    if resumed:
        rundir.truncate_metrics(run_dir, epochs_done)
    write_checked(run_dir / "config.toml", lambda: atomic_write_text(
        run_dir / "config.toml", to_toml(config)))
    return lock


def rank_rng_state(rng: dict[str, Any], dist: DistContext) -> dict[str, Any]:
    """This rank's generators from a saved RNG state (each rank gets its own back)."""
    ranks = rng.get("ranks")
    if ranks and len(ranks) == dist.world_size:
        return ranks[dist.rank]
    return rng


def write_checked(path: Path, write: Callable[[], None], hint: str = "") -> None:
    """Run ``write()``; a failure of the file system (full disk, read-only, gone) becomes one
    line naming ``path`` and ``hint``: the way back to the run, which a mid-run write error must
    give instead of explain_write_errors' advice to choose another output directory."""
    try:
        write()
    except OSError as err:
        raise UserError(f"cannot write {path}: {os_error_cause(err)}{hint}") from None
    except RuntimeError as err:
        if not is_torch_write_failure(err):
            raise
        raise UserError(
            f"cannot write {path}: the write failed (is the disk full?){hint}"
        ) from None
