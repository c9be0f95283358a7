"""Kernel launches per training step, counted on the CPU with the profiler.

On a GPU each aten op that computes launches (at least) one kernel, and at batch 64 a ResNet-20
step is short enough for launches to matter. This counts, per phase of one step of the training
loop (the loader's batch, forward + backward + SGD, the moving average, the running stats), the
leaf aten ops that would each launch a kernel on CUDA: ops that only make views or metadata are
not counted, and neither are ops inside a counted op.

    PYTHONPATH=src python benchmarks/launches.py [--model resnet20] [--ema-decay 0.999]

Run it on two checkouts (PYTHONPATH=OTHER/src) for a before and after.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from resnet_cifar.config import build_config
from resnet_cifar.data import DeviceLoader
from resnet_cifar.engine.runtime import DistContext
from resnet_cifar.engine.setup import ModelEma, build_parts
from resnet_cifar.engine.train import train_step

# Ops that make a view or read metadata: no kernel on CUDA.
NO_KERNEL = {
    "aten::view", "aten::_unsafe_view", "aten::as_strided", "aten::expand", "aten::t",
    "aten::transpose", "aten::select", "aten::slice", "aten::unsqueeze", "aten::squeeze",
    "aten::detach", "aten::alias", "aten::empty", "aten::empty_like", "aten::empty_strided",
    "aten::resize_", "aten::reshape", "aten::permute", "aten::lift_fresh", "aten::result_type",
    "aten::is_nonzero", "aten::_reshape_alias", "aten::unbind", "aten::split", "aten::chunk",
    "aten::flatten", "aten::numpy_T", "aten::set_", "aten::zero_", "aten::resolve_conj",
    "aten::resolve_neg", "aten::_has_compatible_shallow_copy_type", "aten::_local_scalar_dense",
}
PHASES = ("loader", "step", "ema", "stats")


def inside_foreach(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::_foreach_"):
            return True
        parent = parent.cpu_parent
    return False


def count_leaf_ops(events) -> collections.Counter:
    """{phase: launches}: leaf aten ops that compute, under each phase's record_function."""
    counts: collections.Counter = collections.Counter()
    for event in events:
        if not event.name.startswith("aten::") or event.name in NO_KERNEL:
            continue
        if inside_foreach(event):
            continue  # on CUDA a foreach op is one multi-tensor kernel: counted once, itself
        if not event.name.startswith("aten::_foreach_") and any(
                child.name.startswith("aten::") and child.name not in NO_KERNEL
                for child in event.cpu_children):
            continue  # a composite op: its children are counted
        parent = event.cpu_parent
        while parent is not None and parent.name not in PHASES:
            parent = parent.cpu_parent
        if parent is not None:
            counts[parent.name] += 1
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    config = build_config(overrides={"model": args.model, "batch_size": args.batch_size,
                                     "ema_decay": args.ema_decay, "threads": 1})
    rng = np.random.default_rng(0)
    n = args.batch_size * (args.steps + 2)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    loader = DeviceLoader(images, labels, batch_size=args.batch_size, train=True,
                          mean=(0.5,) * 3, std=(0.25,) * 3)
    parts = build_parts(config, 10, torch.device("cpu"), DistContext())
    ema = ModelEma(parts.model, args.ema_decay) if args.ema_decay else None
    loss_sum, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    batches = iter(loader)
    for step in range(args.steps + 2):
        profiling = step == 2  # two warm-up steps, then the profiled ones
        if profiling:
            prof = profile(activities=[ProfilerActivity.CPU]).__enter__()
        with record_function("loader"):
            x, y = next(batches)
        with record_function("step"):
            loss, logits = train_step(parts, x, y)
        if ema is not None:
            with record_function("ema"):
                ema.update(parts.model, step)
        with record_function("stats"):
            loss_sum += loss.detach().double() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
    prof.__exit__(None, None, None)
    counts = count_leaf_ops(prof.events())
    steps = args.steps
    per_step = {phase: counts[phase] / steps for phase in PHASES}
    print(f"{args.model}, batch {args.batch_size}, EMA {args.ema_decay:g}: launches per step "
          + ", ".join(f"{phase} {per_step[phase]:.0f}" for phase in PHASES)
          + f"; total {sum(per_step.values()):.0f}")


if __name__ == "__main__":
    main()
