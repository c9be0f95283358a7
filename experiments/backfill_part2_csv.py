"""Give docs/part2-fast/comparison.csv the recipe and data columns that `compare` writes today.

Its rows were saved before compare recorded them, and their run directories are gone: without
them a row is never pooled as a seed with a new run of the same recipe (engine/recipes.group_key).
A seed-0 row takes them from the weights its run published (the registry keeps the run's config
and data fingerprint; matched by run name, seed and test accuracy). A seed-1 row takes its seed-0
row's, with its own seed: experiments/time_to_accuracy.sh and part2_fast.sh ran both with one
command but --seed. A row that matches neither way is left as it is, and named.

    python experiments/backfill_part2_csv.py docs/part2-fast/comparison.csv
"""

import sys
from pathlib import Path

from resnet_cifar.compare import read_csv_rows, write_csv
from resnet_cifar.config import TrainConfig, to_dict
from resnet_cifar.engine.recipes import flatten, run_data, run_recipe
from resnet_cifar.engine.rundir import RunInfo
from resnet_cifar.models.pretrained import read_registry


def published_configs() -> dict[tuple[str, int, float], dict]:
    """(run name, seed, test accuracy) -> the config of the run that made each published tag."""
    return {(entry["config"]["out"], entry["config"]["seed"], entry["metrics"]["test_acc"]):
            entry for entry in read_registry().values()}


def main(csv_path: str) -> None:
    rows = read_csv_rows(Path(csv_path))
    published = published_configs()
    by_model = {}
    for row in rows:
        entry = published.get((row["run"], row["seed"], row["test_acc"]))
        if entry is not None:
            by_model[row["model"]] = entry
    for row in rows:
        entry = by_model.get(row["model"])
        if entry is None or row["recipe"] is not None:
            print(f"left as it is: {row['run']}")
            continue
        config = {**entry["config"], "seed": row["seed"]}
        run = RunInfo(Path(row["run"]), [], {"num_classes": entry["num_classes"]}, config)
        settings = flatten(to_dict(TrainConfig())) | flatten(config)
        row["recipe"], row["data"] = run_recipe(run, settings), run_data(run, settings)
        print(f"{row['run']}: recipe and data of {entry['config']['out']} (seed {row['seed']})")
    write_csv(rows, csv_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
