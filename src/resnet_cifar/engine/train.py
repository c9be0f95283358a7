"""A training run: set up, then per epoch train, validate, save, log.

Resume is exact: shuffle and augmentation derive from (seed, epoch), the lr from progress, and
last.pt holds every other state, RNGs included (bitwise on CPU with `deterministic`).
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.config import TrainConfig
from resnet_cifar.config import validate as validate_config
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine import report, rundir, runtime, setup, state
from resnet_cifar.engine.evaluate import EvalResult, evaluate_model
from resnet_cifar.engine.inference import Splits, load_arrays, make_splits
from resnet_cifar.engine.runtime import DistContext, StopRequested
from resnet_cifar.errors import UserError
from resnet_cifar.log import default_progress

Callback = Callable[["Trainer", dict[str, Any]], None]


class TrainingDiverged(UserError):
    """The loss became NaN or inf; last.pt still holds the last good state it saved."""


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]  # {"val_acc", "epoch", "file"} (+ "weights" with `ema_decay`)
    test: EvalResult | None  # of the final weights (the average with `ema_decay`)
    summary: dict[str, Any]


def train_step(parts: setup.TrainParts, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and SGD update on one batch: (loss, logits), left on the device."""
    if parts.compile_mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()  # a new iteration: replay, don't chain
    with parts.autocast():
        logits = parts.forward_model(x)
        loss = parts.criterion(logits.float(), y)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return loss, logits


def train_one_epoch(parts: setup.TrainParts, loader: DeviceLoader, stats: state.EpochStats, *,
                    epoch: int, lr: Callable[[float], float], start_step: int = 0,
                    check: Callable[[int, torch.Tensor], bool] | None = None, bar=None) -> int:
    """One pass over ``loader`` from ``start_step``, adding to ``stats``; returns the steps done.
    ``check(steps, loss)`` (True: leave) runs at the first and last steps and every step on a CPU,
    every 50 on a GPU (a read-back syncs); its time is not counted."""
    parts.forward_model.train()
    loader.set_epoch(epoch)
    steps = len(loader)
    check_every = 1 if stats.loss_sum.device.type == "cpu" else 50
    step, start = start_step, time.perf_counter()
    for x, y in itertools.islice(iter(loader), start_step, None):
        for group in parts.optimizer.param_groups:
            group["lr"] = lr(epoch + step / steps)
        loss, logits = train_step(parts, x, y)
        if parts.ema is not None:  # steps before this one, counted across epochs: resume replays
            parts.ema.update(parts.model, epoch * steps + step)
        stats.loss_sum += loss.detach().double() * y.shape[0]
        stats.correct += (logits.detach().argmax(1) == y).sum()
        stats.seen += y.shape[0]
        step += 1
        if bar is not None:
            bar.update(1)
        if check is not None and (step % check_every == 0 or step in (start_step + 1, steps)):
            stats.seconds += time.perf_counter() - start
            if check(step, loss.detach()):
                return step
            start = time.perf_counter()
    stats.seconds += time.perf_counter() - start
    return step


def validate(model: torch.nn.Module, loader: DeviceLoader, classes: list[str], *,
             autocast=None, dist: DistContext | None = None, tta: str = "none") -> EvalResult:
    return evaluate_model(model, loader, classes, autocast=autocast,
                          all_reduce=(dist or DistContext()).all_reduce, tta=tta)


class Trainer:
    """A run's state (epoch, step, history, best) and ``fit()``, which runs its epochs."""

    def __init__(self, config: TrainConfig, *, splits: Splits, parts: setup.TrainParts,
                 loaders: tuple[DeviceLoader, DeviceLoader], device: torch.device,
                 dist: DistContext, run_dir: Path | None, log: rundir.RunLog,
                 progress: bool = False, threads: runtime.ThreadFollower | None = None):
        self.config, self.splits, self.parts = config, splits, parts
        self.train_loader, self.val_loader = loaders
        self.device, self.dist, self.run_dir, self.log = device, dist, run_dir, log
        self.progress = progress and dist.is_main
        self.threads = threads  # None: a fixed thread count
        self.stop = runtime.GracefulStop(on_signal=log.write)
        self.epoch, self.step_in_epoch = 0, 0  # epochs done, steps done in the current one
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0, "file": None}
        self.epoch_stats: dict[str, Any] | None = None  # partial epoch restored from last.pt
        self.callbacks: list[Callback] = []
        self.last_val: state.Validation | None = None
        self.saved_at = time.monotonic()  # `save_every` counts from the latest save of last.pt
        self.saved: tuple[int, int] | None = None  # (epoch, step) that last.pt holds
        self.curves_at: float | None = None
        self.compile_seconds: float | None = None  # the first compiled step

    @property
    def model(self) -> torch.nn.Module:
        return self.parts.model

    @property
    def final_model(self) -> torch.nn.Module:
        """The moving average when kept (fixed by the recipe, never chosen on a split)."""
        return self.parts.ema.module if self.parts.ema is not None else self.model

    @property
    def final_weights(self) -> str:
        return "ema" if self.parts.ema is not None else "raw"

    def lr_at(self, progress: float) -> float:
        return setup.lr_at(self.config, progress, self.dist.world_size)

    def fit(self) -> RunResult:
        for line in report.header_lines(
                self.config, self.splits, run_dir=self.run_dir, params=self.parts.params,
                macs=self.parts.macs, lr0=self.lr_at(0.0), world_size=self.dist.world_size,
                device=self.device, others_busy=self.threads and self.threads.others_busy,
                epoch=self.epoch, step=self.step_in_epoch,
                steps_per_epoch=len(self.train_loader)):
            self.log.info(line)
        with self.stop:
            while self.epoch < self.config.epochs:
                stats = self.train_epoch()
                if self.stop.requested:
                    self.save("last.pt", stats)
                    raise StopRequested(self.stop.exit_code, self.stopped())
                self.end_epoch(stats)
                if self.stop.requested and self.epoch < self.config.epochs:
                    # the signal came during validation or saving: the epoch is saved
                    raise StopRequested(self.stop.exit_code, self.stopped())
        return self.finish()

    def train_epoch(self) -> state.EpochStats:
        self.follow_threads()
        stats = state.EpochStats.zeros(self.device)
        if self.epoch_stats and self.step_in_epoch:
            stats.load_state_dict(self.epoch_stats)
        self.epoch_stats = None
        bar = (report.progress_bar(len(self.train_loader), self.step_in_epoch, self.epoch)
               if self.progress else None)
        started, first = time.perf_counter(), self.step_in_epoch

        def check(step: int, loss: torch.Tensor) -> bool:
            if self.config.compile and self.compile_seconds is None and step == first + 1:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.compile_seconds = time.perf_counter() - started
                self.log.info(f"torch.compile: first step {self.compile_seconds:.1f} s "
                              "(compilation; it counts in this epoch's time)")
            self.step_in_epoch = step
            flags = [torch.tensor(float(self.stop.requested), device=loss.device),
                     (~torch.isfinite(loss)).float(),
                     torch.tensor(float(self.save_due()), device=loss.device)]
            stop, bad, save = self.dist.any_rank(torch.stack(flags))
            if bad:
                self.diverged(float(loss))
            if stop:
                return True
            if step < len(self.train_loader):  # at the epoch's end, end_epoch saves anyway
                if save:
                    self.save_mid_epoch(stats)
                self.follow_threads(step)
            return False

        train_one_epoch(self.parts, self.train_loader, stats, epoch=self.epoch, lr=self.lr_at,
                        start_step=self.step_in_epoch, check=check, bar=bar)
        if bar is not None:
            bar.close()
        if not math.isfinite(float(stats.loss_sum)):
            self.diverged(float(stats.loss_sum))
        return stats

    def follow_threads(self, step: int | None = None) -> None:
        """Before each epoch and, within one (``step``), every runtime.FOLLOW_SECONDS."""
        if self.threads is None or (step is not None and not self.threads.due()):
            return
        before, now = self.threads.follow()
        if now != before and (self.history or step is not None):
            where = f" (epoch {self.epoch + 1}, step {step})" if step is not None else ""
            self.log.info(
                f"threads    {before} -> {now}{where}: other processes kept "
                f"{self.threads.others_busy:.1f} core(s) busy; `threads` (--threads) N fixes "
                "the count")

    def save_due(self) -> bool:
        every = self.config.save_every
        return every > 0 and time.monotonic() - self.saved_at >= every * 60

    def save_mid_epoch(self, stats: state.EpochStats) -> None:
        """last.pt within the epoch, but not after a NaN/inf loss: last.pt stays good."""
        poisoned = (~torch.isfinite(stats.loss_sum)).double()
        self.dist.all_reduce(poisoned)  # every rank saves (the save is collective) or none
        if not float(poisoned):
            self.save("last.pt", stats)

    def end_epoch(self, stats: state.EpochStats) -> None:
        val = self.last_val = self.validate()
        row = self.epoch_row(stats, val)
        self.epoch += 1
        self.step_in_epoch = 0
        self.history.append(row)
        # best: the better of the raw and averaged weights on the plain validation accuracy
        improved = val.best_accuracy > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": val.best_accuracy, "epoch": self.epoch,
                         "file": rundir.best_checkpoint_name(self.splits.val_is_test)}
            if self.parts.ema is not None:
                self.best["weights"] = val.best_weights
        self.save("last.pt")
        if improved:
            self.save(self.best["file"], weights=val.best_weights)
        self.log.info(rundir.format_row(row, self.config.epochs) + report.validation_words(row)
                      + ("  *" if improved else ""))
        self.log.metrics(row)
        if self.curves_at is None or time.monotonic() - self.curves_at >= report.CURVES_EVERY_S:
            self.draw_curves()
        for callback in self.callbacks:
            callback(self, row)

    def validate(self) -> state.Validation:
        return state.validate_weights(self.parts, self.val_loader, self.splits.classes,
                                      tta=self.config.tta, dist=self.dist)

    def epoch_row(self, stats: state.EpochStats, val: state.Validation) -> dict[str, Any]:
        sums = torch.stack([stats.loss_sum, stats.correct.double(),
                            torch.tensor(float(stats.seen), dtype=torch.float64,
                                         device=self.device)])
        self.dist.all_reduce(sums)
        seen = float(sums[2])
        return {"epoch": self.epoch + 1, "lr": self.lr_at(float(self.epoch)),
                "train_loss": float(sums[0]) / seen, "train_acc": float(sums[1]) / seen,
                "val_loss": val.raw.loss, "val_acc": val.raw.accuracy,
                "epoch_time": stats.seconds, "img_per_s": seen / max(stats.seconds, 1e-9),
                "threads": torch.get_num_threads(), **val.columns()}

    def draw_curves(self) -> None:
        self.curves_at = time.monotonic()
        if self.dist.is_main and self.run_dir is not None:
            report.draw_curves(self.run_dir, self.log)

    def diverged(self, value: float) -> None:
        message = report.diverged_message(self.config, self.run_dir, value, self.epoch,
                                          self.step_in_epoch, saved=self.saved)
        self.log.write(f"error: {message}")
        raise TrainingDiverged(message)

    def stopped(self) -> str:
        message = report.resume_hint(self.run_dir, self.epoch, self.step_in_epoch)
        self.log.write(message)
        return message

    def test(self) -> state.Validation | None:
        """The raw and averaged weights on the test set (no TTA); None without a test split."""
        s = self.splits
        if len(s.test_labels) == 0:
            return None
        if s.val_is_test:
            return self.last_val or self.validate()
        loader = setup.eval_loader(self.config, s, s.test_images, s.test_labels, self.device,
                                   self.dist)
        return state.validate_weights(self.parts, loader, s.classes, dist=self.dist)

    def finish(self) -> RunResult:
        tested = self.test()
        test = tested and (tested.ema if self.final_weights == "ema" else tested.raw)
        summary = report.run_summary(
            self.config, self.splits, self.history, best=self.best, epochs=self.epoch,
            params=self.parts.params, macs=self.parts.macs, device=self.device,
            world_size=self.dist.world_size, test_acc=test and test.accuracy,
            final_weights=self.final_weights, test_acc_raw=tested and tested.raw.accuracy)
        if self.dist.is_main and self.run_dir is not None:
            state.write_outputs(self.run_dir, self.final_model, summary)
            for line in report.final_lines(self.splits, self.run_dir, summary, self.best):
                self.log.info(line)
            self.draw_curves()  # with the test accuracy now in summary.json
        return RunResult(self.run_dir, self.history, self.best, test, summary)

    def save(self, name: str, stats: state.EpochStats | None = None,
             weights: str | None = None) -> None:
        state.save_state(state.training_payload(self, stats, weights), name, self.run_dir,
                         self.dist)
        if name == "last.pt":
            self.saved_at = time.monotonic()
            self.saved = (self.epoch, self.step_in_epoch)


def build_trainer(config: TrainConfig, dist: DistContext, device: torch.device,
                  run_dir: Path, progress: bool | None) -> Trainer:
    """Threads, data, model and wrappers, in the order that fixes the RNG streams."""
    runtime.configure_threads(config.threads)
    runtime.configure_determinism(config.deterministic, device)
    runtime.seed_everything(config.seed)
    log = rundir.RunLog(run_dir, enabled=dist.is_main, tensorboard=config.tensorboard)
    progress = default_progress() if progress is None else progress
    threads = (runtime.ThreadFollower() if config.threads == 0 and device.type == "cpu"
               and not config.deterministic else None)
    splits = make_splits(load_arrays(config.data, progress and dist.is_main), config.data,
                         config.seed)
    setup.record_data(config, splits)
    loaders = setup.build_loaders(config, splits, device, dist)
    stem_images = (setup.whitening_images(splits, config.seed)
                   if config.stem_init == "whitening" else None)
    parts = setup.build_parts(config, splits.num_classes, device, dist, stem_images=stem_images)
    return Trainer(config, splits=splits, parts=parts, loaders=loaders, device=device, dist=dist,
                   run_dir=run_dir, log=log, progress=progress, threads=threads)


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None,
          overrides: dict[str, Any] | None = None, overwrite: bool = False,
          progress: bool | None = None, callbacks: list[Callback] | None = None) -> RunResult:
    """Train a model as ``config`` says (or resume the run at ``resume``), writing a run directory.

    Everything is checked before the run directory is created. ``progress``: None: on a terminal or
    in a notebook. ``callbacks(trainer, row)`` run after every epoch (``trainer.stop.request()``
    stops as SIGINT would). Raises StopRequested after saving when interrupted, TrainingDiverged
    on a NaN/inf loss.
    """
    saved = None
    if resume is not None:
        config, run_dir, saved = state.resume_config(resume, overrides)
    else:
        config = config or TrainConfig()
        validate_config(config)
        run_dir = Path(config.out) if config.out else rundir.default_run_dir(
            config.name or config.model)
    dist, device_spec = runtime.init_distributed(config.device)
    lock = None
    try:
        device = runtime.resolve_device(device_spec)
        setup.check_device_options(config, device)
        if resume is None and dist.is_main:
            rundir.check_new_run_dir(run_dir, overwrite=overwrite)
        trainer = build_trainer(config, dist, device, run_dir, progress)
        if saved is not None:
            state.restore_state(trainer, saved["state"], saved["model"])
        if dist.is_main:
            lock = state.open_run_dir(run_dir, trainer.config, epochs_done=trainer.epoch,
                                      resumed=saved is not None, overwrite=overwrite)
        trainer.callbacks.extend(callbacks or [])
        result = trainer.fit()
        dist.barrier()  # leave together: a rank torn down while rank 0 writes can abort in gloo
        return result
    except Exception as err:
        if dist.enabled:  # say which rank failed; torchrun then stops the others
            print(f"rank {dist.rank} failed: {type(err).__name__}: {err}", file=sys.stderr,
                  flush=True)
        raise
    finally:
        if lock is not None:
            lock.release()
        runtime.cleanup_distributed()
