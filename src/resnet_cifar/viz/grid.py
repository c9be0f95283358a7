"""The prediction grid: random test images (the model's own input, de-normalized), each titled
with the model's guess (test-time-augmented with ``tta``) and the truth."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from resnet_cifar.viz.output import check_figure_target, save_figure

if TYPE_CHECKING:
    import torch

    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine.checkpoint import Checkpoint
    from resnet_cifar.engine.inference import InferenceContext

RIGHT_COLOR = "#1a7f37"  # green title: the prediction is right
WRONG_COLOR = "#cf222e"  # red title: it is wrong
PANEL_INCHES = (1.55, 1.85)  # (width, height) of one image with its two-line title
SHOW_OUTPUT = "show output"  # what a write error calls the file


@dataclass
class PredictionSample:
    """Images with the model's predictions, ready for ``prediction_grid``."""

    images: np.ndarray  # uint8 (N, 3, H, W): the model's inputs, de-normalized
    preds: np.ndarray  # int64 (N,)
    trues: np.ndarray  # int64 (N,)
    classes: list[str]
    examined: int  # images run through the model to find these (more than N with only_wrong)
    split: str
    data: dict[str, Any] | None = None  # which data they came from (Splits.data_info())
    tta: str = "none"  # the test-time augmentation the predictions were made with


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for ``n`` panels: 16 -> 4x4, 10 -> 3x4."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo ``(x / 255 - mean) / std``: float (B, 3, H, W) -> uint8 (B, 3, H, W)."""
    import torch

    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    pixels = (x.float() * std_t + mean_t) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8)


def prediction_grid(images: Any, preds: Any, trues: Any, classes: list[str], *,
                    title: str | None = None) -> Figure:
    """A grid of uint8 (N, 3, H, W) images; panel i is titled ``Pred: <class>`` over
    ``True: <class>``, green when ``preds[i] == trues[i]`` and red otherwise."""
    images = np.asarray(images)
    preds, trues = np.asarray(preds).tolist(), np.asarray(trues).tolist()
    assert images.ndim == 4 and images.dtype == np.uint8, (images.dtype, images.shape)
    assert len(images) == len(preds) == len(trues)
    rows, cols = grid_shape(len(images))
    top = 0.45 if title else 0.0  # inches kept for the figure title
    width, height = cols * PANEL_INCHES[0], rows * PANEL_INCHES[1] + top
    fig = Figure(figsize=(width, height), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=11)
    if len(images) == 0:
        fig.text(0.5, 0.5, "no images to show", ha="center", va="center", fontsize=11)
        return fig
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        pixels = images[i].transpose(1, 2, 0)  # (H, W, C) for imshow
        ax.imshow(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels,
                  cmap="gray" if pixels.shape[-1] == 1 else None, interpolation="nearest")
        right = preds[i] == trues[i]
        ax.set_title(f"Pred: {classes[preds[i]]}\nTrue: {classes[trues[i]]}", fontsize=9,
                     color=RIGHT_COLOR if right else WRONG_COLOR,
                     fontweight="normal" if right else "bold")
    return fig


def predict_sample(ckpt: Checkpoint | str | Path, data: DataConfig | None = None, *, n: int = 16,
                   seed: int = 0, only_wrong: bool = False, split: str = "test",
                   device: str = "auto", normalize: str | None = None,
                   split_seed: int | None = None, tta: str = "none") -> PredictionSample:
    """Run the model on ``n`` random images of ``split`` (``only_wrong``: on as many as it takes
    to find ``n`` mistakes). ``data`` defaults to the run's; ``split_seed`` to the checkpoint's."""
    from resnet_cifar.engine.inference import InferenceContext

    check_count(n)
    context = InferenceContext.build(ckpt, data, normalize=normalize, device=device,
                                     seed=split_seed)
    return sample_predictions(context, n=n, seed=seed, only_wrong=only_wrong, split=split,
                              tta=tta)


def check_count(n: int) -> None:
    from resnet_cifar.errors import ConfigError

    if n < 1:
        raise ConfigError(f"`n` (--n) must be at least 1, got {n}")


def sample_predictions(context: InferenceContext, *, n: int = 16, seed: int = 0,
                       only_wrong: bool = False, split: str = "test",
                       tta: str = "none") -> PredictionSample:
    """``predict_sample`` on a context built once (report shares it with the evaluation)."""
    from resnet_cifar.engine.evaluate import with_tta

    check_count(n)
    net = with_tta(context.model, tta)  # before the data: a bad mode is refused first
    images, labels = context.split(split)
    norm = context.normalization
    order = np.random.default_rng(seed).permutation(len(labels))
    # Without only_wrong the first n images of the shuffled order are all we need.
    loader = context.loader(images[order], labels[order], batch_size=500 if only_wrong else n)
    shown, preds, trues, examined = first_predictions(net, loader, n, only_wrong,
                                                      norm.mean, norm.std)
    return PredictionSample(shown, preds, trues, context.classes, examined, split,
                            context.splits.data_info(), tta)


def first_predictions(net, loader, n: int, only_wrong: bool, mean, std):
    """(images uint8, predictions, labels, images examined) of the first ``n`` images (or
    mistakes) of ``loader``."""
    import torch

    net.eval()
    shown, preds, trues, examined, found = [], [], [], 0, 0
    with torch.inference_mode():
        for x, y in loader:
            pred = net(x).argmax(1)
            keep = pred != y if only_wrong else torch.ones_like(y, dtype=torch.bool)
            positions = keep.nonzero().flatten()[: n - found]  # indices into this batch
            found += len(positions)
            # Images looked at: up to the last one kept once n are found, else the whole batch.
            examined += int(positions[-1]) + 1 if found >= n else len(y)
            shown.append(denormalize(x[positions], mean, std).cpu())
            preds.append(pred[positions].cpu())
            trues.append(y[positions].cpu())
            if found >= n:
                break
    return (torch.cat(shown).numpy(), torch.cat(preds).numpy(), torch.cat(trues).numpy(),
            examined)


def sample_title(sample: PredictionSample, model_name: str, only_wrong: bool) -> str:
    shown = len(sample.preds)
    # the predictions are not the plain model's: say so where the reader looks first
    model_name += f" with tta {sample.tta}" if sample.tta != "none" else ""
    if only_wrong:
        return (f"{model_name}: {shown} mistake{'s' * (shown != 1)} among "
                f"{sample.examined} random {sample.split} images")
    right = int((sample.preds == sample.trues).sum())
    return f"{model_name}: {right}/{shown} right on random {sample.split} images"


def show_predictions(checkpoint: str | Path | Checkpoint, data: DataConfig | None = None, *,
                     n: int = 16, seed: int = 0, only_wrong: bool = False, split: str = "test",
                     out: str | Path | None = None, device: str = "auto", model: str | None = None,
                     model_kwargs: dict[str, Any] | None = None, normalize: str | None = None,
                     describe: Callable[[str], None] | None = None, tta: str = "none") -> Path:
    """Write a checkpoint's prediction grid (default ``<checkpoint dir>/predictions.png``) on
    ``data`` (default: the run's). ``describe`` gets one line naming the images' data."""
    from resnet_cifar.engine.inference import InferenceContext

    context = InferenceContext.build(checkpoint, data, model=model, model_kwargs=model_kwargs,
                                     normalize=normalize, device=device)
    ckpt = context.checkpoint
    out = Path(out) if out else Path(ckpt.path).resolve().parent / "predictions.png"
    check_figure_target(out, SHOW_OUTPUT)  # before the data is loaded
    sample = sample_predictions(context, n=n, seed=seed, only_wrong=only_wrong, split=split,
                                tta=tta)
    if describe is not None:
        from resnet_cifar.engine.inference import describe_data

        describe(describe_data(sample.data))
    fig = prediction_grid(sample.images, sample.preds, sample.trues, sample.classes,
                          title=sample_title(sample, ckpt.model_name, only_wrong))
    return save_figure(fig, out, SHOW_OUTPUT)
