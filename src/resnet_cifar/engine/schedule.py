"""Learning-rate schedules as pure functions of training progress.

The lr at a step depends only on (epoch, step in epoch), never on a mutable counter, so a resumed
run follows exactly the schedule of an uninterrupted one.
"""

from __future__ import annotations

import math


def learning_rate(
    progress: float,
    *,
    base_lr: float,
    epochs: int,
    schedule: str = "step",
    milestones: list[int] | tuple[int, ...] = (),
    gamma: float = 0.1,
    warmup_epochs: int = 0,
) -> float:
    """lr at ``progress`` epochs into training (a float: epoch + fraction of the epoch done).

    step:     base_lr * gamma ** (number of milestones <= epoch); milestones are 0-based epoch
              indices, so milestones=[80] is the original's ``if epoch >= 80: lr = 0.01``.
    cosine:   half a cosine from base_lr to 0 over the epochs after warm-up, per step.
    onecycle: linear up from base_lr/25 to base_lr over the first 30%, then cosine down to ~0.
    warm-up:  linear from base_lr/10 to the schedule's value over ``warmup_epochs``.
    """
    if schedule == "step":
        lr = base_lr * gamma ** sum(1 for m in milestones if int(progress) >= m)
    elif schedule == "cosine":
        span = max(epochs - warmup_epochs, 1e-8)
        t = min(max(progress - warmup_epochs, 0.0) / span, 1.0)
        lr = base_lr * 0.5 * (1 + math.cos(math.pi * t))
    elif schedule == "onecycle":
        t = min(progress / epochs, 1.0)
        peak = 0.3
        if t < peak:
            lr = base_lr / 25 + (base_lr - base_lr / 25) * t / peak
        else:
            lr = base_lr * 0.5 * (1 + math.cos(math.pi * (t - peak) / (1 - peak)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_epochs and progress < warmup_epochs and schedule != "onecycle":
        start = base_lr / 10
        lr = start + (lr - start) * progress / warmup_epochs
    return lr
