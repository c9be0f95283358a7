"""The training loader's augmentation options: alternating flip, cutout and crop padding.

Images come from test_data_loader.coded_images: channel 0 encodes the column, so a batch says
whether each image was mirrored, and no pixel is 0 (cutout's fill) unless padding or cutout made it.
Labels are the image indices, so every image can be tracked through shuffled epochs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_data_loader import IDENTITY, all_batches, as_uint8, coded_images

from resnet_cifar.config import CROP_PADDING
from resnet_cifar.data import DeviceLoader, crop_flip_batch
from resnet_cifar.data.augment import alternating_flips, cutout_batch
from resnet_cifar.data.loader import epoch_seed
from resnet_cifar.errors import DataError

N = 64  # images; a multiple of every batch size used, so each epoch shows every image once


def loader(**kwargs) -> DeviceLoader:
    images, _ = coded_images(N)
    kwargs = {"batch_size": 16, "train": True, "seed": 5, **IDENTITY, **kwargs}
    return DeviceLoader(images, np.arange(N), **kwargs)


def epoch_batches(dl: DeviceLoader, epoch: int):
    dl.set_epoch(epoch)
    xs, ys = all_batches(dl)
    return torch.cat(xs), torch.cat(ys)


def flipped_by_image(dl: DeviceLoader, epoch: int) -> torch.Tensor:
    """(N,) bool: was image i mirrored in `epoch`? Read from the column code of its middle
    pixels, which a crop of at most 4 pixels never pushes into the padding."""
    x, idx = epoch_batches(dl, epoch)
    mirrored = x[:, 0, 16, 16] > x[:, 0, 16, 17]  # columns decrease left to right
    out = torch.empty(N, dtype=torch.bool)
    out[idx] = mirrored
    return out


# --------------------------------------------------------------------------- alternating flip


def test_alternating_flip_flips_each_image_on_alternate_epochs():
    dl = loader(flip="alternating")
    table = torch.stack([flipped_by_image(dl, e) for e in range(6)])  # (epochs, N)
    first = table[0]
    assert 0.25 < first.float().mean() < 0.75  # a per-image coin, not all or none
    for epoch in range(6):
        assert torch.equal(table[epoch], first ^ bool(epoch % 2)), epoch
    # the coin comes from the seed: another seed chooses differently, the same seed the same
    assert not torch.equal(flipped_by_image(loader(flip="alternating", seed=6), 0), first)
    assert torch.equal(flipped_by_image(loader(flip="alternating"), 4), first)


def test_random_flip_does_not_alternate():
    """The table above is not what coin flips give (so that test can tell the modes apart)."""
    dl = loader()
    first = flipped_by_image(dl, 0)
    assert not all(torch.equal(flipped_by_image(dl, e), first ^ bool(e % 2)) for e in (1, 2, 3))


def test_alternating_flip_follows_the_image_not_its_batch():
    """Batch size and DDP sharding change where an image lands, never whether it is flipped."""
    reference = flipped_by_image(loader(flip="alternating"), 3)
    assert torch.equal(flipped_by_image(loader(flip="alternating", batch_size=4), 3), reference)
    sharded = torch.empty(N, dtype=torch.bool)
    for rank in range(2):
        x, idx = epoch_batches(loader(flip="alternating", batch_size=8, rank=rank,
                                      world_size=2), 3)
        sharded[idx] = x[:, 0, 16, 16] > x[:, 0, 16, 17]
    assert torch.equal(sharded, reference)
    assert torch.equal(alternating_flips(torch.tensor([True, False]), 7),
                       torch.tensor([False, True]))


def test_alternating_flip_keeps_order_and_crops_and_none_disables_it():
    """Only the flips change: the same order and crop offsets as the default stream."""
    x_alt, y_alt = epoch_batches(loader(flip="alternating"), 2)
    x_rnd, y_rnd = epoch_batches(loader(), 2)
    assert torch.equal(y_alt, y_rnd)
    # the crop's vertical offset shows in the row code (channel 1) of the middle column, which
    # a mirror leaves in the image; the horizontal one in the column code, up to the mirror
    assert torch.equal(x_alt[:, 1, :, 16], x_rnd[:, 1, :, 16])
    same_flip = flipped_by_image(loader(flip="alternating"), 2) == flipped_by_image(loader(), 2)
    assert torch.equal(x_alt[same_flip[y_alt]], x_rnd[same_flip[y_rnd]])
    torch.testing.assert_close(x_alt[~same_flip[y_alt]], x_rnd[~same_flip[y_rnd]].flip(-1))
    images, _ = coded_images(N)
    x_none, y_none = epoch_batches(loader(flip="alternating", augment="none"), 1)
    expected = torch.from_numpy(images)[y_none].float() / 255
    torch.testing.assert_close(x_none, expected, rtol=0, atol=1e-6)  # no crop, no flip


# --------------------------------------------------------------------------- cutout


def expected_mask(cy: int, cx: int, size: int, h: int = 32, w: int = 32) -> np.ndarray:
    """The square by hand: rows and columns [c - size // 2, c - size // 2 + size), clipped."""
    mask = np.zeros((h, w), dtype=bool)
    top, left = cy - size // 2, cx - size // 2
    mask[max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = True
    return mask


@pytest.mark.parametrize("size", [8, 5])
def test_cutout_batch_zeroes_the_stated_square_clipped_at_the_border(size):
    centres = torch.tensor([[16, 16], [0, 0], [31, 31], [2, 20], [31, 0]])
    x = torch.full((5, 3, 32, 32), 0.7)
    out = cutout_batch(x.clone(), centres, size)
    zeros = (out == 0).numpy()
    for i, (cy, cx) in enumerate(centres.tolist()):
        mask = expected_mask(cy, cx, size)
        for c in range(3):  # every channel, the same square
            np.testing.assert_array_equal(zeros[i, c], mask)
        assert mask.sum() <= size * size
    assert zeros[0, 0].sum() == size * size  # a square inside the image keeps its full area
    assert zeros[1, 0].sum() < size * size and zeros[2, 0].sum() < size * size  # clipped
    torch.testing.assert_close(out[torch.from_numpy(~zeros)], x[torch.from_numpy(~zeros)])


def test_cutout_in_the_loader_fills_the_mean_colour_within_the_square():
    """augment none: no padding, so every zero is cutout's. With a mean that no uint8 pixel
    normalizes to exactly, zeros can only be the fill applied after normalization."""
    size = 8
    stats = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    x_cut, y_cut = epoch_batches(loader(augment="none", cutout=size, **stats), 2)
    x_plain, y_plain = epoch_batches(loader(augment="none", **stats), 2)
    assert torch.equal(y_cut, y_plain) and not (x_plain == 0).any()
    zeros = x_cut == 0  # (N, 3, 32, 32)
    assert torch.equal(zeros, zeros[:, :1].expand_as(zeros))  # all channels alike
    area = zeros[:, 0].sum(dim=(1, 2))
    assert (area > 0).all() and (area <= size * size).all()
    assert (area == size * size).sum() > N // 4  # most centres leave the square whole
    for i in range(N):  # each zero region is one axis-aligned box at most size x size
        rows, cols = torch.nonzero(zeros[i, 0], as_tuple=True)
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert h <= size and w <= size and h * w == area[i]
    assert torch.equal(x_cut[~zeros], x_plain[~zeros])  # nothing else touched


def test_cutout_after_crop_and_flip_keeps_the_default_stream():
    size = 6
    x_cut, y_cut = epoch_batches(loader(cutout=size, channels_last=True), 1)
    x_plain, y_plain = epoch_batches(loader(channels_last=True), 1)
    assert torch.equal(y_cut, y_plain)
    changed = x_cut != x_plain
    assert (x_cut[changed] == 0).all()  # only zeroing, on top of the same crops and flips
    assert (changed[:, 0].sum(dim=(1, 2)) <= size * size).all()
    assert changed.any() and x_cut.is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- crop padding


def crop_shifts(dl: DeviceLoader, epoch: int) -> torch.Tensor:
    """(N,) how many rows each image's crop moved it by, read from the row code of the middle
    pixel (a crop of at most 4 pixels never puts padding there; a mirror leaves rows alone)."""
    x, _ = epoch_batches(dl, epoch)
    return torch.from_numpy((as_uint8(x)[:, 1, 16, 16].astype(int) - 10) // 7 - 16)


@pytest.mark.parametrize("padding", [0, 2, 4])
def test_crop_padding_bounds_the_shift(padding):
    shifts = torch.cat([crop_shifts(loader(crop_padding=padding), epoch) for epoch in range(3)])
    assert (shifts.min(), shifts.max()) == (-padding, padding)  # both reached, never passed


def test_crop_padding_4_is_the_default_stream():
    x_default, y_default = epoch_batches(loader(), 2)
    x_four, y_four = epoch_batches(loader(crop_padding=4), 2)
    assert torch.equal(y_default, y_four) and torch.equal(x_default, x_four)
    with pytest.raises(DataError, match=r"`data.crop_padding` \(--crop-padding\) must be >= 0"):
        loader(crop_padding=-1)


# --------------------------------------------------------------------------- defaults, resume


def test_defaults_draw_exactly_the_documented_stream():
    """flip random, cutout 0: order, crops and flips are the generator's first three draws,
    as before the options existed (earlier runs and their resumes reproduce)."""
    images, _ = coded_images(N)
    seed, epoch = 5, 3
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(N, generator=g)
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (N, 2), generator=g)
    flips = torch.randint(0, 2, (N,), generator=g).bool()
    expected = crop_flip_batch(torch.from_numpy(images)[order], offsets, flips).numpy()
    for dl in (loader(), loader(flip="random", cutout=0)):
        x, y = epoch_batches(dl, epoch)
        assert torch.equal(y, order)
        np.testing.assert_array_equal(as_uint8(x), expected)


def test_resume_mid_epoch_reproduces_the_batches_with_both_options():
    options = {"flip": "alternating", "cutout": 8}
    original = loader(**options)
    run = []  # the uninterrupted run: epochs 0..3
    for epoch in range(4):
        original.set_epoch(epoch)
        run.append(list(original))
    original.set_epoch(2)
    resumed = loader(seed=0, **options)  # a fresh process; its seed comes from the state
    resumed.load_state_dict(original.state_dict())
    done = 2  # steps of epoch 2 completed before the stop
    tail = list(itertools.islice(iter(resumed), done, None))
    resumed.set_epoch(3)
    for (x1, y1), (x2, y2) in zip(run[2][done:] + run[3], tail + list(resumed), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_rejects_unknown_flip_and_negative_cutout():
    with pytest.raises(DataError, match=r"`data.flip` \(--flip\) 'sometimes'.*random, alternating"):
        loader(flip="sometimes")
    with pytest.raises(DataError, match=r"`data.cutout` \(--cutout\) must be >= 0"):
        loader(cutout=-1)


def test_training_with_the_options_resumes_mid_epoch_to_identical_weights(tmp_path):
    """The options reach the training loader from the config, and a run stopped mid-epoch
    resumes to the weights of the uninterrupted run."""
    from data_fixtures import make_cifar10_python_dir
    from test_train import stop_after

    from resnet_cifar.config import build_config
    from resnet_cifar.engine.runtime import StopRequested
    from resnet_cifar.engine.train import train

    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=4, n_test_per_class=2,
                                   seed=0, learnable=True)

    def config(out):
        return build_config(overrides={
            "epochs": 2, "batch_size": 8, "milestones": [], "deterministic": True,
            "threads": 1, "seed": 3, "out": str(out),
            "data": {"path": str(data), "flip": "alternating", "cutout": 8,
                                      "crop_padding": 2}})

    seen = []

    def record(trainer, row):
        loader = trainer.train_loader
        seen.append((loader.flip, loader.cutout, loader.crop_padding))

    train(config(tmp_path / "full"), progress=False, callbacks=[record])
    assert seen[0] == ("alternating", 8, 2)
    assert "crops from 2-pixel padding" in (tmp_path / "full" / "train.log").read_text()
    with pytest.raises(StopRequested):
        train(config(tmp_path / "cut"), progress=False, callbacks=[stop_after(1, 2)])
    train(resume=tmp_path / "cut", progress=False)
    a = torch.load(tmp_path / "full" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pth", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
