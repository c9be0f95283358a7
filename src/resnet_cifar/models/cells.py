"""Convolutional recurrent cells: ConvRNN, ConvGRU (original and textbook), ConvLSTM (equations:
docs/models.md). A ``None`` state means zeros, whose share of the gate convs is skipped (exact)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_cat(conv: nn.Module, parts: list[Tensor | None]) -> Tensor:
    """conv(cat(parts, dim=1)), a ``None`` part being zeros, skipped by slicing a plain conv's
    weight."""
    present = [p for p in parts if p is not None]
    if len(present) == len(parts):
        return conv(torch.cat(parts, dim=1))
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        # a grouped or factorized conv's weight cannot be sliced: materialize the zeros
        b, _, h, w = present[0].shape
        return conv(torch.cat([p if p is not None else present[0].new_zeros(b, width, h, w)
                               for p, width in zip(parts, _part_widths(conv, parts), strict=True)],
                              dim=1))
    weight, offset, slices = conv.weight, 0, []
    for part, width in zip(parts, _part_widths(conv, parts), strict=True):
        if part is not None:
            slices.append(weight[:, offset : offset + width])
        offset += width
    x = present[0] if len(present) == 1 else torch.cat(present, dim=1)
    w = slices[0] if len(slices) == 1 else torch.cat(slices, dim=1)
    return F.conv2d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _part_widths(conv: nn.Module, parts: list[Tensor | None]) -> list[int]:
    # Missing parts share equally what the conv's input channels leave after the known parts.
    known = sum(p.shape[1] for p in parts if p is not None)
    missing = sum(p is None for p in parts)
    share = (conv.in_channels - known) // missing if missing else 0
    return [p.shape[1] if p is not None else share for p in parts]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """(B, g*k, H, W) -> (B, k*g, H, W): interleave the groups (ShuffleNet)."""
    b, c, height, width = x.shape
    x = x.view(b, groups, c // groups, height, width).transpose(1, 2)
    return x.reshape(b, c, height, width)


class GroupedGateConv(nn.Module):
    """The efficient gate conv (``groups > 1``): grouped 1x1 (no bias) then grouped 3x3, channels
    shuffled before each so every group mixes x and h; ``bias`` is the 3x3's."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, groups: int):
        super().__init__()
        widths = {"input": in_channels, "middle": mid_channels, "output": out_channels}
        for name, width in widths.items():
            if width % groups:
                raise ValueError(f"efficient cell: {name} width {width} is not divisible by "
                                 f"{groups} groups")
        self.in_channels, self.groups = in_channels, groups
        self.reduce = nn.Conv2d(in_channels, mid_channels, 1, groups=groups, bias=False)
        self.gates = nn.Conv2d(mid_channels, out_channels, 3, padding=1, groups=groups)

    @property
    def bias(self) -> Tensor:
        return self.gates.bias

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.reduce(channel_shuffle(x, self.groups))  # (B, C_mid, H, W)
        return self.gates(channel_shuffle(mixed, self.groups))


def gate_conv(in_channels: int, out_channels: int, hidden_channels: int, groups: int) -> nn.Module:
    """A plain 3x3 conv, or the efficient one through ``hidden_channels`` when ``groups > 1``."""
    if groups == 1:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return GroupedGateConv(in_channels, out_channels, hidden_channels, groups)


class ConvRNNCell(nn.Module):
    """h' = tanh(conv_x(cat[x, h]))            conv_x: C_in + C_h -> C_h."""

    num_states = 1  # the state is h alone

    def __init__(self, in_channels: int, hidden_channels: int, groups: int = 1):
        super().__init__()
        self.hidden_channels = hidden_channels
        c_in, c_h = in_channels, hidden_channels
        self.conv_x = gate_conv(c_in + c_h, c_h, c_h, groups)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        return torch.tanh(conv_cat(self.conv_x, [x, h]))


class ConvGRUCell(nn.Module):
    """The ConvGRU cell: a, r = sigmoid(conv_x(cat[x, h])); h' = a*h + (1-a)*y with
    y = tanh(conv_y(cat[x, h, r*h])) for variant="original" (the original repository's) or
    tanh(conv_y(cat[x, r*h])) for "textbook" (Cho et al.)."""

    variants = ("original", "textbook")
    num_states = 1  # the state is h alone

    def __init__(self, in_channels: int, hidden_channels: int, variant: str = "original",
                 groups: int = 1):
        super().__init__()
        if variant not in self.variants:
            raise ValueError(f"unknown ConvGRU variant {variant!r}; choose from {self.variants}")
        self.variant = variant
        self.hidden_channels = hidden_channels
        c_in, c_h = in_channels, hidden_channels
        self.conv_x = gate_conv(c_in + c_h, 2 * c_h, c_h, groups)
        y_in = c_in + (2 if variant == "original" else 1) * c_h
        self.conv_y = gate_conv(y_in, c_h, c_h, groups)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        a, r = torch.sigmoid(conv_cat(self.conv_x, [x, h])).chunk(2, dim=1)
        rh = None if h is None else r * h
        y_parts = [x, h, rh] if self.variant == "original" else [x, rh]
        y = torch.tanh(conv_cat(self.conv_y, y_parts))
        if h is None:
            return (1 - a) * y
        return a * h + (1 - a) * y


class ConvLSTMCell(nn.Module):
    """The ConvLSTM cell (Shi et al. 2015, no peepholes): i, f, o, g = conv(cat[x, h]);
    c' = f*c + i*g, h' = o*tanh(c'). The forget gate's bias starts at 1 (Jozefowicz et al.)."""

    num_states = 2  # the state is (h, c)

    def __init__(self, in_channels: int, hidden_channels: int, groups: int = 1):
        super().__init__()
        self.hidden_channels = hidden_channels
        c_in, c_h = in_channels, hidden_channels
        self.conv = gate_conv(c_in + c_h, 4 * c_h, c_h, groups)
        with torch.no_grad():
            self.conv.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def forward(self, x: Tensor,
                state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h, c = (None, None) if state is None else state
        i, f, o, g = conv_cat(self.conv, [x, h]).chunk(4, dim=1)
        i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
        c_next = i * g if c is None else f * c + i * g
        return o * torch.tanh(c_next), c_next
