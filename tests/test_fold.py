"""BatchNorm folded into the convolutions (models/fold.py): the same logits as the unfolded model,
for every registered model, and the original left untouched."""

from __future__ import annotations

import pytest
import torch
from conftest import DEPTH_20
from torch import nn

from resnet_cifar.models import create_model, list_models
from resnet_cifar.models.fold import fold_batchnorm


def trained_looking(name: str, seed: int = 0) -> nn.Module:
    """``name`` in eval mode with BatchNorm statistics and affine parameters far from their
    initial 0/1, as after training: a fold that ignored any of them would change the logits."""
    torch.manual_seed(seed)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # running stats = the statistics of the batch below
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
    with torch.no_grad():
        model.train()(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    return model.eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_folded_model_computes_the_same_function_in_float64(name):
    """In float64 the fold is exact up to rounding far below float32's: the algebra is right."""
    model = trained_looking(name).double()
    folded = fold_batchnorm(model)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-9)
    report = folded.fold_report
    assert len(report.folded) > 0
    # every BatchNorm is either folded (and gone) or listed as kept
    assert batchnorms(folded) == len(report.kept) == batchnorms(model) - len(report.folded)


@pytest.mark.parametrize("name", DEPTH_20)
def test_folded_float32_logits_are_within_1e_5(name):
    model = trained_looking(name)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(model)(x), model(x), rtol=1e-5, atol=1e-5)


def test_resnet20_folds_every_conv_batchnorm_pair():
    """Stem + 18 block convs + 2 shortcut-B projections; nothing left, the convs gain a bias."""
    folded = fold_batchnorm(trained_looking("resnet20"))
    assert len(folded.fold_report.folded) == 21 and folded.fold_report.kept == []
    assert batchnorms(folded) == 0
    assert ("layer2.0.shortcut.0", "layer2.0.shortcut.1") in folded.fold_report.folded
    assert all(m.bias is not None for m in folded.modules() if isinstance(m, nn.Conv2d))


def test_a_batchnorm_over_a_recurrent_state_is_left_as_it_is():
    """regnet's bn_h normalizes the cell's state, not a conv's output: it cannot be folded."""
    folded = fold_batchnorm(trained_looking("regnet20_convgru"))
    assert "layer1.0.bn_h" in folded.fold_report.kept
    assert isinstance(folded.get_submodule("layer1.0.bn_h"), nn.BatchNorm2d)
    assert not any(bn.endswith("bn_h") for _, bn in folded.fold_report.folded)
    assert ("layer1.0.fuse", "layer1.0.bn_fuse") in folded.fold_report.folded


def test_the_original_model_and_its_state_dict_are_untouched():
    model = trained_looking("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert list(after) == list(before)  # same keys, same order: still loadable by the original
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert batchnorms(model) == 19 + 2 and not hasattr(model, "fold_report")


def test_a_conv_whose_output_also_feeds_something_else_is_not_folded():
    """The BatchNorm reads another tensor than the conv's output: the pair is not folded."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(self.conv(x) + x)  # BN after an add, not after the conv

    torch.manual_seed(0)
    model = Residual().eval()
    model.bn.running_mean.fill_(0.3)
    folded = fold_batchnorm(model, torch.randn(1, 3, 8, 8))
    assert folded.fold_report.folded == [] and folded.fold_report.kept == ["bn"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=0)
