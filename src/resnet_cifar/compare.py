"""Runs side by side: one row per run, and mean ± std over the seeds of the same recipe.

    rows, groups = compare_runs(["runs/a", "runs/b", "old/comparison.csv"])
    print(markdown_tables(rows, groups, baseline=["resnet20", "regnet20_convgru=resnet56"]))

What a run directory says about itself (RunInfo) is engine/rundir's; its row, its label and
which runs are of one recipe (group_key) are engine/recipes'. This module holds what is made of
them: which runs count as seeds (seed_groups), the statistics over seeds, the noise test against
baselines, the accuracy against cost, and the Markdown, CSV and PNGs. The rows of a
comparison.csv count as runs: an earlier comparison's runs whose directories are gone.
Runs on different data are refused unless asked for (allow_mixed_data).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_cifar.atomic import (
    atomic_write,
    atomic_write_text,
    check_folder,
    explain_write_errors,
    os_error_cause,
)
from resnet_cifar.engine.recipes import (
    COLUMNS,
    TIME_TO_ACCURACY_TARGETS,
    differing_settings,
    group_key,
    model_label,
    recipe_label,
    run_row,
    setting_text,
    target_columns,
    target_name,
)
from resnet_cifar.engine.rundir import RunInfo, each_once, read_run
from resnet_cifar.errors import ConfigError, render_settings
from resnet_cifar.viz import check_x_axis, save_figure, val_accuracy_figure
from resnet_cifar.viz.cost import COSTS, CostPoint, cost_figure

COMPARISON = "the comparison into"  # a write error: "cannot write the comparison into DIR: ..."
# What a group of seeds reports as mean ± std.
GROUP_METRICS = ("best_val_acc", "final_val_acc", "final_val_tta_acc", "test_acc",
                 "sec_per_epoch", "img_per_s", "train_minutes")


def _seeds_and_repeats(rows: list[dict[str, Any]]
                       ) -> tuple[list[list[dict[str, Any]]], list[tuple[dict, dict]]]:
    """(the seeds of each recipe, in first-seen order; (repeat, the run it repeats) pairs).
    A run is one seed of its recipe (recipes.group_key): the first run given of a seed counts,
    a later one of the same recipe and seed is a repeat of it, never a second seed."""
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
    """The seeds of each recipe that has ``min_runs`` or more, one run per seed (repeats left
    out: see repeats): what every mean, std, interval and figure of seeds is made of."""
    return [members for members in _seeds_and_repeats(rows)[0] if len(members) >= min_runs]


def repeats(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(repeat, the run it repeats): each later run of a recipe with a seed already seen. The
    same seed twice measures nothing about the seed noise (a pooled std of 0 from one run
    given twice), so a repeat is set aside, and the tables name it."""
    return _seeds_and_repeats(rows)[1]


def check_repeats(rows: list[dict[str, Any]]) -> None:
    """Refuse a repeat whose recipe is not recorded (a run without config.toml, a row of a
    comparison.csv written before it recorded recipes): one run given twice and two recipes
    run with one seed look alike there, and either reading could be wrong."""
    for row, first in repeats(rows):
        if row["recipe"] is None:
            raise ConfigError(
                f"runs {first['run']} and {row['run']} are both seed {row['seed']} of "
                f"{model_label(row['model'], row['model_kwargs'])} ({row['epochs']} epochs) and "
                "neither records its recipe (no config.toml, or a comparison.csv row written "
                "before compare saved recipes): they may be one run twice or two recipes; give "
                "only one of them (from a comparison.csv: a copy without the other's line)")


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (sample std, n - 1) of each GROUP_METRICS over the seeds of each recipe that
    has two seeds or more (see seed_groups). A metric a run lacks (test_acc while in progress)
    is left out of it."""
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
            values = [m[metric] for m in members if m[metric] is not None]
            group[metric] = mean_std(values)
        groups.append(group)
    return groups


def time_keys(row: dict[str, Any]) -> list[str]:
    """The row's time-to-accuracy keys (see recipes.target_columns), in order."""
    return [k for k in row if k.startswith(("epoch_to_", "minutes_to_"))]


def targets_of(row: dict[str, Any]) -> list[str]:
    """The targets a row gives the time to, as named in its keys ("80", "85")."""
    return [k.removeprefix("minutes_to_") for k in row if k.startswith("minutes_to_")]


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
    """For each recipe length that has a ``baseline`` group: each other group's mean test
    accuracy minus the baseline's (or, given ``models``, the groups those name only), with a 95%
    interval from the seed-to-seed std pooled over all groups of that length (the seeds of one
    model are few, two or three, so its own std says little; pooling assumes the seed noise is
    alike across models and recipes). A difference whose interval holds 0 is inside the noise. A
    model with one seed gets its difference and no interval: one seed cannot be told from noise.
    No correction for comparing several groups at once: with five comparisons, one marginal
    "beyond" may be chance. Seeds only: repeats are left out (see seed_groups).

    ``baseline`` (and each of ``models``) is a group's label (see recipe_label: "resnet20
    [lr=0.1]") or its model label ("resnet20"). A baseline that names several recipes of one
    length (resnet20 at lr 0.1 and at lr 0.2) is refused, naming their labels: which recipe is
    the baseline is the user's choice, never a guess."""
    differing = differing_settings(rows)
    groups = [(recipe_label(g[0], differing), g) for g in seed_groups(rows, min_runs=1)]
    # a baseline needs its own seeds: one run says nothing about its noise
    candidates = [(label, g) for label, g in groups
                  if len(g) > 1 and _is_named(baseline, label, g)]
    if not candidates:
        labels = sorted({label for label, g in groups if len(g) > 1})
        raise ConfigError(f"`baseline` {baseline!r} matches no model with two runs or more of "
                          f"one recipe among these runs; choose from "
                          f"{', '.join(labels) or '(none: give each model two seeds)'}")
    tests = []
    for epochs in sorted({g[0]["epochs"] for _, g in groups}):
        bases = [(label, g) for label, g in candidates if g[0]["epochs"] == epochs]
        if len(bases) > 1:
            raise ConfigError(f"`baseline` {baseline!r} matches {len(bases)} recipes of {epochs} "
                              f"epochs: {', '.join(repr(label) for label, _ in bases)}; give one "
                              "of these labels as `baseline`")
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


def _is_named(name: str, label: str, members: list[dict[str, Any]]) -> bool:
    return name in (label, model_label(members[0]["model"], members[0]["model_kwargs"]))


def baseline_pairs(baseline: str | Sequence[str]) -> list[tuple[str | None, str]]:
    """(model, baseline) for each baseline asked for: "B" compares every other model with B
    (model None), "A=B" model A only. Several are given as a list or comma-separated,
    "resnet20, regnet20_convgru=resnet56": each regulated model against resnet20 and against
    its equal-cost ResNet. A label's own commas and "=" (inside its brackets) split nothing."""
    pairs = []
    for item in [baseline] if isinstance(baseline, str) else baseline:
        for part in _split_outside_brackets(item, ","):
            sides = _split_outside_brackets(part, "=")
            if len(sides) > 2 or not all(sides):
                raise ConfigError(f"`baseline` {item!r}: {part!r} is neither MODEL nor "
                                  "MODEL=BASELINE; give a model, or a model and its baseline")
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
    """noise_test against each baseline that ``baseline`` asks for (see baseline_pairs), each
    pair once. A model of a pair must name a group (see noise_test) among the runs."""
    differing = differing_settings(rows)
    groups = [(recipe_label(g[0], differing), g) for g in seed_groups(rows, min_runs=1)]
    against: dict[str, list[str] | None] = {}
    for model, base in baseline_pairs(baseline):
        if model is not None and not any(_is_named(model, label, g) for label, g in groups):
            labels = ", ".join(sorted({label for label, _ in groups}))
            raise ConfigError(f"`baseline` {model}={base}: {model!r} matches no model among "
                              f"these runs; choose from {labels}")
        if model is None:
            against[base] = None  # every model: the pairs of this baseline among them
        elif against.get(base, []) is not None and model not in against.setdefault(base, []):
            against[base].append(model)
    return [test for base, models in against.items() for test in noise_test(rows, base, models)]


def data_conflict(rows: list[dict[str, Any]]) -> str | None:
    """The first two runs that used different data, described; None when all agree as far as
    they say (see run_data). Data differ when their content fingerprints do, else (a run
    recorded none) when their sources do, or when their numbers of classes do."""
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
    """Refuse runs on different data (see data_conflict): their accuracies are not comparable,
    so a comparison of them is asked for (``allow_mixed_data``), and then says so."""
    conflict = data_conflict(rows)
    if conflict and not allow_mixed_data:
        raise ConfigError(f"{conflict}: their accuracies are not comparable; compare runs on "
                          "one dataset, or pass `allow_mixed_data` to compare them anyway")


def tabulate(inputs: list[RunInfo | dict[str, Any]], allow_mixed_data: bool = False,
             targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per run, one group per recipe with several seeds) of run directories read
    (RunInfo) and rows of comparison.csv files (see read_inputs); see check_same_data and
    check_repeats. ``targets``: the accuracies whose time to reach each row gives (see
    recipes.run_row)."""
    rows = [run_row(x, targets) if isinstance(x, RunInfo) else x for x in inputs]
    check_same_data(rows, allow_mixed_data)
    check_repeats(rows)
    return rows, group_rows(rows)


def compare_runs(paths: list[str | Path], *, allow_mixed_data: bool = False,
                 targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per run, one group per recipe with several seeds) of run directories and
    comparison.csv files (see read_inputs); see tabulate."""
    return tabulate(read_inputs(paths, targets), allow_mixed_data, targets)


# ------------------------------------------------------------------------------------ inputs

# comparison.csv's columns after COLUMNS and the time ones: what groups the rows and checks their
# data (run_row's recipe and run_data), as JSON. A CSV written before has neither.
RECORD_COLUMNS = ("recipe", "data")
UNKNOWN_DATA = {"fingerprint": None, "source": None, "num_classes": None}
TEXT_COLUMNS = ("run", "name", "model")
INT_COLUMNS = ("params", "macs", "epochs", "seed", "best_epoch")
REQUIRED_COLUMNS = ("run", "model", "epochs")  # what no row can be grouped or shown without


def read_inputs(paths: list[str | Path], targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
                ) -> list[RunInfo | dict[str, Any]]:
    """A RunInfo for each run directory and a row for each run a comparison.csv holds (see
    read_csv_rows), in the order given. A run is keyed by its resolved path: one given twice
    (again, through a symlink or spelled another way) is refused, as it would count as two
    seeds; so is a comparison.csv given twice."""
    inputs: list[RunInfo | dict[str, Any]] = []
    for path in each_once(paths):
        if path.suffix.lower() == ".csv" and not path.is_dir():
            inputs += read_csv_rows(path, targets)
        else:
            inputs.append(read_run(path))
    return inputs


def read_csv_rows(path: Path, targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
                  ) -> list[dict[str, Any]]:
    """The runs a comparison.csv holds (see write_csv) as rows like run_row's: an earlier
    comparison's runs, whose directories may be gone. It must hold the time to each of
    ``targets``. Rows of a CSV written before compare saved recipes and data have neither: they
    group like runs without config.toml, and their data are unknown (never a conflict)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, records = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        cause = os_error_cause(err) if isinstance(err, OSError) else str(err)
        raise ConfigError(f"cannot read {path}: {cause}; give a comparison.csv that compare "
                          "wrote, or a run directory") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{path} has no column {', '.join(missing)}: not a comparison.csv this "
                          "compare reads (one written since it tabled TTA and time to "
                          "accuracy); give such a CSV, or run directories")
    if not records:
        raise ConfigError(f"{path} holds no runs; give a comparison.csv with runs, or run "
                          "directories")
    times = target_columns(targets)
    if any(c not in header for c in times):
        held = [c.removeprefix("minutes_to_") for c in header if c.startswith("minutes_to_")]
        asked = [target_name(t) for t in targets]
        raise ConfigError(f"{path} holds the time to {', '.join(held) or 'no'}% only, not to "
                          f"{', '.join(asked)}%: ask for targets it holds")
    return [{**{c: _csv_value(c, record.get(c) or "", path, line) for c in COLUMNS + times},
             "recipe": _csv_value("recipe", record.get("recipe") or "", path, line),
             "data": _csv_value("data", record.get("data") or "", path, line) or dict(UNKNOWN_DATA)}
            for line, record in enumerate(records, 2)]


def _csv_value(column: str, text: str, path: Path, line: int) -> Any:
    """A value of comparison.csv as run_row has it (see write_csv); empty is None."""
    try:
        if text == "":
            if column in REQUIRED_COLUMNS:
                raise ValueError
            return None
        if column in TEXT_COLUMNS:
            return text
        if column == "val_is_test":
            return {"True": True, "False": False}[text]
        if column in ("model_kwargs", *RECORD_COLUMNS):
            value = json.loads(text)
            if not isinstance(value, dict) or column == "data" and set(value) != set(UNKNOWN_DATA):
                raise ValueError
            return value
        return int(text) if column in INT_COLUMNS or column.startswith("epoch_to_") else \
            float(text)
    except (ValueError, KeyError):
        raise ConfigError(f"{path}, line {line}: {column} {text!r} is not what compare writes "
                          "there; fix or remove that line") from None


# ---------------------------------------------------------------------------------- rendering


def _pct(value: float | None, targets: tuple[float, ...] = ()) -> str:
    """``value`` (a fraction) in percent, to 2 decimals, or to as many more as it takes for the
    printed figure to sit on the same side of every target (percent) as the exact one: a mean of
    84.995% prints as "84.995", not as an "85.00" that reads as a met 85% target."""
    if value is None:
        return "–"
    percent = 100 * value
    for digits in range(2, 7):
        text = f"{percent:.{digits}f}"
        # the tolerance keeps float noise from parting a figure from a target it equals
        if all((float(text) >= t - 1e-9) == (percent >= t - 1e-9) for t in targets):
            break
    return text


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct_pm(stat: tuple[float, float, int] | None, n: int,
            targets: tuple[float, ...] = ()) -> str:
    if stat is None:
        return "–"
    mean, std, count = stat
    text = f"{_pct(mean, targets)} ± {100 * std:.2f}"
    return text if count == n else f"{text} (n={count})"


def _num_pm(stat: tuple[float, float, int] | None, digits: int) -> str:
    return "–" if stat is None else f"{stat[0]:,.{digits}f} ± {stat[1]:,.{digits}f}"


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


REPEAT_NOTE = ("‡ Set aside as repeats, not seeds: a run of a recipe with a seed it already has "
               "says nothing of the seed noise (one run given twice would show a std of 0), so "
               "the first run given of each seed counts, and these are left out of every mean, "
               "std, interval and figure: ")


def _seed(row: dict[str, Any], repeated: set[int]) -> str:
    return f"{row['seed']} ‡" if id(row) in repeated else str(row["seed"])


VAL_IS_TEST_NOTE = ("† validation is the test set (no `data.val_split`): the best epoch was chosen "
                    "on the test set, so its accuracy is optimistic.")


TIME_NOTE = ("Time to accuracy: the first epoch whose {val} accuracy of the final weights (their "
             "moving average with `ema_decay`) reaches the target, and the training minutes by "
             "its end: the sum of the epochs' times, training steps only (validation, "
             "checkpoints and pauses not counted), on whatever machine and load each run had.")


def time_tables(rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: each run's (and each group's mean) epoch and minutes to each target."""
    if not rows or not targets_of(rows[0]):
        return []
    differing = differing_settings(rows)
    targets = targets_of(rows[0])
    val = "test" if all(r["val_is_test"] for r in rows) else "validation"
    repeated = {id(row) for row, _ in repeats(rows)}
    header = ["run", "model", "seed", *(f"to {t}% {val}: epoch (min)" for t in targets),
              "epochs", "training min"]
    body = []
    for r in rows:
        cells = [("not reached" if r[f"epoch_to_{t}"] is None else
                  f"{r[f'epoch_to_{t}']} ({r[f'minutes_to_{t}']:.1f})") for t in targets]
        body.append([r["run"], recipe_label(r, differing), _seed(r, repeated), *cells,
                     str(r["epochs"]), _num(r["train_minutes"], 1)])
    parts = ["", "## Time to accuracy", "", TIME_NOTE.format(val=val), "", _table(header, body)]
    if groups:
        header = ["model", "runs", *(f"to {t}%: epoch, min" for t in targets), "training min"]
        body = [[g["label"], str(g["n"]),
                 *(_group_time(g, t) for t in targets), _num_pm(g["train_minutes"], 1)]
                for g in groups]
        parts += ["", "Mean ± std over the seeds that reached the target (n: how many did):",
                  "", _table(header, body)]
    return parts


def _group_time(group: dict[str, Any], target: str) -> str:
    epoch, minutes = group[f"epoch_to_{target}"], group[f"minutes_to_{target}"]
    if epoch is None:
        return "not reached"
    text = f"{epoch[0]:.1f} ± {epoch[1]:.1f}, {minutes[0]:.1f} ± {minutes[1]:.1f}"
    return text if epoch[2] == group["n"] else f"{text} (n={epoch[2]})"


def noise_tables(tests: list[NoiseTest]) -> list[str]:
    """Markdown lines: one table per baseline and recipe length, differences in percentage
    points, each saying how many comparisons were made in all (with an interval: tests)."""
    parts = []
    count = sum(d.half_width is not None for test in tests for d in test.differences)
    for test in tests:
        parts += ["", f"## Test accuracy against {test.baseline} ({test.epochs} epochs)", "",
                  f"Seed-to-seed std of test accuracy, pooled over the models: "
                  f"{100 * test.pooled_std:.2f} points ({test.dof} degrees of freedom, "
                  f"t = {test.t:.3f}). A difference is inside the noise when its 95% interval "
                  f"holds 0. {count} comparison{'s' * (count != 1)} with an interval in this "
                  "report, each at 95%, with no correction for making several: about one in 20 "
                  "differences that are really 0 reads as beyond the noise.", ""]
        body = []
        for d in test.differences:
            if d.half_width is None:
                interval, verdict = "–", "one seed: cannot be told from noise"
            else:
                interval = (f"{100 * (d.delta - d.half_width):+.2f} .. "
                            f"{100 * (d.delta + d.half_width):+.2f}")
                verdict = "inside the noise" if d.inside_noise else \
                    ("beyond the noise: better" if d.delta > 0 else "beyond the noise: worse")
            body.append([d.model, str(d.seeds), f"{100 * d.delta:+.2f}", interval, verdict])
        parts.append(_table(["model", "seeds", "Δ test (points)", "95% interval", "verdict"],
                            body))
    return parts


def markdown_tables(rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                    baseline: str | Sequence[str] | None = None) -> str:
    """The per-run table, the grouped table (accuracies in %) and, given a ``baseline`` model
    or several (see baseline_pairs), each group's test accuracy against it (see noise_test).
    Models are labelled with the settings whose values differ between the runs (see
    recipe_label); runs on different data (allowed by compare_runs(allow_mixed_data=True)) and
    repeats set aside (see repeats) are said to be."""
    differing = differing_settings(rows)
    repeated = {id(row) for row, _ in repeats(rows)}
    targets = tuple(float(t) for t in targets_of(rows[0])) if rows else ()
    # runs validated with `tta` get its accuracy in a column of its own, beside the plain one
    tta = any(r["final_val_tta_acc"] is not None for r in rows)
    header = ["run", "model", "params", "MMACs", "epochs", "seed", "best val % (epoch)",
              "final val %", *(["final val % with TTA"] if tta else []), "test %", "s/epoch",
              "img/s"]
    body = []
    for r in rows:
        dagger = " †" if r["val_is_test"] else ""
        best = "–" if r["best_val_acc"] is None else \
            f"{_pct(r['best_val_acc'], targets)} ({r['best_epoch']}){dagger}"
        body.append([r["run"], recipe_label(r, differing),
                     _num(r["params"], 0), _num(None if r["macs"] is None else r["macs"] / 1e6, 1),
                     str(r["epochs"]), _seed(r, repeated), best,
                     _pct(r["final_val_acc"], targets),
                     *([_pct(r["final_val_tta_acc"], targets)] if tta else []),
                     _pct(r["test_acc"], targets),
                     _num(r["sec_per_epoch"], 1), _num(r["img_per_s"], 0)])
    parts = ["## Runs", "", _table(header, body)]
    if any(r["val_is_test"] for r in rows):
        parts += ["", VAL_IS_TEST_NOTE]
    if repeated:
        parts += ["", REPEAT_NOTE + "; ".join(
            f"{row['run']} (seed {row['seed']} of {recipe_label(row, differing)}, as "
            f"{first['run']})" for row, first in repeats(rows)) + "."]
    conflict = data_conflict(rows)
    if conflict:
        parts += ["", f"Mixed data (`allow_mixed_data`): {conflict}. Accuracies on different "
                      "data are not comparable; such runs are never grouped."]
    parts += ["", "## Grouped (mean ± std over seeds)", ""]
    if groups:
        header = ["model", "params", "MMACs", "epochs", "runs", "seeds", "best val %",
                  "final val %", *(["final val % with TTA"] if tta else []), "test %",
                  "s/epoch", "img/s"]
        body = [[g["label"], _num(g["params"], 0),
                 _num(None if g["macs"] is None else g["macs"] / 1e6, 1), str(g["epochs"]),
                 str(g["n"]), ", ".join(str(s) for s in g["seeds"]),
                 _pct_pm(g["best_val_acc"], g["n"], targets) + (" †" if g["val_is_test"] else ""),
                 _pct_pm(g["final_val_acc"], g["n"], targets),
                 *([_pct_pm(g["final_val_tta_acc"], g["n"], targets)] if tta else []),
                 _pct_pm(g["test_acc"], g["n"], targets),
                 _num_pm(g["sec_per_epoch"], 1), _num_pm(g["img_per_s"], 0)] for g in groups]
        parts.append(_table(header, body))
    else:
        parts.append("No two runs share a recipe: the model, its options, the number of epochs "
                     "and every other setting but the seed.")
    parts += time_tables(rows, groups)
    parts += recipe_notes(rows, differing)
    if baseline:
        parts += noise_tables(noise_tests(rows, baseline))
    return render_settings("\n".join(parts) + "\n")  # the settings it names, as the CLI says


def recipe_notes(rows: list[dict[str, Any]], differing: list[str] | None) -> list[str]:
    """Markdown lines: which settings tell the recipes apart (see recipe_label)."""
    lines = []
    if differing:
        lines.append(f"Settings that differ between the runs, in brackets after the model: "
                     f"{', '.join(differing)}. All other settings are the same, apart from the "
                     "seed, names, paths, device and threads.")
    if differing is not None and any(r["recipe"] is None for r in rows):
        lines.append("Runs marked [no config.toml] record no config (none in their directory, "
                     "or a row of a comparison.csv written before compare saved recipes): they "
                     "are grouped by model, options, epochs and data only.")
    return [part for line in lines for part in ("", line)]  # one paragraph each


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """comparison.csv: the COLUMNS of the rows, then their time-to-accuracy columns, with full
    precision, then RECORD_COLUMNS; model_kwargs, recipe and data as JSON, missing values empty.
    A later compare reads it back (read_csv_rows) to the same rows."""
    columns = COLUMNS + (tuple(time_keys(rows[0])) if rows else ()) + RECORD_COLUMNS
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            # the recipe keeps its config order: the order in which labels name its settings
            writer.writerow({k: json.dumps(row[k], sort_keys=k != "recipe", default=str)
                             if k in ("model_kwargs", *RECORD_COLUMNS) and row[k] is not None
                             else ("" if row[k] is None else row[k]) for k in columns})
    return path


FAMILY = re.compile(r"resnet\d+")  # the plain ResNets (resnet20, resnet56): depth is all they vary


def cost_points(rows: list[dict[str, Any]], cost: str) -> list[CostPoint]:
    """A point for each recipe with a test accuracy: its mean ± std over the seeds (repeats
    left out, see seed_groups) against its ``cost``, "macs" or "params" (see cost_of). The plain
    ResNets of one recipe at their default options share a family: the line of depth alone."""
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
    """A recipe's "macs" or "params" as its runs recorded them (the package counted them for
    the model's options when it trained), else counted now for the model and options they
    recorded (a run in progress, a comparison.csv row without them)."""
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


def write_comparison(paths: list[str | Path], out_dir: str | Path = ".",
                     baseline: str | Sequence[str] | None = None, *,
                     allow_mixed_data: bool = False,
                     targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS,
                     x: str = "epoch", cost: str | None = None) -> dict[str, Path]:
    """Into ``out_dir``: comparison.md, comparison.csv and comparison.png (validation accuracy
    of every run directory against the epoch, or with ``x="time"`` against the training
    minutes, the ``targets`` drawn; not written when every run comes from a comparison.csv,
    which holds no epochs); with a ``baseline`` (see baseline_pairs), comparison.md also says
    which differences are inside the noise; with a ``cost`` ("macs" or "params"),
    accuracy_vs_cost.png (see cost_points). ``paths``: run directories and comparison.csv files
    (see read_inputs). Every refusal (``out_dir``, the runs, their data, the baseline, the cost)
    is a one-line UserError that comes before anything is written."""
    check_x_axis(x)
    out_dir = check_folder(out_dir, COMPARISON, "`out_dir`")  # a file in the way: refused first
    inputs = read_inputs(paths, targets)
    rows, groups = tabulate(inputs, allow_mixed_data, targets)
    points = None if cost is None else cost_points(rows, cost)
    repeated = {id(row) for row, _ in repeats(rows)}
    runs = [item for item, row in zip(inputs, rows, strict=True)
            if isinstance(item, RunInfo) and id(row) not in repeated]
    text = "# Comparison\n\n" + markdown_tables(rows, groups, baseline) + \
        _curves_note(len(inputs) - sum(isinstance(i, RunInfo) for i in inputs), len(runs))
    markdown = out_dir / "comparison.md"
    with explain_write_errors(out_dir, COMPARISON, "`out_dir`"):
        atomic_write_text(markdown, text)  # an unwritable folder fails here, nothing written
        written = {"markdown": markdown, "csv": write_csv(rows, out_dir / "comparison.csv")}
    if runs:
        written["figure"] = save_figure(val_accuracy_figure(runs, x=x, targets=targets),
                                        out_dir / "comparison.png", COMPARISON, "`out_dir`")
    if points is not None:
        written["cost"] = save_figure(cost_figure(points, cost), out_dir / "accuracy_vs_cost.png",
                                      COMPARISON, "`out_dir`")
    return written


def _curves_note(from_csv: int, drawn: int) -> str:
    if not from_csv:
        return ""
    runs = f"{from_csv} run{'s' * (from_csv != 1)} read from a comparison.csv"
    return (f"\nThe {runs} hold no epochs: comparison.png draws the {drawn} run "
            f"director{'ies' if drawn != 1 else 'y'} only.\n" if drawn
            else f"\nThe {runs} hold no epochs: no comparison.png is written.\n")
