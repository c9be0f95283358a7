"""``resnet_cifar.train``: the engine's training run, plus curves.png redrawn as it goes.

The engine sits below viz and must not import it, so the curves callback is added here, one
layer up; the CLI's ``train`` and library users both come through this function.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from resnet_cifar.config import TrainConfig
from resnet_cifar.engine.train import Callback, RunResult, Trainer
from resnet_cifar.engine.train import train as train_engine

# Drawing curves.png takes 0.2-0.4 s, on the training thread: after every epoch of a run whose
# epochs take seconds (a GPU) it would idle the device, and every DDP rank with it.
CURVES_EVERY_S = 30.0


class CurvesWriter:
    """Redraws curves.png after an epoch when CURVES_EVERY_S have passed since the last drawing,
    and always at the end of the run."""

    def __init__(self):
        self.drawn_at: float | None = None

    def after_epoch(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.drawn_at is None or time.monotonic() - self.drawn_at >= CURVES_EVERY_S:
            self.at_end(trainer)

    def at_end(self, trainer: Trainer) -> None:
        write_curves(trainer)
        self.drawn_at = time.monotonic()


def write_curves(trainer: Trainer) -> None:
    """Redraw curves.png. A plotting failure must never cost a training run."""
    if not trainer.dist.is_main or trainer.run_dir is None:
        return
    try:
        from resnet_cifar.viz import write_run_curves

        write_run_curves(trainer.run_dir)
    except Exception as err:  # noqa: BLE001 - reported, then training goes on
        trainer.log.info(f"warning: could not draw curves.png ({type(err).__name__}: {err})")


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    callbacks: list[Callback] | None = None,
) -> RunResult:
    """Train a model as ``config`` says (or resume the run at ``resume``), writing a run directory
    with curves.png redrawn after an epoch at most every 30 s, and at the end (with the test
    accuracy).
    See resnet_cifar.engine.train.train for the arguments and what it raises."""
    curves = CurvesWriter()
    return train_engine(config, resume=resume, overrides=overrides, overwrite=overwrite,
                        progress=progress, callbacks=[curves.after_epoch, *(callbacks or [])],
                        on_finish=[curves.at_end])
