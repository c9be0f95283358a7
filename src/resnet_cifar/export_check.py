"""An exported file against eager PyTorch: the inputs its parity check feeds (random ones, and
real test images, from where they come) and the logits compared (see TOLERANCE)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from resnet_cifar.data.constants import IMAGE_SHAPE
from resnet_cifar.engine.checkpoint import Checkpoint
from resnet_cifar.errors import DataError

if TYPE_CHECKING:
    from resnet_cifar.predict import NormalizedModel

PARITY_IMAGES = 100
CHECK_BATCHES = (1, 3)  # parity batches differ from the traced one, so the batch is truly dynamic
# A check passes when max |artifact - eager logits| is below TOLERANCE (relative once the logits
# exceed 1), or within NOISE_FACTOR times the model's own float32 error (float32 vs float64):
# deep recurrent models amplify rounding (an untrained regnet56 moves by 2e-4 for a one-ulp input
# change), so no runtime matches them to 1e-4, yet the artifact is as exact as PyTorch itself.
TOLERANCE = 1e-4
NOISE_FACTOR = 4.0


@dataclass
class ParityCheck:
    inputs: str  # what was fed, e.g. "random, batch 3"
    batch: int
    max_abs_diff: float  # max |artifact logits - eager logits|
    max_abs_logit: float  # max |eager logits|: the scale the difference is judged against
    # max |eager float32 - float64|: measured only past the plain tolerance (float64 is slow)
    float32_noise: float | None
    top1_agree: int  # images whose argmax matches eager's

    def within_tolerance(self, tolerance: float) -> bool:
        return self.max_abs_diff < tolerance * max(1.0, self.max_abs_logit)

    def passed(self, tolerance: float) -> bool:
        return self.within_tolerance(tolerance) or (
            self.float32_noise is not None
            and self.max_abs_diff <= NOISE_FACTOR * self.float32_noise)


def load_parity_images(ckpt: Checkpoint, data=None, n: int = PARITY_IMAGES
                       ) -> tuple[np.ndarray | None, str]:
    """Up to ``n`` test images (uint8 NCHW, evenly spaced so every class shows up) and where they
    came from, or (None, why not): from ``data`` (a DataConfig, downloaded if need be), else from
    the data path the checkpoint records (disk or cache only, its fingerprint not checked)."""
    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine.inference import load_arrays

    recorded = ((ckpt.config or {}).get("data") or {})
    if data is None and not recorded.get("path"):
        return None, ("no data set given and none recorded in the checkpoint: parity checked "
                      "on random inputs only (pass `data.path` (--data) for real images)")
    run_data = DataConfig(path=recorded.get("path"), cache_dir=recorded.get("cache_dir"),
                          coarse=bool(recorded.get("coarse")), resize=bool(recorded.get("resize")))
    try:
        arrays = load_arrays(data or run_data, progress=False, download=data is not None)
    except DataError as err:
        if data is not None:
            raise
        return None, (f"the checkpoint's data set could not be read ({err}): parity checked "
                      "on random inputs only (pass `data.path` (--data) for real images)")
    split, images = "test", arrays.test_images
    if len(images) == 0:
        split, images = "training", arrays.train_images
    index = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).astype(np.int64))
    return images[index], f"{split} images of {arrays.source}"


def parity_checks(reference: nn.Module, exported: Callable[[torch.Tensor], torch.Tensor], *,
                  wrapper: NormalizedModel, raw_input: bool, images: np.ndarray | None = None,
                  images_source: str = "real images",
                  tolerance: float = TOLERANCE) -> list[ParityCheck]:
    """Feed the same inputs to ``reference`` (eager) and ``exported`` and compare the logits:
    random inputs at CHECK_BATCHES, then ``images`` (uint8 (N, 3, 32, 32)) if given, as pixels
    when ``raw_input``, else normalized with ``wrapper``'s arithmetic. Past ``tolerance``, a
    float64 copy of ``reference`` measures the model's own float32 error (see TOLERANCE)."""
    generator = torch.Generator().manual_seed(0)
    shape = IMAGE_SHAPE  # (C, H, W)
    inputs = []
    for batch in CHECK_BATCHES:
        if raw_input:
            x = torch.randint(0, 256, (batch, *shape), generator=generator, dtype=torch.uint8)
        else:
            x = torch.randn((batch, *shape), generator=generator)
        inputs.append((f"random, batch {batch}", x))
    if images is not None and len(images):
        pixels = torch.from_numpy(np.ascontiguousarray(images))
        x = pixels if raw_input else pixels.float() * wrapper.scale - wrapper.shift
        inputs.append((f"{len(pixels)} {images_source}", x))
    checks, exact = [], None
    for description, x in inputs:
        with torch.inference_mode():
            expected = reference(x)
        got = exported(x)
        assert got.shape == expected.shape, f"{description}: {tuple(got.shape)} vs {expected.shape}"
        check = ParityCheck(description, len(x), float((got - expected).abs().max()),
                            float(expected.abs().max()), None,
                            int((got.argmax(1) == expected.argmax(1)).sum()))
        if not check.within_tolerance(tolerance):
            if exact is None:
                exact = copy.deepcopy(reference).double()  # a NormalizedModel: float64 too
            with torch.inference_mode():
                expected64 = exact(x if raw_input else x.double())
            check.float32_noise = float((expected.double() - expected64).abs().max())
        checks.append(check)
    return checks
