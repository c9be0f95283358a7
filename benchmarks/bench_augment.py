"""Is batched augmentation cheap next to a training step? Build one augmented batch (gather, random
crop, flip, normalize: DeviceLoader) and one ResNet-20 SGD step on it, interleaved, and compare
medians. The augmentation options (`data.flip` alternating, `data.cutout` N) are timed the same
way, interleaved with the standard batch, and reported as their extra cost per batch.

    python benchmarks/bench_augment.py [--device cpu] [--batch-size 64] [--reps 30] [--threads N]
                                       [--cutout 8] [--json]

Result on the 2-core development CPU, shared with other jobs (load ~9), batch 64: an augmented
batch takes 0.8 ms (median of 20) and a ResNet-20 SGD step 674 ms with --threads 1 (2.3-3.0 s
with torch's 2 contended threads), so augmentation costs 0.12% of a step, far under 5%.
With the options (same machine, load ~5, --threads 1, 30 reps): standard 1.3 ms, alternating
flip 1.4 ms (the same work: a lookup replaces the coin), cutout 8 2.1 ms (+0.8 ms: one mask
build and fill per batch), both 2-6 ms across runs; a step 931 ms, so under 0.6% of a step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from resnet_cifar.data import DeviceLoader


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-images", type=int, default=50_000, help="size of the synthetic data set")
    p.add_argument("--reps", type=int, default=30, help="timed repetitions of each (interleaved)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--cutout", type=int, default=8, help="cutout side timed as an option")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def make_step(device: torch.device):
    """A ResNet-20 SGD step, or None when the models are not importable."""
    try:
        from resnet_cifar.models import create_model
    except ImportError:
        return None
    model = create_model("resnet20").to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(device: torch.device, fn, *args):
    """(fn(*args), milliseconds), waiting for the device to finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, (time.perf_counter() - start) * 1e3


def batch_source(loader: DeviceLoader):
    """A function returning the loader's next batch, going on to the next epoch at the end."""
    batches = iter(loader)

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:  # a new epoch: its planning is part of the cost
            loader.set_epoch(loader.epoch + 1)
            batches = iter(loader)
            return next(batches)

    return next_batch


def variants(cutout: int) -> dict[str, dict]:
    """Loader options timed, by name; "standard" (crop + random flip) is the reference."""
    return {"standard": {}, "alternating_flip": {"flip": "alternating"},
            f"cutout_{cutout}": {"cutout": cutout},
            f"alternating_flip+cutout_{cutout}": {"flip": "alternating", "cutout": cutout}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.num_images, 3, 32, 32), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, 10, (args.num_images,), generator=generator)
    sources = {name: batch_source(DeviceLoader(images, labels, batch_size=args.batch_size,
                                               train=True, device=device, **options))
               for name, options in variants(args.cutout).items()}
    step = make_step(device)

    times: dict[str, list[float]] = {name: [] for name in sources}
    step_ms = []
    for rep in range(args.warmup + args.reps):
        names = list(sources)
        # Interleaved, so load drifts hit all alike, and rotated, so none is always the first
        # batch after a step (with the step's cold caches).
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            (x, y), ms = timed(device, sources[name])
            if rep >= args.warmup:
                times[name].append(ms)
        if step is not None:
            _, ms = timed(device, step, x, y)
            if rep >= args.warmup:
                step_ms.append(ms)
    return report(args, device, times, step_ms)


def report(args, device: torch.device, times: dict[str, list[float]], step_ms: list[float]):
    """The result dict, printed as JSON or as lines."""
    medians = {name: round(statistics.median(ms), 3) for name, ms in times.items()}
    result = {
        "device": str(device), "batch_size": args.batch_size, "reps": args.reps,
        "threads": torch.get_num_threads(),
        "augmented_batch_ms": medians.pop("standard"),
        "train_step_ms": round(statistics.median(step_ms), 3) if step_ms else None,
        "options_batch_ms": medians,
    }
    if step_ms:
        result["ratio"] = round(result["augmented_batch_ms"] / result["train_step_ms"], 4)
    if args.json:
        print(json.dumps(result))
        return result
    print(f"augmented batch of {args.batch_size} on {device}: "
          f"median {result['augmented_batch_ms']:.2f} ms")
    for name, ms in medians.items():
        extra = ms - result["augmented_batch_ms"]
        print(f"  with {name}: median {ms:.2f} ms ({extra:+.2f} ms per batch)")
    if step_ms:
        print(f"ResNet-20 training step: median {result['train_step_ms']:.2f} ms")
        print(f"ratio: {100 * result['ratio']:.2f}% of a step (target < 5%)")
    else:
        print("ResNet-20 step skipped: resnet_cifar.models is not importable")
    return result


if __name__ == "__main__":
    main()
