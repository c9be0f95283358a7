"""The training loop, in visible stages: set up, then per epoch train, validate, log, checkpoint.

The default recipe is the original experiment (configs/seed.toml): ResNet-20, 150 epochs, batch
64, SGD(0.1, momentum 0.9, weight decay 1e-4), lr x 0.1 from epoch index 80. On this project's
2-core CPU that is about 200 s per epoch; see docs/results.md for what shortened runs reach.

Resume is exact: the loader's shuffle and augmentation derive from (seed, epoch) alone, the lr is a
pure function of progress, and last.pt holds model, optimizer, epoch, step and every RNG state. A
run interrupted mid-epoch and resumed ends with bitwise the same weights as an uninterrupted one
(CPU, --deterministic).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import resnet_cifar
from resnet_cifar.atomic import atomic_write_text, is_torch_write_failure, os_error_cause
from resnet_cifar.config import TrainConfig, from_dict, to_dict, to_toml, validate
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine import rundir
from resnet_cifar.engine.checkpoint import atomic_save, checkpoint_payload, load_checkpoint
from resnet_cifar.engine.distributed import DistContext, cleanup_distributed, init_distributed
from resnet_cifar.engine.evaluate import EvalResult, evaluate_model
from resnet_cifar.engine.interrupt import GracefulStop, StopRequested
from resnet_cifar.engine.runtime import (
    CpuMeter,
    auto_threads,
    capture_rng_state,
    configure_determinism,
    configure_threads,
    physical_cores,
    resolve_device,
    restore_rng_state,
    seed_everything,
    threads_for_load,
)
from resnet_cifar.engine.schedule import learning_rate
from resnet_cifar.engine.splits import Splits, load_arrays, make_splits
from resnet_cifar.errors import ConfigError, UserError
from resnet_cifar.models import count_macs, count_parameters, create_model

# Config keys a resumed run may change: they do not alter the computation (epochs extends it).
RESUME_OVERRIDABLE = {"epochs", "device", "threads", "tensorboard"}


class TrainingDiverged(UserError):
    """The loss became NaN or inf; last.pt still holds the last good epoch."""


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]  # {"val_acc", "epoch", "file"}
    test: EvalResult | None  # test-set result of the final weights
    summary: dict[str, Any]


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


class Trainer:
    """Holds what one run needs; ``fit()`` runs it. Built by ``train()``."""

    compile_mode_override: str | None = None  # torch.compile mode instead of compile_mode's pick

    def __init__(
        self,
        config: TrainConfig,
        dist: DistContext,
        device: torch.device,
        run_dir: Path | None,
        progress: bool | None,
    ):
        self.config = config
        self.dist = dist
        self.device = device
        self.run_dir = run_dir
        self.log = rundir.RunLog(run_dir, enabled=dist.is_main, tensorboard=config.tensorboard)
        self.progress = (sys.stdout.isatty() if progress is None else progress) and dist.is_main
        self.stop = GracefulStop(on_signal=self.log.write)
        self.epoch = 0  # epochs completed
        self.step_in_epoch = (
            0  # steps completed in the current epoch (non-zero after a mid-epoch stop)
        )
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0, "file": None}
        self.epoch_stats: dict[str, Any] | None = None  # partial epoch restored from last.pt
        self.on_epoch_end: list[Callable[[Trainer, dict[str, Any]], None]] = []
        self.last_val: EvalResult | None = None  # the latest validation result
        self.compile_seconds: float | None = None  # first compiled step, set by train_step
        # --threads 0 on a CPU: one thread per core that other processes leave idle, chosen
        # again before every epoch (a --deterministic run keeps one count: its numbers must not
        # depend on the load)
        self.thread_meter: CpuMeter | None = None
        self.others_busy: float | None = None  # cores other processes kept busy, last measured

    # ---- setup ---------------------------------------------------------------------------
    def setup_data(self, splits: Splits | None = None) -> None:
        """Loaders over ``splits`` (default: the arrays cfg.data names; the benchmark passes its
        own)."""
        cfg = self.config
        if splits is None:
            splits = make_splits(load_arrays(cfg.data, self.progress), cfg.data, cfg.seed)
            record_data(cfg, splits)
        self.splits: Splits = splits
        common = dict(
            mean=self.splits.mean,
            std=self.splits.std,
            device=self.device,
            channels_last=cfg.channels_last,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.train_loader = DeviceLoader(
            self.splits.train_images,
            self.splits.train_labels,
            batch_size=cfg.batch_size,
            train=True,
            augment=cfg.data.augment,
            seed=cfg.seed,
            **common,
        )
        if len(self.train_loader) == 0:
            raise ConfigError(
                f"batch size {cfg.batch_size} x {self.dist.world_size} process(es) exceeds the "
                f"{len(self.splits.train_labels)} training images; lower --batch-size"
            )
        self.val_loader = self.eval_loader(self.splits.val_images, self.splits.val_labels)

    def eval_loader(self, images, labels) -> DeviceLoader:
        """Fixed order, no augmentation, sharded across ranks (counts are all-reduced)."""
        return DeviceLoader(
            images,
            labels,
            batch_size=self.config.eval_batch_size,
            train=False,
            mean=self.splits.mean,
            std=self.splits.std,
            device=self.device,
            channels_last=self.config.channels_last,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )

    def setup_model(self) -> None:
        cfg = self.config
        self.model = create_model(
            cfg.model, num_classes=self.splits.num_classes, **cfg.model_kwargs
        )
        self.params = count_parameters(self.model)
        self.macs = count_macs(self.model)
        if cfg.sync_bn and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=self.lr_at(0.0),
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
            **optimizer_impl(self.device),
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
        self.forward_model = self.wrap_model()

    def wrap_model(self) -> nn.Module:
        """DDP and torch.compile wrappers around ``self.model`` (which stays unwrapped, so that
        checkpoints carry no ``module.``/``_orig_mod.`` prefixes)."""
        model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.config.compile:
            model = torch.compile(model, mode=self.compile_mode)  # lazy: compiles at step 1
        return model

    @property
    def compile_mode(self) -> str:
        """torch.compile's mode. On one CUDA device "reduce-overhead" (CUDA graphs): a batch-64
        ResNet-20 step is a few hundred small kernels, bound by their launches. Under DDP (its
        all-reduce hooks) and on CPU (no launch cost), the default. ``compile_mode_override``
        (set by the benchmark) wins."""
        if self.compile_mode_override:
            return self.compile_mode_override
        if self.device.type == "cuda" and not self.dist.enabled:
            return "reduce-overhead"
        return "default"

    def autocast(self) -> contextlib.AbstractContextManager:
        amp = self.config.amp
        if amp == "none" or self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def lr_at(self, progress: float) -> float:
        cfg = self.config
        base = cfg.lr
        if cfg.lr_scaling == "linear":
            base *= self.dist.world_size  # global batch / per-rank batch
        return learning_rate(
            progress,
            base_lr=base,
            epochs=cfg.epochs,
            schedule=cfg.schedule,
            milestones=cfg.milestones,
            gamma=cfg.gamma,
            warmup_epochs=cfg.warmup_epochs,
        )

    # ---- state -----------------------------------------------------------------------------
    def payload(self, stats: EpochStats | None) -> dict[str, Any]:
        cfg = self.config
        steps = max(len(self.train_loader), 1)
        history = list(self.history)
        return checkpoint_payload(
            self.model,
            model_name=cfg.model,
            model_kwargs=cfg.model_kwargs,
            num_classes=self.splits.num_classes,
            classes=self.splits.classes,
            mean=self.splits.mean,
            std=self.splits.std,
            normalize=cfg.data.normalize,
            config=to_dict(cfg),
            package_version=resnet_cifar.__version__,
            optimizer=self.optimizer.state_dict(),
            scheduler={
                "kind": cfg.schedule,
                "progress": self.epoch + self.step_in_epoch / steps,
                "partial_epoch": stats.state_dict() if stats is not None else None,
            },
            epoch=self.epoch,
            step=self.step_in_epoch,
            rng=capture_rng_state(),
            loader=self.train_loader.state_dict(),
            best=dict(self.best),
            history=history,
        )

    def save(self, name: str, stats: EpochStats | None = None) -> None:
        """Every rank calls this (to contribute its RNG state); rank 0 writes."""
        payload = self.payload(stats)
        if self.dist.enabled:
            ranks: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(ranks, payload["rng"])
            payload["rng"] = {**payload["rng"], "ranks": ranks}
        if self.dist.is_main and self.run_dir is not None:
            path = self.run_dir / name
            kept = ("; the previous last.pt is intact"
                    if (self.run_dir / "last.pt").exists() else "")
            write_checked(path, lambda: atomic_save(payload, path),
                          f"{kept}; free some space, then resume with: {cli_command()} train "
                          f"--resume {shlex.quote(str(self.run_dir.resolve()))}")

    def restore(self, state: dict[str, Any], model_state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state.get("step", 0))
        self.best = dict(state.get("best", self.best))
        self.history = list(state.get("history", []))
        self.epoch_stats = state.get("scheduler", {}).get("partial_epoch")
        rng = state["rng"]
        ranks = rng.get("ranks")
        if ranks and len(ranks) == self.dist.world_size:
            rng = ranks[self.dist.rank]  # each rank gets its own generators back
        restore_rng_state(rng)
        self.train_loader.load_state_dict(state["loader"])

    # ---- the loop --------------------------------------------------------------------------
    def adapt_threads(self, others: float | None = None) -> None:
        """Follow the load: as many threads as cores the other processes left idle since the
        last epoch (``others``: measured already, at the start)."""
        if self.thread_meter is None:
            return
        if others is None:
            others = self.thread_meter.others()
        self.thread_meter.mark()
        self.others_busy = others
        threads = threads_for_load(physical_cores(), others)
        if threads != torch.get_num_threads() and self.history:
            self.log.info(f"threads    {torch.get_num_threads()} -> {threads}: other processes "
                          f"kept {others:.1f} core(s) busy (--threads N fixes the count)")
        torch.set_num_threads(threads)

    def train_one_epoch(self) -> EpochStats:
        """One pass over the training split; returns early (mid-epoch) if a stop was asked."""
        self.adapt_threads()
        model = self.forward_model
        model.train()
        loader = self.train_loader
        loader.set_epoch(self.epoch)
        steps = len(loader)
        stats = EpochStats.zeros(self.device)
        if self.epoch_stats and self.step_in_epoch:
            stats.load_state_dict(self.epoch_stats)
        self.epoch_stats = None
        batches = itertools.islice(iter(loader), self.step_in_epoch, None)  # skip what was done
        bar = self.progress_bar(steps, initial=self.step_in_epoch)
        # How often ranks agree on stop/NaN: every step on CPU (free), every 50 on a GPU, where
        # reading a flag back is a host-device sync.
        check_every = 1 if self.device.type == "cpu" else 50
        start = time.perf_counter()
        for x, y in batches:
            lr = self.lr_at(self.epoch + self.step_in_epoch / steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, logits = self.train_step(model, x, y)
            stats.loss_sum += loss.detach().double() * y.shape[0]
            stats.correct += (logits.detach().argmax(1) == y).sum()
            stats.seen += y.shape[0]
            self.step_in_epoch += 1
            if bar is not None:
                bar.update(1)
            if self.step_in_epoch % check_every == 0 or self.step_in_epoch == steps:
                stop, bad = self.agree(loss.detach())
                if bad:
                    self.diverged(float(loss.detach()))
                if stop:
                    break
        stats.seconds += time.perf_counter() - start
        if bar is not None:
            bar.close()
        if not math.isfinite(float(stats.loss_sum)):
            self.diverged(float(stats.loss_sum))
        return stats

    def train_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward and SGD update on one batch. Returns (loss, logits), still on the
        device: nothing here waits for the device."""
        if self.config.compile and self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: replay, don't chain
        timing_compile = self.config.compile and self.compile_seconds is None
        start = time.perf_counter()
        with self.autocast():
            logits = model(x)
            loss = self.criterion(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if timing_compile:  # torch.compile works at the first step: say what it cost
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            self.compile_seconds = time.perf_counter() - start
            self.log.info(f"torch.compile: first step {self.compile_seconds:.1f} s "
                          "(compilation; it counts in this epoch's time)")
        return loss, logits

    def agree(self, loss: torch.Tensor) -> tuple[bool, bool]:
        """(stop requested, loss not finite) on ANY rank. Under DDP every rank must leave the
        loop at the same step, or the others hang in the next all-reduce."""
        flags = torch.stack(
            [
                torch.tensor(float(self.stop.requested), device=loss.device),
                (~torch.isfinite(loss)).float(),
            ]
        )
        if self.dist.enabled:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        stop, bad = flags.tolist()
        return bool(stop), bool(bad)

    def diverged(self, value: float) -> None:
        """Stop on a NaN/inf loss. Resuming would replay the same steps into the same NaN (resume
        is exact and keeps the recipe), so the advice is a new run with a gentler start."""
        cfg = self.config
        config_file = self.run_dir / "config.toml" if self.run_dir is not None else None
        warmup = min(2, cfg.epochs - 1)  # warmup_epochs must stay below epochs
        rerun = (f"{cli_command()} train --config {shlex.quote(str(config_file.resolve()))} "
                 f"--lr {cfg.lr / 2:g}" + (f" --warmup-epochs {warmup}" if warmup else "")
                 + " --out NEW_DIR") if config_file is not None else "lower the lr"
        kept = (f"last.pt holds epoch {self.epoch}" if self.epoch
                else "no epoch had finished, so no checkpoint was kept")
        message = (f"loss became {value} at epoch {self.epoch + 1}, step {self.step_in_epoch}; "
                   f"stopped without saving it ({kept}). Start again with a lower lr or a "
                   f"warm-up: {rerun} (or --out on this run with --overwrite)")
        self.log.write(f"error: {message}")
        raise TrainingDiverged(message)

    def stopped(self, message: str) -> str:
        """``message`` for the CLI to print, also kept in train.log."""
        self.log.write(message)
        return message

    def progress_bar(self, total: int, initial: int = 0):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            initial=initial,
            leave=False,
            desc=f"epoch {self.epoch + 1}",
            dynamic_ncols=True,
        )

    def validate(self) -> EvalResult:
        return evaluate_model(
            self.model,
            self.val_loader,
            self.splits.classes,
            autocast=self.autocast(),
            all_reduce=self.dist.all_reduce,
        )

    def epoch_row(self, stats: EpochStats, val: EvalResult) -> dict[str, Any]:
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
            "val_loss": val.loss,
            "val_acc": val.accuracy,
            "epoch_time": stats.seconds,
            "img_per_s": seen_all / max(stats.seconds, 1e-9),
        }

    def fit(self) -> RunResult:
        cfg = self.config
        self.print_header()
        with self.stop:
            while self.epoch < cfg.epochs:
                stats = self.train_one_epoch()
                if self.stop.requested:
                    self.save("last.pt", stats)
                    raise StopRequested(self.stop.exit_code, self.stopped(self.resume_hint()))
                val = self.last_val = self.validate()
                row = self.epoch_row(stats, val)
                self.epoch += 1
                self.step_in_epoch = 0
                self.history.append(row)
                improved = row["val_acc"] > self.best["val_acc"]
                if improved:
                    self.best = {
                        "val_acc": row["val_acc"],
                        "epoch": self.epoch,
                        "file": self.best_name,
                    }
                self.save("last.pt")
                if improved:
                    self.save(self.best_name)
                self.log.info(rundir.format_row(row, cfg.epochs) + ("  *" if improved else ""))
                self.log.metrics(row)
                for callback in self.on_epoch_end:
                    callback(self, row)
                if self.stop.requested and self.epoch < cfg.epochs:
                    # the signal came during validation or saving: the epoch is complete and
                    # saved, so stop here rather than run one step of the next
                    raise StopRequested(self.stop.exit_code, self.stopped(self.resume_hint()))
        return self.finish()

    @property
    def best_name(self) -> str:
        return "best_on_test.pt" if self.splits.val_is_test else "best.pt"

    def finish(self) -> RunResult:
        """model.pth, the test-set figure of the final weights, summary.json."""
        if self.splits.val_is_test:
            # the last validation already was the test set (validated now if resumed at the end)
            test = self.last_val or self.validate()
        else:
            test_loader = self.eval_loader(self.splits.test_images, self.splits.test_labels)
            test = evaluate_model(
                self.model,
                test_loader,
                self.splits.classes,
                autocast=self.autocast(),
                all_reduce=self.dist.all_reduce,
            )
        final_test_acc = test.accuracy
        summary = self.summary(final_test_acc)
        if self.dist.is_main and self.run_dir is not None:
            for name, write in (
                ("model.pth", lambda p: atomic_save(self.model.state_dict(), p)),
                ("summary.json", lambda p: atomic_write_text(p, json.dumps(summary, indent=2))),
            ):
                path = self.run_dir / name
                write_checked(path, lambda write=write, path=path: write(path),
                              "; last.pt holds the finished run: free some space and resume it")
            where = "test (= validation)" if self.splits.val_is_test else "test"
            if self.splits.data_matches is False:
                self.log.info(f"warning: {self.splits.data_line()}")
            self.log.info(
                f"final {where} accuracy {100 * final_test_acc:.2f}%; best validation "
                f"{100 * self.best['val_acc']:.2f}% at epoch {self.best['epoch']} -> "
                f"{self.run_dir / self.best_name}"
            )
            self.log.info(f"weights: {self.run_dir / 'model.pth'}")
            write_curves(self)  # once more, now that summary.json has the test accuracy
        return RunResult(self.run_dir, self.history, self.best, test, summary)

    def summary(self, test_acc: float | None) -> dict[str, Any]:
        rows = self.history
        seconds = [r["epoch_time"] for r in rows]
        return {
            "name": self.config.name or self.config.model,
            "model": self.config.model,
            "model_kwargs": self.config.model_kwargs,
            "params": self.params,
            "macs": self.macs,
            "epochs": self.epoch,
            "seed": self.config.seed,
            "val_is_test": self.splits.val_is_test,
            "best_val_acc": self.best["val_acc"] if rows else None,
            "best_epoch": self.best["epoch"],
            "final_val_acc": rows[-1]["val_acc"] if rows else None,
            "test_acc": test_acc,
            "sec_per_epoch": sum(seconds) / len(seconds) if seconds else None,
            "img_per_s": sum(r["img_per_s"] for r in rows) / len(rows) if rows else None,
            "train_images": len(self.splits.train_labels),
            "num_classes": self.splits.num_classes,
            "data_fingerprint": self.splits.fingerprint,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.dist.world_size,
            "torch": torch.__version__,
            "package_version": resnet_cifar.__version__,
        }

    def print_header(self) -> None:
        cfg, s = self.config, self.splits
        val = (
            "TEST set (no --val-split): validation and the best checkpoint "
            f"({self.best_name}) use the test set"
            if s.val_is_test
            else f"{len(s.val_labels)} held-out training images"
        )
        world = self.dist.world_size
        batch = (
            f"{cfg.batch_size} per rank x {world} ranks = {cfg.batch_size * world} global"
            if world > 1
            else str(cfg.batch_size)
        )
        lines = [
            f"run        {self.run_dir}",
            f"model      {cfg.model} {cfg.model_kwargs or ''} ({self.params:,} params, "
            f"{self.macs / 1e6:.1f} MMACs)",
            f"data       {s.source}: {len(s.train_labels)} train images, {len(s.classes)} classes, "
            f"fingerprint {s.fingerprint[:19]}",
            f"validation {val}",
            f"recipe     {cfg.epochs} epochs, batch {batch}, SGD lr {self.lr_at(0.0):g} "
            f"momentum {cfg.momentum} wd {cfg.weight_decay}, {cfg.schedule} "
            f"{cfg.milestones if cfg.schedule == 'step' else ''}, augment {cfg.data.augment}, "
            f"normalize {cfg.data.normalize}",
            f"device     {self.device}, {torch.get_num_threads()} threads"
            + (", deterministic" if cfg.deterministic else "")
            + (f" (one per idle core: others keep {self.others_busy:.1f} busy; chosen again "
               "each epoch, --threads N fixes it)" if self.thread_meter is not None
               and self.others_busy is not None else ""),
        ]
        if self.epoch or self.step_in_epoch:
            lines.append(f"resuming   after epoch {self.epoch}, step {self.step_in_epoch}")
        late = [m for m in cfg.milestones if m >= cfg.epochs] if cfg.schedule == "step" else []
        if late:
            lines.append(f"note       milestone(s) {late} are past the last epoch index "
                         f"({cfg.epochs - 1}): the lr never drops there; pass --milestones")
        for line in lines:
            self.log.info(line)

    def resume_hint(self) -> str:
        where = (f"during epoch {self.epoch + 1} after step {self.step_in_epoch}"
                 if self.step_in_epoch else f"after epoch {self.epoch}")
        run_dir = self.run_dir.resolve()
        return (
            f"stopped {where}; saved {run_dir / 'last.pt'}.\nresume with: {cli_command()} "
            f"train --resume {shlex.quote(str(run_dir))}"
        )


def write_curves(trainer: Trainer, row: dict[str, Any] | None = None) -> None:
    """Redraw curves.png after each epoch. A plotting failure must never cost a training run."""
    if not trainer.dist.is_main or trainer.run_dir is None:
        return
    try:
        from resnet_cifar.viz import write_run_curves

        write_run_curves(trainer.run_dir)
    except Exception as err:  # noqa: BLE001 - reported, then training goes on
        trainer.log.info(f"warning: could not draw curves.png ({type(err).__name__}: {err})")


def optimizer_impl(device: torch.device) -> dict[str, Any]:
    """SGD kernels. CUDA: fused, one kernel for every parameter (a small-batch step is bound by
    launches). CPU: foreach; fused, foreach and the per-parameter loop measure the same there
    (the update is ~0.5% of a ResNet-20 step; docs/benchmarks.md)."""
    if device.type == "cuda":
        return {"fused": True}
    return {"foreach": True}


def resume_config(
    path: str | Path, overrides: dict[str, Any] | None
) -> tuple[TrainConfig, Path, dict]:
    """The saved config of a run to resume, with the few overrides that keep it the same run."""
    path = Path(path)
    ckpt_path = path / "last.pt" if path.is_dir() else path
    if path.is_dir() and not ckpt_path.exists() and (path / "config.toml").exists():
        raise ConfigError(
            f"{path} has no last.pt to resume from: the run stopped before its first epoch "
            f"ended. Start it again with: {cli_command()} train --config "
            f"{shlex.quote(str((path / 'config.toml').resolve()))} --out "
            f"{shlex.quote(str(path.resolve()))} --overwrite"
        )
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.config is None or "optimizer" not in ckpt.training_state:
        raise ConfigError(f"{ckpt_path} holds weights only, not a training state to resume")
    config = from_dict(ckpt.config)
    overrides = dict(overrides or {})
    data_overrides = overrides.pop("data", None) or {}
    changed = sorted(
        k for k, v in overrides.items()
        if k not in RESUME_OVERRIDABLE and merged(getattr(config, k, None), v) != getattr(
            config, k, None)
    )
    changed += [f"data.{k}" for k in changed_data(config, data_overrides)]
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming {ckpt_path}; only "
            f"{', '.join(sorted(RESUME_OVERRIDABLE))} and the data's path may change (start a "
            "new run for the rest)"
        )
    done = int(ckpt.training_state.get("epoch", 0))
    if overrides.get("epochs", done) < done:
        raise ConfigError(
            f"--epochs {overrides['epochs']} is fewer than the {done} epochs {ckpt_path} has "
            f"already done; give --epochs {done} or more (or leave it out to keep "
            f"{config.epochs})"
        )
    for key, value in overrides.items():
        setattr(config, key, value)
    for key, value in data_overrides.items():
        setattr(config.data, key, value)
    recorded = config.data.path
    if recorded and "path" not in data_overrides and not Path(recorded).exists():
        raise ConfigError(
            f"the data this run trains on, {recorded}, is not there any more; resume with "
            f"--data PATH where that data is now (it is checked against the run's fingerprint): "
            f"{cli_command()} train --resume {shlex.quote(str(ckpt_path.parent.resolve()))} "
            "--data PATH"
        )
    return config, ckpt_path.parent, {"state": ckpt.training_state, "model": ckpt.state_dict}


def merged(current: Any, value: Any) -> Any:
    """``value`` over ``current``: a table (model_kwargs) is updated key by key, as merge_into
    does, so naming the same options again is no change."""
    return {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value


def changed_data(config: TrainConfig, flags: dict[str, Any]) -> list[str]:
    """The data options in ``flags`` that would make a resumed run another run. The same value
    is no change. A new path is no change either when the run recorded its data's fingerprint:
    the data there is checked against it when it is loaded (a moved or copied data set)."""
    recorded = config.data
    changed = []
    for key, value in flags.items():
        if key == "cache_dir":  # where decoded arrays are kept: the machine's, not the run's
            continue
        if key == "path":
            same = recorded.path is not None and (
                Path(value).expanduser().resolve() == Path(recorded.path).expanduser().resolve()
            )
            if not same and recorded.fingerprint is None:
                changed.append("path (the run recorded no fingerprint to check new data by)")
            continue
        if value != getattr(recorded, key):
            changed.append(key)
    return changed


def record_data(config: TrainConfig, splits: Splits) -> None:
    """Make config.toml name the data exactly: its absolute path as loaded (not as typed, which
    means something else from another folder) and its content fingerprint, which every later
    command on the run checks."""
    if splits.source and Path(splits.source).exists():
        config.data.path = splits.source
    config.data.fingerprint = splits.fingerprint
    config.data.allow_other_data = False


def check_device_options(config: TrainConfig, device: torch.device) -> None:
    """Options that only act on CUDA are refused elsewhere rather than recorded but ignored."""
    if config.amp != "none" and device.type != "cuda":
        raise ConfigError(f"--amp {config.amp} needs CUDA (the device is {device}); leave it out")
    if config.sync_bn and device.type != "cuda":
        raise ConfigError(f"--sync-bn needs CUDA: PyTorch's SyncBatchNorm has no {device.type} "
                          "kernel; leave it out")


def cli_command() -> str:
    """The command that reruns this installation from any folder, whatever PATH holds and
    whichever environment is active: the absolute path of this environment's resnet-cifar script,
    else this Python's ``-m resnet_cifar``."""
    script = Path(sys.executable).parent / ("resnet-cifar.exe" if os.name == "nt" else
                                            "resnet-cifar")
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m resnet_cifar"


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    callbacks: list[Callable[[Trainer, dict[str, Any]], None]] | None = None,
) -> RunResult:
    """Train a model as ``config`` says (or resume the run at ``resume``), writing a run directory.

    Everything that can be checked is checked before the run directory is created (config,
    device, data, model), so a refused run leaves nothing behind. The directory is locked while
    the run trains.

    ``callbacks`` run after every epoch with the trainer and the epoch's metrics row; one may call
    ``trainer.stop.request()`` to stop as SIGINT would. Raises StopRequested after saving when
    interrupted, TrainingDiverged on a NaN/inf loss, and UserError subclasses on bad input.
    """
    saved = None
    if resume is not None:
        config, run_dir, saved = resume_config(resume, overrides)
    else:
        config = config or TrainConfig()
        validate(config)
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
        configure_threads(config.threads)
        configure_determinism(config.deterministic, device)
        seed_everything(config.seed)
        trainer = Trainer(config, dist, device, run_dir, progress)
        if config.threads == 0 and device.type == "cpu" and not config.deterministic:
            _, others = auto_threads()
            trainer.thread_meter = CpuMeter()
            trainer.adapt_threads(others)
        trainer.setup_data()
        trainer.setup_model()
        if saved is not None:
            trainer.restore(saved["state"], saved["model"])
        if dist.is_main:
            lock = (rundir.RunLock(run_dir) if resume is not None
                    else rundir.create_run_dir(run_dir, overwrite=overwrite))
            if saved is not None:
                rundir.truncate_metrics(run_dir, trainer.epoch)
            write_checked(run_dir / "config.toml", lambda: atomic_write_text(
                run_dir / "config.toml", to_toml(config)))
        trainer.on_epoch_end.append(write_curves)
        trainer.on_epoch_end.extend(callbacks or [])
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


def write_checked(path: Path, write: Callable[[], None], hint: str = "") -> None:
    """Run ``write()``; a failure of the file system (full disk, read-only, gone) becomes one
    line naming ``path`` and ``hint``: the way back to the run, which a mid-run write error must
    give instead of explain_write_errors' "choose another --out"."""
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
