"""A training run's state to disk and back (last.pt, best.pt), the epoch's running sums and
validation, and what a resume may change."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.atomic import atomic_write_text, os_error_cause
from resnet_cifar.config import TrainConfig, from_dict, to_dict
from resnet_cifar.config_files import read_toml, to_toml
from resnet_cifar.engine import rundir
from resnet_cifar.engine.checkpoint import atomic_save, checkpoint_payload, load_checkpoint
from resnet_cifar.engine.evaluate import EvalResult, evaluate_model
from resnet_cifar.engine.recipes import flatten
from resnet_cifar.engine.report import cli_command, restart_command, resume_command
from resnet_cifar.engine.runtime import DistContext, capture_rng_state, restore_rng_state
from resnet_cifar.engine.setup import TrainParts
from resnet_cifar.errors import ConfigError, UserError
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
        return cls(torch.zeros((), dtype=torch.float64, device=device),
                   torch.zeros((), dtype=torch.int64, device=device))

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sum": float(self.loss_sum), "correct": int(self.correct), "seen": self.seen,
                "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum.fill_(state["loss_sum"])
        self.correct.fill_(state["correct"])
        self.seen, self.seconds = state["seen"], state["seconds"]


@dataclass
class Validation:
    """The raw weights and, with `ema_decay`, their average; with `tta`, each again augmented."""

    raw: EvalResult
    ema: EvalResult | None = None
    raw_tta: EvalResult | None = None
    ema_tta: EvalResult | None = None

    @property
    def best_weights(self) -> str:
        """The better PLAIN accuracy (a tie keeps raw): TTA never chooses."""
        return "ema" if self.ema is not None and self.ema.accuracy > self.raw.accuracy else "raw"

    @property
    def best_accuracy(self) -> float:
        return (self.ema if self.best_weights == "ema" else self.raw).accuracy

    def columns(self) -> dict[str, float]:
        """rundir's OPTIONAL_METRIC_FIELDS."""
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
    all_reduce = (dist or DistContext()).all_reduce

    def run(model: torch.nn.Module, mode: str = "none") -> EvalResult:
        return evaluate_model(model, loader, classes, autocast=parts.eval_autocast(),
                              all_reduce=all_reduce, tta=mode)

    ema = parts.ema.module if parts.ema is not None else None
    return Validation(raw=run(parts.model), ema=run(ema) if ema is not None else None,
                      raw_tta=run(parts.model, tta) if tta != "none" else None,
                      ema_tta=run(ema, tta) if ema is not None and tta != "none" else None)


def training_payload(trainer: Any, stats: EpochStats | None,
                     weights: str | None = None) -> dict[str, Any]:
    """What ``trainer`` saves as last.pt / best.pt; ``weights``: which ones inference gets."""
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
        scheduler={"kind": cfg.schedule, "progress": trainer.epoch + trainer.step_in_epoch / steps,
                   "partial_epoch": stats.state_dict() if stats is not None else None},
        epoch=trainer.epoch, step=trainer.step_in_epoch, rng=capture_rng_state(),
        loader=trainer.train_loader.state_dict(), best=dict(trainer.best),
        history=list(trainer.history), **averaged)


def save_state(payload: dict[str, Any], name: str, run_dir: Path | None,
               dist: DistContext) -> None:
    """Every rank calls this (to contribute its RNG state); rank 0 writes ``run_dir / name``."""
    if dist.enabled:
        ranks: list[Any] = [None] * dist.world_size
        torch.distributed.all_gather_object(ranks, payload["rng"])
        payload["rng"] = {**payload["rng"], "ranks": ranks}
    if dist.is_main and run_dir is not None:
        then = (f"; the previous last.pt is intact; free some space, then resume with: "
                f"{resume_command(run_dir)}" if (run_dir / "last.pt").exists() else
                f"; nothing was saved to resume from: free some space, then start it again with: "
                f"{restart_command(run_dir)}")
        write_checked(run_dir / name, lambda p: atomic_save(payload, p), then)


def write_outputs(run_dir: Path, model: torch.nn.Module, summary: dict[str, Any]) -> None:
    then = "; last.pt holds the finished run: free some space and resume it"
    write_checked(run_dir / "model.pth", lambda p: atomic_save(model.state_dict(), p), then)
    write_checked(run_dir / "summary.json",
                  lambda p: atomic_write_text(p, rundir.strict_json(summary, indent=2)), then)


def open_run_dir(run_dir: Path, config: TrainConfig, *, epochs_done: int, resumed: bool,
                 overwrite: bool) -> rundir.RunLock:
    """Create (or, resuming, lock and trim) the run directory; write config.toml."""
    lock = (rundir.RunLock(run_dir) if resumed
            else rundir.create_run_dir(run_dir, overwrite=overwrite))
    if resumed:
        rundir.truncate_metrics(run_dir, epochs_done)
    write_checked(run_dir / "config.toml", lambda p: atomic_write_text(p, to_toml(config)))
    return lock


def restore_state(trainer: Any, state: dict[str, Any], model: dict[str, torch.Tensor]) -> None:
    """Put what training_payload saved back into ``trainer``."""
    parts = trainer.parts
    parts.model.load_state_dict(model)
    parts.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):  # {} unless `amp` fp16
        parts.scaler.load_state_dict(state["scaler"])
    if parts.ema is not None:  # `ema_decay` cannot change on resume: it was saved
        parts.ema.load_state_dict(state["ema"])
    trainer.epoch = int(state["epoch"])
    trainer.step_in_epoch = int(state.get("step", 0))
    trainer.saved = (trainer.epoch, trainer.step_in_epoch)
    trainer.best = dict(state.get("best", trainer.best))
    trainer.history = list(state.get("history", []))
    trainer.epoch_stats = state.get("scheduler", {}).get("partial_epoch")
    ranks, dist = state["rng"].get("ranks"), trainer.dist  # each rank gets its own back
    restore_rng_state(ranks[dist.rank] if ranks and len(ranks) == dist.world_size
                      else state["rng"])
    trainer.train_loader.load_state_dict(state["loader"])


def write_checked(path: Path, write: Callable[[Path], None], hint: str = "") -> None:
    """Run ``write(path)``; a failing file system becomes one line naming ``path`` and ``hint``."""
    try:
        write(path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {os_error_cause(err)}{hint}") from None


# Config keys a resumed run may change: they do not alter the computation (epochs extends it).
RESUME_OVERRIDABLE = {"epochs", "device", "threads", "tensorboard", "save_every"}


def resume_config(path: str | Path, overrides: dict[str, Any] | None
                  ) -> tuple[TrainConfig, Path, dict]:
    """The saved config of a run, with the few overrides that keep it the same run. Returns
    (config, run directory, {"state": training state, "model": raw weights})."""
    path = Path(path)
    ckpt_path = path / rundir.LAST if path.is_dir() else path
    if path.is_dir() and not ckpt_path.exists() and (path / "config.toml").exists():
        raise ConfigError(f"{path} has no last.pt to resume from: the run stopped before its "
                          f"first epoch ended. Start it again with: {restart_command(path)}")
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.config is None or "optimizer" not in ckpt.training_state:
        raise ConfigError(f"{ckpt_path} holds weights only, not a training state to resume")
    config = from_dict(ckpt.config)
    check_belongs(config, ckpt_path)
    overrides = dict(overrides or {})
    data_overrides = overrides.pop("data", None) or {}
    check_unchanged(config, overrides, data_overrides, ckpt_path)
    done = int(ckpt.training_state.get("epoch", 0))
    if overrides.get("epochs", done) < done:
        raise ConfigError(
            f"`epochs` (--epochs) {overrides['epochs']} is fewer than the {done} epochs "
            f"{ckpt_path} has already done; give `epochs` (--epochs) {done} or more (or leave "
            f"it out to keep {config.epochs})")
    for key, value in overrides.items():
        setattr(config, key, value)
    if done >= config.epochs and (ckpt_path.parent / "summary.json").exists():
        raise ConfigError(
            f"{ckpt_path.parent} has finished its {done} epochs already (summary.json is "
            "there): nothing to resume; to train it longer, add `epochs` (--epochs) N with "
            f"N > {done}")
    for key, value in data_overrides.items():
        setattr(config.data, key, value)
    recorded = config.data.path
    if recorded and "path" not in data_overrides and not Path(recorded).exists():
        raise ConfigError(
            f"the data this run trains on, {recorded}, is not there any more; resume with "
            f"`data.path` (--data) PATH where that data is now (it is checked against the run's "
            f"fingerprint): {cli_command()} train --resume "
            f"{shlex.quote(str(ckpt_path.parent.resolve()))} --data PATH")
    model = ckpt.raw_state_dict if ckpt.raw_state_dict is not None else ckpt.state_dict
    return config, ckpt_path.parent, {"state": ckpt.training_state, "model": model}


def check_belongs(config: TrainConfig, ckpt_path: Path) -> None:
    """Refuse a last.pt copied in from another run."""
    own_file = ckpt_path.parent / "config.toml"
    if not own_file.is_file():
        return
    own = flatten(to_dict(from_dict(read_toml(own_file))))
    saved = flatten(to_dict(config))
    differ = sorted(k for k in own.keys() | saved.keys()
                    if k not in SAME_RUN_ANYWHERE and own.get(k) != saved.get(k))
    if differ:
        raise ConfigError(
            f"{ckpt_path} is not this run's checkpoint: its {', '.join(differ)} differ from "
            f"{own_file}; resume the run it came from in its own folder, or start a new run")


# What may differ between a run's config.toml and its last.pt: what a resume may override, and
# where the data and the cache are (the fingerprint names the data).
SAME_RUN_ANYWHERE = RESUME_OVERRIDABLE | {"data.path", "data.cache_dir", "data.allow_other_data"}


def check_unchanged(config: TrainConfig, overrides: dict[str, Any],
                    data_overrides: dict[str, Any], ckpt_path: Path) -> None:
    changed = sorted(k for k, v in overrides.items() if k not in RESUME_OVERRIDABLE
                     and merged(getattr(config, k, None), v) != getattr(config, k, None))
    changed += [f"data.{k}" for k in changed_data(config, data_overrides)]
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming {ckpt_path}; only "
            f"{', '.join(sorted(RESUME_OVERRIDABLE))} and the data's path may change (start a "
            "new run for the rest)")


def merged(current: Any, value: Any) -> Any:
    """``value`` over ``current``, a table key by key, as merge_into does."""
    return {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value


def changed_data(config: TrainConfig, flags: dict[str, Any]) -> list[str]:
    """The data options in ``flags`` that would make a resumed run another run (a new path is
    none where the run recorded a fingerprint)."""
    recorded = config.data
    changed = []
    for key, value in flags.items():
        if key == "cache_dir":  # the machine's, not the run's
            continue
        if key == "path":
            same = recorded.path is not None and (
                Path(value).expanduser().resolve() == Path(recorded.path).expanduser().resolve())
            if not same and recorded.fingerprint is None:
                changed.append("path (the run recorded no fingerprint to check new data by)")
            continue
        if value != getattr(recorded, key):
            changed.append(key)
    return changed
