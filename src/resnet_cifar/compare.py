"""Runs side by side: one row per run, and mean ± std over the seeds of the same recipe.

    rows, groups = compare_runs(["runs/a", "runs/b", "runs/c"])
    print(markdown_tables(rows, groups, baseline="resnet20"))

Every figure is read back from the run directory, never recomputed: a finished run's from its
summary.json, a run still in progress from its metrics (best and latest validation accuracy; no
test accuracy yet).
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_cifar.atomic import atomic_write, atomic_write_text
from resnet_cifar.config import read_toml
from resnet_cifar.engine.rundir import read_metrics
from resnet_cifar.errors import ConfigError

# One comparison row: the columns of comparison.csv, in order. Accuracies are fractions in [0, 1]
# exactly as the runs recorded them; macs is the count of multiply-accumulates per image.
COLUMNS = (
    "run", "name", "model", "model_kwargs", "params", "macs", "epochs", "seed", "val_is_test",
    "best_val_acc", "best_epoch", "final_val_acc", "test_acc", "sec_per_epoch", "img_per_s",
)
# What a group of seeds reports as mean ± std.
GROUP_METRICS = ("best_val_acc", "final_val_acc", "test_acc", "sec_per_epoch", "img_per_s")


@dataclass
class RunInfo:
    """What a run directory says about itself."""

    path: Path
    rows: list[dict[str, Any]]  # metrics.jsonl, one row per epoch
    summary: dict[str, Any] | None  # summary.json; None while the run is in progress
    config: dict[str, Any] = field(default_factory=dict)  # config.toml

    def _get(self, key: str, default: Any = None) -> Any:
        if self.summary and self.summary.get(key) is not None:
            return self.summary[key]
        return self.config.get(key, default)

    @property
    def model(self) -> str:
        return self._get("model", "?")

    @property
    def name(self) -> str:
        return self._get("name") or self.model

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self._get("model_kwargs") or {})

    @property
    def seed(self) -> int | None:
        return self._get("seed")

    @property
    def val_is_test(self) -> bool:
        if self.summary is not None and "val_is_test" in self.summary:
            return bool(self.summary["val_is_test"])
        return not self.config.get("data", {}).get("val_split", 0)

    @property
    def finished(self) -> bool:
        return self.summary is not None


def read_run(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory; give a run directory (one `resnet-cifar "
                          "train` wrote, holding metrics.jsonl)")
    rows = read_metrics(path)
    summary = None
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path / 'summary.json'} is not valid JSON ({err})") from None
    config = read_toml(path / "config.toml") if (path / "config.toml").is_file() else {}
    return RunInfo(path, rows, summary, config)


def run_labels(runs: list[RunInfo]) -> list[str]:
    """Legend labels: the run name with its model, and the directory name where names repeat."""
    names = [r.name for r in runs]
    labels = []
    for run in runs:
        label = run.name if run.model in run.name else f"{run.name} ({run.model})"
        if names.count(run.name) > 1:
            label = f"{run.path.name}: {label}"
        labels.append(label)
    return labels


def run_row(run: RunInfo) -> dict[str, Any]:
    """The comparison row of one run (see COLUMNS)."""
    row = {"run": run.path.name, "name": run.name, "model": run.model,
           "model_kwargs": run.model_kwargs, "seed": run.seed, "val_is_test": run.val_is_test}
    if run.summary is not None:
        s = run.summary
        keys = ("params", "macs", "epochs", "best_val_acc", "best_epoch", "final_val_acc",
                "test_acc", "sec_per_epoch", "img_per_s")
        row.update({k: s.get(k) for k in keys})
    else:  # in progress: what the epochs so far say
        val = [r["val_acc"] for r in run.rows]
        best = max(range(len(val)), key=val.__getitem__) if val else None  # first best epoch
        row.update({
            "params": None, "macs": None,
            "epochs": run.rows[-1]["epoch"] if run.rows else 0,
            "best_val_acc": val[best] if val else None,
            "best_epoch": run.rows[best]["epoch"] if val else None,
            "final_val_acc": val[-1] if val else None,
            "test_acc": None,
            "sec_per_epoch": mean_or_none([r["epoch_time"] for r in run.rows]),
            "img_per_s": mean_or_none([r["img_per_s"] for r in run.rows]),
        })
    return {k: row[k] for k in COLUMNS}


def mean_or_none(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def group_key(row: dict[str, Any]) -> tuple:
    """Runs of one recipe: same model, model options and epochs (seeds differ)."""
    return row["model"], json.dumps(row["model_kwargs"], sort_keys=True), row["epochs"]


def recipes(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows of each recipe (see group_key) that has two runs or more, in first-seen order."""
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(group_key(row), []).append(row)
    return [members for members in by_key.values() if len(members) > 1]


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std (sample std, n - 1) of each GROUP_METRICS over the runs of each recipe that
    has two runs or more. A metric a run lacks (test_acc while in progress) is left out of it."""
    groups = []
    for members in recipes(rows):
        first = members[0]
        group = {"model": first["model"], "model_kwargs": first["model_kwargs"],
                 "epochs": first["epochs"], "params": first["params"], "macs": first["macs"],
                 "n": len(members), "runs": [m["run"] for m in members],
                 "seeds": [m["seed"] for m in members],
                 "val_is_test": any(m["val_is_test"] for m in members)}
        for metric in GROUP_METRICS:
            values = [m[metric] for m in members if m[metric] is not None]
            group[metric] = mean_std(values)
        groups.append(group)
    return groups


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
    half_width: float  # of the 95% interval around delta (fraction)

    @property
    def inside_noise(self) -> bool:
        return abs(self.delta) <= self.half_width


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
    """For each recipe length that has a ``baseline`` group (a model label, e.g. "resnet20"):
    each other group's mean test accuracy minus the baseline's, with a 95% interval from the
    seed-to-seed std pooled over all groups of that length (the seeds of one model are few, two
    or three, so its own std says little; pooling assumes the seed noise is alike across models).
    A difference whose interval holds 0 is inside the noise. No correction for comparing several
    groups at once: with five comparisons, one marginal "beyond" may be chance."""
    groups = recipes(rows)
    labels = sorted({model_label(g[0]["model"], g[0]["model_kwargs"]) for g in groups})
    if baseline not in labels:
        raise ConfigError(f"--baseline {baseline!r} matches no model with two runs or more of "
                          f"one recipe among these runs; choose from "
                          f"{', '.join(labels) or '(none: give each model two seeds)'}")
    tests = []
    for epochs in sorted({g[0]["epochs"] for g in groups}):
        accs = {model_label(g[0]["model"], g[0]["model_kwargs"]):
                [r["test_acc"] for r in g if r["test_acc"] is not None]
                for g in groups if g[0]["epochs"] == epochs}
        accs = {label: values for label, values in accs.items() if values}
        if baseline not in accs:
            continue
        dof = sum(len(values) - 1 for values in accs.values())
        if dof == 0:
            continue
        pooled = (sum((len(v) - 1) * statistics.variance(v) for v in accs.values() if len(v) > 1)
                  / dof) ** 0.5
        t = T95[min(dof, len(T95)) - 1]
        base = accs[baseline]
        differences = [
            Difference(label, statistics.fmean(values) - statistics.fmean(base),
                       t * pooled * (1 / len(values) + 1 / len(base)) ** 0.5)
            for label, values in accs.items() if label != baseline
        ]
        tests.append(NoiseTest(baseline, epochs, pooled, dof, t, differences))
    return tests


def compare_runs(run_dirs: list[str | Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one row per run, one group per recipe run with several seeds)."""
    rows = [run_row(read_run(d)) for d in run_dirs]
    return rows, group_rows(rows)


# ---------------------------------------------------------------------------------- rendering


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct_pm(stat: tuple[float, float, int] | None, n: int) -> str:
    if stat is None:
        return "–"
    mean, std, count = stat
    text = f"{100 * mean:.2f} ± {100 * std:.2f}"
    return text if count == n else f"{text} (n={count})"


def _num_pm(stat: tuple[float, float, int] | None, digits: int) -> str:
    return "–" if stat is None else f"{stat[0]:,.{digits}f} ± {stat[1]:,.{digits}f}"


def model_label(model: str, kwargs: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return f"{model} ({options})" if options else model


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


VAL_IS_TEST_NOTE = ("† validation is the test set (no --val-split): the best epoch was chosen "
                    "on the test set, so its accuracy is optimistic.")


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
            verdict = "inside the noise" if d.inside_noise else \
                ("beyond the noise: better" if d.delta > 0 else "beyond the noise: worse")
            body.append([d.model, f"{100 * d.delta:+.2f}",
                         f"{100 * (d.delta - d.half_width):+.2f} .. "
                         f"{100 * (d.delta + d.half_width):+.2f}", verdict])
        parts.append(_table(["model", "Δ test (points)", "95% interval", "verdict"], body))
    return parts


def markdown_tables(rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                    baseline: str | None = None) -> str:
    """The per-run table, the grouped table (accuracies in %) and, given a ``baseline`` model,
    each group's test accuracy against it (see noise_test)."""
    header = ["run", "model", "params", "MMACs", "epochs", "seed", "best val % (epoch)",
              "final val %", "test %", "s/epoch", "img/s"]
    body = []
    for r in rows:
        dagger = " †" if r["val_is_test"] else ""
        best = "–" if r["best_val_acc"] is None else \
            f"{_pct(r['best_val_acc'])} ({r['best_epoch']}){dagger}"
        body.append([r["run"], model_label(r["model"], r["model_kwargs"]),
                     _num(r["params"], 0), _num(None if r["macs"] is None else r["macs"] / 1e6, 1),
                     str(r["epochs"]), str(r["seed"]), best, _pct(r["final_val_acc"]),
                     _pct(r["test_acc"]), _num(r["sec_per_epoch"], 1), _num(r["img_per_s"], 0)])
    parts = ["## Runs", "", _table(header, body)]
    if any(r["val_is_test"] for r in rows):
        parts += ["", VAL_IS_TEST_NOTE]
    parts += ["", "## Grouped (mean ± std over seeds)", ""]
    if groups:
        header = ["model", "params", "MMACs", "epochs", "runs", "seeds", "best val %",
                  "final val %", "test %", "s/epoch", "img/s"]
        body = [[model_label(g["model"], g["model_kwargs"]), _num(g["params"], 0),
                 _num(None if g["macs"] is None else g["macs"] / 1e6, 1), str(g["epochs"]),
                 str(g["n"]), ", ".join(str(s) for s in g["seeds"]),
                 _pct_pm(g["best_val_acc"], g["n"]) + (" †" if g["val_is_test"] else ""),
                 _pct_pm(g["final_val_acc"], g["n"]), _pct_pm(g["test_acc"], g["n"]),
                 _num_pm(g["sec_per_epoch"], 1), _num_pm(g["img_per_s"], 0)] for g in groups]
        parts.append(_table(header, body))
    else:
        parts.append("No two runs share a model, its options and the number of epochs.")
    if baseline is not None:
        parts += noise_tables(noise_test(rows, baseline))
    return "\n".join(parts) + "\n"


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """comparison.csv: the rows with full precision; model_kwargs as JSON, missing values empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, sort_keys=True) if k == "model_kwargs" else
                             ("" if v is None else v) for k, v in row.items()})
    return path


def write_comparison(run_dirs: list[str | Path], out_dir: str | Path = ".",
                     baseline: str | None = None) -> dict[str, Path]:
    """comparison.md, comparison.csv and comparison.png (validation accuracy of every run);
    with a ``baseline`` model, comparison.md also says which differences are inside the noise."""
    from resnet_cifar.viz import save_figure, val_accuracy_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [read_run(d) for d in run_dirs]
    rows = [run_row(r) for r in runs]
    groups = group_rows(rows)
    markdown = out_dir / "comparison.md"
    atomic_write_text(markdown, "# Comparison\n\n" + markdown_tables(rows, groups, baseline))
    return {
        "markdown": markdown,
        "csv": write_csv(rows, out_dir / "comparison.csv"),
        "figure": save_figure(val_accuracy_figure(runs), out_dir / "comparison.png"),
    }
