"""Test-time augmentation: a model's class scores averaged over transformed views of each image.

Modes (config.TTA_MODES):

- ``none``: the model's logits, untouched.
- ``flip``: the image and its horizontal mirror, weight 1/2 each.
- ``flip-translate`` (airbench's views): the image and its mirror, weight 1/4 each, plus the image
  shifted one pixel down-right and one pixel up-left, each also mirrored, weight 1/8 each (6 views).
  The shift pads by one pixel with *reflect* padding and crops: reflection copies real pixels, so
  the border stays in the image's statistics whatever the normalization (zero padding of a
  normalized image would paint the border the dataset's mean colour, a pattern never trained on).

What is averaged is the softmax *probabilities* of the views, not their logits. ``tta_logits``
returns the log of that average, a valid logit vector: ``softmax`` of it gives back the averaged
probabilities exactly, its ``argmax`` is the averaged prediction, and ``F.cross_entropy`` of it is
the negative log-likelihood of the averaged probabilities (logsumexp of log-probabilities is 0).

All views of a batch go through the model in one forward (B * views images), so the cost is the
view count times a plain forward (TTA_VIEWS, for reporting img/s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import TTA_MODES
from resnet_cifar.errors import ConfigError, key

# Forward images per input image, for each mode: the cost of TTA relative to a plain pass.
TTA_VIEWS = {"none": 1, "flip": 2, "flip-translate": 6}

# The weight of each view, in the order tta_views stacks them (they sum to 1).
TTA_WEIGHTS = {
    "none": (1.0,),
    "flip": (0.5, 0.5),
    "flip-translate": (0.25, 0.25, 0.125, 0.125, 0.125, 0.125),
}


def check_tta_mode(mode: str) -> None:
    """Refuse a mode that is not one of config.TTA_MODES, naming the setting."""
    if mode not in TTA_MODES:
        raise ConfigError(f"{key('tta')} must be one of {', '.join(TTA_MODES)}, got {mode!r}")


def shift_batch(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (B, C, H, W) with its content moved ``dy`` rows down and ``dx`` columns right
    (|dy|, |dx| <= 1), the uncovered border filled by reflection."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def tta_views(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The views of ``x`` (B, C, H, W) for ``mode``, stacked view-major: (V * B, C, H, W)."""
    check_tta_mode(mode)
    views = [x]
    if mode in ("flip", "flip-translate"):
        views.append(x.flip(-1))
    if mode == "flip-translate":
        for shifted in (shift_batch(x, 1, 1), shift_batch(x, -1, -1)):
            views += [shifted, shifted.flip(-1)]
    return torch.cat(views)


def tta_logits(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Class scores of ``x`` (B, C, H, W) under test-time augmentation ``mode``: (B, K).

    ``none``: ``model(x)`` itself. Otherwise: log of the weighted mean of the views' softmax
    probabilities (float32), so that softmax, argmax and cross-entropy of the result are those of
    the averaged prediction."""
    if mode == "none":
        return model(x)
    weights = TTA_WEIGHTS[mode]
    logits = model(tta_views(x, mode)).float()  # (V * B, K)
    log_probs = F.log_softmax(logits, dim=1).view(len(weights), x.shape[0], -1)  # (V, B, K)
    log_weights = torch.tensor([math.log(w) for w in weights], device=logits.device)
    # log(sum_v w_v p_v), computed stably in log space
    return torch.logsumexp(log_probs + log_weights.view(-1, 1, 1), dim=0)


class TTAModel(nn.Module):
    """``model`` whose forward is ``tta_logits(model, x, mode)``: anything that runs a model
    (evaluation's chunked forwards, predict) runs the augmented one unchanged. The wrapped
    model is a submodule, so eval()/train()/parameters() reach it."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        check_tta_mode(mode)
        self.model = model
        self.mode = mode
        # a new Module says training=True: take the model's own mode, or a caller that saves and
        # restores it (evaluate_model) would leave an eval-mode model in training mode
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, x, self.mode)


def with_tta(model: nn.Module, mode: str) -> nn.Module:
    """``model`` itself for ``none`` (the same object, so results stay bitwise), else TTAModel."""
    return model if mode == "none" else TTAModel(model, mode)


@dataclass
class TTAReport:
    """A test-time-augmented pass, reported beside the plain one (never instead of it): its
    accuracy and loss, and what it cost in images per second against the plain pass."""

    mode: str
    accuracy: float  # in [0, 1]
    correct: int
    total: int
    loss: float  # mean negative log-likelihood of the averaged probabilities
    images_per_second: float  # of the TTA pass
    plain_images_per_second: float  # of the plain pass, same data, same run

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "views": TTA_VIEWS[self.mode], "accuracy": self.accuracy,
                "correct": self.correct, "total": self.total, "loss": self.loss,
                "images_per_second": self.images_per_second,
                "plain_images_per_second": self.plain_images_per_second}
