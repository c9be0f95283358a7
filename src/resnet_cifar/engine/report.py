"""What a training run tells its user: header, end-of-run lines, summary.json, the diverged-loss
message and the resume command. Pure functions: they print nothing."""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from resnet_cifar.config import CROP_PADDING, TrainConfig
from resnet_cifar.engine.inference import Splits
from resnet_cifar.engine.rundir import best_checkpoint_name
from resnet_cifar.engine.runtime import FOLLOW_SECONDS
from resnet_cifar.engine.setup import ema_decay_at
from resnet_cifar.version import __version__


def cli_command() -> str:
    """This environment's resnet-cifar script, else this Python's ``-m resnet_cifar``."""
    script = Path(sys.executable).parent / ("resnet-cifar.exe" if os.name == "nt" else
                                            "resnet-cifar")
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m resnet_cifar"


def resume_command(run_dir: Path) -> str:
    return f"{cli_command()} train --resume {shlex.quote(str(run_dir.resolve()))}"


def restart_command(run_dir: Path) -> str:
    run = run_dir.resolve()
    return (f"{cli_command()} train --config {shlex.quote(str(run / 'config.toml'))} --out "
            f"{shlex.quote(str(run))} --overwrite")


def header_lines(config: TrainConfig, splits: Splits, *, run_dir: Path | None, params: int,
                 macs: int, lr0: float, world_size: int, device: torch.device,
                 others_busy: float | None, epoch: int, step: int,
                 steps_per_epoch: int) -> list[str]:
    """The lines a run starts with. ``epoch``, ``step``: where a resume starts."""
    cfg, s = config, splits
    val = (
        "TEST set (no `data.val_split` (--val-split)): validation and the best checkpoint "
        f"({best_checkpoint_name(s.val_is_test)}) use the test set"
        if s.val_is_test
        else f"{len(s.val_labels)} held-out training images"
        + ("" if len(s.test_labels) else "; no test split in this data: no test accuracy")
    )
    batch = (f"{cfg.batch_size} per rank x {world_size} ranks = {cfg.batch_size * world_size} "
             "global" if world_size > 1 else str(cfg.batch_size))
    lines = [
        f"run        {run_dir}" + (f" (last.pt saved after each epoch and every "
                                   f"{cfg.save_every:g} min within one: `save_every` "
                                   "(--save-every))" if cfg.save_every else ""),
        f"model      {cfg.model} {cfg.model_kwargs or ''} ({params:,} params, "
        f"{macs / 1e6:.1f} MMACs)",
        f"data       {s.source}: {len(s.train_labels)} train images, {len(s.classes)} classes, "
        f"fingerprint {s.fingerprint[:19]}",
        f"validation {val}",
        f"recipe     {cfg.epochs} epochs, batch {batch}, {optimizer_words(cfg, lr0, world_size)}, "
        f"augment {cfg.data.augment}, normalize {cfg.data.normalize}",
        f"device     {device}, {torch.get_num_threads()} threads"
        + (", deterministic" if cfg.deterministic else "")
        + (f", {cfg.amp} autocast in training" if cfg.amp != "none" else "")
        + (f" (one per idle core: others keep {others_busy:.1f} busy; chosen again every "
           f"{FOLLOW_SECONDS:.0f} s; `threads` (--threads) N fixes it)"
           if others_busy is not None else ""),
    ]
    if options := recipe_options(cfg):
        lines.append(f"options    {options}")
    if epoch or step:
        lines.append(f"resuming   after epoch {epoch}, step {step}")
    late = [m for m in cfg.milestones if m >= cfg.epochs] if cfg.schedule == "step" else []
    if late:
        lines.append(f"note       milestone(s) {late} are past the last epoch index "
                     f"({cfg.epochs - 1}): the lr never drops there; pass `milestones` "
                     "(--milestones)")
    if cfg.ema_decay > 0:
        last = cfg.epochs * steps_per_epoch - 1  # the steps done before the run's last update
        reached = ema_decay_at(cfg.ema_decay, last)
        if reached < cfg.ema_decay:
            lines.append(f"note       `ema_decay` (--ema-decay) {cfg.ema_decay:g} is never "
                         "reached: the average's warm-up, (1 + step) / (10 + step), stays below "
                         f"it for all {last + 1:,} steps ({reached:.5f} at the last), so it sets "
                         "the decay throughout; a higher `ema_decay` (--ema-decay) changes "
                         "nothing here")
    return lines


def optimizer_words(config: TrainConfig, lr0: float, world_size: int = 1) -> str:
    """The optimizer and its schedule in words: the peak lr and, where it does not start there,
    ``lr0``."""
    peak = config.lr * (world_size if config.lr_scaling == "linear" else 1)
    words = f"SGD{' nesterov' if config.nesterov else ''} lr {peak:g}"
    if config.schedule == "step":
        words += f", x{config.gamma:g} at epoch(s) {list(config.milestones)}"
    else:
        words += f", {config.schedule}"
    if config.warmup_epochs:
        words += f" after a {config.warmup_epochs:g}-epoch warm-up"
    if not math.isclose(lr0, peak):
        words += f" (starting at {lr0:g})"
    words += f", momentum {config.momentum:g}, wd {config.weight_decay:g}"
    if config.label_smoothing:
        words += f", label smoothing {config.label_smoothing:g}"
    return words


def recipe_options(config: TrainConfig) -> str:
    """The options a run uses beyond the original recipe, in words."""
    words = []
    if config.data.flip != "random":
        words.append(f"{config.data.flip} flips, `data.flip` (--flip)")
    if config.data.crop_padding != CROP_PADDING and config.data.augment == "standard":
        words.append(f"crops from {config.data.crop_padding}-pixel padding, "
                     "`data.crop_padding` (--crop-padding)")
    if config.data.cutout:
        words.append(f"cutout {config.data.cutout}x{config.data.cutout}, `data.cutout` (--cutout)")
    if config.ema_decay > 0:
        words.append(f"weights averaged, `ema_decay` (--ema-decay) {config.ema_decay:g} (the "
                     "average is the final weights)")
    if config.no_decay_bn_bias:
        words.append("no weight decay on BatchNorm and biases, `no_decay_bn_bias` "
                     "(--no-decay-bn-bias)")
    if config.zero_init_residual:
        words.append("residual branches start at 0, `zero_init_residual` (--zero-init-residual)")
    if config.stem_init != "kaiming":
        words.append(f"first convolution starts as a {config.stem_init}, `stem_init` "
                     "(--stem-init)")
    if config.tta != "none":
        words.append(f"validation also with test-time augmentation, `tta` (--tta) {config.tta}")
    return "; ".join(words)


def validation_words(row: dict[str, Any]) -> str:
    """What an epoch line adds to ``rundir.format_row`` for `ema_decay` and `tta`."""
    words = [(label, row[column]) for label, column in (
        ("tta", "val_tta_acc"), ("ema", "ema_val_acc"), ("ema tta", "ema_val_tta_acc"))
        if column in row]
    return "".join(f"  {label} {100 * value:6.2f}%" for label, value in words)


def final_lines(splits: Splits, run_dir: Path, summary: dict[str, Any],
                best: dict[str, Any]) -> list[str]:
    where = "test (= validation)" if splits.val_is_test else "test"
    lines = [f"warning: {splits.data_line()}"] if splits.data_matches is False else []
    if summary["test_acc"] is None:
        final = f"no test accuracy ({splits.source} has no test split)"
    else:
        averaged = (f" (averaged weights; raw weights {100 * summary['test_acc_raw']:.2f}%)"
                    if summary.get("final_weights") == "ema" else "")
        final = f"final {where} accuracy {100 * summary['test_acc']:.2f}%{averaged}"
    chosen = f", {best['weights']} weights" if "weights" in best else ""
    lines.append(
        f"{final}; best validation {100 * best['val_acc']:.2f}% at epoch {best['epoch']}{chosen}"
        f" -> {run_dir / best_checkpoint_name(splits.val_is_test)}")
    lines.append(f"weights: {run_dir / 'model.pth'}")
    return lines


def thread_spans(rows: list[dict[str, Any]]) -> list[list[int]] | None:
    """[first epoch, last epoch, threads] for each stretch of epochs with one thread count; None
    when a row predates the `threads` column."""
    if not rows or any("threads" not in r for r in rows):
        return None
    spans: list[list[int]] = []
    for r in rows:
        if spans and spans[-1][2] == r["threads"] and spans[-1][1] == r["epoch"] - 1:
            spans[-1][1] = r["epoch"]
        else:
            spans.append([r["epoch"], r["epoch"], r["threads"]])
    return spans


def describe_threads(summary: dict[str, Any]) -> str:
    """The thread count a summary records: "1 (epochs 1-5), 2 (epochs 6-15)" when it changed."""
    spans = summary.get("thread_spans") or []
    if len(spans) < 2:
        return str(summary.get("threads", "–"))
    return ", ".join(f"{threads} (epoch {first})" if first == last
                     else f"{threads} (epochs {first}-{last})" for first, last, threads in spans)


def run_summary(config: TrainConfig, splits: Splits, history: list[dict[str, Any]], *,
                best: dict[str, Any], epochs: int, params: int, macs: int,
                device: torch.device, world_size: int, test_acc: float | None,
                final_weights: str = "raw", test_acc_raw: float | None = None
                ) -> dict[str, Any]:
    """summary.json. With `ema_decay`, final_val_acc and test_acc are the average's."""
    rows, averaged = history, final_weights == "ema"
    return {
        "name": config.name or config.model, "model": config.model,
        "model_kwargs": config.model_kwargs, "params": params, "macs": macs, "epochs": epochs,
        "seed": config.seed, "val_is_test": splits.val_is_test,
        "best_val_acc": best["val_acc"] if rows else None, "best_epoch": best["epoch"],
        "final_val_acc": rows[-1]["ema_val_acc" if averaged else "val_acc"] if rows else None,
        "test_acc": test_acc,
        **({"final_weights": final_weights, "test_acc_raw": test_acc_raw,
            "best_weights": best.get("weights")} if averaged else {}),
        "sec_per_epoch": sum(r["epoch_time"] for r in rows) / len(rows) if rows else None,
        "img_per_s": sum(r["img_per_s"] for r in rows) / len(rows) if rows else None,
        "train_images": len(splits.train_labels), "num_classes": splits.num_classes,
        "data_fingerprint": splits.fingerprint, "device": str(device),
        "threads": torch.get_num_threads(), "thread_spans": thread_spans(rows),
        "world_size": world_size, "torch": torch.__version__, "package_version": __version__,
    }


def progress_bar(total: int, initial: int, epoch: int):
    from tqdm.auto import tqdm  # a widget in a notebook, text elsewhere

    return tqdm(total=total, initial=initial, leave=False, desc=f"epoch {epoch + 1}",
                dynamic_ncols=True)


def resume_hint(run_dir: Path, epoch: int, step: int) -> str:
    where = (f"during epoch {epoch + 1} after step {step}" if step else f"after epoch {epoch}")
    return (f"stopped {where}; saved {run_dir.resolve() / 'last.pt'}.\n"
            f"resume with: {resume_command(run_dir)}")


def diverged_message(config: TrainConfig, run_dir: Path | None, value: float, epoch: int,
                     step: int, saved: tuple[int, int] | None) -> str:
    """Why a run stopped on a NaN/inf loss (an exact resume would replay it: a new run is advised).
    ``saved``: the (epoch, step) last.pt holds."""
    config_file = run_dir / "config.toml" if run_dir is not None else None
    warmup = min(2, config.epochs - 1)  # warmup_epochs must stay below epochs
    rerun = (f"{cli_command()} train --config {shlex.quote(str(config_file.resolve()))} "
             f"--lr {config.lr / 2:g}" + (f" --warmup-epochs {warmup}" if warmup else "")
             + " --out NEW_DIR") if config_file is not None else "lower the lr"
    if saved is None:
        kept = "no epoch had finished, so no checkpoint was kept"
    elif saved[1]:  # a mid-epoch save (`save_every`)
        kept = f"last.pt holds epoch {saved[0]} and {saved[1]} steps of epoch {saved[0] + 1}"
    else:
        kept = f"last.pt holds epoch {saved[0]}"
    return (f"loss became {value} at epoch {epoch + 1}, step {step}; "
            f"stopped without saving it ({kept}). Start again with a lower lr or a "
            f"warm-up: {rerun}, or `out` (--out) on this run with `overwrite` (--overwrite)")


# Drawing curves.png takes 0.2-0.4 s, which after every seconds-long epoch would idle a GPU.
CURVES_EVERY_S = 30.0


def draw_curves(run_dir: Path, log) -> None:
    """Redraw curves.png; a plotting failure must never cost a training run."""
    try:
        from resnet_cifar.viz.curves import write_run_curves

        write_run_curves(run_dir)
    except Exception as err:  # noqa: BLE001 - reported, then training goes on
        log.info(f"warning: could not draw curves.png ({type(err).__name__}: {err})")
