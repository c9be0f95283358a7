"""Runs side by side: one row per run, and mean ± std over the seeds of the same recipe.

    rows, groups = compare_runs(["runs/a", "runs/b", "runs/c"])
    print(markdown_tables(rows, groups, baseline="resnet20"))

What a run directory says about itself (RunInfo) is engine/rundir's; its row, its label and
which runs are seeds of one recipe are engine/recipes'. This module holds what is made of them:
the statistics over seeds, the noise test against a baseline, and the Markdown, CSV and PNG.
Runs on different data are refused unless asked for (allow_mixed_data).
"""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_cifar.atomic import (
    atomic_write,
    atomic_write_text,
    check_folder,
    explain_write_errors,
)
from resnet_cifar.engine.recipes import (
    COLUMNS,
    TIME_TO_ACCURACY_TARGETS,
    differing_settings,
    model_label,
    recipe_label,
    recipes,
    run_row,
    setting_text,
)
from resnet_cifar.engine.rundir import RunInfo, read_run
from resnet_cifar.errors import ConfigError, render_settings
from resnet_cifar.viz import check_x_axis, save_figure, val_accuracy_figure

COMPARISON = "the comparison into"  # a write error: "cannot write the comparison into DIR: ..."
# What a group of seeds reports as mean ± std.
GROUP_METRICS = ("best_val_acc", "final_val_acc", "final_val_tta_acc", "test_acc",
                 "sec_per_epoch", "img_per_s", "train_minutes")


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (sample std, n - 1) of each GROUP_METRICS over the runs of each recipe that
    has two runs or more. A metric a run lacks (test_acc while in progress) is left out of it."""
    differing = differing_settings(rows)
    groups = []
    for members in recipes(rows):
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


def noise_test(rows: list[dict[str, Any]], baseline: str) -> list[NoiseTest]:
    """For each recipe length that has a ``baseline`` group: each other group's mean test
    accuracy minus the baseline's, with a 95% interval from the seed-to-seed std pooled over all
    groups of that length (the seeds of one model are few, two or three, so its own std says
    little; pooling assumes the seed noise is alike across models and recipes). A difference
    whose interval holds 0 is inside the noise. A model with one run gets its difference and no
    interval: one seed cannot be told from noise. No correction for comparing several groups at
    once: with five comparisons, one marginal "beyond" may be chance.

    ``baseline`` is a group's label (see recipe_label: "resnet20 [lr=0.1]") or its model label
    ("resnet20"). A model label that names several recipes of one length (resnet20 at lr 0.1 and
    at lr 0.2) is refused, naming their labels: which recipe is the baseline is the user's choice,
    never a guess."""
    differing = differing_settings(rows)
    groups = [(recipe_label(g[0], differing), g) for g in recipes(rows, min_runs=1)]
    # a baseline needs its own seeds: one run says nothing about its noise
    candidates = [(label, g) for label, g in groups
                  if len(g) > 1 and _is_baseline(baseline, label, g)]
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
        accs = [(label, g is base_group, [r["test_acc"] for r in g if r["test_acc"] is not None])
                for label, g in groups if g[0]["epochs"] == epochs]
        accs = [acc for acc in accs if acc[2]]
        base = next((values for _, is_base, values in accs if is_base), None)
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
            for label, is_base, values in accs if not is_base
        ]
        tests.append(NoiseTest(bases[0][0], epochs, pooled, dof, t, differences))
    return tests


def _is_baseline(baseline: str, label: str, members: list[dict[str, Any]]) -> bool:
    return baseline in (label, model_label(members[0]["model"], members[0]["model_kwargs"]))


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


def tabulate(runs: list[RunInfo], allow_mixed_data: bool = False,
             targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per run, one group per recipe run with several seeds); see check_same_data.
    ``targets``: the accuracies whose time to reach each row gives (see recipes.run_row)."""
    rows = [run_row(run, targets) for run in runs]
    check_same_data(rows, allow_mixed_data)
    return rows, group_rows(rows)


def compare_runs(run_dirs: list[str | Path], *, allow_mixed_data: bool = False,
                 targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per run, one group per recipe run with several seeds); see tabulate."""
    return tabulate([read_run(d) for d in run_dirs], allow_mixed_data, targets)


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
    header = ["run", "model", "seed", *(f"to {t}% {val}: epoch (min)" for t in targets),
              "epochs", "training min"]
    body = []
    for r in rows:
        cells = [("not reached" if r[f"epoch_to_{t}"] is None else
                  f"{r[f'epoch_to_{t}']} ({r[f'minutes_to_{t}']:.1f})") for t in targets]
        body.append([r["run"], recipe_label(r, differing), str(r["seed"]), *cells,
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
    """Markdown lines: one table per recipe length, differences in percentage points."""
    parts = []
    for test in tests:
        parts += ["", f"## Test accuracy against {test.baseline} ({test.epochs} epochs)", "",
                  f"Seed-to-seed std of test accuracy, pooled over the models: "
                  f"{100 * test.pooled_std:.2f} points ({test.dof} degrees of freedom, "
                  f"t = {test.t:.3f}). A difference is inside the noise when its 95% interval "
                  "holds 0. No correction for comparing several models at once.", ""]
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
                    baseline: str | None = None) -> str:
    """The per-run table, the grouped table (accuracies in %) and, given a ``baseline`` model,
    each group's test accuracy against it (see noise_test). Models are labelled with the
    settings whose values differ between the runs (see recipe_label), and runs on different data
    (allowed by compare_runs(allow_mixed_data=True)) are said to be."""
    differing = differing_settings(rows)
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
                     str(r["epochs"]), str(r["seed"]), best,
                     _pct(r["final_val_acc"], targets),
                     *([_pct(r["final_val_tta_acc"], targets)] if tta else []),
                     _pct(r["test_acc"], targets),
                     _num(r["sec_per_epoch"], 1), _num(r["img_per_s"], 0)])
    parts = ["## Runs", "", _table(header, body)]
    if any(r["val_is_test"] for r in rows):
        parts += ["", VAL_IS_TEST_NOTE]
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
    if baseline is not None:
        parts += noise_tables(noise_test(rows, baseline))
    return render_settings("\n".join(parts) + "\n")  # the settings it names, as the CLI says


def recipe_notes(rows: list[dict[str, Any]], differing: list[str] | None) -> list[str]:
    """Markdown lines: which settings tell the recipes apart (see recipe_label)."""
    lines = []
    if differing:
        lines.append(f"Settings that differ between the runs, in brackets after the model: "
                     f"{', '.join(differing)}. All other settings are the same, apart from the "
                     "seed, names, paths, device and threads.")
    if differing is not None and any(r["recipe"] is None for r in rows):
        lines.append("Runs marked [no config.toml] have no config in their directory: they are "
                     "grouped by model, options, epochs and data only.")
    return [part for line in lines for part in ("", line)]  # one paragraph each


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """comparison.csv: the COLUMNS of the rows, then their time-to-accuracy columns, with full
    precision; model_kwargs as JSON, missing values empty."""
    columns = COLUMNS + (tuple(time_keys(rows[0])) if rows else ())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(row[k], sort_keys=True) if k == "model_kwargs" else
                             ("" if row[k] is None else row[k]) for k in columns})
    return path


def write_comparison(run_dirs: list[str | Path], out_dir: str | Path = ".",
                     baseline: str | None = None, *, allow_mixed_data: bool = False,
                     targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS,
                     x: str = "epoch") -> dict[str, Path]:
    """comparison.md, comparison.csv and comparison.png (validation accuracy of every run
    against the epoch, or with ``x="time"`` against the training minutes, the ``targets`` drawn);
    with a ``baseline`` model, comparison.md also says which differences are inside the noise.
    Every refusal (``out_dir``, the runs, their data, the baseline) is a one-line UserError that
    comes before anything is written."""
    check_x_axis(x)
    out_dir = check_folder(out_dir, COMPARISON, "`out_dir`")  # a file in the way: refused first
    runs = [read_run(d) for d in run_dirs]
    rows, groups = tabulate(runs, allow_mixed_data, targets)
    text = "# Comparison\n\n" + markdown_tables(rows, groups, baseline)
    markdown = out_dir / "comparison.md"
    with explain_write_errors(out_dir, COMPARISON, "`out_dir`"):
        atomic_write_text(markdown, text)  # an unwritable folder fails here, nothing written
        csv_path = write_csv(rows, out_dir / "comparison.csv")
    figure = save_figure(val_accuracy_figure(runs, x=x, targets=targets),
                         out_dir / "comparison.png", COMPARISON, "`out_dir`")
    return {"markdown": markdown, "csv": csv_path, "figure": figure}
