"""Where a training step of our pipeline spends its time: a torch.profiler table.

    python benchmarks/profile_train.py [--model resnet20] [--batch-size 64] [--steps 5]
        [--no-channels-last] [--optimizer default|fused|foreach|loop] [--device cpu] [--rows 25]

The step is the training loop's own (engine.train.train_step, on parts built by
resnet_cifar.bench_pipelines.build_pipeline as train() builds them), with its stages marked:
loader (gather, crop, flip, normalize), forward (+ loss), backward, optimizer. Prints two markdown
tables: time by stage, and self time by kind of op (conv forward / backward, BatchNorm forward /
backward, elementwise, optimizer kernels, loader ops), then torch.profiler's own top-op table.
Result on the 2-core development CPU: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from resnet_cifar.bench import BenchConfig
from resnet_cifar.bench_pipelines import bench_splits, build_pipeline
from resnet_cifar.engine.runtime import configure_threads, resolve_device

STAGES = ("loader", "forward", "backward", "optimizer")
# Kind of op by (a part of) its name, first match wins; self time is summed per kind.
KINDS = (
    ("conv backward", ("convolution_backward", "conv2d_backward", "_slow_conv2d_backward")),
    ("conv forward", ("mkldnn_convolution", "_slow_conv2d_forward", "thnn_conv2d",
                      "_convolution", "convolution", "conv2d")),
    ("BatchNorm backward", ("batch_norm_backward",)),
    ("BatchNorm forward", ("batch_norm",)),
    ("optimizer kernels", ("_foreach_", "_fused_sgd", "sgd")),
    ("loader ops", ("index_select", "constant_pad_nd", "randperm", "randint", "index")),
    ("linear / pool / loss", ("addmm", "mm", "linear", "adaptive_avg_pool", "mean", "log_softmax",
                              "nll_loss", "cross_entropy", "_log_softmax")),
    ("elementwise (relu, add, gates)", ("relu", "threshold", "add", "mul", "sub", "div",
                                        "sigmoid", "tanh", "cat", "copy_", "to", "fill_",
                                        "zero_", "clone", "empty", "where")),
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="profiled steps")
    p.add_argument("--warmup", type=int, default=2, help="unprofiled steps first")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--optimizer", default="default",
                   choices=("default", "fused", "foreach", "loop"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rows", type=int, default=25, help="rows of the top-op table")
    return p.parse_args(argv)


def kind_of(op: str) -> str:
    name = op.removeprefix("aten::")
    for kind, parts in KINDS:
        if any(part in name for part in parts):
            return kind
    return "other"


def profile_steps(args: argparse.Namespace):
    device = resolve_device(args.device)
    configure_threads(args.threads)
    cfg = BenchConfig(model=args.model, batch_size=args.batch_size, device=str(device),
                      steps=args.warmup + args.steps, eval_images=1,
                      channels_last=args.channels_last, optimizer=args.optimizer)
    ours = build_pipeline(cfg, bench_splits(cfg), device)
    parts = ours.parts
    model = parts.forward_model.train()
    batches = iter(ours.train_loader)

    # engine.train.train_step's stages, each under its own profiler label
    def step() -> None:
        with record_function("loader"):
            x, y = next(batches)
        with record_function("forward"), parts.autocast():
            logits = model(x)
            loss = parts.criterion(logits.float(), y)
        with record_function("backward"):
            parts.optimizer.zero_grad(set_to_none=True)
            parts.scaler.scale(loss).backward()
        with record_function("optimizer"):
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()

    for _ in range(args.warmup):
        step()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof


def stage_table(events, steps: int) -> list[str]:
    totals = {e.key: e.cpu_time_total for e in events if e.key in STAGES}
    whole = sum(totals.values()) or 1.0
    lines = ["| stage | ms/step | share |", "|---|---:|---:|"]
    for stage in STAGES:
        us = totals.get(stage, 0.0)
        lines.append(f"| {stage} | {us / steps / 1e3:.1f} | {100 * us / whole:.1f}% |")
    lines.append(f"| **step** | **{whole / steps / 1e3:.1f}** | 100% |")
    return lines


def kind_table(events, steps: int) -> list[str]:
    by_kind: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.key in STAGES or e.key.startswith(("ProfilerStep", "Optimizer.")):
            continue
        by_kind[kind_of(e.key)] += e.self_cpu_time_total
    whole = sum(by_kind.values()) or 1.0
    lines = ["| kind of op (self CPU time) | ms/step | share |", "|---|---:|---:|"]
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kind} | {us / steps / 1e3:.1f} | {100 * us / whole:.1f}% |")
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    prof = profile_steps(args)
    events = prof.key_averages()
    print(f"{args.model}, batch {args.batch_size}, channels_last={args.channels_last}, "
          f"optimizer={args.optimizer}, {torch.get_num_threads()} threads, {args.steps} steps\n")
    print("\n".join(stage_table(events, args.steps)))
    print()
    print("\n".join(kind_table(events, args.steps)))
    print()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
