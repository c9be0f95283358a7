"""DeviceLoader: augmentation geometry, determinism, batching, DDP shards; splits; normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resnet_cifar.data import (
    DeviceLoader,
    crop_flip_batch,
    normalization_stats,
    split_train_val,
    stratified_subset,
)
from resnet_cifar.errors import DataError

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def coded_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixels say where they came from: channel 0 the column, channel 1 the row,
    channel 2 the label (all >= 10, so they differ from the zero padding)."""
    labels = np.arange(n, dtype=np.int64) % 10
    images = np.empty((n, 3, 32, 32), dtype=np.uint8)
    images[:, 0] = 10 + 7 * np.arange(32)[None, None, :]
    images[:, 1] = 10 + 7 * np.arange(32)[None, :, None]
    images[:, 2] = (10 + 20 * labels)[:, None, None]
    return images, labels


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """Undo the identity normalization: float in [0, 1] back to the uint8 pixel values."""
    return (x * 255).round().to(torch.uint8).numpy()


def all_batches(loader):
    xs, ys = zip(*loader, strict=True) if len(loader) else ((), ())
    return list(xs), list(ys)


# --------------------------------------------------------------------------- augmentation


def test_crop_flip_batch_matches_numpy_by_hand():
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    offsets = torch.tensor([[0, 0], [8, 8], [3, 5], [4, 4]])
    flips = torch.tensor([False, True, True, False])
    out = crop_flip_batch(torch.from_numpy(images), offsets, flips).numpy()
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for i, ((dy, dx), flip) in enumerate(zip(offsets.tolist(), flips.tolist(), strict=True)):
        crop = padded[i, :, dy:dy + 32, dx:dx + 32]
        np.testing.assert_array_equal(out[i], crop[:, :, ::-1] if flip else crop)
    np.testing.assert_array_equal(out[3], images[3])  # offset (4, 4) without flip: unchanged


def test_standard_augmentation_geometry_flip_rate_and_labels():
    images, labels = coded_images(2000)
    loader = DeviceLoader(images, labels, batch_size=250, train=True, seed=1, **IDENTITY)
    xs, ys = all_batches(loader)
    x, y = as_uint8(torch.cat(xs)), torch.cat(ys).numpy()  # (2000, 3, 32, 32), (2000,)
    padded = np.pad(images[:1], ((0, 0), (0, 0), (4, 4), (4, 4)))[0]
    # The centre pixel is always inside the image: it tells the crop offset and the flip.
    src_col = (x[:, 0, 16, 16].astype(int) - 10) // 7
    src_row = (x[:, 1, 16, 16].astype(int) - 10) // 7
    flipped = x[:, 0, 16, 15] > x[:, 0, 16, 16]
    dy = src_row - 16 + 4
    dx = np.where(flipped, src_col - 11, src_col - 16 + 4)
    assert set(dy.tolist()) == set(range(9)) and set(dx.tolist()) == set(range(9))
    assert 0.45 < flipped.mean() < 0.55
    for i in range(len(x)):  # every output is exactly that crop of the zero-padded image
        crop = padded[:, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        expected = crop[:, :, ::-1] if flipped[i] else crop
        np.testing.assert_array_equal(x[i, :2], expected[:2])
    # Labels travel with their images: channel 2 encodes the label wherever it is not padding.
    inside = x[:, 2, 16, 16]
    np.testing.assert_array_equal((inside.astype(int) - 10) // 20, y)


def test_augment_none_and_eval_keep_pixels():
    images, labels = coded_images(50)
    for loader in (DeviceLoader(images, labels, batch_size=10, train=True, augment="none",
                                **IDENTITY),
                   DeviceLoader(images, labels, batch_size=10, train=False, **IDENTITY)):
        xs, ys = all_batches(loader)
        x = as_uint8(torch.cat(xs))
        np.testing.assert_array_equal(x[:, 0], images[:len(x), 0])  # no crop, no flip
        np.testing.assert_array_equal(x[:, 2, 0, 0], 10 + 20 * torch.cat(ys).numpy())


def test_normalization_and_dtype():
    images, labels = coded_images(6)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12), (torch.bfloat16, 2e-2)):
        loader = DeviceLoader(images, labels, batch_size=6, train=False, mean=mean, std=std,
                              dtype=dtype)
        x, y = next(iter(loader))
        expected = (images / 255 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
        assert x.dtype == dtype and y.dtype == torch.int64
        np.testing.assert_allclose(x.double().numpy(), expected, atol=tol * 4)


def test_channels_last_output():
    images, labels = coded_images(8)
    plain = DeviceLoader(images, labels, batch_size=4, train=True, seed=5)
    fast = DeviceLoader(images, labels, batch_size=4, train=True, seed=5, channels_last=True)
    for (x1, _), (x2, _) in zip(plain, fast, strict=True):
        assert x2.is_contiguous(memory_format=torch.channels_last)
        assert not x1.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(x1, x2, rtol=0, atol=0)


# --------------------------------------------------------------------------- determinism


def batches_of(seed: int, epoch: int, **kwargs):
    images, labels = coded_images(64)
    loader = DeviceLoader(images, np.arange(64), batch_size=16, train=True, seed=seed, **kwargs)
    loader.set_epoch(epoch)
    return all_batches(loader)


def test_same_seed_and_epoch_give_identical_batches():
    xs1, ys1 = batches_of(7, 3)
    xs2, ys2 = batches_of(7, 3)
    for a, b in zip(xs1 + ys1, xs2 + ys2, strict=True):
        assert torch.equal(a, b)


def test_other_epoch_or_seed_reshuffles():
    base = torch.cat(batches_of(7, 3)[1])
    assert not torch.equal(base, torch.cat(batches_of(7, 4)[1]))
    assert not torch.equal(base, torch.cat(batches_of(8, 3)[1]))
    assert sorted(base.tolist()) == list(range(64))  # a permutation, every sample once


def test_iterating_twice_without_set_epoch_repeats_the_epoch():
    images, labels = coded_images(32)
    loader = DeviceLoader(images, labels, batch_size=8, train=True, seed=0)
    first, second = all_batches(loader)[0], all_batches(loader)[0]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_state_dict_resumes_exactly():
    images, labels = coded_images(40)
    original = DeviceLoader(images, labels, batch_size=8, train=True, seed=11)
    original.set_epoch(6)
    resumed = DeviceLoader(images, labels, batch_size=8, train=True, seed=0)
    resumed.load_state_dict(original.state_dict())
    assert resumed.state_dict() == {"seed": 11, "epoch": 6}
    for (x1, y1), (x2, y2) in zip(original, resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


# --------------------------------------------------------------------------- batching and DDP


def test_train_drops_last_batch_and_eval_keeps_it():
    images, labels = coded_images(10)
    train = DeviceLoader(images, np.arange(10), batch_size=4, train=True)
    evaluation = DeviceLoader(images, np.arange(10), batch_size=4, train=False)
    assert len(train) == 2 and train.num_samples == 8
    assert [len(y) for _, y in train] == [4, 4]
    assert len(evaluation) == 3 and evaluation.num_samples == 10
    _, ys = all_batches(evaluation)
    assert [len(y) for y in ys] == [4, 4, 2]
    assert torch.cat(ys).tolist() == list(range(10))  # fixed order


def test_ddp_shards_are_disjoint_equal_and_cover_the_truncated_permutation():
    images, _ = coded_images(103)
    ids = np.arange(103)
    single = DeviceLoader(images, ids, batch_size=1, train=True, seed=4)
    single.set_epoch(2)
    xs, ys = all_batches(single)
    perm, x_single = torch.cat(ys), torch.cat(xs)  # the whole permutation, augmented
    shards, steps = [], []
    for rank in range(4):
        loader = DeviceLoader(images, ids, batch_size=5, train=True, seed=4, rank=rank,
                              world_size=4)
        loader.set_epoch(2)
        xs, ys = all_batches(loader)
        steps.append(len(ys))
        shards.append(torch.cat(ys))
        assert loader.num_samples == 25 and len(loader) == 5
        # Each rank holds perm[rank::4] of the permutation truncated to 100, augmented the same
        # way as without DDP.
        assert torch.equal(shards[-1], perm[:100][rank::4])
        assert torch.equal(torch.cat(xs), x_single[:100][rank::4])
    assert steps == [5, 5, 5, 5]
    union = torch.cat(shards)
    assert len(set(union.tolist())) == 100 and set(union.tolist()) == set(perm[:100].tolist())


def test_ddp_eval_shards_every_sample_once_without_padding():
    images, _ = coded_images(10)
    seen = []
    for rank in range(3):
        loader = DeviceLoader(images, np.arange(10), batch_size=2, train=False, rank=rank,
                              world_size=3)
        ys = torch.cat(all_batches(loader)[1]).tolist()
        assert ys == list(range(rank, 10, 3)) and loader.num_samples == len(ys)
        seen += ys
    assert sorted(seen) == list(range(10))


def test_accepts_tensors_and_rejects_bad_arguments():
    images, labels = coded_images(8)
    loader = DeviceLoader(torch.from_numpy(images), torch.from_numpy(labels), batch_size=4,
                          train=False)
    assert loader.images.dtype == torch.uint8 and len(loader) == 2
    with pytest.raises(DataError, match="unknown augmentation 'autoaugment'.*standard, none"):
        DeviceLoader(images, labels, batch_size=4, train=True, augment="autoaugment")
    with pytest.raises(DataError, match="batch size 16 exceeds the 8 training images"):
        DeviceLoader(images, labels, batch_size=16, train=True)
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.astype(np.float32), labels, batch_size=4, train=False)


# --------------------------------------------------------------------------- splits


def uneven_labels() -> np.ndarray:
    return np.repeat(np.arange(3), [60, 30, 10])  # (100,)


def test_split_train_val_is_stratified_disjoint_and_seeded():
    labels = uneven_labels()
    images = np.arange(100)  # stand-in "images" that name their index
    train_x, train_y, val_x, val_y = split_train_val(images, labels, 20, seed=3)
    assert np.bincount(val_y).tolist() == [12, 6, 2]
    assert sorted(np.concatenate([train_x, val_x]).tolist()) == list(range(100))
    np.testing.assert_array_equal(labels[train_x], train_y)
    assert (np.diff(train_x) > 0).all() and (np.diff(val_x) > 0).all()  # original order kept
    again = split_train_val(images, labels, 20, seed=3)
    np.testing.assert_array_equal(again[2], val_x)
    assert not np.array_equal(split_train_val(images, labels, 20, seed=4)[2], val_x)


def test_split_train_val_rounding_and_edges():
    labels = uneven_labels()
    _, _, _, val_y = split_train_val(np.arange(100), labels, 7, seed=0)
    assert len(val_y) == 7 and np.bincount(val_y, minlength=3).tolist() == [4, 2, 1]
    tx, ty, vx, vy = split_train_val(np.arange(100), labels, 0, seed=0)
    assert len(tx) == 100 and vx.shape == (0,) and vy.shape == (0,)
    with pytest.raises(DataError, match="`data.val_split`"):
        split_train_val(np.arange(100), labels, 100, seed=0)


def test_split_train_val_on_tensors():
    images = torch.arange(100)
    tx, ty, vx, vy = split_train_val(images, torch.from_numpy(uneven_labels()), 10, seed=0)
    assert torch.is_tensor(tx) and len(vx) == 10 and len(tx) == 90


def test_stratified_subset():
    labels = uneven_labels()
    images, subset_labels = stratified_subset(np.arange(100), labels, 50, seed=1)
    assert np.bincount(subset_labels).tolist() == [30, 15, 5]
    np.testing.assert_array_equal(labels[images], subset_labels)
    full = stratified_subset(np.arange(100), labels, 500, seed=1)
    assert len(full[0]) == 100


# --------------------------------------------------------------------------- normalization


def test_normalization_stats_modes():
    class Arrays:
        mean, std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)

    assert normalization_stats("dataset", Arrays()) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert normalization_stats("dataset", ((1, 1, 1), (2, 2, 2))) == ((1.0,) * 3, (2.0,) * 3)
    assert normalization_stats("half", None) == ((0.5,) * 3, (0.5,) * 3)
    assert normalization_stats("imagenet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with pytest.raises(DataError, match="unknown normalization 'zca'.*dataset, half, imagenet"):
        normalization_stats("zca", Arrays())
