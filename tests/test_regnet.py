"""The regulated networks of Xu et al. (RegNet, arXiv 2101.00590): blocks, state, cells.

The generic checks (shapes, gradients, BatchNorm, round trips) run over these models from
test_models.py; this file tests what is particular to them. Inputs are tiny (2 images, 8x8).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_models import IMAGE, build, images
from torch import nn

from resnet_cifar.errors import UserError
from resnet_cifar.models import count_macs, count_parameters, create_model, get_model_entry
from resnet_cifar.models.cells import ConvLSTMCell, GroupedGateConv, channel_shuffle
from resnet_cifar.models.regnet import RegulatedBasicBlock, make_cell

REGNETS = [f"regnet{d}_{c}" for d in (20, 56) for c in ("convlstm", "convgru", "convrnn")]
REGNET20 = [name for name in REGNETS if name.startswith("regnet20")]


def perturbed(state: tuple) -> tuple:
    """The same state with noise on h (and c)."""
    return tuple(s + 0.5 * torch.randn_like(s) for s in state)


# --- registry, options, counts ------------------------------------------------------------------


@pytest.mark.parametrize("name", REGNETS)
def test_registered_with_the_paper_and_the_name_clash(name):
    description = get_model_entry(name).description
    assert "Xu" in description and "not Radosavovic" in description


OPTIONS = [
    {"state_transition": "reset"},
    {"efficient": True},
    {"shortcut": "A"},
    {"hidden_ratio": 0.5},
    {"hidden_ratio": 2.0, "state_transition": "reset"},
]


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
@pytest.mark.parametrize("name", REGNET20)
def test_options_build_working_models(name, options):
    model = build(name, num_classes=7, **options)
    out = model(images())
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


PINNED = {
    # name: (parameters, MACs per 32x32 image) with default options
    "regnet20_convlstm": (1_474_138, 206_488_192),
    "regnet20_convgru": (1_180_746, 166_118_016),
    "regnet20_convrnn": (599_466, 85_901_952),
}
PINNED_OPTIONS = {
    ("regnet20_convlstm", "efficient"): 466_138,
    ("regnet20_convgru", "efficient"): 434_826,
    ("regnet20_convrnn", "efficient"): 353_514,
    ("regnet20_convlstm", "reset"): 1_468_634,
    ("regnet20_convgru", "reset"): 1_177_994,
    ("regnet20_convrnn", "reset"): 596_714,
}


@pytest.mark.parametrize("name", PINNED)
def test_parameters_and_macs_are_pinned(name):
    model = create_model(name)
    assert (count_parameters(model), count_macs(model)) == PINNED[name]


@pytest.mark.parametrize(("name", "option"), PINNED_OPTIONS)
def test_option_parameter_counts_are_pinned(name, option):
    kwargs = {"efficient": True} if option == "efficient" else {"state_transition": "reset"}
    assert count_parameters(create_model(name, **kwargs)) == PINNED_OPTIONS[name, option]
    # Cheaper cell: fewer parameters; no transitions: fewer too.
    assert PINNED_OPTIONS[name, option] < PINNED[name][0]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"state_transition": "carry"}, "state_transition"),
        ({"hidden_ratio": 0}, "hidden_ratio"),
        ({"hidden_ratio": -1.0}, "hidden_ratio"),
        ({"hidden_ratio": "half"}, "hidden_ratio"),
        ({"efficient": "yes"}, "efficient"),
        ({"efficient": True, "hidden_ratio": 0.3}, "divisible"),
        ({"shortcut": "C"}, "shortcut"),
    ],
)
def test_invalid_options_are_user_errors(options, match):
    with pytest.raises(UserError, match=match):
        create_model("regnet20_convlstm", **options)


def test_hidden_ratio_scales_the_state():
    model = create_model("regnet20_convgru", hidden_ratio=0.5)
    assert [stage[0].rnn.hidden_channels for stage in model.stages] == [8, 16, 32]
    assert model.layer1[0].fuse.in_channels == 16 + 8
    assert model.transition2.h[0].weight.shape == (16, 8, 1, 1)
    assert model.layer1[0].rnn.variant == "textbook"


# --- parameter names ----------------------------------------------------------------------------


def test_parameter_names_of_the_lstm_model():
    keys = set(create_model("regnet20_convlstm").state_dict())
    block = "layer2.1"
    for part in (
        "conv1.weight",
        "bn1.weight",
        "rnn.conv.weight",
        "rnn.conv.bias",
        "bn_h.weight",
        "fuse.weight",
        "bn_fuse.running_mean",
        "conv2.weight",
        "bn2.bias",
    ):
        assert f"{block}.{part}" in keys
    assert {"layer2.0.shortcut.0.weight", "layer3.0.shortcut.1.running_var"} <= keys
    transitions = {k for k in keys if k.startswith("transition")}
    bn_keys = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert transitions == {
        f"transition{i}.{state}.{part}"
        for i in (2, 3)
        for state in ("h", "c")
        for part in ["0.weight", *(f"1.{k}" for k in bn_keys)]
    }


def test_parameter_names_of_the_other_cells_and_options():
    gru = set(create_model("regnet20_convgru").state_dict())
    assert {"layer1.0.rnn.conv_x.weight", "layer1.0.rnn.conv_y.weight"} <= gru
    assert not any(k.startswith("transition") and ".c." in k for k in gru)  # no memory cell
    assert "transition3.h.0.weight" in gru
    rnn = set(create_model("regnet20_convrnn", state_transition="reset").state_dict())
    assert "layer3.2.rnn.conv_x.bias" in rnn and "layer3.2.rnn.conv_y.weight" not in rnn
    assert not any(k.startswith("transition") for k in rnn)
    efficient = set(create_model("regnet20_convlstm", efficient=True).state_dict())
    assert {
        "layer1.0.rnn.conv.reduce.weight",
        "layer1.0.rnn.conv.gates.weight",
        "layer1.0.rnn.conv.gates.bias",
    } <= efficient
    assert "layer1.0.rnn.conv.reduce.bias" not in efficient


# --- the block ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["convlstm", "convgru", "convrnn"])
def test_block_follows_the_paper_equations(cell):
    torch.manual_seed(0)
    block = RegulatedBasicBlock(8, 16, 2, make_cell(cell, 16, 12), "B")
    with torch.no_grad():  # non-trivial BN statistics, then use them
        block.train()(torch.randn(4, 8, 6, 6))
    block.eval()
    x1 = torch.randn(2, 8, 6, 6)
    previous = (torch.randn(2, 12, 3, 3),) * (2 if cell == "convlstm" else 1)
    with torch.no_grad():
        out, state = block(x1, previous)
        x2 = F.relu(block.bn1(block.conv1(x1)))
        raw = block.rnn(x2, previous if cell == "convlstm" else previous[0])
        raw = raw if cell == "convlstm" else (raw,)
        h = F.relu(block.bn_h(raw[0]))
        x3 = F.relu(block.bn_fuse(block.fuse(torch.cat([x2, h], 1))))
        x4 = block.bn2(block.conv2(x3))
        expected = F.relu(x4 + block.shortcut(x1))
    assert out.shape == (2, 16, 3, 3) and len(state) == len(previous)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    for got, want in zip(state, raw, strict=True):  # the RAW cell state is passed on
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# --- the state along and across stages ----------------------------------------------------------


def record_cells(model: nn.Module) -> dict[str, list]:
    """What every block's cell receives (``in``) and returns (``out``), as tuples, in order."""
    log = {"in": [], "out": []}
    for stage in model.stages:
        for block in stage:
            block.rnn.register_forward_pre_hook(lambda m, args: log["in"].append(args[1]))
            block.rnn.register_forward_hook(lambda m, args, out: log["out"].append(out))
    return log


def as_state(value) -> tuple | None:
    return None if value is None else value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("name", REGNET20)
def test_state_alone_carries_information_along_a_stage(name):
    """Hold the features fixed and perturb only the state leaving block 0: the state two blocks
    later differs, so the memory path itself carries information (not only the features)."""
    model = build(name).eval()
    log = record_cells(model)
    features = []
    for block in model.layer2:
        block.register_forward_pre_hook(lambda m, args: features.append(args[0]))
    with torch.no_grad():
        model(images())
        clean = [as_state(s) for s in log["out"][3:6]]  # layer2's three blocks
        _, state = model.layer2[1](features[1], perturbed(clean[0]))
        _, state = model.layer2[2](features[2], state)
    assert not torch.allclose(state[0], clean[2][0], atol=1e-4)
    with torch.no_grad():  # and unperturbed, the manual replay matches the model's own run
        _, state = model.layer2[1](features[1], clean[0])
        _, state = model.layer2[2](features[2], state)
    torch.testing.assert_close(state[0], clean[2][0], rtol=0, atol=0)


def test_project_and_reset_differ_only_by_the_transitions():
    project = build("regnet20_convlstm", seed=0).eval()
    reset = build("regnet20_convlstm", seed=0, state_transition="reset").eval()
    result = project.load_state_dict(reset.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert {k.split(".")[0] for k in result.missing_keys} == {"transition2", "transition3"}
    x = images()
    with torch.no_grad():
        assert not torch.allclose(project(x), reset(x), atol=1e-4)


@pytest.mark.parametrize("name", REGNET20)
def test_project_carries_the_state_into_the_next_stage(name):
    model = build(name).eval()
    log = record_cells(model)
    into_transition = []
    model.transition2.register_forward_pre_hook(lambda m, args: into_transition.append(args[0]))
    with torch.no_grad():
        model(images())
        assert log["in"][0] is None  # stage 1 starts from zeros
        last_of_stage1, first_of_stage2 = as_state(log["out"][2]), as_state(log["in"][3])
        # transition2 sees stage 1's last raw state, and its output starts stage 2.
        for got, want in zip(into_transition[0], last_of_stage1, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        projected = model.transition2(last_of_stage1)
        for got, want in zip(first_of_stage2, projected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert first_of_stage2[0].shape == (2, 32, IMAGE // 2, IMAGE // 2)


@pytest.mark.parametrize("transition", ["project", "reset"])
def test_stage1_state_reaches_stage2_only_when_projected(transition):
    model = build("regnet20_convlstm", state_transition=transition).eval()
    log = record_cells(model)
    x = images()
    with torch.no_grad():
        model(x)
        clean = log["in"][3]  # the state layer2[0]'s cell starts from
        hook = model.layer1[2].rnn.register_forward_hook(lambda m, args, out: perturbed(out))
        log["in"].clear()
        model(x)
        hook.remove()
    noisy = log["in"][3]
    if transition == "reset":
        assert clean is None and noisy is None
        assert not any(name.startswith("transition") for name, _ in model.named_modules())
    else:
        assert not torch.allclose(noisy[0], clean[0], atol=1e-4)
        assert not torch.allclose(noisy[1], clean[1], atol=1e-4)


# --- the ConvLSTM cell against a plain-Python step ----------------------------------------------


def weight_value(o: int, i: int, ky: int, kx: int) -> float:
    return ((3 * o + 5 * i + 7 * ky + 11 * kx) % 13 - 6) / 20


def pixel(seed: int, c: int, y: int, x: int) -> float:
    return ((seed + 5 * c + 3 * y + 2 * x) % 7 - 3) / 4


def reference_lstm_step(x, h, c, weights, bias):
    """A ConvLSTM step in pure Python on nested lists [channel][y][x]: zero padding 1, gate order
    i, f, o, g."""
    size, hidden = len(x[0]), len(h)
    inputs = x + h  # channel concatenation
    conv = [
        [
            [
                bias[o]
                + sum(
                    weights[o][i][ky][kx] * inputs[i][y + ky - 1][xx + kx - 1]
                    for i in range(len(inputs))
                    for ky in range(3)
                    for kx in range(3)
                    if 0 <= y + ky - 1 < size and 0 <= xx + kx - 1 < size
                )
                for xx in range(size)
            ]
            for y in range(size)
        ]
        for o in range(4 * hidden)
    ]

    def sigmoid(v):
        return 1 / (1 + math.exp(-v))

    def gate(index, k, y, xx):  # pre-activation of gate `index` (0 i, 1 f, 2 o, 3 g)
        return conv[index * hidden + k][y][xx]

    grid = [(k, y, xx) for k in range(hidden) for y in range(size) for xx in range(size)]
    c_next = {
        (k, y, xx): sigmoid(gate(1, k, y, xx)) * c[k][y][xx]
        + sigmoid(gate(0, k, y, xx)) * math.tanh(gate(3, k, y, xx))
        for k, y, xx in grid
    }
    h_next = {p: sigmoid(gate(2, *p)) * math.tanh(c_next[p]) for p in grid}

    def nested(values):  # {(k, y, x): v} -> [k][y][x]
        return [
            [[values[k, y, xx] for xx in range(size)] for y in range(size)] for k in range(hidden)
        ]

    return nested(h_next), nested(c_next)


@pytest.mark.parametrize("zero_state", [False, True])
def test_convlstm_matches_a_hand_computed_step(zero_state):
    channels, size = 2, 3
    weights = [
        [
            [[weight_value(o, i, ky, kx) for kx in range(3)] for ky in range(3)]
            for i in range(2 * channels)
        ]
        for o in range(4 * channels)
    ]
    bias = [(o - 4) / 10 for o in range(4 * channels)]

    def image(seed):
        return [
            [[pixel(seed, c, y, x) for x in range(size)] for y in range(size)]
            for c in range(channels)
        ]

    x = image(0)
    if zero_state:
        zeros = [[[0.0] * size for _ in range(size)] for _ in range(channels)]
        h, c = zeros, zeros
    else:
        h, c = image(1), image(2)
    expected_h, expected_c = reference_lstm_step(x, h, c, weights, bias)

    cell = ConvLSTMCell(channels, channels)
    with torch.no_grad():
        cell.conv.weight.copy_(torch.tensor(weights))
        cell.conv.bias.copy_(torch.tensor(bias))
    state = None if zero_state else (torch.tensor([h]), torch.tensor([c]))
    got_h, got_c = cell(torch.tensor([x]), state)
    torch.testing.assert_close(got_h, torch.tensor([expected_h]), rtol=0, atol=1e-6)
    torch.testing.assert_close(got_c, torch.tensor([expected_c]), rtol=0, atol=1e-6)


def test_convlstm_forget_bias_starts_at_one():
    for groups in (1, 4):
        cell = ConvLSTMCell(8, 8, groups=groups)
        bias = cell.conv.bias.detach()
        assert torch.equal(bias[8:16], torch.ones(8))
        assert not torch.equal(bias[:8], torch.ones(8))


# --- the efficient cell -------------------------------------------------------------------------


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


@pytest.mark.parametrize(("x_width", "h_width"), [(8, 8), (16, 8), (16, 16)])
def test_grouped_gate_conv_mixes_input_and_state_in_every_group(x_width, h_width):
    torch.manual_seed(0)
    conv = GroupedGateConv(x_width + h_width, 4 * h_width, h_width, groups=4)
    x = torch.randn(1, x_width + h_width, 5, 5, requires_grad=True)  # cat[x, h]
    out = conv(x)
    assert out.shape == (1, 4 * h_width, 5, 5)
    for group in out.chunk(4, dim=1):  # each gate group sees both x and h
        (grad,) = torch.autograd.grad(group.sum(), x, retain_graph=True)
        assert grad[:, :x_width].abs().sum() > 0 and grad[:, x_width:].abs().sum() > 0
    with pytest.raises(ValueError, match="divisible"):
        GroupedGateConv(10, 32, 8, groups=4)


@pytest.mark.parametrize("cell", ["convlstm", "convgru", "convrnn"])
def test_efficient_cell_is_smaller_and_trains(cell):
    torch.manual_seed(0)
    plain, efficient = make_cell(cell, 16, 16), make_cell(cell, 16, 16, groups=4)
    assert count_parameters(efficient) < count_parameters(plain) / 2
    x, h = torch.randn(2, 2, 16, 4, 4)
    state = (h, h) if cell == "convlstm" else h
    out = efficient(x, state)
    out_h = out[0] if cell == "convlstm" else out
    assert out_h.shape == (2, 16, 4, 4)
    out_h.sum().backward()
    for param in efficient.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0
