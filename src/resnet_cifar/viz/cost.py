"""Test accuracy against cost: each recipe's mean ± std over its seeds against its multiply-adds
or parameters, and the plain ResNets of one recipe joined by a line, the frontier that depth
alone buys: a model above it gets more from its cost than a deeper ResNet would."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

COSTS = {"macs": "multiply-adds per image", "params": "parameters"}


@dataclass(frozen=True)
class CostPoint:
    """One recipe's point: what compare.cost_points makes of its seeds."""

    label: str  # the recipe's label, as the tables print it
    cost: int  # multiply-adds per image, or parameters
    mean: float  # test accuracy over the seeds (fraction)
    std: float  # sample std over the seeds (fraction); 0 for one seed
    seeds: int
    family: tuple | None  # the plain ResNets of one recipe share one (joined by a line); else None


def cost_figure(points: list[CostPoint], cost: str) -> Figure:
    """Every point with its std as an error bar (none for one seed), labelled; each family's
    points, two or more, joined in order of cost."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    families: dict[tuple, list[CostPoint]] = {}
    for point in points:
        if point.family is not None:
            families.setdefault(point.family, []).append(point)
    lines = [sorted(members, key=lambda p: p.cost) for members in families.values()
             if len(members) > 1]
    for i, line in enumerate(lines):
        ax.plot([p.cost / 1e6 for p in line], [100 * p.mean for p in line], color="tab:blue",
                alpha=0.5, linewidth=2, zorder=1,
                label="plain ResNets: what depth alone buys" if i == 0 else None)
    for point in points:
        ax.errorbar(point.cost / 1e6, 100 * point.mean,
                    yerr=100 * point.std if point.seeds > 1 else None, capsize=4,
                    fmt="s" if point.family else "o",
                    color="tab:blue" if point.family else "tab:red", zorder=2)
        ax.annotate(f"{point.label} ({point.seeds} seed{'s' * (point.seeds != 1)})",
                    (point.cost / 1e6, 100 * point.mean), xytext=(6, 4),
                    textcoords="offset points", fontsize=8)
    ax.set(xlabel=f"{COSTS[cost]} (millions)",
           ylabel="test accuracy (%): mean ± std over seeds",
           title=f"Test accuracy against {COSTS[cost]}")
    ax.margins(x=0.15, y=0.1)  # room for the labels, which go right of and above the points
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=8, loc="lower right")
    return fig
