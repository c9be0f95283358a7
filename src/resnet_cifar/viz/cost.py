"""Test accuracy (mean ± std over seeds) against multiply-adds or parameters, the plain ResNets
of one recipe joined by a line: the frontier that depth alone buys."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from resnet_cifar.engine.recipes import differing_settings, group_key, recipe_label
from resnet_cifar.errors import ConfigError
from resnet_cifar.seeds import mean_std, seed_groups

COSTS = {"macs": "multiply-adds per image", "params": "parameters"}


@dataclass(frozen=True)
class CostPoint:
    """One recipe's point: what cost_points makes of its seeds."""

    label: str  # the recipe's label, as the tables print it
    cost: int  # multiply-adds per image, or parameters
    mean: float  # test accuracy over the seeds (fraction)
    std: float  # sample std over the seeds (fraction); 0 for one seed
    seeds: int
    family: tuple | None  # the plain ResNets of one recipe share one (joined by a line); else None


FAMILY = re.compile(r"resnet\d+")  # the plain ResNets (resnet20, resnet56): depth is all they vary


def cost_points(rows: list[dict[str, Any]], cost: str) -> list[CostPoint]:
    """A point for each recipe with a test accuracy: mean ± std over its seeds against ``cost``.
    The plain ResNets of one recipe at their default options share a family."""
    if cost not in COSTS:
        raise ConfigError(f"cost {cost!r} is not one of {', '.join(COSTS)}")
    differing = differing_settings(rows)
    tested = [(members, [m["test_acc"] for m in members if m["test_acc"] is not None])
              for members in seed_groups(rows, min_runs=1)]
    tested = [(members, accs) for members, accs in tested if accs]
    if not tested:
        raise ConfigError("no run among these has a test accuracy (a run in progress has none "
                          "yet): there is no accuracy to draw against cost")
    lengths = len({members[0]["epochs"] for members, _ in tested})
    points = []
    for members, accs in tested:
        first = members[0]
        mean, std, n = mean_std(accs)
        label = recipe_label(first, differing) + \
            (f", {first['epochs']} epochs" if lengths > 1 else "")
        family = group_key(first)[1:] if FAMILY.fullmatch(first["model"]) and \
            not first["model_kwargs"] else None
        points.append(CostPoint(label, cost_of(members, cost), mean, std, n, family))
    return points


def cost_of(members: list[dict[str, Any]], cost: str) -> int:
    """A recipe's "macs" or "params" as its runs recorded them, else counted now (a run in
    progress, a comparison.csv row without them)."""
    recorded = next((m[cost] for m in members if m[cost] is not None), None)
    if recorded is not None:
        return recorded
    first = members[0]
    return _counted(first["model"], json.dumps(first["model_kwargs"], sort_keys=True),
                    first["data"]["num_classes"])[cost]


@functools.cache
def _counted(model: str, kwargs: str, num_classes: int | None) -> dict[str, int]:
    from resnet_cifar.models import count_macs, count_parameters, create_model

    net = create_model(model, num_classes=num_classes, **json.loads(kwargs))
    return {"params": count_parameters(net), "macs": count_macs(net)}


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
