"""Behaviour every registered model must have, parametrized over list_models(), plus the cells.

Inputs are 8x8 (every model pools adaptively) and batches hold 2 images, so the whole file runs
in seconds on two cores; only the MAC count uses the real 32x32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import FOREIGN_CHECKPOINT
from torch import nn

from resnet_cifar.errors import UserError
from resnet_cifar.models import (
    count_macs,
    count_parameters,
    create_model,
    list_models,
    model_options,
)
from resnet_cifar.models.cells import ConvGRUCell, ConvLSTMCell, ConvRNNCell, conv_cat
from resnet_cifar.models.recurrent import recurrent_resnet
from resnet_cifar.models.regnet import regnet
from resnet_cifar.models.resnet import CifarResNet, blocks_per_stage, resnet

MODELS = list_models()
# The models that thread a recurrent state through their blocks (each block has an ``rnn`` cell).
RECURRENT = [name for name in MODELS if any(c in name for c in ("convrnn", "convgru", "convlstm"))]
IMAGE = 8


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **kwargs)


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_every_family_is_registered():
    assert {"resnet20", "resnet56", "resnet20_convrnn", "resnet20_convgru"} <= set(MODELS)
    for depth in (20, 56):
        for cell in ("convlstm", "convgru", "convrnn"):
            assert f"regnet{depth}_{cell}" in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite(name):
    x = images()
    out = build(name)(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out = build(name, num_classes=100).eval()(x)
    assert out.shape == (2, 100)
    assert torch.isfinite(out).all()


# Defaults for every model, plus the regulated networks' other code paths (the efficient cell,
# stages that reset their state): DDP needs every parameter to get a gradient on every step.
BACKWARD_CASES = [(name, {}) for name in MODELS] + [
    ("regnet20_convlstm", {"efficient": True}),
    ("regnet20_convgru", {"efficient": True, "state_transition": "reset"}),
    ("regnet20_convrnn", {"efficient": True}),
    ("regnet20_convlstm", {"state_transition": "reset", "shortcut": "A"}),
]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    BACKWARD_CASES,
    ids=[name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in BACKWARD_CASES],
)
def test_backward_reaches_every_parameter(name, kwargs):
    model = build(name, **kwargs).train()
    loss = F.cross_entropy(model(images()), torch.tensor([1, 7]))
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} got an all-zero gradient"


@pytest.mark.parametrize("name", MODELS)
def test_batchnorm_train_and_eval(name):
    model = build(name)
    a, b, c = images(3).split(1)
    bns = batchnorms(model)
    assert bns

    model.train()
    before = [bn.running_mean.clone() for bn in bns]
    with torch.no_grad():
        train_ab, train_ac = model(torch.cat([a, b])), model(torch.cat([a, c]))
    for bn, mean in zip(bns, before, strict=True):
        assert not torch.equal(bn.running_mean, mean), "a BN layer did not update in train mode"
    # Batch statistics: a sample's output depends on the rest of its batch.
    assert not torch.allclose(train_ab[0], train_ac[0], atol=1e-4)

    model.eval()
    frozen = [bn.running_mean.clone() for bn in bns]
    with torch.no_grad():
        eval_ab, eval_ac = model(torch.cat([a, b])), model(torch.cat([a, c]))
    for bn, mean in zip(bns, frozen, strict=True):
        assert torch.equal(bn.running_mean, mean), "a BN layer updated in eval mode"
    torch.testing.assert_close(eval_ab[0], eval_ac[0], rtol=1e-4, atol=1e-5)


PINNED_PARAMETERS = {
    ("resnet20", ()): 272_474,
    ("resnet20", (("shortcut", "A"),)): 269_722,
    ("resnet56", ()): 855_770,
    ("resnet20_convrnn", ()): 563_114,
    ("resnet20_convgru", ()): 1_289_546,
    ("regnet20_convlstm", ()): 1_474_138,
    ("regnet20_convgru", ()): 1_180_746,
    ("regnet20_convrnn", ()): 599_466,
    ("regnet56_convlstm", ()): 4_449_754,
    ("regnet56_convgru", ()): 3_575_082,
    ("regnet56_convrnn", ()): 1_831_242,
}


@pytest.mark.parametrize(("name", "options"), PINNED_PARAMETERS)
def test_parameter_count_is_pinned(name, options):
    count = count_parameters(create_model(name, **dict(options)))
    assert count == PINNED_PARAMETERS[name, options]


def test_resnet20_macs():
    assert 40.7e6 < count_macs(create_model("resnet20")) < 40.9e6


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name, tmp_path):
    model = build(name, seed=0).train()
    with torch.no_grad():
        model(images(seed=1))  # make the BN running stats differ from a fresh model's
    torch.save(model.state_dict(), tmp_path / "weights.pt")

    fresh = build(name, seed=1).eval()
    x = images(seed=2)
    with torch.no_grad():
        assert not torch.equal(fresh(x), model.eval()(x))
        fresh.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True), strict=True)
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def akamaster_resnet20_keys() -> set[str]:
    """The state_dict keys of akamaster/pytorch_resnet_cifar10's resnet20 (option A shortcuts)."""
    keys = {"conv1.weight", "linear.weight", "linear.bias"}
    keys |= {f"bn1.{k}" for k in BN_KEYS}
    for stage in (1, 2, 3):
        for block in (0, 1, 2):
            prefix = f"layer{stage}.{block}"
            keys |= {f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"}
            keys |= {f"{prefix}.bn{i}.{k}" for i in (1, 2) for k in BN_KEYS}
    return keys


def test_resnet20_a_has_the_akamaster_key_names():
    keys = set(create_model("resnet20", shortcut="A").state_dict())
    assert keys == akamaster_resnet20_keys()
    assert len(keys) == 3 + 5 + 9 * (2 + 10)


def test_resnet20_b_adds_projection_shortcuts():
    keys = set(create_model("resnet20").state_dict())
    extra = keys - akamaster_resnet20_keys()
    expected = {
        f"layer{stage}.0.shortcut.{part}"
        for stage in (2, 3)
        for part in ["0.weight", *(f"1.{k}" for k in BN_KEYS)]
    }
    assert extra == expected
    assert "layer2.0.shortcut.0.weight" in keys and "layer2.0.shortcut.1.running_var" in keys


@pytest.mark.slow
@pytest.mark.skipif(not FOREIGN_CHECKPOINT.exists(), reason="needs ../shared/data/foreign")
def test_akamaster_checkpoint_loads_strictly_once_unprefixed():
    saved = torch.load(FOREIGN_CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    state = {key.removeprefix("module."): value for key, value in saved.items()}
    model = create_model("resnet20", shortcut="A")
    # Saved before BN had num_batches_tracked; BN fills it in for such old state_dicts.
    assert set(state) == {k for k in akamaster_resnet20_keys() if "num_batches" not in k}
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.linear.weight, state["linear.weight"])


# --- the recurrent state -------------------------------------------------------------------------


def cell_outputs(model: nn.Module, stage: nn.Sequential) -> tuple[list, list]:
    """Hooks recording, for every block of ``stage``, the state its cell receives and returns."""
    received, returned = [], []
    for block in stage:
        block.rnn.register_forward_pre_hook(lambda m, args: received.append(args[1]))
        block.rnn.register_forward_hook(lambda m, args, out: returned.append(out))
    return received, returned


def hidden(state) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state


def perturb_h(module, args, out):
    """A forward hook: noise on the new h a cell returns (c, if any, is left alone)."""
    if isinstance(out, tuple):
        return (out[0] + 0.5 * torch.randn_like(out[0]), *out[1:])
    return out + 0.5 * torch.randn_like(out)


@pytest.mark.parametrize("name", RECURRENT)
def test_hidden_state_flows_along_each_stage(name):
    x = images()
    model = build(name).eval()
    logs = [cell_outputs(model, stage) for stage in model.stages]
    with torch.no_grad():
        model(x)
    for received, returned in logs:
        # Each block's cell starts from exactly the state the previous block's cell returned.
        for before, after in zip(returned[:-1], received[1:], strict=True):
            torch.testing.assert_close(hidden(after), hidden(before), rtol=0, atol=0)
    clean_last = [hidden(returned[-1]) for _, returned in logs]

    for stage, (_, returned), clean in zip(model.stages, logs, clean_last, strict=True):
        hook = stage[0].rnn.register_forward_hook(perturb_h)
        for log in logs:
            log[0].clear()
            log[1].clear()
        with torch.no_grad():
            model(x)
        hook.remove()
        assert not torch.allclose(hidden(returned[-1]), clean, atol=1e-4)


@pytest.mark.parametrize("name", RECURRENT)
def test_zeroing_the_cells_changes_the_output(name):
    x = images()
    model = build(name).eval()
    with torch.no_grad():
        before = model(x)
        for module in model.modules():
            if hasattr(module, "rnn"):
                for param in module.rnn.parameters():
                    param.zero_()
        assert not torch.allclose(model(x), before, atol=1e-4)


@pytest.mark.parametrize("name", RECURRENT)
def test_no_state_leaks_between_forwards_or_samples(name):
    model = build(name).eval()
    a, b = images(2).split(1)
    with torch.no_grad():
        first, second = model(torch.cat([a, b])), model(torch.cat([a, b]))
        alone = model(a)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # Batch 1 and batch 2 may take different conv kernels, so float32 rounding differs: in the
    # deepest untrained models the logits reach ~1e3, and a logit near 0 may then differ by a
    # few 1e-5 with no leak at all. A leak shows up at the scale of the logits themselves.
    scale = first.abs().max().item()
    torch.testing.assert_close(alone[0], first[0], rtol=1e-4, atol=max(1e-5, 1e-6 * scale))


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(UserError) as info:
        create_model("nope")
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_option_is_a_user_error(name):
    with pytest.raises(UserError, match="no option colour"):
        create_model(name, colour="red")


def test_bad_option_value_is_a_user_error():
    with pytest.raises(UserError, match="shortcut"):
        create_model("resnet20", shortcut="C")


def refusal(name: str, **kwargs) -> str:
    """The one-line message ``create_model`` refuses these options with."""
    with pytest.raises(UserError) as info:
        create_model(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message and name in message
    return message


@pytest.mark.parametrize("name", MODELS)
def test_every_model_refuses_a_bad_shortcut(name):
    # the recurrent models once built a "B" shortcut for anything that was not "A"
    assert "shortcut" in refusal(name, shortcut="C")
    assert "shortcut" in refusal(name, shortcut=None)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_refuses_a_bad_class_count(name):
    for bad in (0, -3, 2.5, "10", True):
        assert "num_classes" in refusal(name, num_classes=bad)


@pytest.mark.parametrize("name", MODELS)
def test_every_option_of_every_model_is_checked(name):
    for option in model_options(name):
        assert option in refusal(name, **{option: "bogus"}), option


@pytest.mark.parametrize("depth", [0, 2, 21, 33, 20.0, True])
def test_depth_must_be_6n_plus_2_in_every_family(depth):
    for build_depth in (
        lambda: blocks_per_stage(depth),
        lambda: resnet(depth),
        lambda: recurrent_resnet(depth, "convrnn"),
        lambda: regnet(depth, "convlstm"),
    ):
        with pytest.raises(ValueError, match="6n\\+2"):
            build_depth()
    assert [blocks_per_stage(d) for d in (8, 20, 56, 110)] == [1, 3, 9, 18]


@pytest.mark.parametrize("name", MODELS)
def test_every_model_runs_its_stages_through_the_shared_hook(name):
    # RegNet once rewrote forward_features, so a change to the shared stage loop missed it
    model = build(name).eval()
    assert type(model).forward_features is CifarResNet.forward_features
    with torch.no_grad():
        plain = model(images())
        stage_of_class = model.forward_stage
        calls = []

        def recorded(index, stage, x, state):
            calls.append(index)
            return stage_of_class(index, stage, x, state)

        model.forward_stage = recorded  # the instance attribute shadows the method
        assert torch.equal(model(images()), plain)
    assert calls == [1, 2, 3]


# --- the cells ----------------------------------------------------------------------------------

CELLS = {
    "convrnn": lambda groups: ConvRNNCell(4, 4, groups=groups),
    "convgru-original": lambda groups: ConvGRUCell(4, 4, "original", groups=groups),
    "convgru-textbook": lambda groups: ConvGRUCell(4, 4, "textbook", groups=groups),
    "convlstm": lambda groups: ConvLSTMCell(4, 4, groups=groups),
}


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("cell_name", CELLS)
def test_zero_state_shortcut_equals_explicit_zeros(cell_name, groups):
    torch.manual_seed(0)
    cell = CELLS[cell_name](groups)
    x = torch.randn(2, 4, 5, 5)
    zeros = torch.zeros(2, 4, 5, 5)
    explicit = cell(x, (zeros, zeros) if isinstance(cell, ConvLSTMCell) else zeros)
    skipped = cell(x, None)
    if isinstance(cell, ConvLSTMCell):
        torch.testing.assert_close(skipped[0], explicit[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(skipped[1], explicit[1], rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(skipped, explicit, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell_name", CELLS)
def test_cells_use_the_previous_state(cell_name):
    torch.manual_seed(0)
    cell = CELLS[cell_name](1)
    x, h = torch.randn(2, 2, 4, 5, 5)
    state = (h, h) if isinstance(cell, ConvLSTMCell) else h
    assert not torch.allclose(hidden(cell(x, state)), hidden(cell(x, None)))


def test_gru_variants_differ_in_candidate_width():
    seed, textbook = ConvGRUCell(3, 5, "original"), ConvGRUCell(3, 5, "textbook")
    assert seed.conv_y.in_channels == 3 + 2 * 5
    assert textbook.conv_y.in_channels == 3 + 5
    assert seed.conv_x.weight.shape == textbook.conv_x.weight.shape == (10, 8, 3, 3)
    with pytest.raises(ValueError, match="variant"):
        ConvGRUCell(3, 5, "cho")


@pytest.mark.parametrize("variant", ["original", "textbook"])
def test_gru_matches_its_equations(variant):
    torch.manual_seed(0)
    cell = ConvGRUCell(3, 2, variant)
    x, h = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)
    wx, bx = cell.conv_x.weight, cell.conv_x.bias
    wy, by = cell.conv_y.weight, cell.conv_y.bias
    gates = torch.sigmoid(F.conv2d(torch.cat([x, h], 1), wx, bx, padding=1))
    a, r = gates[:, :2], gates[:, 2:]
    candidate_in = [x, h, r * h] if variant == "original" else [x, r * h]
    y = torch.tanh(F.conv2d(torch.cat(candidate_in, 1), wy, by, padding=1))
    expected = a * h + (1 - a) * y
    torch.testing.assert_close(cell(x, h), expected, rtol=1e-5, atol=1e-6)


# --- the zero-state skip (its plain-cat baseline: tests/test_speed_paths.py) -------------------


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_cat_skips_the_zero_parts_exactly(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(12, 6, 3, padding=1, groups=groups)
    x, h = torch.randn(2, 2, 4, 5, 5)
    for parts in ([x, None], [x, None, None], [x, h, None]):
        conv.in_channels = 4 + 4 * (len(parts) - 1)  # the widths conv_cat reads
        conv.weight = nn.Parameter(torch.randn(6, conv.in_channels // groups, 3, 3))
        zeros = [p if p is not None else torch.zeros_like(x) for p in parts]
        expected = conv(torch.cat(zeros, dim=1))
        torch.testing.assert_close(conv_cat(conv, parts), expected, rtol=0, atol=1e-5)
