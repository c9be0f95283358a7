"""``resnet_cifar.train``: the engine's training run, plus curves.png redrawn after every epoch.

The engine sits below viz and must not import it, so the curves callback is added here, one
layer up; the CLI's ``train`` and library users both come through this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_cifar.config import TrainConfig
from resnet_cifar.engine.train import Callback, RunResult, Trainer
from resnet_cifar.engine.train import train as train_engine


def write_curves(trainer: Trainer, row: dict[str, Any] | None = None) -> None:
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
    with curves.png redrawn after each epoch and once more at the end (with the test accuracy).
    See resnet_cifar.engine.train.train for the arguments and what it raises."""
    return train_engine(config, resume=resume, overrides=overrides, overwrite=overwrite,
                        progress=progress, callbacks=[write_curves, *(callbacks or [])],
                        on_finish=[write_curves])
