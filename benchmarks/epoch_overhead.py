"""Per-epoch time outside the training steps: validation, saving, logging, curves.png.

On a GPU an epoch of ResNet-20 at batch 64 takes a second or two, so what runs between epochs on
the training thread (every DDP rank waiting for it) is a large share of a run. This times a
short real run through ``resnet_cifar.train`` and prints, per epoch, the wall time between
epoch ends less the training steps' own time (``epoch_time`` of metrics.jsonl).

    PYTHONPATH=src python benchmarks/epoch_overhead.py [--epochs 6] [--images 640]

Run it on two checkouts (PYTHONPATH=OTHER/src) for a before and after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data_fixtures import make_cifar10_python_dir  # noqa: E402

from resnet_cifar import train  # noqa: E402
from resnet_cifar.config import build_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--images", type=int, default=640, help="training images")
    p.add_argument("--test-images", type=int, default=100, help="test images (validation)")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_cifar10_python_dir(Path(tmp), n_train_per_class=args.images // 10,
                                       n_test_per_class=args.test_images // 10)
        config = build_config(overrides={"epochs": args.epochs, "batch_size": 64, "threads": 1,
                                         "data": {"path": str(data), "cache_dir": tmp},
                                         "out": str(Path(tmp) / "run")})
        ends: list[float] = []
        rows: list[dict] = []

        def mark(trainer, row):
            ends.append(time.perf_counter())
            rows.append(row)

        train(config, progress=False, callbacks=[mark])
    # epoch e's overhead: from the end of its training steps to the next epoch's first step,
    # i.e. the time between consecutive epoch ends less the later epoch's training time
    overhead = [(b - a) - row["epoch_time"] for a, b, row in zip(ends, ends[1:], rows[1:],
                                                                  strict=False)]
    print(f"{args.images} training and {args.test_images} test images, {args.epochs} epochs: "
          f"per-epoch time outside the training steps, median {statistics.median(overhead):.3f} s "
          f"(min {min(overhead):.3f}, max {max(overhead):.3f}); training steps median "
          f"{statistics.median(r['epoch_time'] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
