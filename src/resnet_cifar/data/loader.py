"""A device-resident loader with batched augmentation, plus seeded, stratified splits.

The whole data set is moved to the device once as a uint8 tensor (50,000 CIFAR images are 150 MB).
Each batch is gathered, randomly cropped and flipped in one indexing op, converted to float and
normalized there, so the host does no per-sample work. All randomness of an epoch (order, crops,
flips) comes from a CPU generator seeded from (seed, epoch) alone: the same seed and epoch give the
same batches on any device, and resuming at an epoch needs no saved generator state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from resnet_cifar.data.constants import AUGMENTATIONS, CIFAR10_MEAN, CIFAR10_STD, CROP_PADDING
from resnet_cifar.data.normalization import Normalization, normalization_stats
from resnet_cifar.errors import DataError

__all__ = ["DeviceLoader", "crop_flip_batch", "epoch_seed", "normalization_stats",
           "split_train_val", "stratified_subset"]


# --------------------------------------------------------------------------- splits


def _take(values, index: np.ndarray):
    """values[index] for a numpy array or a torch tensor."""
    return values[torch.as_tensor(index)] if torch.is_tensor(values) else values[index]


def _stratified_indices(labels, n: int, seed: int) -> np.ndarray:
    """`n` sorted indices drawn without replacement, each class in proportion to its size.

    Per-class quotas are rounded by largest remainder (ties to the lower class), so they sum to n.
    """
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
    """(train_images, train_labels, val_images, val_labels): a seeded, class-stratified hold-out.

    Both parts keep the original order. `val_size` 0 gives an empty validation split.
    """
    n = len(labels)
    if val_size == 0:
        return images, labels, images[:0], labels[:0]
    if not 0 < val_size < n:
        raise DataError(f"validation split of {val_size} images is impossible with {n} training "
                        f"images: choose `data.val_split` between 0 and {n - 1}")
    val = _stratified_indices(labels, val_size, seed)
    train = np.setdiff1d(np.arange(n), val, assume_unique=True)
    return _take(images, train), _take(labels, train), _take(images, val), _take(labels, val)


def stratified_subset(images, labels, n: int, seed: int):
    """(images, labels) reduced to `n` samples with the class proportions kept (seeded).

    `n` at or above the data set size returns the inputs unchanged.
    """
    if n >= len(labels):
        return images, labels
    if n <= 0:
        raise DataError(f"subset size must be positive, got {n}: "
                        "pass a positive `data.train_subset`")
    index = _stratified_indices(labels, n, seed)
    return _take(images, index), _take(labels, index)


# --------------------------------------------------------------------------- augmentation


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed from (seed, epoch) alone; different pairs give unrelated streams."""
    digest = hashlib.sha256(f"resnet_cifar:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def crop_flip_batch(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                    padding: int = CROP_PADDING) -> torch.Tensor:
    """Random-crop and flip a batch in one gather, with no per-image Python.

    images (B, C, H, W) any dtype; offsets (B, 2) integers (dy, dx) in [0, 2 * padding]: where
    each crop starts in the zero-padded image; flips (B,) bool: mirror that crop left-right.
    Returns (B, C, H, W): image i is padded[i, :, dy:dy + H, dx:dx + W], mirrored if flips[i].
    """
    b, c, h, w = images.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    assert b * c * hp * wp < 2**31, "batch too large for int32 indices"
    padded = F.pad(images, (padding, padding, padding, padding)).contiguous()  # (B, C, Hp, Wp)
    # Flat int32 indices into `padded`: index_select with them is several times faster on CPU
    # than 4-tensor advanced indexing, and the same on GPU.
    arange = partial(torch.arange, dtype=torch.int32, device=images.device)
    offsets = offsets.to(torch.int32)
    rows = offsets[:, :1] + arange(h)  # (B, H): padded row of each output row
    cols = arange(w).expand(b, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:]  # (B, W), mirrored
    planes = (arange(b)[:, None] * c + arange(c)) * (hp * wp)  # (B, C): where each plane starts
    index = (planes[:, :, None, None] + (rows * wp)[:, None, :, None]
             + cols[:, None, None, :])  # (B, C, H, W)
    return padded.view(-1).index_select(0, index.view(-1)).view(b, c, h, w)


# --------------------------------------------------------------------------- loader


class DeviceLoader:
    """Batches (x, y) of a data set held on `device` as one uint8 tensor.

    train=True: a fresh shuffle each epoch, the last incomplete batch dropped, and (augment=
    "standard") a random crop of the image zero-padded by 4 pixels plus a left-right flip with
    probability 0.5, drawn per image. train=False: fixed order, last batch kept, no augmentation.
    x is float (B, 3, 32, 32) normalized as (x / 255 - mean) / std; y is int64 (B,). The
    statistics are `normalization` when given, else `mean` and `std`.

    Call `set_epoch(epoch)` before each epoch, as with DistributedSampler: an epoch's order and
    augmentation depend only on (seed, epoch), so iterating twice without it repeats the epoch.

    DDP: every rank draws the same permutation, truncated to a multiple of world_size, and takes
    perm[rank::world_size], so ranks see disjoint samples and run the same number of steps. The
    crop and flip of a sample depend on its position in the permutation, not on world_size.
    Evaluation shards as rank::world_size without padding; the caller sums counts across ranks.
    `pin_memory` pins the batches when the data stays on the CPU (for a later copy to a GPU).
    """

    def __init__(self, images, labels, *, batch_size: int, train: bool, augment: str = "standard",
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
                 seed: int = 0, device: str | torch.device = "cpu", channels_last: bool = False,
                 rank: int = 0, world_size: int = 1, dtype: torch.dtype = torch.float32,
                 pin_memory: bool = False, normalization: Normalization | None = None):
        if augment not in AUGMENTATIONS:
            raise DataError(f"unknown augmentation {augment!r}: choose one of "
                            f"{', '.join(AUGMENTATIONS)}")
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.device = torch.device(device)
        self.images = _uint8_images(images).to(self.device)  # (N, 3, H, W) uint8, moved once
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.batch_size, self.train, self.augment = batch_size, train, augment
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size
        self.channels_last, self.dtype, self.pin_memory = channels_last, dtype, pin_memory
        self.normalization = normalization or Normalization.explicit(mean, std)
        # (x / 255 - mean) / std == x * scale - shift, fused into two in-place ops per batch.
        self._scale, self._shift = self.normalization.scale_shift(self.device, dtype)
        if train and len(self) == 0:
            raise DataError(f"batch size {batch_size} exceeds the {self._per_rank()} training "
                            "images per process, so an epoch would have no step: lower it")

    # ---- sizes

    def _per_rank(self) -> int:
        """Samples of this rank per epoch before batching."""
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

    # ---- epoch state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    # ---- iteration

    def _epoch_plan(self):
        """(indices (S,), offsets (S, 2) or None, flips (S,) or None) of this rank's epoch."""
        n = len(self.images)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size), None, None
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator)
        # Drawn for every position before sharding, so augmentation ignores world_size.
        offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=generator)
        flips = torch.randint(0, 2, (n,), generator=generator).bool()
        mine = slice(self.rank, n - n % self.world_size, self.world_size)
        keep = self.num_samples  # whole batches only
        if self.augment == "none":
            return order[mine][:keep], None, None
        return order[mine][:keep], offsets[mine][:keep], flips[mine][:keep]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices, offsets, flips = (t if t is None else t.to(self.device)
                                   for t in self._epoch_plan())
        for start in range(0, len(indices), self.batch_size):
            batch = slice(start, start + self.batch_size)
            x = self.images[indices[batch]]  # (B, 3, 32, 32) uint8
            if offsets is not None:
                x = crop_flip_batch(x, offsets[batch], flips[batch])
            yield self._finish(x, self.labels[indices[batch]])

    def _finish(self, x: torch.Tensor, y: torch.Tensor):
        """uint8 → normalized float in the requested memory format (and pinned if asked)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.to(self.dtype).mul_(self._scale).sub_(self._shift)
        if self.pin_memory and self.device.type == "cpu" and torch.cuda.is_available():
            x, y = x.pin_memory(), y.pin_memory()
        return x, y


def _uint8_images(images) -> torch.Tensor:
    tensor = torch.as_tensor(images)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4:
        shape = tuple(tensor.shape)
        raise ValueError(f"images must be uint8 (N, C, H, W), not {tensor.dtype} {shape}")
    return tensor
