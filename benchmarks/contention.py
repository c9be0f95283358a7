"""Training throughput with a busy neighbour process, against the same machine idle, in one run.

    python benchmarks/contention.py [--images 4096] [--epochs 2] [--long-epoch 16384]
                                    [--out results.json]

Each case is a real `resnet-cifar train` (ResNet-20, batch 64) in a fresh process, on synthetic
CIFAR-10 data this script writes itself; the neighbour is a pure-Python busy loop that this script
starts and stops (one core's worth of load, as another user's job would be). Reported: img/s of
each case (summary.json), its ratio to the idle default, and its thread count at each epoch's
end with every change train.log records (so a case that ran other than expected shows it). The
default (--threads 0) runs one thread per core other processes leave idle; "--threads 2" is the
previous default, one per core whatever the load.

The second set of cases is one long epoch (--long-epoch images) with the neighbour starting a few
seconds into it, as when someone starts a job beside a running one: the default looks at the load
again every runtime.FOLLOW_SECONDS within an epoch, where "--threads 2" keeps both threads to the
end. Results on the 2-core development CPU: docs/benchmarks.md.
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

# (name, when the neighbour starts: None never, else seconds after the run's process, flags)
CASES = (
    ("idle, default threads", None, []),
    ("idle, --threads 2", None, ["--threads", "2"]),
    ("busy neighbour, default threads", 0.0, []),
    ("busy neighbour, --threads 2", 0.0, ["--threads", "2"]),
)
NEIGHBOUR_AFTER = 8.0  # seconds: past the start-up (imports, data), early in the long epoch
LONG_CASES = (
    ("long epoch, idle, default threads", None, []),
    ("long epoch, neighbour from 8 s, default", NEIGHBOUR_AFTER, []),
    ("long epoch, neighbour from 8 s, --threads 2", NEIGHBOUR_AFTER, ["--threads", "2"]),
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


def start_neighbour() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_case(data: Path, out: Path, epochs: int, flags: list[str],
             neighbour_after: float | None) -> dict:
    """One training case: its img/s, the thread count it ended each epoch with, and the changes
    of that count that its train.log records ("2 -> 1 (epoch 1, step 40)")."""
    neighbour = None
    if neighbour_after == 0:
        neighbour = start_neighbour()
        time.sleep(0.5)  # let it take its core before training starts
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "resnet_cifar", "train", "--data", str(data), "--out", str(out),
             "--epochs", str(epochs), "--milestones", str(epochs), "--no-progress", *flags],
            stdout=subprocess.DEVNULL, env={**os.environ, "RESNET_CIFAR_CACHE":
                                            str(out.parent / "cache")})
        if neighbour_after:
            try:
                run.wait(timeout=neighbour_after)
            except subprocess.TimeoutExpired:
                neighbour = start_neighbour()
        if run.wait() != 0:
            raise SystemExit(f"error: the training case {out.name} failed (exit {run.returncode})")
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    changes = [line.split(":")[0].removeprefix("threads").strip()
               for line in (out / "train.log").read_text().splitlines()
               if line.startswith("threads ")]
    return {"img_per_s": summary["img_per_s"], "threads": [r["threads"] for r in rows],
            "changes": changes}


def run_cases(cases, data: Path, root: Path, epochs: int) -> dict[str, dict]:
    root.mkdir(parents=True, exist_ok=True)
    return {name: run_case(data, root / f"run{i}", epochs, flags, after)
            for i, (name, after, flags) in enumerate(cases)}


def report(results: dict[str, dict], title: str) -> None:
    idle = next(iter(results.values()))["img_per_s"]
    print(title)
    for name, case in results.items():
        img_s, threads = case["img_per_s"], ",".join(map(str, case["threads"]))
        changes = "; ".join(case["changes"]) or "none"
        print(f"  {name:<44} {img_s:7.0f} img/s   {img_s / idle:5.2f}x idle default   "
              f"threads at each epoch's end: {threads}; changes: {changes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--long-epoch", type=int, default=16384, metavar="IMAGES",
                        help="images in the one epoch of the neighbour-starts-later cases "
                             "(0: skip them)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = run_cases(CASES, write_synthetic_cifar(root / "data", args.images),
                            root / "short", args.epochs)
        report(results, f"ResNet-20 training, batch 64, {args.images} synthetic images x "
                        f"{args.epochs} epochs, {os.cpu_count()} CPUs")
        long = {}
        if args.long_epoch:
            long = run_cases(LONG_CASES, write_synthetic_cifar(root / "long", args.long_epoch),
                             root / "long-runs", 1)
            report(long, f"one epoch of {args.long_epoch} images, the neighbour starting "
                         f"{NEIGHBOUR_AFTER:.0f} s after the run's process")
    if args.out:
        Path(args.out).write_text(json.dumps({"img_per_s": results, "long_epoch": long},
                                             indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
