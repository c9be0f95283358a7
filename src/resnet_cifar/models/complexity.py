"""Parameter and multiply-add counts, as CIFAR papers tabulate them."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int = 32) -> int:
    """Forward multiply-adds for one image. FlopCounterMode counts 2 FLOPs per MAC."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@functools.cache
def model_complexity(name: str, num_classes: int = 10) -> tuple[int, int]:
    """(parameters, MACs per 32x32 image) of a registered model with default options."""
    from resnet_cifar.models.registry import create_model

    model = create_model(name, num_classes=num_classes)
    return count_parameters(model), count_macs(model)
