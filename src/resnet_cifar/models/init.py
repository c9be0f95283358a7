"""Optional initializations (starting values only; keys and parameter counts stay):
``zero_init_residual`` (Goyal et al. 2017) and ``whiten_stem`` (airbench: the stem starts as +/- the
top whitening filters of the training images' patches, so the ReLU after it keeps both signs)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

WHITENING_EPS = 5e-4  # added to each eigenvalue: bounds the gain of near-flat directions


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks whose output is ``relu(bn2(...) + shortcut(x))`` (plain, recurrent, regulated)."""
    return [m for m in model.modules()
            if isinstance(getattr(m, "bn2", None), nn.BatchNorm2d) and hasattr(m, "shortcut")]


@torch.no_grad()
def zero_init_residual(model: nn.Module) -> int:
    """Set each residual branch's last BatchNorm weight to 0; returns how many were set."""
    blocks = residual_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no residual blocks to zero-initialize")
    for block in blocks:
        block.bn2.weight.zero_()
    return len(blocks)


def patch_covariance(images: Tensor, size: int) -> Tensor:
    """The (uncentred) float64 covariance of every ``size`` x ``size`` patch of ``images``,
    flattened channel-major as a convolution's weight is."""
    patches = images.double().unfold(2, size, 1).unfold(3, size, 1)  # N, C, H', W', size, size
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * size * size)
    return flat.T @ flat / flat.shape[0]


@torch.no_grad()
def whiten_stem(model: nn.Module, images: Tensor, eps: float = WHITENING_EPS) -> None:
    """Set ``model.conv1`` (C_in -> C_out, k x k, C_out even) to +/- the top C_out/2 whitening
    filters of ``images``' k x k patches (normalized model inputs, N x C_in x H x W)."""
    conv = model.conv1
    out_channels, in_channels, k, _ = conv.weight.shape
    if out_channels % 2 or out_channels // 2 > in_channels * k * k:
        raise ValueError(f"whiten_stem needs an even number of stem filters, at most "
                         f"{2 * in_channels * k * k}; conv1 has {out_channels}")
    if images.ndim != 4 or images.shape[1] != in_channels:
        raise ValueError(f"whiten_stem needs images of shape (N, {in_channels}, H, W), "
                         f"not {tuple(images.shape)}")
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images, k))  # ascending
    half = out_channels // 2
    top_values, top_vectors = eigenvalues.flip(0)[:half], eigenvectors.flip(1)[:, :half].T
    filters = top_vectors / torch.sqrt(top_values + eps).unsqueeze(1)
    filters = filters.reshape(-1, in_channels, k, k)
    conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))
