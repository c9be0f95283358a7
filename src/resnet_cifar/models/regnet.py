"""The regulated residual networks of Xu et al. 2022 (arXiv 2101.00590), not Radosavovic et al.'s
RegNetX / RegNetY. Equations, state transitions and parameter names: docs/models.md."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_cifar.models.cells import ConvGRUCell, ConvLSTMCell, ConvRNNCell
from resnet_cifar.models.registry import build_model, check_choice, register_model
from resnet_cifar.models.resnet import (
    STAGE_STRIDES,
    STAGE_WIDTHS,
    CifarResNet,
    blocks_per_stage,
    check_shortcut,
    kaiming_init,
    make_shortcut,
)

# A block's recurrent state: (h,) for ConvRNN / ConvGRU, (h, c) for ConvLSTM; None means zeros.
State = tuple[Tensor, ...]

CELL_NAMES = ("convlstm", "convgru", "convrnn")
STATE_TRANSITIONS = ("project", "reset")
EFFICIENT_GROUPS = 4  # groups of the efficient cell's 1x1 and 3x3 gate convs


def make_cell(cell: str, in_channels: int, hidden_channels: int, groups: int = 1) -> nn.Module:
    """The regulator: ConvLSTM (the paper's main choice), textbook ConvGRU, or ConvRNN."""
    if cell == "convlstm":
        return ConvLSTMCell(in_channels, hidden_channels, groups=groups)
    if cell == "convgru":
        return ConvGRUCell(in_channels, hidden_channels, variant="textbook", groups=groups)
    if cell == "convrnn":
        return ConvRNNCell(in_channels, hidden_channels, groups=groups)
    raise ValueError(f"unknown regulator cell {cell!r}; choose from {CELL_NAMES}")


def step_cell(cell: nn.Module, x: Tensor, state: State | None) -> State:
    """One step of any cell, with its state as a tuple: (h,) or (h, c)."""
    if cell.num_states == 2:
        return tuple(cell(x, state))
    return (cell(x, None if state is None else state[0]),)


class RegulatedBasicBlock(nn.Module):
    """The regulated basic block: forward(x, state) -> (out, state)."""

    def __init__(self, in_planes: int, planes: int, stride: int, rnn: nn.Module, shortcut: str):
        super().__init__()
        hidden = rnn.hidden_channels
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.rnn = rnn
        self.bn_h = nn.BatchNorm2d(hidden)
        self.fuse = nn.Conv2d(planes + hidden, planes, 1, bias=False)
        self.bn_fuse = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        identity = self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))  # X2: (B, planes, H, W)
        state = step_cell(self.rnn, out, state)  # raw state, each (B, hidden, H, W)
        memory = F.relu(self.bn_h(state[0]))
        out = F.relu(self.bn_fuse(self.fuse(torch.cat([out, memory], dim=1))))  # X3
        out = self.bn2(self.conv2(out))  # X4
        return F.relu(out + identity), state


class StateTransition(nn.Module):
    """Carries a stage's last state into the next stage: strided 1x1 conv + BN for h (and for c,
    with its own weights). Linear, like shortcut "B": no ReLU, so the sign of h and c survives."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, num_states: int):
        super().__init__()
        self.h = make_shortcut(in_channels, out_channels, stride, "B")
        if num_states == 2:
            self.c = make_shortcut(in_channels, out_channels, stride, "B")

    def forward(self, state: State) -> State:
        if len(state) == 2:
            return self.h(state[0]), self.c(state[1])
        return (self.h(state[0]),)


class RegNet(CifarResNet):
    """A CIFAR ResNet of regulated blocks whose recurrent state runs along each stage and, with
    ``state_transition="project"``, from stage to stage."""

    def __init__(self, num_blocks: int, cell: str, num_classes: int = 10, shortcut: str = "B",
                 hidden_ratio: float = 1.0, state_transition: str = "project",
                 efficient: bool = False):
        hidden = hidden_widths(hidden_ratio)
        groups = EFFICIENT_GROUPS if efficient else 1

        def make_block(in_planes: int, planes: int, stride: int) -> nn.Module:
            rnn = make_cell(cell, planes, hidden_width(planes, hidden_ratio), groups)
            return RegulatedBasicBlock(in_planes, planes, stride, rnn, shortcut)

        super().__init__(num_blocks, make_block, num_classes)
        self.state_transition = state_transition
        if state_transition == "project":
            num_states = self.layer1[0].rnn.num_states
            for index in (2, 3):
                transition = StateTransition(hidden[index - 2], hidden[index - 1],
                                             STAGE_STRIDES[index - 1], num_states)
                transition.apply(kaiming_init)
                setattr(self, f"transition{index}", transition)

    def enter_stage(self, index: int, state: State | None) -> State | None:
        """The state a stage's first block starts from (stages count from 1)."""
        if index == 1 or self.state_transition == "reset":
            return None  # zeros
        return getattr(self, f"transition{index}")(state)

    def forward_stage(self, index: int, stage: nn.Sequential, x: Tensor,
                      state: State | None) -> tuple[Tensor, State]:
        state = self.enter_stage(index, state)
        for block in stage:
            x, state = block(x, state)
        return x, state


def hidden_width(planes: int, hidden_ratio: float) -> int:
    return max(1, round(planes * hidden_ratio))


def hidden_widths(hidden_ratio: float) -> tuple[int, ...]:
    return tuple(hidden_width(width, hidden_ratio) for width in STAGE_WIDTHS)


def regnet(depth: int, cell: str, num_classes: int = 10, shortcut: str = "B",
           hidden_ratio: float = 1.0, state_transition: str = "project",
           efficient: bool = False) -> RegNet:
    """A regulated ResNet of depth 6n+2 (Xu et al.); invalid options raise ValueError."""
    num_blocks = blocks_per_stage(depth)
    if cell not in CELL_NAMES:
        raise ValueError(f"unknown regulator cell {cell!r}; choose from {CELL_NAMES}")
    shortcut = check_shortcut(shortcut)
    if isinstance(hidden_ratio, bool) or not isinstance(hidden_ratio, (int, float)):
        raise ValueError(f"hidden_ratio must be a number, got {hidden_ratio!r}")
    if not hidden_ratio > 0:
        raise ValueError(f"hidden_ratio must be positive, got {hidden_ratio}")
    check_choice("state_transition", state_transition, STATE_TRANSITIONS)
    if not isinstance(efficient, bool):
        raise ValueError(f"efficient must be true or false, got {efficient!r}")
    if efficient and any(width % EFFICIENT_GROUPS for width in hidden_widths(hidden_ratio)):
        raise ValueError(f"efficient=True needs state widths divisible by {EFFICIENT_GROUPS}; "
                         f"hidden_ratio={hidden_ratio} gives {hidden_widths(hidden_ratio)}")
    return RegNet(num_blocks, cell, num_classes, shortcut, hidden_ratio, state_transition,
                  efficient)


@register_model(regnet)
def regnet20_convlstm(pretrained=False, **kwargs) -> RegNet:
    """RegNet-20 (Xu et al. 2022, not Radosavovic et al.): ResNet-20 regulated by a convlstm cell
    whose memory runs through the blocks."""
    return build_model("regnet20_convlstm", pretrained, depth=20, cell="convlstm", **kwargs)


@register_model(regnet)
def regnet20_convgru(pretrained=False, **kwargs) -> RegNet:
    """RegNet-20 (Xu et al. 2022, not Radosavovic et al.): ResNet-20 regulated by a convgru cell
    whose memory runs through the blocks."""
    return build_model("regnet20_convgru", pretrained, depth=20, cell="convgru", **kwargs)


@register_model(regnet)
def regnet20_convrnn(pretrained=False, **kwargs) -> RegNet:
    """RegNet-20 (Xu et al. 2022, not Radosavovic et al.): ResNet-20 regulated by a convrnn cell
    whose memory runs through the blocks."""
    return build_model("regnet20_convrnn", pretrained, depth=20, cell="convrnn", **kwargs)


@register_model(regnet)
def regnet56_convlstm(pretrained=False, **kwargs) -> RegNet:
    """RegNet-56 (Xu et al. 2022, not Radosavovic et al.): ResNet-56 regulated by a convlstm cell
    whose memory runs through the blocks."""
    return build_model("regnet56_convlstm", pretrained, depth=56, cell="convlstm", **kwargs)


@register_model(regnet)
def regnet56_convgru(pretrained=False, **kwargs) -> RegNet:
    """RegNet-56 (Xu et al. 2022, not Radosavovic et al.): ResNet-56 regulated by a convgru cell
    whose memory runs through the blocks."""
    return build_model("regnet56_convgru", pretrained, depth=56, cell="convgru", **kwargs)


@register_model(regnet)
def regnet56_convrnn(pretrained=False, **kwargs) -> RegNet:
    """RegNet-56 (Xu et al. 2022, not Radosavovic et al.): ResNet-56 regulated by a convrnn cell
    whose memory runs through the blocks."""
    return build_model("regnet56_convrnn", pretrained, depth=56, cell="convrnn", **kwargs)
