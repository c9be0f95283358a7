"""How the cost of a training step grows with depth, recurrence and batch size.

    python benchmarks/scaling.py [--threads 1] [--batches 32,64,128,256] [--models a,b] [--json]

For ResNet-20/56/110 and every recurrent model at each batch size: img/s and ms/step of our
training step (the Trainer's step on DeviceLoader batches, channels_last), next to the model's
parameters and forward MACs per image, and the achieved GFLOP/s (6 x MACs per image trained). One
warm-up step per cell, then enough timed steps for at least --images images: a few minutes on the
2-core development CPU. The table and its reading are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from resnet_cifar.bench import BenchConfig
from resnet_cifar.bench_pipelines import bench_splits, build_pipeline, synchronize
from resnet_cifar.engine.runtime import configure_threads, resolve_device
from resnet_cifar.engine.train import train_step
from resnet_cifar.models import list_models, model_complexity

DEPTHS = ("resnet20", "resnet56", "resnet110")


def default_models() -> list[str]:
    recurrent = [m for m in list_models() if m.startswith(("resnet20_", "regnet20_"))]
    return [*DEPTHS, *recurrent]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(default_models()))
    p.add_argument("--batches", default="32,64,128,256")
    p.add_argument("--images", type=int, default=128, help="timed images per cell (at least)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="0: one per core")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def time_cell(model: str, batch: int, steps: int, device: torch.device,
              channels_last: bool) -> float:
    """Mean ms/step over ``steps`` steps after one warm-up step (no repeats: the whole table
    must take minutes, not an hour)."""
    cfg = BenchConfig(model=model, batch_size=batch, steps=steps + 1, eval_images=1,
                      device=str(device), channels_last=channels_last, evaluate=False)
    ours = build_pipeline(cfg, bench_splits(cfg), device)
    ours.parts.forward_model.train()
    batches = iter(ours.train_loader)
    train_step(ours.parts, *next(batches))  # warm-up: allocation, kernel selection
    synchronize(device)
    start = time.perf_counter()
    for x, y in batches:
        train_step(ours.parts, x, y)
    synchronize(device)
    return 1e3 * (time.perf_counter() - start) / steps


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    threads = configure_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for name in args.models.split(","):
        params, macs = model_complexity(name)
        row = {"model": name, "params": params, "mmacs": macs / 1e6, "cells": {}}
        for batch in batches:
            steps = max(1, -(-args.images // batch))
            ms = time_cell(name, batch, steps, device, args.channels_last)
            img_s = 1e3 * batch / ms
            row["cells"][batch] = {"ms_per_step": ms, "img_per_s": img_s,
                                   "gflop_per_s": img_s * 6 * macs / 1e9}
        rows.append(row)
        if not args.json:
            print(format_row(row, batches) if len(rows) > 1 else
                  "\n".join([header(batches, device, threads), format_row(row, batches)]),
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return rows


def header(batches: list[int], device: torch.device, threads: int) -> str:
    cells = " | ".join(f"b{b} img/s (ms/step)" for b in batches)
    rule = "|".join(["---"] + ["---:"] * (3 + len(batches)))
    return (f"<!-- {device}, {threads} threads, torch {torch.__version__} -->\n"
            f"| model | params | MMACs/img | {cells} | GFLOP/s at b64 |\n|{rule}|")


def format_row(row: dict, batches: list[int]) -> str:
    cells = " | ".join(f"{row['cells'][b]['img_per_s']:.0f} ({row['cells'][b]['ms_per_step']:.0f})"
                       for b in batches)
    b64 = row["cells"].get(64, next(iter(row["cells"].values())))
    return (f"| {row['model']} | {row['params'] / 1e6:.2f} M | {row['mmacs']:.1f} | {cells} | "
            f"{b64['gflop_per_s']:.0f} |")


if __name__ == "__main__":
    main()
