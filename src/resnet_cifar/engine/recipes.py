"""Runs side by side: one row per run, its label, and which runs are seeds of one recipe.

A recipe is the whole resolved config (config.toml) but the seed and what does not change the
computation (NOT_RECIPE): runs that differ in anything else (lr, augmentation, data, ...) are
never pooled as seeds, and labels name the settings that differ ("resnet20 [lr=0.2]").

Every figure of a row is read back from the run directory (engine/rundir), never recomputed: a
finished run's from its summary.json, a run still in progress from its metrics (best and latest
validation accuracy; no test accuracy yet).
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from resnet_cifar.config import TrainConfig, to_dict
from resnet_cifar.engine.rundir import RunInfo
from resnet_cifar.models.registry import resolve_options

# One comparison row: the columns of comparison.csv, in order. Accuracies are fractions in [0, 1]
# exactly as the runs recorded them; macs is the count of multiply-accumulates per image.
COLUMNS = (
    "run", "name", "model", "model_kwargs", "params", "macs", "epochs", "seed", "val_is_test",
    "best_val_acc", "best_epoch", "final_val_acc", "final_val_tta_acc", "test_acc",
    "sec_per_epoch", "img_per_s", "train_minutes",
)
# Time to accuracy (DAWNBench, airbench): the first epoch, and the training minutes by its end, at
# which a run's validation accuracy reaches each of these (fractions). comparison.csv has an
# epoch_to_<pct> and a minutes_to_<pct> column for each target asked for, these by default.
TIME_TO_ACCURACY_TARGETS = (0.80, 0.85)
# Config keys that tell runs of one recipe apart without changing what they compute: the seed,
# names and places, where and how fast it runs, logging and saving, and the override of the data
# check (the fingerprint says which data it was). Runs that differ only in these are seeds of one
# recipe. data.path joins them where the run recorded the data's content fingerprint: the same
# data under another path are the same data.
NOT_RECIPE = ("seed", "out", "name", "threads", "tensorboard", "save_every", "device",
              "data.cache_dir", "data.allow_other_data")
# Recipe settings with columns of their own in the tables (taken from summary.json when there).
OWN_COLUMNS = ("model", "model_kwargs", "epochs")


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


SEED_SUFFIX = re.compile(r"[-_.]?s(?:eed)?\d+$")  # "fast-s0", "lr02_seed1": the seed in a name


def seeds_label(members: list[RunInfo], recipe: str, width: int = 48) -> str:
    """A legend label for the seeds of one recipe: the directory name their runs share once the
    seed is taken off ("fast-s0", "fast-s1" -> "fast (resnet20)"), else the ``recipe`` label
    (see recipe_label) wrapped at ``width`` so that a long one stays inside the figure."""
    stems = {SEED_SUFFIX.sub("", run.path.name) for run in members}
    if len(stems) == 1 and (stem := stems.pop()) and stem not in {r.path.name for r in members}:
        model = members[0].model
        return stem if model in stem else f"{stem} ({model})"
    return textwrap.fill(recipe, width)


def model_label(model: str, kwargs: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
    return f"{model} ({options})" if options else model


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables to dotted keys: {"data": {"augment": "none"}} -> {"data.augment": "none"}."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolved_settings(run: RunInfo) -> dict[str, Any] | None:
    """The run's config.toml flattened, keys it lacks at today's defaults (it records every key
    there was, so only keys added since are missing, and a new key's default keeps the old
    behaviour); None without a config.toml (an old or foreign run directory)."""
    if not run.config:
        return None
    return flatten(to_dict(TrainConfig())) | flatten(run.config)


def run_recipe(run: RunInfo, settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """The settings that decide what a run computes, but OWN_COLUMNS: ``settings`` less
    NOT_RECIPE, the data named by content where a fingerprint is known. None without a config."""
    if settings is None:
        return None
    settings = dict(settings)
    if run.data_fingerprint:
        settings["data.fingerprint"] = run.data_fingerprint
        settings.pop("data.path", None)
    return {k: v for k, v in settings.items()
            if k not in NOT_RECIPE and k.split(".")[0] not in OWN_COLUMNS}


def run_data(run: RunInfo, settings: dict[str, Any] | None) -> dict[str, Any]:
    """What the run says of its data: content fingerprint, source (path, dataset, coarse) and
    number of classes, each None where it does not say."""
    source = None if settings is None else \
        [settings.get("data.path"), settings.get("data.dataset"), settings.get("data.coarse")]
    return {"fingerprint": run.data_fingerprint, "source": source,
            "num_classes": run.num_classes}


def target_columns(targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS) -> tuple[str, ...]:
    """The time-to-accuracy columns of comparison.csv for ``targets`` (fractions)."""
    return tuple(f"{kind}_to_{target_name(t)}" for t in targets for kind in ("epoch", "minutes"))


def target_name(target: float) -> str:
    """0.85 -> "85", 0.925 -> "92.5": a target as the columns and tables name it (percent)."""
    return f"{100 * target:.10g}"


def shipped_accuracy(row: dict[str, Any]) -> float:
    """An epoch's validation accuracy of the weights the run ends with: their moving average
    when `ema_decay` kept one (those are the final weights), else the raw weights'."""
    return row.get("ema_val_acc", row["val_acc"])


def shipped_tta_accuracy(row: dict[str, Any]) -> float | None:
    """An epoch's validation accuracy of the final weights (see shipped_accuracy) under
    test-time augmentation; None when the run validated without `tta`."""
    return row.get("ema_val_tta_acc", row.get("val_tta_acc"))


def minutes_by_epoch(rows: list[dict[str, Any]]) -> list[float]:
    """The training minutes by the end of each epoch: the sum of the epochs' `epoch_time`, which
    times the training steps only (validation and checkpoints are not counted; a resumed run
    counts its epochs, not the pause)."""
    minutes, total = [], 0.0
    for row in rows:
        total += row["epoch_time"] / 60
        minutes.append(total)
    return minutes


def time_to_accuracy(rows: list[dict[str, Any]], target: float) -> tuple[int, float] | None:
    """(epoch, training minutes by its end) of the first epoch whose validation accuracy of the
    final weights (shipped_accuracy) reaches ``target``; None if no epoch does."""
    for row, minutes in zip(rows, minutes_by_epoch(rows), strict=True):
        if shipped_accuracy(row) >= target:
            return row["epoch"], minutes
    return None


def run_row(run: RunInfo, targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
            ) -> dict[str, Any]:
    """The comparison row of one run: COLUMNS and the time to each of ``targets``
    (target_columns), then its recipe (see run_recipe) and data (see run_data), which group and
    check the runs but are no columns of comparison.csv."""
    row = {"run": run.path.name, "name": run.name, "model": run.model,
           # today's names: a run that recorded an option's old name is the same recipe
           "model_kwargs": resolve_options(run.model, run.model_kwargs), "seed": run.seed,
           "val_is_test": run.val_is_test}
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
            "final_val_acc": shipped_accuracy(run.rows[-1]) if val else None,
            "test_acc": None,
            "sec_per_epoch": mean_or_none([r["epoch_time"] for r in run.rows]),
            "img_per_s": mean_or_none([r["img_per_s"] for r in run.rows]),
        })
    # beside the plain figure, never instead of it: the last epoch's, as the run validated it
    row["final_val_tta_acc"] = shipped_tta_accuracy(run.rows[-1]) if run.rows else None
    row["train_minutes"] = minutes_by_epoch(run.rows)[-1] if run.rows else None
    for target in targets:
        reached = time_to_accuracy(run.rows, target)
        row[f"epoch_to_{target_name(target)}"] = reached[0] if reached else None
        row[f"minutes_to_{target_name(target)}"] = reached[1] if reached else None
    settings = resolved_settings(run)
    return {**{k: row[k] for k in COLUMNS + target_columns(targets)},
            "recipe": run_recipe(run, settings), "data": run_data(run, settings)}


def mean_or_none(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def group_key(row: dict[str, Any]) -> tuple:
    """Runs of one recipe: same model, model options, epochs and every other setting but those
    of NOT_RECIPE (seeds differ). Runs without a config.toml: the same model, options, epochs and
    data, as far as their summaries say."""
    data = row["data"]
    return (row["model"], json.dumps(row["model_kwargs"], sort_keys=True), row["epochs"],
            json.dumps(row["recipe"], sort_keys=True, default=str), data["fingerprint"],
            data["num_classes"])


def recipes(rows: list[dict[str, Any]], min_runs: int = 2) -> list[list[dict[str, Any]]]:
    """The rows of each recipe (see group_key) that has ``min_runs`` runs or more, in first-seen
    order."""
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(group_key(row), []).append(row)
    return [members for members in by_key.values() if len(members) >= min_runs]


def differing_settings(rows: list[dict[str, Any]]) -> list[str] | None:
    """The recipe settings whose values differ between the runs, in config order (a setting one
    config lacks counts as another value); None when no run has a config.toml."""
    known = [r["recipe"] for r in rows if r["recipe"] is not None]
    if not known:
        return None
    keys = dict.fromkeys(k for recipe in known for k in recipe)
    return [k for k in keys
            if len({json.dumps(recipe.get(k), sort_keys=True, default=str)
                    for recipe in known}) > 1]


def setting_text(value: Any) -> str:
    """A setting's value as a label shows it: a fingerprint shortened, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value[:19] + "…" if value.startswith("sha256:") else value  # a fingerprint
    return json.dumps(value, default=str)


def recipe_label(row: dict[str, Any], differing: list[str] | None) -> str:
    """The model label, then the run's values of the ``differing`` settings (see
    differing_settings), e.g. "resnet20 [lr=0.2]": one label per recipe among the runs."""
    label = model_label(row["model"], row["model_kwargs"])
    if differing is None:  # no run has a config: the model is all that is known of any
        return label
    if row["recipe"] is None:
        return f"{label} [no config.toml]"
    values = ", ".join(f"{k}={setting_text(row['recipe'].get(k))}" for k in differing)
    return f"{label} [{values}]" if values else label
