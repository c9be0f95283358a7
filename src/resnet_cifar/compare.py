"""Runs side by side: one row per run, and mean ± std over the seeds of the same recipe, as
Markdown, CSV and PNGs. Rows come from engine/recipes, statistics from seeds.py; the rows of an
earlier comparison.csv count as runs (their directories may be gone)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
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
    recipe_label,
    run_row,
    target_columns,
    target_name,
)
from resnet_cifar.engine.rundir import RunInfo, each_once, read_run
from resnet_cifar.errors import ConfigError
from resnet_cifar.seeds import (
    NoiseTest,
    check_repeats,
    check_same_data,
    data_conflict,
    group_rows,
    noise_test,  # noqa: F401 (API)
    noise_tests,
    repeats,
    time_keys,
)
from resnet_cifar.viz import check_x_axis, save_figure, val_accuracy_figure
from resnet_cifar.viz.cost import cost_figure, cost_points

COMPARISON = "the comparison into"  # a write error: "cannot write the comparison into DIR: ..."
OUT_DIR = "`out_dir` (--out-dir)"
Targets = tuple[float, ...]


def tabulate(inputs: list[RunInfo | dict[str, Any]], allow_mixed_data: bool = False,
             targets: Targets = TIME_TO_ACCURACY_TARGETS
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per run, one group per recipe with several seeds); runs on different data are
    refused unless ``allow_mixed_data``."""
    rows = [run_row(x, targets) if isinstance(x, RunInfo) else x for x in inputs]
    check_same_data(rows, allow_mixed_data)
    check_repeats(rows)
    return rows, group_rows(rows)


def compare_runs(paths: list[str | Path], *, allow_mixed_data: bool = False,
                 targets: Targets = TIME_TO_ACCURACY_TARGETS
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """tabulate of run directories and comparison.csv files."""
    return tabulate(read_inputs(paths, targets), allow_mixed_data, targets)


# ------------------------------------------------------------------------------------ inputs

# comparison.csv's columns after COLUMNS and the time ones, as JSON (an older CSV has neither)
RECORD_COLUMNS = ("recipe", "data")
UNKNOWN_DATA = {"fingerprint": None, "source": None, "num_classes": None}
TEXT_COLUMNS = ("run", "name", "model")
INT_COLUMNS = ("params", "macs", "epochs", "seed", "best_epoch")
REQUIRED_COLUMNS = ("run", "model", "epochs")  # what no row can be grouped or shown without


def read_inputs(paths: list[str | Path], targets: Targets = TIME_TO_ACCURACY_TARGETS
                ) -> list[RunInfo | dict[str, Any]]:
    """A RunInfo per run directory and a row per run of a comparison.csv, in order. A path given
    twice (however spelled) is refused: it would count as two seeds."""
    inputs: list[RunInfo | dict[str, Any]] = []
    for path in each_once(paths):
        if path.suffix.lower() == ".csv" and not path.is_dir():
            inputs += read_csv_rows(path, targets)
        else:
            inputs.append(read_run(path))
    return inputs


def read_csv_rows(path: Path, targets: Targets = TIME_TO_ACCURACY_TARGETS
                  ) -> list[dict[str, Any]]:
    """The runs of a comparison.csv (see write_csv) as run_row rows, with the time to each of
    ``targets``. An older CSV's rows have no recipe and unknown data (never a conflict)."""
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
    return [{c: _csv_value(c, record.get(c) or "", path, line)
             for c in COLUMNS + times + RECORD_COLUMNS} for line, record in enumerate(records, 2)]


def _csv_value(column: str, text: str, path: Path, line: int) -> Any:
    """A comparison.csv cell as run_row has it; empty is None (unknown data)."""
    try:
        if text == "":
            if column in REQUIRED_COLUMNS:
                raise ValueError
            return dict(UNKNOWN_DATA) if column == "data" else None
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


def _pct(value: float | None, targets: Targets = ()) -> str:
    """A fraction in percent, to 2 decimals or as many more as keep the figure on the same side
    of each target (percent) as the exact one: 84.995, not an "85.00" that reads as met."""
    if value is None:
        return "–"
    percent = 100 * value
    for digits in range(2, 7):
        text = f"{percent:.{digits}f}"
        # the tolerance keeps float noise from parting a figure from a target it equals
        if all((float(text) >= t - 1e-9) == (percent >= t - 1e-9) for t in targets):
            break
    return text


def _num(value: float | None, digits: int, scale: float = 1) -> str:
    return "–" if value is None else f"{value / scale:,.{digits}f}"


def _pct_pm(stat: tuple[float, float, int] | None, n: int, targets: Targets = ()) -> str:
    if stat is None:
        return "–"
    mean, std, count = stat
    text = f"{_pct(mean, targets)} ± {100 * std:.2f}"
    return text if count == n else f"{text} (n={count})"


def _num_pm(stat: tuple[float, float, int] | None, digits: int) -> str:
    return "–" if stat is None else f"{stat[0]:,.{digits}f} ± {stat[1]:,.{digits}f}"


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


REPEAT_NOTE = ("‡ Set aside as repeats, not seeds: a run of a recipe with a seed it already has "
               "says nothing of the seed noise (one run given twice would show a std of 0), so "
               "the first run given of each seed counts, and these are left out of every mean, "
               "std, interval and figure: ")
VAL_IS_TEST_NOTE = ("† validation is the test set (no `data.val_split` (--val-split)): the best "
                    "epoch was chosen on the test set, so its accuracy is optimistic.")
TIME_NOTE = ("Time to accuracy: the first epoch whose {val} accuracy of the final weights, or "
             "of their moving average with `ema_decay` (--ema-decay), reaches the target, and "
             "the training minutes by its end: the sum of the epochs' times, training steps only "
             "(validation, checkpoints and pauses not counted), on whatever machine and load each "
             "run had.")


def _seed(row: dict[str, Any], repeated: set[int]) -> str:
    return f"{row['seed']} ‡" if id(row) in repeated else str(row["seed"])


def targets_of(row: dict[str, Any]) -> list[str]:
    """The targets a row gives the time to, as named in its keys ("80", "85")."""
    return [k.removeprefix("minutes_to_") for k in row if k.startswith("minutes_to_")]


def time_tables(rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                differing: list[str] | None, repeated: set[int]) -> list[str]:
    """Markdown lines: each run's (and each group's mean) epoch and minutes to each target."""
    if not rows or not targets_of(rows[0]):
        return []
    targets = targets_of(rows[0])
    val = "test" if all(r["val_is_test"] for r in rows) else "validation"
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
    """Markdown lines: one table per baseline and recipe length, differences in points."""
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
    """The per-run and grouped tables (accuracies in %), the time to accuracy and, given a
    ``baseline`` (see seeds.baseline_pairs), each group's test accuracy against it."""
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
                     _num(r["params"], 0), _num(r["macs"], 1, 1e6),
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
        parts += ["", f"Mixed data, allowed by `allow_mixed_data` (--allow-mixed-data): "
                      f"{conflict}. Accuracies on different data are not comparable; such runs "
                      "are never grouped."]
    parts += ["", "## Grouped (mean ± std over seeds)", ""]
    if groups:
        header = ["model", "params", "MMACs", "epochs", "runs", "seeds", "best val %",
                  "final val %", *(["final val % with TTA"] if tta else []), "test %",
                  "s/epoch", "img/s"]
        body = [[g["label"], _num(g["params"], 0), _num(g["macs"], 1, 1e6), str(g["epochs"]),
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
    parts += time_tables(rows, groups, differing, repeated)
    parts += recipe_notes(rows, differing)
    if baseline:
        parts += noise_tables(noise_tests(rows, baseline))
    return "\n".join(parts) + "\n"


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
    """comparison.csv, which read_csv_rows reads back to the same rows: full precision, dicts as
    JSON, missing values empty."""
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


def write_comparison(paths: list[str | Path], out_dir: str | Path = ".",
                     baseline: str | Sequence[str] | None = None, *,
                     allow_mixed_data: bool = False, targets: Targets = TIME_TO_ACCURACY_TARGETS,
                     x: str = "epoch", cost: str | None = None) -> dict[str, Path]:
    """Into ``out_dir``: comparison.md, .csv, .png (accuracy against ``x``, "epoch" or "time") and,
    with a ``cost``, accuracy_vs_cost.png. Every refusal comes before anything is written."""
    check_x_axis(x)
    out_dir = check_folder(out_dir, COMPARISON, OUT_DIR)  # a file in the way: refused first
    inputs = read_inputs(paths, targets)
    rows, groups = tabulate(inputs, allow_mixed_data, targets)
    points = None if cost is None else cost_points(rows, cost)
    repeated = {id(row) for row, _ in repeats(rows)}
    runs = [item for item, row in zip(inputs, rows, strict=True)
            if isinstance(item, RunInfo) and id(row) not in repeated]
    text = "# Comparison\n\n" + markdown_tables(rows, groups, baseline) + \
        _curves_note(len(inputs) - sum(isinstance(i, RunInfo) for i in inputs), len(runs))
    markdown = out_dir / "comparison.md"
    with explain_write_errors(out_dir, COMPARISON, OUT_DIR):
        atomic_write_text(markdown, text)  # an unwritable folder fails here, nothing written
        written = {"markdown": markdown, "csv": write_csv(rows, out_dir / "comparison.csv")}
    if runs:
        written["figure"] = save_figure(val_accuracy_figure(runs, x=x, targets=targets),
                                        out_dir / "comparison.png", COMPARISON, OUT_DIR)
    if points is not None:
        written["cost"] = save_figure(cost_figure(points, cost), out_dir / "accuracy_vs_cost.png",
                                      COMPARISON, OUT_DIR)
    return written


def _curves_note(from_csv: int, drawn: int) -> str:
    if not from_csv:
        return ""
    runs = f"{from_csv} run{'s' * (from_csv != 1)} read from a comparison.csv"
    return (f"\nThe {runs} hold no epochs: comparison.png draws the {drawn} run "
            f"director{'ies' if drawn != 1 else 'y'} only.\n" if drawn
            else f"\nThe {runs} hold no epochs: no comparison.png is written.\n")
