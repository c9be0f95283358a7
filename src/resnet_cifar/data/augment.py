"""Batched training augmentations: whole batches on the device, no per-image Python.

Pure functions: the caller (DeviceLoader) makes the random draws and passes them in, so the same
draws give the same pixels on any device.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from resnet_cifar.config import CROP_PADDING

__all__ = ["alternating_flips", "crop_flip_batch", "crop_flip_plan", "cutout_batch",
           "gather_crops", "plane_rows"]


def crop_flip_batch(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                    padding: int = CROP_PADDING) -> torch.Tensor:
    """Random-crop and flip a batch in one gather: image i of the result is padded[i, :, dy:dy + H,
    dx:dx + W] for offsets[i] = (dy, dx) in [0, 2 * padding], mirrored left-right if flips[i]."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)).contiguous()
    starts, cols = crop_flip_plan(torch.arange(b, device=images.device), offsets, flips,
                                  images.shape, padding)
    return gather_crops(padded, starts, cols, plane_rows(images.shape, padding, images.device))


def crop_flip_plan(image_index: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                   shape: torch.Size, padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts (S,), cols (S, W)) for samples of images ``image_index`` of a (N, C, H, W) data
    set, cropped at ``offsets`` (S, 2) of their padded images and mirrored where ``flips``.

    Flat int32 indices into the padded tensor: pixel (c, i, j) of sample s is at starts[s] +
    rows[c, i] + cols[s, j]; the loader computes starts and cols once per epoch."""
    n, c, h, w = shape
    hp, wp = h + 2 * padding, w + 2 * padding
    assert n * c * hp * wp < 2**31, "data set too large for int32 indices"
    offsets = offsets.to(torch.int32)
    starts = image_index.to(torch.int32) * (c * hp * wp) + offsets[:, 0] * wp + offsets[:, 1]
    cols = torch.arange(w, dtype=torch.int32, device=offsets.device).expand(len(flips), w)
    return starts, torch.where(flips[:, None], w - 1 - cols, cols)


def plane_rows(shape: torch.Size, padding: int, device: torch.device) -> torch.Tensor:
    """(C, H, 1) int32: where row i of channel c of a crop starts, relative to its start."""
    _, c, h, w = shape
    hp, wp = h + 2 * padding, w + 2 * padding
    arange = partial(torch.arange, dtype=torch.int32, device=device)
    return (arange(c)[:, None] * (hp * wp) + arange(h) * wp)[:, :, None]


def gather_crops(padded: torch.Tensor, starts: torch.Tensor, cols: torch.Tensor,
                 rows: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) crops of the flattened ``padded`` data set (see crop_flip_plan)."""
    index = starts[:, None, None, None] + rows + cols[:, None, None, :]
    return padded.view(-1).index_select(0, index.view(-1)).view(index.shape)


def alternating_flips(first_choice: torch.Tensor, epoch: int) -> torch.Tensor:
    """(N,) bool: epoch e flips image i iff its epoch-0 choice first_choice[i] XOR (e is odd)."""
    return first_choice ^ bool(epoch % 2)


def cutout_batch(x: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Zero, in place, a size x size square centred at centres (B, 2) (cy, cx), clipped at the
    border, of each image of normalized x (zero is the mean colour); returns x."""
    h, w = x.shape[-2:]
    start = centres.to(torch.int64) - size // 2  # (B, 2): top-left corner, may be negative
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + size)  # (B, H)
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + size)  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W), broadcast over channels
    return x.masked_fill_(mask[:, None], 0)
