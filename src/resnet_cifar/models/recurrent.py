"""The original repository's "ResNet + ConvRNN" and "ResNet + ConvGRU": a recurrent cell in series
between each block's two convs, its state threaded along a stage from zeros (docs/models.md)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from resnet_cifar.models.cells import ConvGRUCell, ConvRNNCell
from resnet_cifar.models.registry import build_model, check_choice, register_model
from resnet_cifar.models.resnet import CifarResNet, blocks_per_stage, check_shortcut, make_shortcut

CELLS = {"convrnn": ConvRNNCell, "convgru": ConvGRUCell}


class RecurrentBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, rnn: nn.Module, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.rnn = rnn
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        identity = self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        h = self.rnn(out, h)  # (B, planes, H, W)
        out = self.bn2(self.conv2(h))
        return F.relu(out + identity), h


class RecurrentResNet(CifarResNet):
    """A CIFAR ResNet whose blocks pass a hidden state along each stage."""

    def forward_stage(self, index: int, stage: nn.Sequential, x: Tensor,
                      state: object) -> tuple[Tensor, None]:
        h = None  # explicit reset: zeros at each stage's first block, for every batch
        for block in stage:
            x, h = block(x, h)
        return x, None  # the memory stays in its stage


def recurrent_resnet(depth: int, cell: str, num_classes: int = 10, shortcut: str = "B",
                     **cell_kwargs) -> RecurrentResNet:
    """A CIFAR ResNet of depth 6n+2 with a ``cell`` in series in every block (ValueError if bad)."""
    num_blocks = blocks_per_stage(depth)
    check_choice("cell", cell, tuple(CELLS))
    shortcut = check_shortcut(shortcut)
    cell_cls = CELLS[cell]

    def make_block(in_planes: int, planes: int, stride: int) -> nn.Module:
        rnn = cell_cls(planes, planes, **cell_kwargs)
        return RecurrentBasicBlock(in_planes, planes, stride, rnn, shortcut)

    return RecurrentResNet(num_blocks, make_block, num_classes)


def convgru_resnet(depth: int, num_classes: int = 10, shortcut: str = "B",
                   gru_variant: str = "original") -> RecurrentResNet:
    """gru_variant="original" keeps the original repository's candidate (it sees h and r*h);
    "textbook" uses r*h alone (Cho et al.)."""
    check_choice("gru_variant", gru_variant, ConvGRUCell.variants)
    return recurrent_resnet(depth, "convgru", num_classes, shortcut, variant=gru_variant)


@register_model(recurrent_resnet)
def resnet20_convrnn(pretrained=False, **kwargs) -> RecurrentResNet:
    """ResNet-20 with a ConvRNN cell in series in every block (original repository)."""
    return build_model("resnet20_convrnn", pretrained, depth=20, cell="convrnn", **kwargs)


@register_model(convgru_resnet, aliases={"gru_variant": {"seed": "original"}})  # its old name
def resnet20_convgru(pretrained=False, **kwargs) -> RecurrentResNet:
    """ResNet-20 with a ConvGRU cell in series in every block (original repository)."""
    return build_model("resnet20_convgru", pretrained, depth=20, **kwargs)
