"""How pixels become model inputs: one Normalization value, from whichever source decides it.

A model sees ``(x / 255 - mean) / std`` per channel. The loader and the normalizing wrapper of
predict/export both compute it as ``x * scale - shift`` with the two constants derived here, in
float64 then rounded once, so every path feeds the model bit-identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from resnet_cifar.config import NORMALIZE_MODES
from resnet_cifar.data.constants import CIFAR10_MEAN, CIFAR10_STD, NORMALIZATIONS
from resnet_cifar.errors import DataError

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Normalization:
    """Per-channel (mean, std) of pixels in [0, 1], and the mode they came from."""

    mode: str | None  # "dataset", "half", "imagenet"; None: statistics of unknown origin
    mean: Triple
    std: Triple

    @classmethod
    def explicit(cls, mean: Sequence[float], std: Sequence[float],
                 mode: str | None = None) -> Normalization:
        """Statistics given as numbers (a caller's, or those a checkpoint recorded)."""
        return cls(mode, tuple(float(m) for m in mean), tuple(float(s) for s in std))

    @classmethod
    def for_mode(cls, mode: str, data_stats: tuple[Sequence[float], Sequence[float]] | None
                 ) -> Normalization:
        """A mode's statistics: a preset's constants, or for "dataset" ``data_stats``, the
        (mean, std) of the data at hand."""
        if mode == "dataset":
            if data_stats is None:
                raise ValueError('normalization "dataset" needs the (mean, std) of the data')
            return cls.explicit(*data_stats, mode=mode)
        if mode in NORMALIZATIONS:
            return cls.explicit(*NORMALIZATIONS[mode], mode=mode)
        raise DataError(f"unknown normalization {mode!r}: choose one of "
                        f"{', '.join(NORMALIZE_MODES)}")

    @classmethod
    def cifar10(cls) -> Normalization:
        """"dataset" when no data is at hand: CIFAR-10's published training statistics."""
        return cls.explicit(CIFAR10_MEAN, CIFAR10_STD, mode="dataset")

    def scale_shift(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each (1, C, 1, 1): ``(x / 255 - mean) / std == x * scale - shift``,
        derived in float64 and rounded once to ``dtype``."""
        mean64 = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
        std64 = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
        return (1.0 / (255.0 * std64)).to(device, dtype), (mean64 / std64).to(device, dtype)


def normalization_stats(mode: str, arrays_or_mean_std: Any = None) -> tuple[Triple, Triple]:
    """(mean, std) for a normalization mode; "dataset" takes them from `arrays_or_mean_std` (a
    CifarArrays, or a (mean, std) pair). Kept for callers of the earlier API."""
    stats = arrays_or_mean_std
    if hasattr(stats, "mean") and hasattr(stats, "std"):
        stats = (stats.mean, stats.std)
    norm = Normalization.for_mode(mode, stats)
    return norm.mean, norm.std
