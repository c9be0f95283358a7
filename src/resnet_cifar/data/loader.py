"""A device-resident loader with batched augmentation, plus seeded, stratified splits.

The data set lives on the device as one uint8 tensor; each batch is gathered, cropped and flipped
in one indexing op (data/augment.py) and normalized there. All randomness of an epoch comes from a
CPU generator seeded from (seed, epoch) alone, so batches match on any device and on resume.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from resnet_cifar.config import CROP_PADDING, FLIP_MODES
from resnet_cifar.data.augment import (
    alternating_flips,
    crop_flip_batch,
    crop_flip_plan,
    cutout_batch,
    gather_crops,
    plane_rows,
)
from resnet_cifar.data.constants import AUGMENTATIONS, CIFAR10_MEAN, CIFAR10_STD
from resnet_cifar.data.normalization import Normalization, normalization_stats
from resnet_cifar.errors import DataError

__all__ = ["DeviceLoader", "EpochPlan", "crop_flip_batch", "epoch_seed", "normalization_stats",
           "split_train_val", "stratified_subset", "stream_seed"]


def _take(values, index: np.ndarray):
    """values[index] for a numpy array or a torch tensor."""
    return values[torch.as_tensor(index)] if torch.is_tensor(values) else values[index]


def _stratified_indices(labels, n: int, seed: int) -> np.ndarray:
    """`n` sorted indices, each class in proportion to its size (largest-remainder quotas)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[: n - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
              for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def split_train_val(images, labels, val_size: int, seed: int):
    """(train_images, train_labels, val_images, val_labels): a seeded, class-stratified hold-out
    (`val_size` 0: empty). Both parts keep the original order."""
    n = len(labels)
    if val_size == 0:
        return images, labels, images[:0], labels[:0]
    if not 0 < val_size < n:
        raise DataError(f"validation split of {val_size} images is impossible with {n} training "
                        f"images: choose `data.val_split` (--val-split) between 0 and {n - 1}")
    val = _stratified_indices(labels, val_size, seed)
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    return _take(images, train), _take(labels, train), _take(images, val), _take(labels, val)


def stratified_subset(images, labels, n: int, seed: int):
    """(images, labels) reduced to `n` samples with the class proportions kept (seeded); `n` at
    or above the data set size returns the inputs unchanged."""
    if n >= len(labels):
        return images, labels
    if n <= 0:
        raise DataError(f"subset size must be positive, got {n}: "
                        "pass a positive `data.train_subset` (--train-subset)")
    index = _stratified_indices(labels, n, seed)
    return _take(images, index), _take(labels, index)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit generator seed for the named random stream of a run."""
    digest = hashlib.sha256(f"resnet_cifar:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def epoch_seed(seed: int, epoch: int) -> int:
    return stream_seed(seed, str(epoch))


# The per-image epoch-0 choice of the alternating flip: a stream of its own, drawn once per run,
# so it never shifts the per-epoch draws (an int epoch never formats as this name).
ALTERNATING_FLIP_STREAM = "alternating-flip"


class EpochPlan(NamedTuple):
    """Everything random about one rank's epoch, one row per sample it will see, in order."""

    indices: torch.Tensor  # (S,) int64: image index in the data set
    offsets: torch.Tensor | None  # (S, 2) crop corners; None: no crop and no flip
    flips: torch.Tensor | None  # (S,) bool
    centres: torch.Tensor | None  # (S, 2) cutout centres (cy, cx); None: no cutout


class DeviceLoader:
    """Batches (x, y) of a data set held on `device` as one uint8 tensor.

    train=True: a fresh shuffle each epoch, the last incomplete batch dropped, and (augment=
    "standard") a random crop of the image zero-padded by `crop_padding` pixels plus a left-right
    flip per image (flip="alternating": image i flipped in epoch e iff its seeded epoch-0 choice
    XOR e is odd). cutout=N zeroes an N x N square after normalization, whatever `augment` is.
    train=False: fixed order, last batch kept, no augmentation. x is float (B, 3, 32, 32),
    (x / 255 - mean) / std by `normalization` (else `mean`, `std`); y is int64 (B,).

    Call `set_epoch(epoch)` before each epoch, as with DistributedSampler: an epoch depends only
    on (seed, epoch). DDP: every rank draws the same permutation, truncated to a multiple of
    world_size, and takes perm[rank::world_size]; augmentation depends on the position in the
    permutation, not on world_size. Evaluation shards as rank::world_size without padding.
    """

    def __init__(self, images, labels, *, batch_size: int, train: bool, augment: str = "standard",
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
                 seed: int = 0, device: str | torch.device = "cpu", channels_last: bool = False,
                 rank: int = 0, world_size: int = 1, dtype: torch.dtype = torch.float32,
                 pin_memory: bool = False, normalization: Normalization | None = None,
                 flip: str = "random", cutout: int = 0, crop_padding: int = CROP_PADDING):
        if augment not in AUGMENTATIONS:
            raise DataError(f"unknown augmentation {augment!r}: choose one of "
                            f"{', '.join(AUGMENTATIONS)}")
        if flip not in FLIP_MODES:
            raise DataError(f"unknown `data.flip` (--flip) {flip!r}: choose one of "
                            f"{', '.join(FLIP_MODES)}")
        if cutout < 0:
            raise DataError(f"`data.cutout` (--cutout) must be >= 0 (0: off), got {cutout}")
        if crop_padding < 0:
            raise DataError(f"`data.crop_padding` (--crop-padding) must be >= 0 (0: flips only), "
                            f"got {crop_padding}")
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.device = torch.device(device)
        tensor = torch.as_tensor(images)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), not {tensor.dtype} "
                             f"{tuple(tensor.shape)}")
        self.images = tensor.to(self.device)  # moved once
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.batch_size, self.train, self.augment = batch_size, train, augment
        self.flip, self.cutout, self.crop_padding = flip, int(cutout), int(crop_padding)
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size
        self.channels_last, self.dtype, self.pin_memory = channels_last, dtype, pin_memory
        self.normalization = normalization or Normalization.explicit(mean, std)
        # (x / 255 - mean) / std == x * scale - shift, fused into two in-place ops per batch.
        self._scale, self._shift = self.normalization.scale_shift(self.device, dtype)
        if train and len(self) == 0:
            raise DataError(f"batch size {batch_size} exceeds the {self._per_rank()} training "
                            "images per process, so an epoch would have no step: lower it")

    def _per_rank(self) -> int:  # samples of this rank per epoch, before batching
        n = len(self.images)
        if self.train:
            return n // self.world_size  # the permutation is truncated to a multiple
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        if self.train:
            return self._per_rank() // self.batch_size
        return -(-self._per_rank() // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (after the dropped last batch, when training)."""
        return len(self) * self.batch_size if self.train else self._per_rank()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def _epoch_plan(self) -> EpochPlan:
        """This rank's epoch: which images, in which order, augmented how."""
        n = len(self.images)
        if not self.train:
            return EpochPlan(torch.arange(self.rank, n, self.world_size), None, None, None)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator)
        # Drawn for every position before sharding, so augmentation ignores world_size. The
        # draws keep their order whatever the options, and cutout's come last and only when on,
        # so the default stream (and every earlier run) is unchanged.
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator)
        flips = torch.randint(0, 2, (n,), generator=generator).bool()
        if self.flip == "alternating":  # by image index, so batch order and resume don't matter
            flips = alternating_flips(self._first_flips(), self.epoch)[order]
        centres = None
        if self.cutout:
            h, w = self.images.shape[-2:]
            centres = torch.stack([torch.randint(0, h, (n,), generator=generator),
                                   torch.randint(0, w, (n,), generator=generator)], dim=1)
        mine = slice(self.rank, n - n % self.world_size, self.world_size)
        keep = self.num_samples  # whole batches only

        def shard(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[mine][:keep]

        if self.augment == "none":
            offsets = flips = None
        return EpochPlan(shard(order), shard(offsets), shard(flips), shard(centres))

    def _first_flips(self) -> torch.Tensor:
        """(N,) bool: the alternating flip's epoch-0 choice per image, a function of the seed."""
        generator = torch.Generator().manual_seed(stream_seed(self.seed, ALTERNATING_FLIP_STREAM))
        return torch.randint(0, 2, (len(self.images),), generator=generator).bool()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices, offsets, flips, centres = (t if t is None else t.to(self.device)
                                            for t in self._epoch_plan())
        if offsets is not None:  # the epoch's crops as index pieces: each batch is one gather
            starts, cols = crop_flip_plan(indices, offsets, flips, self.images.shape,
                                          self.crop_padding)
            rows = plane_rows(self.images.shape, self.crop_padding, self.device)
        for start in range(0, len(indices), self.batch_size):
            batch = slice(start, start + self.batch_size)
            if offsets is not None:
                x = gather_crops(self._padded, starts[batch], cols[batch], rows)
            else:
                x = self.images[indices[batch]]  # (B, 3, 32, 32) uint8
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x = x.to(self.dtype).mul_(self._scale).sub_(self._shift)
            if centres is not None:  # after normalization: the square becomes the mean colour
                x = cutout_batch(x, centres[batch], self.cutout)
            y = self.labels[indices[batch]]
            if self.pin_memory and self.device.type == "cpu" and torch.cuda.is_available():
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y

    @functools.cached_property
    def _padded(self) -> torch.Tensor:
        """The images zero-padded for cropping, made once rather than per batch."""
        p = self.crop_padding
        return F.pad(self.images, (p, p, p, p)).contiguous()

