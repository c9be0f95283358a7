"""BatchNorm folded into the conv before it, for inference: in eval mode bn(conv(x)) is a conv with
weights W * scale and bias beta + (b - mean) * scale, scale = gamma / sqrt(var + eps). Pairs are
read from one forward pass: a BatchNorm folds only when it always reads its conv's fresh output."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class FoldReport:
    """What fold_batchnorm did: ``folded`` (conv, BatchNorm) name pairs, ``kept`` BatchNorms."""

    folded: list[tuple[str, str]]
    kept: list[str]


def fold_batchnorm(model: nn.Module, example: Tensor | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded into the conv
    (the BatchNorm becomes ``nn.Identity``) and a ``fold_report``. ``example``: the input to trace
    (default: one zero CIFAR image)."""
    folded = copy.deepcopy(model).eval()
    pairs, kept = conv_bn_pairs(folded, example)
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        fuse_into_conv(modules[conv_name], modules[bn_name])
        set_submodule(folded, bn_name, nn.Identity())
    folded.fold_report = FoldReport(folded=pairs, kept=kept)
    return folded


def conv_bn_pairs(model: nn.Module, example: Tensor | None = None
                  ) -> tuple[list[tuple[str, str]], list[str]]:
    """(conv, BatchNorm) name pairs where the BatchNorm always reads its conv's output, and the
    other BatchNorms' names."""
    names = {module: name for name, module in model.named_modules()}
    convs = [m for m in names if type(m) is nn.Conv2d]
    norms = [m for m in names if type(m) is nn.BatchNorm2d]
    if example is None:
        channels = convs[0].in_channels if convs else 3
        param = next(model.parameters(), None)
        like = {"device": param.device, "dtype": param.dtype} if param is not None else {}
        example = torch.zeros(1, channels, 32, 32, **like)
    produced: dict[int, nn.Module] = {}  # id(output tensor) -> the conv that returned it
    alive: list[Tensor] = []  # keeps outputs alive, so that no id is reused during the trace
    conv_calls: dict[nn.Module, int] = dict.fromkeys(convs, 0)
    sources: dict[nn.Module, list[nn.Module | None]] = {m: [] for m in norms}

    def after_conv(module, _inputs, output):
        conv_calls[module] += 1
        produced[id(output)] = module
        alive.append(output)

    def before_norm(module, inputs):
        sources[module].append(produced.get(id(inputs[0])))

    hooks = [m.register_forward_hook(after_conv) for m in convs]
    hooks += [m.register_forward_pre_hook(before_norm) for m in norms]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    pairs, kept, used = [], [], set()
    for norm in norms:
        conv = sources[norm][0] if sources[norm] else None
        foldable = (conv is not None and conv not in used and norm.track_running_stats
                    and not norm.training and all(s is conv for s in sources[norm])
                    and conv_calls[conv] == len(sources[norm]))
        if foldable:
            used.add(conv)
            pairs.append((names[conv], names[norm]))
        else:
            kept.append(names[norm])
    return pairs, kept


@torch.no_grad()
def fuse_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn``'s eval-mode affine map into ``conv`` in place (float64: one final rounding)."""
    weight = conv.weight.double()
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(var)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    new_bias = beta + (bias - mean) * scale
    conv.weight.copy_((weight * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)
    else:
        conv.bias.copy_(new_bias.to(conv.bias.dtype))


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
