"""Convolutional recurrent cells: ConvRNN, ConvGRU (original and textbook), ConvLSTM.

Every cell maps an input x (B, C_in, H, W) and a previous state to a new state, with 3x3 gate
convolutions (padding 1, bias). A state of ``None`` means "all zeros": the cell then skips the
hidden half of its convolutions, which is exact (conv(cat[x, 0]) == conv_x_part(x)) and saves a
third of the cell's work at every stage's first block (docs/benchmarks.md).

Parameter names (``conv_x``, ``conv_y``) are those of the original repository, so its state_dicts
load unchanged.

``groups > 1`` swaps every gate convolution for the cheaper factorized ``GroupedGateConv`` (grouped
1x1, channel shuffle, grouped 3x3): the "efficient" cell of Xu et al.'s RegNet. The parameter then
holds two convolutions, ``<name>.reduce`` and ``<name>.gates``; with ``groups=1`` (the default) the
cells are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_cat(conv: nn.Module, parts: list[Tensor | None]) -> Tensor:
    """conv(cat(parts, dim=1)) where a ``None`` part stands for zeros of its channel share.

    ``parts`` come with their channel counts implied by the conv's weight layout: the caller passes
    them in the order they were concatenated in the original equation. Zero parts are skipped by
    slicing the weight, so no zeros are materialized and no ``cat`` of activations is needed when
    only one part is non-zero.
    """
    present = [p for p in parts if p is not None]
    if len(present) == len(parts):
        return conv(torch.cat(parts, dim=1))
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        # Slicing a grouped or factorized conv's weight by input channel is not valid, so there
        # the zeros are materialized too (still exact, just not cheaper).
        return conv(torch.cat(_zeros_filled(conv, parts), dim=1))
    # Slice the weight along its input channels to the parts that are present.
    weight, offset, slices = conv.weight, 0, []
    for part, width in zip(parts, _part_widths(conv, parts), strict=True):
        if part is not None:
            slices.append(weight[:, offset : offset + width])
        offset += width
    x = present[0] if len(present) == 1 else torch.cat(present, dim=1)
    w = slices[0] if len(slices) == 1 else torch.cat(slices, dim=1)
    return F.conv2d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _zeros_filled(conv: nn.Module, parts: list[Tensor | None]) -> list[Tensor]:
    """``parts`` with each ``None`` replaced by real zeros of its width."""
    ref = next(p for p in parts if p is not None)
    return [
        p if p is not None else ref.new_zeros(ref.shape[0], width, *ref.shape[2:])
        for p, width in zip(parts, _part_widths(conv, parts), strict=True)
    ]


def _part_widths(conv: nn.Module, parts: list[Tensor | None]) -> list[int]:
    # Missing parts carry no tensor to read a width from: their width is whatever the conv's input
    # channels leave after the known parts, shared equally (every cell here has at most one kind of
    # missing part per call, all of the hidden width).
    known = sum(p.shape[1] for p in parts if p is not None)
    missing = sum(p is None for p in parts)
    share = (conv.in_channels - known) // missing if missing else 0
    return [p.shape[1] if p is not None else share for p in parts]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """(B, g*k, H, W) -> (B, k*g, H, W): interleave the groups, so that every contiguous block of
    channels afterwards holds channels from each of the previous groups (ShuffleNet)."""
    b, c, height, width = x.shape
    x = x.view(b, groups, c // groups, height, width).transpose(1, 2)
    return x.reshape(b, c, height, width)


class GroupedGateConv(nn.Module):
    """The efficient gate convolution: grouped 1x1 (C_in -> C_mid), grouped 3x3 (C_mid -> C_out).

    Stands in for ``nn.Conv2d(C_in, C_out, 3, padding=1)`` over ``cat[x, h]``. Plain grouping would
    give the 1x1 groups that read only x and others that read only h, and gates that never see
    both; so the channels are shuffled before each grouped conv (ShuffleNet), and every group mixes
    x and h (whenever C_in >= groups**2, as in every model here). The 1x1 has no bias and no
    nonlinearity follows it: the pair is a factorized conv, and ``bias`` is the 3x3's (so a cell
    sets its forget-gate bias as with a plain conv).
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, groups: int):
        super().__init__()
        widths = {"input": in_channels, "middle": mid_channels, "output": out_channels}
        for name, width in widths.items():
            if width % groups:
                raise ValueError(
                    f"efficient cell: {name} width {width} is not divisible by {groups} groups"
                )
        self.in_channels = in_channels
        self.groups = groups
        self.reduce = nn.Conv2d(in_channels, mid_channels, 1, groups=groups, bias=False)
        self.gates = nn.Conv2d(mid_channels, out_channels, 3, padding=1, groups=groups)

    @property
    def bias(self) -> Tensor:
        return self.gates.bias

    def forward(self, x: Tensor) -> Tensor:
        mixed = self.reduce(channel_shuffle(x, self.groups))  # (B, C_mid, H, W)
        return self.gates(channel_shuffle(mixed, self.groups))


def gate_conv(in_channels: int, out_channels: int, hidden_channels: int, groups: int) -> nn.Module:
    """A cell's gate convolution: a plain 3x3 conv, or the efficient one when ``groups > 1``
    (factorized through ``hidden_channels`` middle channels)."""
    if groups == 1:
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return GroupedGateConv(in_channels, out_channels, hidden_channels, groups)


class ConvCell(nn.Module):
    """What every cell is: a zero state given as ``None`` is skipped (see ``conv_cat``)."""


class ConvRNNCell(ConvCell):
    """h' = tanh(conv_x(cat[x, h]))            conv_x: C_in + C_h -> C_h."""

    num_states = 1  # the state is h alone

    def __init__(self, in_channels: int, hidden_channels: int, groups: int = 1):
        super().__init__()
        self.hidden_channels = hidden_channels
        c_in, c_h = in_channels, hidden_channels
        self.conv_x = gate_conv(c_in + c_h, c_h, c_h, groups)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        return torch.tanh(conv_cat(self.conv_x, [x, h]))


class ConvGRUCell(ConvCell):
    """The ConvGRU cell.

    variant="original" (default, the original repository's equations, weights interchangeable)::

        z    = cat[x, h]
        a, r = sigmoid(split(conv_x(z)))        # update gate a, reset gate r: (B, C_h, H, W) each
        y    = tanh(conv_y(cat[z, r*h]))        # conv_y: C_in + 2*C_h -> C_h
        h'   = a*h + (1-a)*y

    The candidate ``y`` sees the raw ``h`` as well as ``r*h``, so the reset gate cannot fully hide
    the past: a weaker reset than the textbook cell's.

    variant="textbook" (Cho et al. / Ballas et al.)::

        y    = tanh(conv_y(cat[x, r*h]))        # conv_y: C_in + C_h -> C_h
    """

    variants = ("original", "textbook")
    num_states = 1  # the state is h alone

    def __init__(
        self, in_channels: int, hidden_channels: int, variant: str = "original", groups: int = 1
    ):
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


class ConvLSTMCell(ConvCell):
    """The ConvLSTM cell (Shi et al. 2015, without peepholes).

        i, f, o, g = split(conv(cat[x, h]))     # conv: C_in + C_h -> 4*C_h, in that gate order
        i, f, o    = sigmoid(i), sigmoid(f), sigmoid(o);  g = tanh(g)
        c'         = f*c + i*g
        h'         = o*tanh(c')

    The forget gate's bias starts at 1 (Jozefowicz et al. 2015), so early in training the cell
    keeps its memory rather than wiping it, which helps gradients flow through the blocks.
    """

    num_states = 2  # the state is (h, c)

    def __init__(self, in_channels: int, hidden_channels: int, groups: int = 1):
        super().__init__()
        self.hidden_channels = hidden_channels
        c_in, c_h = in_channels, hidden_channels
        self.conv = gate_conv(c_in + c_h, 4 * c_h, c_h, groups)
        with torch.no_grad():
            self.conv.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        h, c = (None, None) if state is None else state
        i, f, o, g = conv_cat(self.conv, [x, h]).chunk(4, dim=1)
        i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
        c_next = i * g if c is None else f * c + i * g
        return o * torch.tanh(c_next), c_next
