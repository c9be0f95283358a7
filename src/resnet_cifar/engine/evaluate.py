"""Accuracy, mean loss, per-class accuracy and the confusion matrix of a model on a split; TTA."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import EVAL_BATCH_SIZE, TTA_MODES, DataConfig
from resnet_cifar.engine.checkpoint import Checkpoint
from resnet_cifar.engine.inference import InferenceContext, compile_for_inference
from resnet_cifar.engine.setup import autocast_for, check_amp
from resnet_cifar.errors import ConfigError, DataError

# On CPU the model sees at most this many images at a time: their activations stay in cache
CPU_EVAL_CHUNK = 32


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy per image
    accuracy: float  # in [0, 1]
    correct: int
    total: int
    confusion: list[list[int]]  # confusion[true][pred]
    classes: list[str]
    data: dict[str, Any] | None = None  # which data (Splits.data_info()); None inside training
    tta: TTAReport | None = None  # a test-time-augmented pass beside this plain one
    compile_seconds: float | None = None  # None: eager
    amp: str = "none"  # the autocast the forwards ran under ("none": float32)

    @property
    def per_class_accuracy(self) -> list[float]:
        return [row[i] / max(sum(row), 1) for i, row in enumerate(self.confusion)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss, "accuracy": self.accuracy, "correct": self.correct,
            "total": self.total, "classes": self.classes,
            "per_class_accuracy": dict(zip(self.classes, self.per_class_accuracy, strict=True)),
            "confusion": self.confusion,
            **({"data": self.data} if self.data is not None else {}),
            **({"tta": self.tta.to_dict()} if self.tta is not None else {}),
            **({"compile_seconds": self.compile_seconds}
               if self.compile_seconds is not None else {}),
            "amp": self.amp,
        }


def evaluate_model(model: nn.Module, loader, classes: list[str], *,
                   autocast: contextlib.AbstractContextManager | None = None, all_reduce=None,
                   tta: str = "none") -> EvalResult:
    """Run ``model`` in eval mode over ``loader``, sums kept on the device (one sync, at the end).
    ``all_reduce(tensor)`` sums over DDP ranks in place."""
    model = with_tta(model, tta)
    was_training = model.training
    model.eval()
    k = len(classes)
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(k * k, dtype=torch.int64, device=device)
    with torch.inference_mode(), cpu_chunk_pool(device, autocast) as pool:
        for x, y in loader:
            if pool is not None:
                logits = torch.cat(list(pool.map(lambda c: inference(model, c),
                                                 x.split(CPU_EVAL_CHUNK))))
            else:
                with autocast or contextlib.nullcontext():
                    logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
            confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
    if all_reduce is not None:
        all_reduce(loss_sum)
        all_reduce(confusion)
    model.train(was_training)
    matrix = confusion.view(k, k).cpu()
    total, correct = int(matrix.sum()), int(matrix.diagonal().sum())
    if total == 0:  # the accuracy of no images is no number: never report it as 0%
        raise DataError("no images to evaluate: the split is empty")
    return EvalResult(loss=float(loss_sum) / total, accuracy=correct / total, correct=correct,
                      total=total, confusion=matrix.tolist(), classes=list(classes))


def piece_size(device: torch.device, batch_size: int) -> int:
    """The images per call evaluate_model gives a model."""
    return CPU_EVAL_CHUNK if device.type == "cpu" else batch_size


def inference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # thread-local: entered again in each pool thread
        return model(x)


class AutocastForward(nn.Module):
    """``model`` with each forward under autocast, entered inside the call (it is thread-local).
    Float32 logits out."""

    def __init__(self, model: nn.Module, autocast: Callable[[], contextlib.AbstractContextManager]):
        super().__init__()
        self.model, self.autocast = model, autocast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model(x).float()


def with_amp(model: nn.Module, amp: str) -> nn.Module:
    """``model`` evaluated under ``amp``; "none": the same object."""
    if amp == "none":
        return model
    device = next(model.parameters()).device
    check_amp(amp, device)
    return AutocastForward(model, autocast_for(amp, device))


@contextlib.contextmanager
def cpu_chunk_pool(device: torch.device, autocast=None):
    """On CPU without autocast: a pool of one thread per intra-op thread, each running
    single-threaded forwards of whole chunks (no per-op barrier for a busy core to stall).
    Elsewhere: None."""
    if device.type != "cpu" or not isinstance(autocast, (type(None), contextlib.nullcontext)):
        yield None
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # pool threads start single-threaded; restored below
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads,
                                initargs=(1,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(threads)


def evaluate_checkpoint(checkpoint: str | Path | Checkpoint, data: DataConfig | None = None, *,
                        split: str = "test", model: str | None = None,
                        model_kwargs: dict[str, Any] | None = None, normalize: str | None = None,
                        device: str = "auto", batch_size: int = EVAL_BATCH_SIZE,
                        seed: int | None = None, progress: bool = True, tta: str = "none",
                        compile: bool = False, amp: str = "none") -> EvalResult:
    """Evaluate a checkpoint on a split of ``data`` (default: the data its run recorded), drawn
    with ``seed`` (default: the run's own). ``tta``, ``compile``, ``amp``: see evaluate_split."""
    context = InferenceContext.build(checkpoint, data, model=model, model_kwargs=model_kwargs,
                                     normalize=normalize, device=device, seed=seed,
                                     progress=progress)
    return evaluate_split(context, split, batch_size, tta=tta, compile=compile, amp=amp)


def evaluate_split(context: InferenceContext, split: str = "test",
                   batch_size: int = EVAL_BATCH_SIZE, *, tta: str = "none",
                   compile: bool = False, amp: str = "none") -> EvalResult:
    """The context's model on one of its splits. ``tta``: a second, augmented pass in
    ``result.tta``. ``compile``: a BatchNorm-folded compiled copy, equal within float rounding.
    ``amp``: every forward under autocast."""
    if compile and amp != "none":
        raise ConfigError("`compile` (--compile) and `amp` (--amp): choose one (the compiled "
                          "copy is float32)")
    model = context.model  # first: a broken checkpoint is refused before the data is decoded
    images, labels = context.split(split)
    loader = context.loader(images, labels, batch_size)
    if compile:
        model = compile_for_inference(model, piece_size(context.device, batch_size))
    compile_seconds = model.compile_seconds if compile else None
    model = with_amp(model, amp)
    start = time.perf_counter()
    result = evaluate_model(model, loader, context.classes)
    plain_seconds = time.perf_counter() - start  # evaluate_model ends on the host
    result.data = {**context.splits.data_info(), "split": split, "images": len(labels),
                   "normalization": context.normalization_info()}
    result.compile_seconds, result.amp = compile_seconds, amp
    if tta != "none":
        start = time.perf_counter()
        augmented = evaluate_model(model, loader, context.classes, tta=tta)
        seconds = time.perf_counter() - start
        result.tta = TTAReport(tta, augmented.accuracy, augmented.correct, augmented.total,
                               augmented.loss, augmented.total / max(seconds, 1e-9),
                               result.total / max(plain_seconds, 1e-9))
    return result


# The weight of each view, in the order tta_logits stacks them (they sum to 1).
TTA_WEIGHTS = {"none": (1.0,), "flip": (0.5, 0.5),
               "flip-translate": (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)}
TTA_VIEWS = {mode: len(weights) for mode, weights in TTA_WEIGHTS.items()}  # forwards per image


def shift_batch(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (B, C, H, W) moved ``dy`` rows down and ``dx`` columns right (|dy|, |dx| <= 1),
    the uncovered border filled by reflection."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def tta_logits(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Class scores of ``x`` (B, C, H, W) under ``mode``, (B, K): the log of the weighted mean of
    the views' probabilities, so that softmax, argmax and cross-entropy are the averaged
    prediction's; ``none``: ``model(x)`` itself."""
    if mode == "none":
        return model(x)
    weights = TTA_WEIGHTS[mode]
    views = [x, x.flip(-1)]  # in TTA_WEIGHTS' order
    if mode == "flip-translate":
        for shifted in (shift_batch(x, 1, 1), shift_batch(x, -1, -1)):
            views += [shifted, shifted.flip(-1)]
    logits = model(torch.cat(views)).float()  # (V * B, K)
    log_probs = F.log_softmax(logits, dim=1).view(len(weights), x.shape[0], -1)  # (V, B, K)
    log_weights = torch.tensor([math.log(w) for w in weights], device=logits.device)
    # log(sum_v w_v p_v), computed stably in log space
    return torch.logsumexp(log_probs + log_weights.view(-1, 1, 1), dim=0)


class TTAModel(nn.Module):
    """``model`` whose forward is ``tta_logits(model, x, mode)``."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        if mode not in TTA_MODES:
            raise ConfigError(f"`tta` (--tta) must be one of {', '.join(TTA_MODES)}, got {mode!r}")
        self.model, self.mode = model, mode
        self.train(model.training)  # a new Module says True: evaluate_model restores this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, x, self.mode)


def with_tta(model: nn.Module, mode: str) -> nn.Module:
    """``model`` itself for ``none`` (results stay bitwise), else TTAModel."""
    return model if mode == "none" else TTAModel(model, mode)


@dataclass
class TTAReport:

    mode: str
    accuracy: float  # in [0, 1]
    correct: int
    total: int
    loss: float  # mean negative log-likelihood of the averaged probabilities
    images_per_second: float  # of the TTA pass
    plain_images_per_second: float  # of the plain pass, same data, same run

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "views": TTA_VIEWS[self.mode], "accuracy": self.accuracy,
                "correct": self.correct, "total": self.total, "loss": self.loss,
                "images_per_second": self.images_per_second,
                "plain_images_per_second": self.plain_images_per_second}
