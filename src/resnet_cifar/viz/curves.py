"""Training curves: loss and accuracy against the epoch (or ``x="time"``: training minutes), with
the lr steps marked. A step that takes effect in epoch e is drawn at x = e - 1, where it starts."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from matplotlib.figure import Figure

from resnet_cifar.config import X_AXES
from resnet_cifar.engine.recipes import (
    differing_settings,
    group_key,
    minutes_by_epoch,
    recipe_label,
    run_labels,
    run_row,
    seeds_label,
    shipped_accuracy,
)
from resnet_cifar.engine.rundir import RunInfo, each_once, read_run
from resnet_cifar.errors import ConfigError
from resnet_cifar.viz.output import check_figure_target, save_figure

PLOT_OUTPUT = "plot output"  # what a write error calls the file
MAX_MARKED_LR_CHANGES = 8  # more changes than this (cosine, one-cycle): plot the lr instead
LOG_LOSS_RATIO = 30  # losses spanning more than this factor are drawn on a log axis
MARKER_EPOCHS = 40  # draw point markers on runs this short, so a 1-epoch run is visible
LEGEND_INSIDE = 8  # legend entries that fit inside the axes without hiding the lines
LINESTYLES = ("-", "--", ":", "-.")  # runs within one colour (seeds of one recipe)
MARKERS = ("o", "s", "^", "D", "v")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def check_x_axis(x: str) -> None:
    if x not in X_AXES:
        raise ConfigError(f"x axis {x!r} is not one of {X_AXES}")


def x_values(rows: list[dict], x: str) -> list[float]:
    """Where each epoch's point goes: its number, or the training minutes by its end."""
    return [r["epoch"] for r in rows] if x == "epoch" else minutes_by_epoch(rows)


def x_label(x: str) -> str:
    return "epoch" if x == "epoch" else "training minutes (steps only)"


def format_x_axis(ax, x: str) -> None:
    ax.grid(alpha=0.3)
    if x == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)


def lr_changes(rows: list[dict]) -> list[tuple[int, float, float]]:
    """(x where the new lr starts, old lr, new lr) for each change between consecutive epochs."""
    changes = []
    for before, after in pairwise(rows):
        old, new = before["lr"], after["lr"]
        if abs(new - old) > 1e-12 * max(abs(old), abs(new)):
            changes.append((after["epoch"] - 1, old, new))
    return changes


def val_name(runs: list[RunInfo]) -> str:
    return "test (= val)" if all(r.val_is_test for r in runs) else "val"


def curves_figure(runs: list[RunInfo], x: str = "epoch") -> Figure:
    """Loss (left) and accuracy (right): train solid, validation dashed; one colour per run."""
    check_x_axis(x)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    labels = run_labels(runs)
    single = len(runs) == 1
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        color = COLORS[i % len(COLORS)]
        epochs = x_values(run.rows, x)
        style = {"color": color, "marker": "o" if len(epochs) <= MARKER_EPOCHS else None,
                 "markersize": 3}
        for ax, key, scale in ((loss_ax, "loss", 1), (acc_ax, "acc", 100)):
            ax.plot(epochs, [scale * r[f"train_{key}"] for r in run.rows], linestyle="-",
                    label="train" if single else label, **style)
            ax.plot(epochs, [scale * r[f"val_{key}"] for r in run.rows], linestyle="--",
                    label=val_name(runs) if single else None, **style)
        mark_lr(run.rows, (loss_ax, acc_ax), color="0.4" if single else color, annotate=single,
                x=x)
    losses = [r[k] for run in runs for r in run.rows for k in ("train_loss", "val_loss")]
    if losses and min(losses) > 0 and max(losses) / min(losses) > LOG_LOSS_RATIO:
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel=x_label(x), ylabel="cross-entropy loss", title="loss")
    acc_ax.set(xlabel=x_label(x), ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        format_x_axis(ax, x)
    if single:
        acc_ax.legend(loc="lower right", fontsize=9)
    else:
        add_style_legend(loss_ax, val_name(runs))
        acc_ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(curves_title(runs[0]) if single else f"training curves of {len(runs)} runs",
                 fontsize=11)
    return fig


def mark_lr(rows: list[dict], axes, *, color: str, annotate: bool, x: str = "epoch") -> None:
    """Dashed verticals at each lr step (where its epoch starts); for schedules that change lr
    every epoch, the lr itself on a right-hand axis of the loss panel instead."""
    changes = lr_changes(rows)
    xs = x_values(rows, x)
    if len(changes) > MAX_MARKED_LR_CHANGES:
        lr_ax = axes[0].twinx()
        lr_ax.plot(xs, [r["lr"] for r in rows], color=color, linestyle=":", linewidth=1)
        lr_ax.set_ylabel("learning rate (dotted)", color="0.4")
        return
    end_of = dict(zip((r["epoch"] for r in rows), xs, strict=True))
    for epoch_start, old, new in changes:
        where = end_of.get(epoch_start, 0.0)  # an epoch starts where the one before it ended
        for ax in axes:
            ax.axvline(where, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
        if annotate:
            axes[0].annotate(f"lr {old:g}→{new:g}", xy=(where, 1),
                             xycoords=("data", "axes fraction"),
                             xytext=(3, -12), textcoords="offset points", fontsize=8, color="0.3")


def add_style_legend(ax, val_label: str) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.3", linestyle="-", label="train"),
               Line2D([], [], color="0.3", linestyle="--", label=val_label)]
    ax.legend(handles=handles, loc="upper right", fontsize=8)


def curves_title(run: RunInfo) -> str:
    label = run_labels([run])[0]
    row = run_row(run)
    text = f"{label}: {len(run.rows)} epoch{'s' * (len(run.rows) != 1)}"
    if row["best_val_acc"] is not None:
        text += (f", best {val_name([run])} {100 * row['best_val_acc']:.2f}% "
                 f"at epoch {row['best_epoch']}")
    if row["test_acc"] is not None and not run.val_is_test:
        text += f", test {100 * row['test_acc']:.2f}%"
    planned = run.config.get("epochs")
    in_progress = not run.finished and (planned is None or len(run.rows) < planned)
    return text + (f" of {planned} (in progress)" if in_progress and planned else
                   " (in progress)" if in_progress else "")


def plot_curves(run_dirs: list[str | Path], out: str | Path, x: str = "epoch") -> Path:
    """Overlay the training curves of one or more runs into ``out`` (format by extension)."""
    check_x_axis(x)
    runs = [read_run(d) for d in each_once(run_dirs)]  # first: "not a run" is the error to give
    check_figure_target(out, PLOT_OUTPUT)  # before any drawing
    return save_figure(curves_figure(runs, x), out, PLOT_OUTPUT)


def write_run_curves(run_dir: str | Path) -> Path:
    """``<run_dir>/curves.png``, redrawn by the training loop after each epoch."""
    return plot_curves([run_dir], Path(run_dir) / "curves.png")


def val_accuracy_figure(runs: list[RunInfo], x: str = "epoch",
                        targets: tuple[float, ...] = ()) -> Figure:
    """Validation accuracy of every run; seeds of one recipe share a colour, their mean drawn
    thick. On a time axis each of ``targets`` (fractions) in range is a dotted line."""
    check_x_axis(x)
    groups: dict[tuple, list[RunInfo]] = {}
    rows = {id(run): run_row(run) for run in runs}
    differing = differing_settings(list(rows.values()))
    for run in runs:
        groups.setdefault(group_key(rows[id(run)]), []).append(run)
    entries = len(runs) + sum(len(members) > 1 for members in groups.values())
    outside = entries > LEGEND_INSIDE
    fig = Figure(figsize=(11, 5) if outside else (8, 4.5), layout="constrained")
    ax = fig.subplots()
    labels = dict(zip((id(r) for r in runs), run_labels(runs), strict=True))
    for g, members in enumerate(groups.values()):
        color = COLORS[g % len(COLORS)]
        for j, run in enumerate(members):
            epochs = x_values(run.rows, x)
            ax.plot(epochs, [100 * shipped_accuracy(r) for r in run.rows], color=color,
                    linestyle=LINESTYLES[j % len(LINESTYLES)], linewidth=1,
                    marker=MARKERS[j % len(MARKERS)] if len(epochs) <= MARKER_EPOCHS else None,
                    markersize=3, label=f"{labels[id(run)]}, seed {run.seed}")
        if len(members) > 1:
            common = min(len(run.rows) for run in members)
            mean = [100 * sum(shipped_accuracy(run.rows[i]) for run in members) / len(members)
                    for i in range(common)]
            where = [sum(x_values(run.rows, x)[i] for run in members) / len(members)
                     for i in range(common)]
            group = seeds_label(members, recipe_label(rows[id(members[0])], differing))
            ax.plot(where, mean, color=color, linewidth=3, alpha=0.45,
                    label=f"{group}: mean of {len(members)} seeds")
    name = val_name(runs)
    accuracies = [100 * shipped_accuracy(r) for run in runs for r in run.rows]
    if x == "time" and accuracies:
        for target in targets:
            if min(accuracies) <= 100 * target <= max(accuracies) + 5:
                ax.axhline(100 * target, color="0.5", linestyle=":", linewidth=1)
    ax.set(xlabel=x_label(x), ylabel=f"{name} accuracy (%)",
           title=f"{name} accuracy of {len(runs)} run{'s' * (len(runs) != 1)}"
                 + (" against training time" if x == "time" else ""))
    format_x_axis(ax, x)
    if outside:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8, loc="best")
    return fig
