"""Training throughput with a busy neighbour process, against the same machine idle, in one run.

    python benchmarks/contention.py [--images 4096] [--epochs 2] [--out results.json]

Each case is a real `resnet-cifar train` (ResNet-20, batch 64) in a fresh process, on synthetic
CIFAR-10 data this script writes itself; the neighbour is a pure-Python busy loop that this script
starts and stops (one core's worth of load, as another user's job would be). Reported: img/s of
each case (summary.json), and each case's ratio to the idle default. The default (--threads 0)
runs one thread per core other processes leave idle; "--threads 2" is the previous default, one
per core whatever the load. Results on the 2-core development CPU: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = (  # (name, neighbour busy?, extra train flags)
    ("idle, default threads", False, []),
    ("idle, --threads 2", False, ["--threads", "2"]),
    ("busy neighbour, default threads", True, []),
    ("busy neighbour, --threads 2", True, ["--threads", "2"]),
)


def write_synthetic_cifar(root: Path, images: int) -> Path:
    """A cifar-10-batches-py folder of random images (one training batch, a small test batch)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict:
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                "labels": [int(v) for v in rng.integers(0, 10, n)]}

    for name, n in (("data_batch_1", images), ("test_batch", 200)):
        with open(folder / name, "wb") as f:
            pickle.dump(batch(n), f)
    return folder


def run_case(data: Path, out: Path, epochs: int, flags: list[str], busy: bool) -> float:
    neighbour = None
    if busy:
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it take its core before training starts
    try:
        subprocess.run(
            [sys.executable, "-m", "resnet_cifar", "train", "--data", str(data), "--out", str(out),
             "--epochs", str(epochs), "--milestones", str(epochs), "--no-progress", *flags],
            check=True, stdout=subprocess.DEVNULL, env={**os.environ, "RESNET_CIFAR_CACHE":
                                                        str(out.parent / "cache")})
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads((out / "summary.json").read_text())["img_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_cifar(Path(tmp) / "data", args.images)
        results = {name: run_case(data, Path(tmp) / f"run{i}", args.epochs, flags, busy)
                   for i, (name, busy, flags) in enumerate(CASES)}
    idle = results[CASES[0][0]]
    print(f"ResNet-20 training, batch 64, {args.images} synthetic images x {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs")
    for name, img_s in results.items():
        print(f"  {name:<34} {img_s:7.0f} img/s   {img_s / idle:5.2f}x idle default")
    if args.out:
        Path(args.out).write_text(json.dumps({"img_per_s": results, "idle_default": idle},
                                             indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
