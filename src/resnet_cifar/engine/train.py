"""The training loop, in visible stages: per epoch train, validate, log, checkpoint.

The default recipe is the original experiment (configs/seed.toml): ResNet-20, 150 epochs, batch
64, SGD(0.1, momentum 0.9, weight decay 1e-4), lr x 0.1 from epoch index 80. On this project's
2-core CPU that is about 200 s per epoch; see docs/results.md for what shortened runs reach.

``train_one_epoch`` and ``validate`` are free functions with explicit arguments (the benchmark
times exactly these); the Trainer holds the loop's state: where the run is, its history, the best
epoch, and saving it. What it is built from is in train_setup, which config a resume trains with
in resume, and the text a run prints in train_report.

Resume is exact: the loader's shuffle and augmentation derive from (seed, epoch) alone, the lr is a
pure function of progress, and last.pt holds model, optimizer, the weights' moving average
(`ema_decay`), epoch, step and every RNG state. A
run interrupted mid-epoch and resumed ends with bitwise the same weights as an uninterrupted one
(CPU, `deterministic`).
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
from resnet_cifar.engine import rundir
from resnet_cifar.engine.evaluate import EvalResult, evaluate_model
from resnet_cifar.engine.report import (
    best_name,
    diverged_message,
    final_lines,
    header_lines,
    progress_bar,
    resume_hint,
    run_summary,
    validation_words,
)
from resnet_cifar.engine.runtime import (
    DistContext,
    GracefulStop,
    StopRequested,
    ThreadFollower,
    cleanup_distributed,
    configure_determinism,
    configure_threads,
    init_distributed,
    resolve_device,
    restore_rng_state,
    seed_everything,
)
from resnet_cifar.engine.setup import (
    TrainParts,
    build_loaders,
    build_parts,
    check_device_options,
    eval_loader,
    lr_at,
    record_data,
    whitening_images,
)
from resnet_cifar.engine.splits import Splits, load_arrays, make_splits
from resnet_cifar.engine.state import (
    EpochStats,
    Validation,
    open_run_dir,
    rank_rng_state,
    resume_config,
    save_state,
    training_payload,
    validate_weights,
    write_outputs,
)
from resnet_cifar.errors import UserError, render_settings

Callback = Callable[["Trainer", dict[str, Any]], None]


class TrainingDiverged(UserError):
    """The loss became NaN or inf; last.pt still holds the last good state it saved."""


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]  # {"val_acc", "epoch", "file"} (+ "weights" with `ema_decay`)
    test: EvalResult | None  # test-set result of the final weights (the average with EMA)
    summary: dict[str, Any]


@dataclass
class EpochEnd:
    """How train_one_epoch left its epoch."""

    step: int  # steps of the epoch done (all of them unless stopped or diverged)
    stopped: bool = False  # a stop was asked (on any rank)
    bad_loss: float | None = None  # the NaN/inf loss that ended it


# ---- the loop, as free functions -------------------------------------------------------------


def train_step(parts: TrainParts, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and SGD update on one batch. Returns (loss, logits), still on the
    device: nothing here waits for the device."""
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


def agree(loss: torch.Tensor, stop_requested: bool, dist: DistContext,
          save_due: bool = False) -> tuple[bool, bool, bool]:
    """(stop requested, loss not finite, a save due) on ANY rank. Under DDP every rank must
    leave the loop, and save (which gathers every rank's RNG state), at the same step, or the
    others hang in the next collective."""
    flags = torch.stack([torch.tensor(float(stop_requested), device=loss.device),
                         (~torch.isfinite(loss)).float(),
                         torch.tensor(float(save_due), device=loss.device)])
    if dist.enabled:
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    stop, bad, save = flags.tolist()
    return bool(stop), bool(bad), bool(save)


def train_one_epoch(parts: TrainParts, loader: DeviceLoader, stats: EpochStats, *, epoch: int,
                    lr: Callable[[float], float], start_step: int = 0,
                    dist: DistContext | None = None,
                    stop_requested: Callable[[], bool] = lambda: False, bar=None,
                    on_first_step: Callable[[float], None] | None = None,
                    save_due: Callable[[], bool] = lambda: False,
                    save: Callable[[int], None] | None = None,
                    on_check: Callable[[int], None] | None = None) -> EpochEnd:
    """One pass over ``loader`` from ``start_step`` (a resumed epoch skips what was done),
    adding to ``stats``. ``lr(progress)`` sets the lr before each step; ``on_first_step`` gets
    the seconds of the first step (torch.compile compiles there). Returns early on a stop or a
    NaN/inf loss, which ranks agree on every step on CPU (free) and every 50 on a GPU, where
    reading a flag back is a host-device sync. At those checks, when ``save_due()`` on any rank,
    ``save(steps done)`` saves mid-epoch (``stats.seconds`` then holds the epoch's time so far;
    the save's own time is not counted). ``on_check(steps done)`` runs after every check that
    does not end the epoch (the thread count follows the load there)."""
    dist = dist or DistContext()
    parts.forward_model.train()
    loader.set_epoch(epoch)
    steps = len(loader)
    check_every = 1 if stats.loss_sum.device.type == "cpu" else 50
    end = EpochEnd(start_step)
    start = time.perf_counter()
    for x, y in itertools.islice(iter(loader), start_step, None):
        for group in parts.optimizer.param_groups:
            group["lr"] = lr(epoch + end.step / steps)
        first = on_first_step is not None and end.step == start_step
        step_start = time.perf_counter()
        loss, logits = train_step(parts, x, y)
        if parts.ema is not None:  # steps before this one, counted across epochs: resume replays
            parts.ema.update(parts.model, epoch * steps + end.step)
        if first:
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            on_first_step(time.perf_counter() - step_start)
        stats.loss_sum += loss.detach().double() * y.shape[0]
        stats.correct += (logits.detach().argmax(1) == y).sum()
        stats.seen += y.shape[0]
        end.step += 1
        if bar is not None:
            bar.update(1)
        if end.step % check_every == 0 or end.step == steps:
            end.stopped, bad, due = agree(loss.detach(), stop_requested(), dist,
                                          save is not None and save_due())
            if bad:
                end.bad_loss = float(loss.detach())
                return end
            if end.stopped:
                break
            if due and end.step < steps:  # at the epoch's end, end_epoch saves anyway
                stats.seconds += time.perf_counter() - start
                save(end.step)
                start = time.perf_counter()
            if on_check is not None and end.step < steps:
                on_check(end.step)
    stats.seconds += time.perf_counter() - start
    return end


def validate(model: torch.nn.Module, loader: DeviceLoader, classes: list[str], *,
             autocast=None, dist: DistContext | None = None, chunk: int | None = None,
             tta: str = "none") -> EvalResult:
    """Loss, accuracy and confusion of ``model`` over ``loader``, exact across DDP ranks.
    ``chunk``: images per forward on CPU (None: evaluate_model's measured default); ``tta``: a
    test-time augmentation mode (config.TTA_MODES)."""
    return evaluate_model(model, loader, classes, autocast=autocast,
                          all_reduce=(dist or DistContext()).all_reduce, chunk=chunk, tta=tta)


# ---- the state ---------------------------------------------------------------------------------


class Trainer:
    """The loop's state: where the run is (epoch, step), its history, its best epoch, and saving
    and restoring all of it. ``fit()`` runs the epochs. Built by ``train()``."""

    def __init__(self, config: TrainConfig, *, splits: Splits, parts: TrainParts,
                 loaders: tuple[DeviceLoader, DeviceLoader], device: torch.device,
                 dist: DistContext, run_dir: Path | None, log: rundir.RunLog,
                 progress: bool = False, threads: ThreadFollower | None = None):
        self.config, self.splits, self.parts = config, splits, parts
        self.train_loader, self.val_loader = loaders
        self.device, self.dist, self.run_dir, self.log = device, dist, run_dir, log
        self.progress = progress and dist.is_main
        self.threads = threads  # None: a fixed thread count
        self.stop = GracefulStop(on_signal=log.write)
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # steps completed in the current epoch (>0 after a mid-epoch stop)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0, "file": None}
        self.epoch_stats: dict[str, Any] | None = None  # partial epoch restored from last.pt
        self.on_epoch_end: list[Callback] = []
        self.on_finish: list[Callable[[Trainer], None]] = []  # after summary.json (rank 0)
        self.last_val: Validation | None = None  # the latest validation result
        self.compile_seconds: float | None = None  # the first compiled step
        self.saved_at = time.monotonic()  # the latest save of last.pt (`save_every` counts from it)
        self.saved: tuple[int, int] | None = None  # (epoch, step) that last.pt holds

    @property
    def model(self) -> torch.nn.Module:
        return self.parts.model

    @property
    def best_name(self) -> str:
        return best_name(self.splits)

    def lr_at(self, progress: float) -> float:
        return lr_at(self.config, progress, self.dist.world_size)

    # ---- one epoch ---------------------------------------------------------------------------
    def follow_threads(self, step: int | None = None) -> None:
        """As many threads as cores the other processes left idle: before each epoch, and
        (``step``: steps done in it) within one once runtime.FOLLOW_SECONDS have passed, so a
        neighbour who starts mid-epoch does not collapse the rest of it."""
        if self.threads is None or (step is not None and not self.threads.due()):
            return
        before, now = self.threads.follow()
        if now != before and (self.history or step is not None):
            where = f" (epoch {self.epoch + 1}, step {step})" if step is not None else ""
            self.log.info(render_settings(
                f"threads    {before} -> {now}{where}: other processes kept "
                f"{self.threads.others_busy:.1f} core(s) busy (`threads` N fixes the count)"))

    def train_one_epoch(self) -> EpochStats:
        """One pass over the training split; returns early (mid-epoch) if a stop was asked."""
        self.follow_threads()
        stats = EpochStats.zeros(self.device)
        if self.epoch_stats and self.step_in_epoch:
            stats.load_state_dict(self.epoch_stats)
        self.epoch_stats = None
        timing = self.config.compile and self.compile_seconds is None
        bar = (progress_bar(len(self.train_loader), self.step_in_epoch, self.epoch)
               if self.progress else None)
        end = train_one_epoch(
            self.parts, self.train_loader, stats, epoch=self.epoch, lr=self.lr_at,
            start_step=self.step_in_epoch, dist=self.dist,
            stop_requested=lambda: self.stop.requested, bar=bar,
            on_first_step=self.compiled if timing else None,
            save_due=self.save_due, save=lambda step: self.save_mid_epoch(stats, step),
            on_check=self.follow_threads)
        self.step_in_epoch = end.step
        if end.bad_loss is not None:
            self.diverged(end.bad_loss)
        if bar is not None:
            bar.close()
        if not math.isfinite(float(stats.loss_sum)):
            self.diverged(float(stats.loss_sum))
        return stats

    def save_due(self) -> bool:
        """`save_every` minutes have passed since last.pt was saved."""
        every = self.config.save_every
        return every > 0 and time.monotonic() - self.saved_at >= every * 60

    def save_mid_epoch(self, stats: EpochStats, step: int) -> None:
        """last.pt after ``step`` steps of the current epoch, as a stop saves it: a resume
        continues from there, bitwise as if never stopped. Not when a loss since the last check
        was NaN/inf (a GPU checks every 50 steps): the epoch's end reports that, and last.pt keeps
        its good state."""
        poisoned = (~torch.isfinite(stats.loss_sum)).double()
        self.dist.all_reduce(poisoned)  # every rank saves (the save is collective) or none
        if float(poisoned):
            return
        self.step_in_epoch = step
        self.save("last.pt", stats)

    def compiled(self, seconds: float) -> None:
        """torch.compile works at the first step: say what it cost."""
        self.compile_seconds = seconds
        self.log.info(f"torch.compile: first step {seconds:.1f} s "
                      "(compilation; it counts in this epoch's time)")

    @property
    def final_model(self) -> torch.nn.Module:
        """The weights the run ends with (test figure, model.pth): the moving average when kept,
        fixed in advance by the recipe rather than chosen on any split."""
        return self.parts.ema.module if self.parts.ema is not None else self.model

    @property
    def final_weights(self) -> str:
        return "ema" if self.parts.ema is not None else "raw"

    def validate(self) -> Validation:
        return validate_weights(self.parts, self.val_loader, self.splits.classes,
                                tta=self.config.tta, dist=self.dist)

    def diverged(self, value: float) -> None:
        message = diverged_message(self.config, self.run_dir, value, self.epoch,
                                   self.step_in_epoch, saved=self.saved)
        self.log.write(f"error: {render_settings(message)}")
        raise TrainingDiverged(message)

    def epoch_row(self, stats: EpochStats, val: Validation) -> dict[str, Any]:
        """The epoch's metrics row, summed over ranks."""
        seen = torch.tensor([stats.seen], dtype=torch.float64, device=self.device)
        sums = torch.stack([stats.loss_sum, stats.correct.double()])
        self.dist.all_reduce(sums)
        self.dist.all_reduce(seen)
        seen_all = float(seen)
        return {
            "epoch": self.epoch + 1,
            "lr": self.lr_at(float(self.epoch)),
            "train_loss": float(sums[0]) / seen_all,
            "train_acc": float(sums[1]) / seen_all,
            "val_loss": val.raw.loss,
            "val_acc": val.raw.accuracy,
            "epoch_time": stats.seconds,
            "img_per_s": seen_all / max(stats.seconds, 1e-9),
            # one of rundir.JSONL_ONLY_FIELDS: a resume or `threads` 0 may change the count; this
            # is the count at the epoch's end (train.log names each change within an epoch)
            "threads": torch.get_num_threads(),
            **val.columns(),
        }

    # ---- the run -----------------------------------------------------------------------------
    def fit(self) -> RunResult:
        for line in self.header():
            self.log.info(line)
        with self.stop:
            while self.epoch < self.config.epochs:
                stats = self.train_one_epoch()
                if self.stop.requested:
                    self.save("last.pt", stats)
                    raise StopRequested(self.stop.exit_code, self.stopped())
                self.end_epoch(stats)
                if self.stop.requested and self.epoch < self.config.epochs:
                    # the signal came during validation or saving: the epoch is complete and
                    # saved, so stop here rather than run one step of the next
                    raise StopRequested(self.stop.exit_code, self.stopped())
        return self.finish()

    def end_epoch(self, stats: EpochStats) -> None:
        """Validate, record, save (last.pt, and the best), log, call back."""
        val = self.last_val = self.validate()
        row = self.epoch_row(stats, val)
        self.epoch += 1
        self.step_in_epoch = 0
        self.history.append(row)
        # best: the better of the raw and averaged weights on the plain validation accuracy
        improved = val.best_accuracy > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": val.best_accuracy, "epoch": self.epoch,
                         "file": self.best_name}
            if self.parts.ema is not None:
                self.best["weights"] = val.best_weights
        self.save("last.pt")
        if improved:
            self.save(self.best_name, weights=val.best_weights)
        self.log.info(rundir.format_row(row, self.config.epochs) + validation_words(row)
                      + ("  *" if improved else ""))
        self.log.metrics(row)
        for callback in self.on_epoch_end:
            callback(self, row)

    def header(self) -> list[str]:
        return header_lines(
            self.config, self.splits, run_dir=self.run_dir, params=self.parts.params,
            macs=self.parts.macs, lr0=self.lr_at(0.0), world_size=self.dist.world_size,
            device=self.device,
            others_busy=self.threads.others_busy if self.threads is not None else None,
            epoch=self.epoch, step=self.step_in_epoch, steps_per_epoch=len(self.train_loader))

    def stopped(self) -> str:
        """The resume hint for the CLI to print, also kept in train.log."""
        message = resume_hint(self.run_dir, self.epoch, self.step_in_epoch)
        self.log.write(message)
        return message

    def test(self) -> Validation | None:
        """The raw and (when kept) averaged weights on the test set (no TTA); None when the data
        has no test split (an image folder without test/), which is then never scored."""
        if len(self.splits.test_labels) == 0:
            return None
        if self.splits.val_is_test:
            # the last validation already was the test set (validated now if resumed at the end)
            return self.last_val or self.validate()
        s = self.splits
        loader = eval_loader(self.config, s, s.test_images, s.test_labels, self.device,
                             self.dist)
        return validate_weights(self.parts, loader, s.classes, dist=self.dist)

    def finish(self) -> RunResult:
        """The test-set figure of the final weights; rank 0 writes model.pth and summary.json."""
        tested = self.test()
        test = None if tested is None else tested.ema if self.final_weights == "ema" \
            else tested.raw
        summary = run_summary(
            self.config, self.splits, self.history, best=self.best, epochs=self.epoch,
            params=self.parts.params, macs=self.parts.macs, device=self.device,
            world_size=self.dist.world_size, test_acc=test and test.accuracy,
            final_weights=self.final_weights, test_acc_raw=tested and tested.raw.accuracy)
        if self.dist.is_main and self.run_dir is not None:
            write_outputs(self.run_dir, self.final_model, summary)
            for line in final_lines(self.splits, self.run_dir, summary, self.best):
                self.log.info(line)
            for callback in self.on_finish:
                callback(self)
        return RunResult(self.run_dir, self.history, self.best, test, summary)

    # ---- saving and restoring ----------------------------------------------------------------
    def save(self, name: str, stats: EpochStats | None = None,
             weights: str | None = None) -> None:
        """Every rank calls this (to contribute its RNG state); rank 0 writes."""
        save_state(training_payload(self, stats, weights), name, self.run_dir, self.dist)
        if name == "last.pt":
            self.saved_at = time.monotonic()
            self.saved = (self.epoch, self.step_in_epoch)

    def restore(self, state: dict[str, Any], model_state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(model_state)
        self.parts.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):  # {} unless `amp` fp16
            self.parts.scaler.load_state_dict(state["scaler"])
        if self.parts.ema is not None:  # `ema_decay` cannot change on resume: it was saved
            self.parts.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state.get("step", 0))
        self.saved = (self.epoch, self.step_in_epoch)
        self.best = dict(state.get("best", self.best))
        self.history = list(state.get("history", []))
        self.epoch_stats = state.get("scheduler", {}).get("partial_epoch")
        restore_rng_state(rank_rng_state(state["rng"], self.dist))
        self.train_loader.load_state_dict(state["loader"])


# ---- wiring ------------------------------------------------------------------------------------


def build_trainer(config: TrainConfig, dist: DistContext, device: torch.device,
                  run_dir: Path, progress: bool | None) -> Trainer:
    """Threads, data, model and wrappers, in the order that fixes the RNG streams a resume
    replays."""
    configure_threads(config.threads)
    configure_determinism(config.deterministic, device)
    seed_everything(config.seed)
    log = rundir.RunLog(run_dir, enabled=dist.is_main, tensorboard=config.tensorboard)
    progress = sys.stdout.isatty() if progress is None else progress
    threads = (ThreadFollower() if config.threads == 0 and device.type == "cpu"
               and not config.deterministic else None)
    splits = make_splits(load_arrays(config.data, progress and dist.is_main), config.data,
                         config.seed)
    record_data(config, splits)
    loaders = build_loaders(config, splits, device, dist)
    stem_images = whitening_images(splits, config.seed) if config.stem_init == "whitening" else None
    parts = build_parts(config, splits.num_classes, device, dist, stem_images=stem_images)
    return Trainer(config, splits=splits, parts=parts, loaders=loaders, device=device, dist=dist,
                   run_dir=run_dir, log=log, progress=progress, threads=threads)


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    callbacks: list[Callback] | None = None,
    on_finish: list[Callable[[Trainer], None]] | None = None,
) -> RunResult:
    """Train a model as ``config`` says (or resume the run at ``resume``), writing a run directory.

    Everything that can be checked is checked before the run directory is created (config,
    device, data, model), so a refused run leaves nothing behind. The directory is locked while
    the run trains.

    ``callbacks`` run after every epoch with the trainer and the epoch's metrics row; one may call
    ``trainer.stop.request()`` to stop as SIGINT would. ``on_finish`` run on rank 0 once the run
    has written summary.json. Raises StopRequested after saving when interrupted,
    TrainingDiverged on a NaN/inf loss, and UserError subclasses on bad input.

    This is the engine's train: resnet_cifar.train (resnet_cifar.training) adds the curves.
    """
    saved = None
    if resume is not None:
        config, run_dir, saved = resume_config(resume, overrides)
    else:
        config = config or TrainConfig()
        validate_config(config)
        run_dir = (
            Path(config.out) if config.out else rundir.default_run_dir(config.name or config.model)
        )
    dist, device_spec = init_distributed(config.device)
    lock = None
    try:
        device = resolve_device(device_spec)
        check_device_options(config, device)
        if resume is None and dist.is_main:
            rundir.check_new_run_dir(run_dir, overwrite=overwrite)
        trainer = build_trainer(config, dist, device, run_dir, progress)
        if saved is not None:
            trainer.restore(saved["state"], saved["model"])
        if dist.is_main:
            lock = open_run_dir(run_dir, trainer.config, epochs_done=trainer.epoch,
                                resumed=saved is not None, overwrite=overwrite)
        trainer.on_epoch_end.extend(callbacks or [])
        trainer.on_finish.extend(on_finish or [])
        result = trainer.fit()
        # Leave together: a rank that tears its process group down while rank 0 is still
        # writing files can abort in gloo's threads ("terminate called without an active
        # exception").
        dist.barrier()
        return result
    except Exception as err:
        if dist.enabled:  # say which rank failed; torchrun then stops the others
            print(
                f"rank {dist.rank} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True
            )
        raise
    finally:
        if lock is not None:
            lock.release()
        cleanup_distributed()
