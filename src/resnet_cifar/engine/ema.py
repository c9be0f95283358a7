"""An exponential moving average of a model's weights (`ema_decay`), in the spirit of timm's
ModelEmaV2: a copy of the model whose state follows the trained one after every optimizer step,

    ema = d * ema + (1 - d) * w,    d = min(ema_decay, (1 + step) / (10 + step)),

where ``step`` counts the optimizer steps done before this update, across epochs. The warm-up
keeps the first epochs from being frozen at the random initialization (d is 0.1 at step 0 and
0.9 at step 80); counting steps across epochs makes it a pure function of progress, so a resumed
run replays it exactly.

Every float entry of the state follows: parameters AND buffers, so the BatchNorm running
statistics match the averaged weights. Integer buffers (num_batches_tracked) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from resnet_cifar.engine.checkpoint import strip_module_prefix


def ema_decay_at(decay: float, step: int) -> float:
    """The decay of the update after ``step`` earlier optimizer steps (warmed up)."""
    return min(decay, (1 + step) / (10 + step))


class ModelEma:
    """The averaged copy of ``model`` (pass the unwrapped model: no DDP or torch.compile
    prefixes, so its state_dict loads into a plain model). ``module`` is what validation runs."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self._pairs: tuple[int, list, list, list, list] | None = None

    def pairs(self, model: nn.Module) -> tuple[list, list, list, list]:
        """(ema floats, model floats, ema integers, model integers): the two states' tensors,
        matched by key. Built once per trained model, not per step: the tensors are the live
        parameters and buffers, which loading and stepping update in place."""
        if self._pairs is None or self._pairs[0] != id(model):
            ema_state, model_state = self.module.state_dict(), model.state_dict()
            lists: tuple[list, list, list, list] = ([], [], [], [])
            for key, ema_value in ema_state.items():
                at = 0 if ema_value.is_floating_point() else 2
                lists[at].append(ema_value)
                lists[at + 1].append(model_state[key])
            self._pairs = (id(model), *lists)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s current state. Device-side foreach ops only: no
        host sync, one kernel per op and dtype on CUDA."""
        d = ema_decay_at(self.decay, step)
        floats_ema, floats_model, ints_ema, ints_model = self.pairs(model)
        torch._foreach_mul_(floats_ema, d)
        torch._foreach_add_(floats_ema, floats_model, alpha=1 - d)
        if ints_ema:
            torch._foreach_copy_(ints_ema, ints_model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return strip_module_prefix(self.module.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state, strict=True)
