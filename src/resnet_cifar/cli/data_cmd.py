"""resnet-cifar data: resolve, download or decode, cache, and summarize a dataset."""

from __future__ import annotations

import argparse
import sys
import time

from resnet_cifar.cli.common import add_data_args, data_config, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="decode and cache a dataset, print a summary")
    add_data_args(p, training=False)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet_cifar.data import normalization_stats, summarize
    from resnet_cifar.engine.inference import load_arrays, make_splits

    data = data_config(args)
    start = time.perf_counter()
    arrays = load_arrays(data, progress=sys.stderr.isatty() and not args.json)
    splits = make_splits(arrays, data, seed=0)  # refuses a --val-split the data cannot give
    summary = summarize(arrays)
    if data.val_split:
        summary["counts"] = {"train": len(splits.train_labels), "val": len(splits.val_labels),
                             "test": len(splits.test_labels)}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    mean, std = normalization_stats(data.normalize, arrays)
    summary["normalization"] = {"mode": data.normalize, "mean": list(mean), "std": list(std)}
    if args.json:
        print_json(summary)
        return 0
    for key, value in summary.items():
        print(f"{key:<14} {value}")
    return 0
