"""Runs side by side: one row per run, its label, and which runs are seeds of one recipe.

A recipe is the whole resolved config but NOT_RECIPE; labels name the settings that differ
("resnet20 [lr=0.2]"). Every figure is read back from the run directory, never recomputed.
"""

from __future__ import annotations

import json
import re
import textwrap
from itertools import accumulate
from typing import Any

from resnet_cifar.config import TrainConfig, to_dict
from resnet_cifar.engine.rundir import RunInfo
from resnet_cifar.models.pretrained import name_only
from resnet_cifar.models.registry import resolve_options

# The columns of comparison.csv, in order; accuracies are fractions, as the runs recorded them.
COLUMNS = (
    "run", "name", "model", "model_kwargs", "params", "macs", "epochs", "seed", "val_is_test",
    "best_val_acc", "best_epoch", "final_val_acc", "final_val_tta_acc", "test_acc",
    "sec_per_epoch", "img_per_s", "train_minutes",
)
# Time to accuracy (DAWNBench, airbench): comparison.csv's epoch_to_<pct> and minutes_to_<pct>.
TIME_TO_ACCURACY_TARGETS = (0.80, 0.85)
# Config keys that do not change what a run computes (nor does data.path, given a fingerprint)
NOT_RECIPE = ("seed", "out", "name", "threads", "tensorboard", "save_every", "device",
              "data.cache_dir", "data.allow_other_data")
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
    """Their shared directory name without the seed ("fast-s0", "fast-s1" -> "fast (resnet20)"),
    else ``recipe`` wrapped at ``width``."""
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


def run_recipe(run: RunInfo, settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """``settings`` less NOT_RECIPE and OWN_COLUMNS, the data named by its fingerprint."""
    if settings is None:
        return None
    settings = dict(settings)
    if run.data_fingerprint:
        settings["data.fingerprint"] = run.data_fingerprint
        settings.pop("data.path", None)
    return {k: v for k, v in settings.items()
            if k not in NOT_RECIPE and k.split(".")[0] not in OWN_COLUMNS}


def run_data(run: RunInfo, settings: dict[str, Any] | None) -> dict[str, Any]:
    """What the run says of its data, each None where it does not say. Where a fingerprint
    names the data, its path is only a label: its name, so comparison.csv holds no folder of
    the machine that ran it."""
    source = None
    if settings is not None:
        path = settings.get("data.path")
        source = [name_only(path) if run.data_fingerprint else path,
                  settings.get("data.dataset"), settings.get("data.coarse")]
    return {"fingerprint": run.data_fingerprint, "source": source,
            "num_classes": run.num_classes}


def target_columns(targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS) -> tuple[str, ...]:
    return tuple(f"{kind}_to_{target_name(t)}" for t in targets for kind in ("epoch", "minutes"))


def target_name(target: float) -> str:
    """0.85 -> "85", 0.925 -> "92.5"."""
    return f"{100 * target:.10g}"


def shipped_accuracy(row: dict[str, Any]) -> float:
    """An epoch's validation accuracy of the final weights (the average with `ema_decay`)."""
    return row.get("ema_val_acc", row["val_acc"])


def minutes_by_epoch(rows: list[dict[str, Any]]) -> list[float]:
    """The training minutes by the end of each epoch (`epoch_time`: training steps only)."""
    return list(accumulate(row["epoch_time"] / 60 for row in rows))


def time_to_accuracy(rows: list[dict[str, Any]], target: float) -> tuple[int, float] | None:
    """(epoch, minutes by its end) of the first epoch whose shipped_accuracy reaches ``target``."""
    for row, minutes in zip(rows, minutes_by_epoch(rows), strict=True):
        if shipped_accuracy(row) >= target:
            return row["epoch"], minutes
    return None


def run_row(run: RunInfo, targets: tuple[float, ...] = TIME_TO_ACCURACY_TARGETS
            ) -> dict[str, Any]:
    """One run's COLUMNS and target_columns, then its recipe and data (not columns). A run in
    progress: what its epochs so far say."""
    row = {"run": run.path.name, "name": run.name, "model": run.model,
           # today's names: a run that recorded an option's old name is the same recipe
           "model_kwargs": resolve_options(run.model, run.model_kwargs), "seed": run.seed,
           "val_is_test": run.val_is_test}
    if run.summary is not None:
        row.update({k: run.summary.get(k) for k in (
            "params", "macs", "epochs", "best_val_acc", "best_epoch", "final_val_acc", "test_acc",
            "sec_per_epoch", "img_per_s")})
    else:
        val = [r["val_acc"] for r in run.rows]
        best = max(range(len(val)), key=val.__getitem__) if val else None  # first best epoch
        row.update({
            "params": None, "macs": None, "epochs": run.rows[-1]["epoch"] if run.rows else 0,
            "best_val_acc": val[best] if val else None,
            "best_epoch": run.rows[best]["epoch"] if val else None,
            "final_val_acc": shipped_accuracy(run.rows[-1]) if val else None, "test_acc": None,
            "sec_per_epoch": mean_or_none([r["epoch_time"] for r in run.rows]),
            "img_per_s": mean_or_none([r["img_per_s"] for r in run.rows])})
    # the final weights' accuracy under `tta`, beside the plain one: the last epoch's
    last = run.rows[-1] if run.rows else {}
    row["final_val_tta_acc"] = last.get("ema_val_tta_acc", last.get("val_tta_acc"))
    row["train_minutes"] = minutes_by_epoch(run.rows)[-1] if run.rows else None
    for target in targets:
        reached = time_to_accuracy(run.rows, target)
        row[f"epoch_to_{target_name(target)}"] = reached[0] if reached else None
        row[f"minutes_to_{target_name(target)}"] = reached[1] if reached else None
    # config.toml flattened, keys added since at today's defaults (which keep the old behaviour)
    settings = flatten(to_dict(TrainConfig())) | flatten(run.config) if run.config else None
    return {**{k: row[k] for k in COLUMNS + target_columns(targets)},
            "recipe": run_recipe(run, settings), "data": run_data(run, settings)}


def mean_or_none(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def group_key(row: dict[str, Any]) -> tuple:
    """Runs of one recipe: the same model, options, epochs, recipe (see run_recipe) and data."""
    data = row["data"]
    return (row["model"], json.dumps(row["model_kwargs"], sort_keys=True), row["epochs"],
            json.dumps(row["recipe"], sort_keys=True, default=str), data["fingerprint"],
            data["num_classes"])


def recipes(rows: list[dict[str, Any]], min_runs: int = 2) -> list[list[dict[str, Any]]]:
    """The rows of each recipe with ``min_runs`` runs or more, in first-seen order."""
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(group_key(row), []).append(row)
    return [members for members in by_key.values() if len(members) >= min_runs]


def differing_settings(rows: list[dict[str, Any]]) -> list[str] | None:
    """The recipe settings that differ between the runs; None when no run has a config.toml."""
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
    """The model label and the run's values of the ``differing`` settings: "resnet20 [lr=0.2]"."""
    label = model_label(row["model"], row["model_kwargs"])
    if differing is None:
        return label
    if row["recipe"] is None:
        return f"{label} [no config.toml]"
    values = ", ".join(f"{k}={setting_text(row['recipe'].get(k))}" for k in differing)
    return f"{label} [{values}]" if values else label
