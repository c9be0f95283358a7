"""ResNet for CIFAR (He et al. 2016, section 4.2): depth 6n+2, three stages of n basic blocks.

Layer names (conv1, bn1, layer1..3, linear; block.conv1/bn1/conv2/bn2/shortcut) are those of the
original repository and of akamaster/pytorch_resnet_cifar10: they are the checkpoint format.
resnet20 has 272,474 parameters with shortcut "B" and 269,722 with "A".
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from resnet_cifar.models.registry import build_model, check_choice, register_model

STAGE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)
SHORTCUTS = ("A", "B")


def blocks_per_stage(depth: int) -> int:
    """n of a CIFAR ResNet of depth 6n+2; ValueError for any other depth."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
    return (depth - 2) // 6


def check_shortcut(shortcut: str) -> str:
    """The shortcut option, upper-cased ("a" means "A"); ValueError unless "A" or "B"."""
    kind = str(shortcut).upper()
    check_choice("shortcut", kind, SHORTCUTS)
    return kind


class PadShortcut(nn.Module):
    """Option A, parameter-free: subsample by the stride, zero-pad the new channels on both sides
    (as He et al. and akamaster do)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = (planes - in_planes) // 2
        self.extra = planes - in_planes - self.pad

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.extra))


def make_shortcut(in_planes: int, planes: int, stride: int, kind: str) -> nn.Module:
    """Identity when shape is kept; else option "A" (pad) or "B" (1x1 conv + BN, named 0 and 1)."""
    assert kind in SHORTCUTS, kind  # builders check the option (check_shortcut)
    if stride == 1 and in_planes == planes:
        return nn.Sequential()
    if kind == "A":
        return PadShortcut(in_planes, planes, stride)
    return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: Tensor) -> Tensor:
        identity = self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


def kaiming_init(module: nn.Module) -> None:
    """He-normal init of every conv and linear weight, as the original code did."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)


class CifarResNet(nn.Module):
    """Stem -> three stages of ``make_block(in_planes, planes, stride)`` -> avg pool -> linear.
    The plain, recurrent and regulated networks differ in their blocks and ``forward_stage``."""

    def __init__(self, num_blocks: int, make_block: Callable[[int, int, int], nn.Module],
                 num_classes: int = 10, widths: tuple[int, int, int] = STAGE_WIDTHS):
        super().__init__()
        if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for index, (planes, stride) in enumerate(zip(widths, STAGE_STRIDES, strict=True), start=1):
            blocks = [make_block(in_planes if i == 0 else planes, planes, stride if i == 0 else 1)
                      for i in range(num_blocks)]
            in_planes = planes
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.linear = nn.Linear(widths[-1], num_classes)
        self.apply(kaiming_init)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3]

    def forward_stage(self, index: int, stage: nn.Sequential, x: Tensor,
                      state: object) -> tuple[Tensor, object]:
        """Stage ``index`` (from 1) on x -> (output, state for the next stage); ``state`` is the
        previous stage's (None before the first)."""
        return stage(x), None

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, 32, 32) -> (B, 64, 8, 8); a fresh state for every batch."""
        out = F.relu(self.bn1(self.conv1(x)))
        state = None
        for index, stage in enumerate(self.stages, start=1):
            out, state = self.forward_stage(index, stage, out, state)
        return out

    def forward(self, x: Tensor) -> Tensor:
        out = self.forward_features(x)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 64)
        return self.linear(out)


def resnet(depth: int, num_classes: int = 10, shortcut: str = "B") -> CifarResNet:
    """A CIFAR ResNet of depth 6n+2; invalid options raise ValueError."""
    num_blocks = blocks_per_stage(depth)
    shortcut = check_shortcut(shortcut)

    def make_block(in_planes: int, planes: int, stride: int) -> nn.Module:
        return BasicBlock(in_planes, planes, stride, shortcut)

    return CifarResNet(num_blocks, make_block, num_classes)


@register_model(resnet)
def resnet20(pretrained=False, **kwargs) -> CifarResNet:
    """ResNet-20 (He et al. 2016), 3 basic blocks per stage."""
    return build_model("resnet20", pretrained, depth=20, **kwargs)


@register_model(resnet)
def resnet32(pretrained=False, **kwargs) -> CifarResNet:
    """ResNet-32 (He et al. 2016), 5 basic blocks per stage."""
    return build_model("resnet32", pretrained, depth=32, **kwargs)


@register_model(resnet)
def resnet44(pretrained=False, **kwargs) -> CifarResNet:
    """ResNet-44 (He et al. 2016), 7 basic blocks per stage."""
    return build_model("resnet44", pretrained, depth=44, **kwargs)


@register_model(resnet)
def resnet56(pretrained=False, **kwargs) -> CifarResNet:
    """ResNet-56 (He et al. 2016), 9 basic blocks per stage."""
    return build_model("resnet56", pretrained, depth=56, **kwargs)


@register_model(resnet)
def resnet110(pretrained=False, **kwargs) -> CifarResNet:
    """ResNet-110 (He et al. 2016), 18 basic blocks per stage."""
    return build_model("resnet110", pretrained, depth=110, **kwargs)
