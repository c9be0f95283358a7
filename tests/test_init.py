"""The recipe's initializations (`zero_init_residual`, `stem_init`): what each sets, that the
architecture and state_dict stay, how the whitening images are drawn, and an exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import stop_after
from test_ema import config, tiny_data  # noqa: F401  (the tiny data is a fixture)

from resnet_cifar.config import build_config
from resnet_cifar.engine.inference import Splits
from resnet_cifar.engine.runtime import DistContext, StopRequested
from resnet_cifar.engine.setup import build_model, whitening_images
from resnet_cifar.engine.train import train
from resnet_cifar.models import count_parameters, create_model
from resnet_cifar.models.init import residual_blocks, whiten_stem, zero_init_residual

OPTIONS = {"zero_init_residual": True, "stem_init": "whitening"}


@pytest.mark.parametrize("name", ["resnet20", "resnet20_convgru", "regnet20_convlstm"])
def test_zero_init_makes_every_block_its_shortcut(name):
    torch.manual_seed(0)
    model = create_model(name)
    keys = model.state_dict().keys()
    assert zero_init_residual(model) == 9  # 3 stages x 3 blocks at depth 20
    assert model.state_dict().keys() == keys
    for block in residual_blocks(model):
        assert not block.bn2.weight.any()
    if name == "resnet20":  # a plain block now computes relu(shortcut(x)), in training too
        x = torch.randn(4, 16, 8, 8)
        for block in (model.layer1[0], model.layer2[0]):
            x_in = x if block is model.layer1[0] else torch.randn(4, 16, 8, 8)
            expected = F.relu(block.bn2.bias.view(1, -1, 1, 1) + block.shortcut(x_in))
            torch.testing.assert_close(block.train()(x_in), expected)


def correlated_images(n: int = 200, seed: int = 0) -> torch.Tensor:
    """Smooth images with correlated channels: a patch covariance far from the identity."""
    g = torch.Generator().manual_seed(seed)
    base = F.avg_pool2d(torch.randn(n, 1, 36, 36, generator=g), 5, stride=1)  # 32 x 32
    return torch.cat([base, 0.8 * base + 0.2 * torch.randn(n, 1, 32, 32, generator=g),
                      torch.randn(n, 1, 32, 32, generator=g)], dim=1)


def test_whitened_stem_outputs_unit_uncorrelated_pairs_of_opposite_sign():
    images = correlated_images()
    model = create_model("resnet20")
    whiten_stem(model, images, eps=0.0)
    out = F.conv2d(images, model.conv1.weight)  # the patches whitening measured: no padding
    half = out[:, :8].permute(1, 0, 2, 3).reshape(8, -1)
    torch.testing.assert_close(half @ half.T / half.shape[1], torch.eye(8), atol=2e-3, rtol=0)
    torch.testing.assert_close(out[:, 8:], -out[:, :8])
    # the top directions: each of the eight carries more of the patches' raw variance than the
    # 9th-largest direction does, which random He-normal filters need not
    unit = model.conv1.weight[:8].flatten(1)
    unit = unit / unit.norm(dim=1, keepdim=True)
    patches = images.unfold(2, 3, 1).unfold(3, 3, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 27)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches))
    captured = ((patches @ unit.T) ** 2).mean(0)
    assert (captured > eigenvalues[-9] * 1.001).all()


def test_whiten_stem_refuses_shapes_it_cannot_whiten():
    model = create_model("resnet20")
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
        whiten_stem(model, torch.randn(10, 1, 32, 32))
    model.conv1 = torch.nn.Conv2d(3, 15, 3, padding=1, bias=False)
    with pytest.raises(ValueError, match="even number"):
        whiten_stem(model, torch.randn(10, 3, 32, 32))


def class_sorted_splits(n_per_class: int = 30) -> Splits:
    """A training split listed class by class, each class its own brightness (as an image
    folder lists it)."""
    labels = np.repeat(np.arange(10), n_per_class)
    images = np.broadcast_to((labels * 25).astype(np.uint8)[:, None, None, None],
                             (len(labels), 3, 32, 32)).copy()
    empty = np.zeros((0, 3, 32, 32), np.uint8)
    return Splits(images, labels, empty, labels[:0], empty, labels[:0], [str(i) for i in range(10)],
                  (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), val_is_test=True, source="x")


def test_whitening_images_are_drawn_across_the_split_without_touching_the_rngs():
    splits = class_sorted_splits()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    images = whitening_images(splits, seed=1, count=60)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    classes = torch.round((images[:, 0, 0, 0] * 0.25 + 0.5) * 255 / 25).long()
    assert len(classes.unique()) >= 8  # the first 60 would be classes 0 and 1 only
    assert torch.equal(images, whitening_images(splits, seed=1, count=60))
    assert not torch.equal(images, whitening_images(splits, seed=2, count=60))
    # normalized as the loader normalizes: (x / 255 - mean) / std
    pixel = splits.train_images[0, 0, 0, 0] / 255
    assert float(whitening_images(splits, 0, 300)[0, 0, 0, 0]) == pytest.approx((pixel - .5) / .25)


def test_build_model_needs_the_images_for_a_whitened_stem():
    cfg = build_config(overrides={"stem_init": "whitening"})
    with pytest.raises(ValueError, match="needs the training images"):
        build_model(cfg, 10, torch.device("cpu"), DistContext())
    model, params, _ = build_model(cfg, 10, torch.device("cpu"), DistContext(),
                                   stem_images=correlated_images(20))
    assert params == count_parameters(create_model("resnet20")) == 272_474


def test_a_run_with_both_starts_there_says_so_and_resumes_bitwise(tiny_data, tmp_path):  # noqa: F811
    full = train(config(tiny_data, tmp_path / "full", epochs=2, **OPTIONS), progress=False)
    with pytest.raises(StopRequested):
        train(config(tiny_data, tmp_path / "cut", epochs=2, **OPTIONS), progress=False,
              callbacks=[stop_after(1, 2)])
    resumed = train(resume=tmp_path / "cut", progress=False)
    a = torch.load(tmp_path / "full" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val_acc"] for r in full.history] == [r["val_acc"] for r in resumed.history]
    config_text = (tmp_path / "full" / "config.toml").read_text()
    assert "zero_init_residual = true" in config_text and 'stem_init = "whitening"' in config_text
    log = (tmp_path / "full" / "train.log").read_text()
    assert "residual branches start at 0" in log and "starts as a whitening" in log
    # each option changed the start: the same seed without it trains to another loss
    for name, options in {"plain": {}, "zero-only": {"zero_init_residual": True}}.items():
        other = train(config(tiny_data, tmp_path / name, epochs=2, **options), progress=False)
        assert other.history[0]["train_loss"] != full.history[0]["train_loss"], name
