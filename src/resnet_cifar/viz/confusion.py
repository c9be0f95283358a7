"""The confusion matrix (row-normalized, raw counts in the cells) and per-class accuracy bars."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from resnet_cifar.atomic import check_folder
from resnet_cifar.viz.output import save_figure

if TYPE_CHECKING:
    from resnet_cifar.engine.evaluate import EvalResult

ANNOTATE_MAX_CLASSES = 20  # beyond this (CIFAR-100) the cells are too small for numbers


def row_normalized(confusion) -> np.ndarray:
    """Each row (a true class) divided by its count: the fraction predicted as each class."""
    matrix = np.asarray(confusion, dtype=np.float64)
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)


def confusion_figure(confusion: list[list[int]], classes: list[str],
                     title: str | None = None) -> Figure:
    """Heatmap of confusion[true][pred] as row fractions, each cell annotated with its count."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    assert counts.shape == (k, k), (counts.shape, k)
    fractions = row_normalized(counts)
    side = min(max(6.0, 0.55 * k + 2), 24.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    tick_size = 9 if k <= ANNOTATE_MAX_CLASSES else max(3, 9 - k // 20)
    ax.set_xticks(range(k), classes, rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=tick_size)
    ax.set_yticks(range(k), classes, fontsize=tick_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= ANNOTATE_MAX_CLASSES:
        for t in range(k):
            for p in range(k):
                dark = fractions[t, p] > 0.5
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=8,
                        color="white" if dark else ("0.15" if counts[t, p] else "0.7"))
    total, correct = int(counts.sum()), int(np.trace(counts))
    ax.set_title(title or f"confusion matrix: {correct}/{total} right "
                          f"({100 * correct / max(total, 1):.2f}%)", fontsize=11)
    return fig


def per_class_figure(classes: list[str], accuracies: list[float],
                     overall: float | None = None, title: str | None = None) -> Figure:
    """Horizontal bars of each class's accuracy (%), the overall accuracy as a dashed line."""
    k = len(classes)
    fig = Figure(figsize=(7, min(max(3.0, 0.32 * k + 1.2), 30.0)), layout="constrained")
    ax = fig.subplots()
    values = [100 * a for a in accuracies]
    positions = np.arange(k)
    ax.barh(positions, values, color="tab:blue", height=0.7)
    ax.set_yticks(positions, classes, fontsize=9 if k <= ANNOTATE_MAX_CLASSES else 5)
    ax.invert_yaxis()  # first class on top, as in the confusion matrix
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    if k <= ANNOTATE_MAX_CLASSES:
        for y, v in zip(positions, values, strict=True):
            inside = v > 15  # inside the bar's end, clear of the overall-accuracy line
            ax.text(v - 1 if inside else v + 1, y, f"{v:.1f}%", va="center", fontsize=8,
                    ha="right" if inside else "left", color="white" if inside else "black")
    if overall is not None:
        ax.axvline(100 * overall, color="tab:red", linestyle="--", linewidth=1.2, zorder=0)
    ax.grid(axis="x", alpha=0.3)
    default = "per-class accuracy" + (
        "" if overall is None else f" (red dashed line: overall {100 * overall:.2f}%)")
    ax.set_title(title or default, fontsize=11)
    return fig


def eval_figures(result: EvalResult) -> dict[str, Figure]:
    """{file name: figure} of an evaluation: confusion.png and per_class.png."""
    return {
        "confusion.png": confusion_figure(result.confusion, result.classes),
        "per_class.png": per_class_figure(result.classes, result.per_class_accuracy,
                                          overall=result.accuracy),
    }


def save_eval_plots(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write confusion.png and per_class.png into ``out_dir``; returns their paths."""
    out_dir = check_folder(out_dir, "eval plots into", "`out_dir` (--out-dir)")
    return [save_figure(fig, out_dir / name, "eval plot", "`out_dir` (--out-dir)")
            for name, fig in eval_figures(result).items()]
