"""Which runs are seeds of one recipe (engine/recipes.group_key), and what they say: mean ± std,
and differences against a baseline with 95% intervals from the seed variance pooled over models.
A later run of a recipe with a seed already seen is a repeat, left out of every statistic."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resnet_cifar.engine.recipes import (
    differing_settings,
    group_key,
    model_label,
    recipe_label,
    setting_text,
)
from resnet_cifar.errors import ConfigError

# What a group of seeds reports as mean ± std.
GROUP_METRICS = ("best_val_acc", "final_val_acc", "final_val_tta_acc", "test_acc",
                 "sec_per_epoch", "img_per_s", "train_minutes")


def _seeds_and_repeats(rows: list[dict[str, Any]]
                       ) -> tuple[list[list[dict[str, Any]]], list[tuple[dict, dict]]]:
    """(the seeds of each recipe, in first-seen order; (repeat, the run it repeats) pairs): the
    first run given of a seed counts, a later one is a repeat, never a second seed."""
    seeds: dict[tuple, dict[Any, dict[str, Any]]] = {}
    repeats = []
    for row in rows:
        of_recipe = seeds.setdefault(group_key(row), {})
        if row["seed"] in of_recipe:
            repeats.append((row, of_recipe[row["seed"]]))
        else:
            of_recipe[row["seed"]] = row
    return [list(of_recipe.values()) for of_recipe in seeds.values()], repeats


def seed_groups(rows: list[dict[str, Any]], min_runs: int = 2) -> list[list[dict[str, Any]]]:
    """The seeds of each recipe that has ``min_runs`` or more, repeats left out."""
    return [members for members in _seeds_and_repeats(rows)[0] if len(members) >= min_runs]


def repeats(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(repeat, the run it repeats) pairs: the same seed twice says nothing of the seed noise."""
    return _seeds_and_repeats(rows)[1]


def check_repeats(rows: list[dict[str, Any]]) -> None:
    """Refuse a repeat whose recipe is not recorded: one run given twice and two recipes run with
    one seed look alike there."""
    for row, first in repeats(rows):
        if row["recipe"] is None:
            raise ConfigError(
                f"runs {first['run']} and {row['run']} are both seed {row['seed']} of "
                f"{model_label(row['model'], row['model_kwargs'])} ({row['epochs']} epochs) and "
                "neither records its recipe (no config.toml, or a comparison.csv row written "
                "before compare saved recipes): they may be one run twice or two recipes; give "
                "only one of them (from a comparison.csv: a copy without the other's line)")


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (sample std) of each GROUP_METRICS over the seeds of each recipe that has two
    or more; a run that lacks a metric (test_acc while in progress) is left out of it."""
    differing = differing_settings(rows)
    groups = []
    for members in seed_groups(rows):
        first = members[0]
        group = {"label": recipe_label(first, differing),
                 "model": first["model"], "model_kwargs": first["model_kwargs"],
                 "epochs": first["epochs"], "params": first["params"], "macs": first["macs"],
                 "n": len(members), "runs": [m["run"] for m in members],
                 "seeds": [m["seed"] for m in members],
                 "val_is_test": any(m["val_is_test"] for m in members)}
        for metric in GROUP_METRICS + tuple(time_keys(first)):
            group[metric] = mean_std([m[metric] for m in members if m[metric] is not None])
        groups.append(group)
    return groups


def time_keys(row: dict[str, Any]) -> list[str]:
    """The row's time-to-accuracy keys (see recipes.target_columns), in order."""
    return [k for k in row if k.startswith(("epoch_to_", "minutes_to_"))]


def mean_std(values: list[float]) -> tuple[float, float, int] | None:
    """(mean, sample std, count); None without values, std 0 for a single value."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, len(values)


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; past 30 the value for 30,
# which overstates the quantile by at most 4% (1.96 at infinity): a slightly wider interval.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass
class Difference:
    """A group's mean test accuracy against the baseline's, with a 95% interval."""

    model: str  # model_label of the group
    delta: float  # mean test accuracy minus the baseline's (fraction)
    half_width: float | None  # of the 95% interval around delta (fraction); None: one seed
    seeds: int  # runs behind the group's mean

    @property
    def inside_noise(self) -> bool:
        """One seed is never told from noise: its own seed-to-seed spread is unmeasured, and
        a recurrent model's may be larger than the others' (pooling assumes it is alike)."""
        return self.half_width is None or abs(self.delta) <= self.half_width


@dataclass
class NoiseTest:
    """Every group of one recipe length against a baseline group, with the seed noise pooled."""

    baseline: str
    epochs: int
    pooled_std: float  # seed-to-seed std of test accuracy, pooled over the groups (fraction)
    dof: int  # its degrees of freedom: sum over groups of (runs - 1)
    t: float
    differences: list[Difference]


def noise_test(rows: list[dict[str, Any]], baseline: str,
               models: Sequence[str] | None = None) -> list[NoiseTest]:
    """Per recipe length with a ``baseline`` group: each other group's (or ``models``') mean test
    accuracy minus the baseline's, with a 95% interval from the seed std pooled over all groups of
    that length (a model's own few seeds say little); none for one seed, no multiple-comparison
    correction. Names are a group's label ("resnet20 [lr=0.1]") or model; an ambiguous baseline
    is refused, never guessed."""
    groups = _labelled_groups(rows)
    # a baseline needs its own seeds: one run says nothing about its noise
    candidates = [(label, g) for label, g in groups
                  if len(g) > 1 and _is_named(baseline, label, g)]
    if not candidates:
        labels = sorted({label for label, g in groups if len(g) > 1})
        raise ConfigError(f"`baseline` (--baseline) {baseline!r} matches no model with two runs "
                          f"or more of one recipe among these runs; choose from "
                          f"{', '.join(labels) or '(none: give each model two seeds)'}")
    tests = []
    for epochs in sorted({g[0]["epochs"] for _, g in groups}):
        bases = [(label, g) for label, g in candidates if g[0]["epochs"] == epochs]
        if len(bases) > 1:
            raise ConfigError(f"`baseline` (--baseline) {baseline!r} matches {len(bases)} "
                              f"recipes of {epochs} epochs: "
                              f"{', '.join(repr(label) for label, _ in bases)}; give one of "
                              "these labels as `baseline` (--baseline)")
        base_group = bases[0][1] if bases else None
        accs = [(label, g, [r["test_acc"] for r in g if r["test_acc"] is not None])
                for label, g in groups if g[0]["epochs"] == epochs]
        accs = [acc for acc in accs if acc[2]]
        base = next((values for _, g, values in accs if g is base_group), None)
        dof = sum(len(values) - 1 for _, _, values in accs)
        if base is None or dof == 0:
            continue
        pooled = (sum((len(v) - 1) * statistics.variance(v) for _, _, v in accs if len(v) > 1)
                  / dof) ** 0.5
        t = T95[min(dof, len(T95)) - 1]
        differences = [
            Difference(label, statistics.fmean(values) - statistics.fmean(base),
                       t * pooled * (1 / len(values) + 1 / len(base)) ** 0.5
                       if len(values) > 1 else None, len(values))
            for label, g, values in accs
            if g is not base_group and (models is None or
                                        any(_is_named(m, label, g) for m in models))
        ]
        if differences or models is None:
            tests.append(NoiseTest(bases[0][0], epochs, pooled, dof, t, differences))
    return tests


def _labelled_groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    differing = differing_settings(rows)
    return [(recipe_label(g[0], differing), g) for g in seed_groups(rows, min_runs=1)]


def _is_named(name: str, label: str, members: list[dict[str, Any]]) -> bool:
    return name in (label, model_label(members[0]["model"], members[0]["model_kwargs"]))


def baseline_pairs(baseline: str | Sequence[str]) -> list[tuple[str | None, str]]:
    """(model, baseline) for each baseline asked for: "B" compares every other model with B
    (model None), "A=B" model A only; several as a list or comma-separated. A label's own commas
    and "=" (inside its brackets) split nothing."""
    pairs = []
    for item in [baseline] if isinstance(baseline, str) else baseline:
        for part in _split_outside_brackets(item, ","):
            sides = _split_outside_brackets(part, "=")
            if len(sides) > 2 or not all(sides):
                raise ConfigError(f"`baseline` (--baseline) {item!r}: {part!r} is neither MODEL "
                                  "nor MODEL=BASELINE; give a model, or a model and its baseline")
            pairs.append((sides[0] if len(sides) == 2 else None, sides[-1]))
    return pairs


def _split_outside_brackets(text: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[(") - (char in "])")
        if char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [part.strip() for part in [*parts, text[start:]]]


def noise_tests(rows: list[dict[str, Any]], baseline: str | Sequence[str]) -> list[NoiseTest]:
    """noise_test against each baseline ``baseline`` asks for (baseline_pairs), each pair once."""
    groups = _labelled_groups(rows)
    against: dict[str, list[str] | None] = {}
    for model, base in baseline_pairs(baseline):
        if model is not None and not any(_is_named(model, label, g) for label, g in groups):
            labels = ", ".join(sorted({label for label, _ in groups}))
            raise ConfigError(f"`baseline` (--baseline) {model}={base}: {model!r} matches no "
                              f"model among these runs; choose from {labels}")
        if model is None:
            against[base] = None  # every model: the pairs of this baseline among them
        elif against.get(base, []) is not None and model not in against.setdefault(base, []):
            against[base].append(model)
    return [test for base, models in against.items() for test in noise_test(rows, base, models)]


def data_conflict(rows: list[dict[str, Any]]) -> str | None:
    """The first two runs that used different data, described, or None. Data differ when their
    fingerprints do, else (one recorded none) their sources, or their numbers of classes."""
    for a, b in itertools.combinations(rows, 2):
        if _different_data(a["data"], b["data"]):
            return (f"runs {a['run']} ({_describe_data(a['data'])}) and {b['run']} "
                    f"({_describe_data(b['data'])}) used different data")
    return None


def _different_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if None not in (a["num_classes"], b["num_classes"]) and a["num_classes"] != b["num_classes"]:
        return True
    if a["fingerprint"] and b["fingerprint"]:
        return a["fingerprint"] != b["fingerprint"]
    return None not in (a["source"], b["source"]) and a["source"] != b["source"]


def _describe_data(data: dict[str, Any]) -> str:
    parts = []
    if data["source"] is not None:
        path, dataset, coarse = data["source"]
        parts.append((path or f"{dataset} download") + (" coarse" if coarse else ""))
    if data["fingerprint"]:
        parts.append(setting_text(data["fingerprint"]))
    if data["num_classes"] is not None:
        parts.append(f"{data['num_classes']} classes")
    return ", ".join(parts) or "data unknown"


def check_same_data(rows: list[dict[str, Any]], allow_mixed_data: bool = False) -> None:
    """Refuse runs on different data unless ``allow_mixed_data``."""
    if not allow_mixed_data and (conflict := data_conflict(rows)):
        raise ConfigError(f"{conflict}: their accuracies are not comparable; compare runs on "
                          "one dataset, or pass `allow_mixed_data` (--allow-mixed-data) to "
                          "compare them anyway")
