"""Accuracy, mean loss, per-class accuracy and the confusion matrix of a model on a split."""

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
from resnet_cifar.engine.inference import InferenceContext
from resnet_cifar.errors import ConfigError, DataError

# On CPU the model sees at most this many images at a time: the activations of 32 images (2 MB
# for ResNet-20's first stage) stay near the core, those of a 1000-image loader batch do not, which
# measured about 2x slower per image; 32 measured 1.2x faster than 64 for ResNet-20 on a Zen 4
# (1 MB of L2 per core) and 1.03-1.06x for the recurrent models (docs/benchmarks.md). The loader's
# batch is split, not changed.
CPU_EVAL_CHUNK = 32


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy per image
    accuracy: float  # in [0, 1]
    correct: int
    total: int
    confusion: list[list[int]]  # confusion[true][pred]
    classes: list[str]
    # which data it was computed on (Splits.data_info() and the split); None inside training
    data: dict[str, Any] | None = None
    # test-time augmentation computed beside this plain result (evaluate_split's ``tta``)
    tta: TTAReport | None = None
    # seconds torch.compile took before evaluating (evaluate_split's ``compile``); None: eager
    compile_seconds: float | None = None
    # the autocast the forwards ran under (evaluate_split's ``amp``): "none" is float32
    amp: str = "none"

    @property
    def per_class_accuracy(self) -> list[float]:
        return [row[i] / max(sum(row), 1) for i, row in enumerate(self.confusion)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "classes": self.classes,
            "per_class_accuracy": dict(zip(self.classes, self.per_class_accuracy, strict=True)),
            "confusion": self.confusion,
            **({"data": self.data} if self.data is not None else {}),
            **({"tta": self.tta.to_dict()} if self.tta is not None else {}),
            **({"compile_seconds": self.compile_seconds}
               if self.compile_seconds is not None else {}),
            "amp": self.amp,
        }


def evaluate_model(
    model: nn.Module,
    loader,
    classes: list[str],
    *,
    autocast: contextlib.AbstractContextManager | None = None,
    all_reduce=None,
    tta: str = "none",
) -> EvalResult:
    """Run ``model`` in eval mode over ``loader``, sums kept on the device (one sync, at the end).

    ``all_reduce(tensor)`` sums a tensor over DDP ranks in place, so sharded evaluation is exact.
    ``tta``: a config.TTA_MODES mode; its logits are tta_logits' (the loss is then the
    negative log-likelihood of the averaged probabilities); "none" runs ``model`` itself.
    """
    model = with_tta(model, tta)  # "none": the same object, so the result is bitwise unchanged
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
    total = int(matrix.sum())
    correct = int(matrix.diagonal().sum())
    if total == 0:  # the accuracy of no images is no number: never report it as 0%
        raise DataError("no images to evaluate: the split is empty")
    return EvalResult(
        loss=float(loss_sum) / total,
        accuracy=correct / total,
        correct=correct,
        total=total,
        confusion=matrix.tolist(),
        classes=list(classes),
    )


def piece_size(device: torch.device, batch_size: int) -> int:
    """The images per call evaluate_model gives a model: CPU_EVAL_CHUNK on a CPU, elsewhere the
    loader's whole batch: the static shape a compiled copy (compile_for_inference) is built for."""
    return CPU_EVAL_CHUNK if device.type == "cpu" else batch_size


def inference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():  # thread-local: entered again in each pool thread
        return model(x)


class AutocastForward(nn.Module):
    """``model`` with each forward under autocast, entered inside the call: autocast is
    thread-local, so cpu_chunk_pool's threads each enter it themselves. Float32 logits out."""

    def __init__(self, model: nn.Module, autocast: Callable[[], contextlib.AbstractContextManager]):
        super().__init__()
        self.model = model
        self.autocast = autocast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model(x).float()


def with_amp(model: nn.Module, amp: str) -> nn.Module:
    """``model`` evaluated under ``amp`` (config.AMP_MODES) on its own device; "none": the same
    object, so a float32 evaluation is bitwise unchanged."""
    if amp == "none":
        return model
    from resnet_cifar.engine.setup import autocast_for, check_amp

    device = next(model.parameters()).device
    check_amp(amp, device)
    return AutocastForward(model, autocast_for(amp, device))


@contextlib.contextmanager
def cpu_chunk_pool(device: torch.device, autocast=None):
    """On CPU (and without an autocast context, which is thread-local): a pool of one thread per
    intra-op thread, each running single-threaded forwards of one chunk of images each. Whole chunks
    in parallel, rather than every op split across cores, leave no per-op barrier for a busy
    core to stall. Elsewhere: None (the caller runs the whole batch at once)."""
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


def evaluate_checkpoint(
    checkpoint: str | Path | Checkpoint,
    data: DataConfig | None = None,
    *,
    split: str = "test",
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    normalize: str | None = None,
    device: str = "auto",
    batch_size: int = EVAL_BATCH_SIZE,
    seed: int | None = None,
    progress: bool = True,
    tta: str = "none",
    compile: bool = False,
    amp: str = "none",
) -> EvalResult:
    """Evaluate a checkpoint file on a split (of ``data``; default: the data its run recorded,
    checked against its fingerprint). ``seed`` draws the `data.val_split` hold-out; default: the
    run's own seed, so that ``split="val"`` is the images the run held out, never ones it trained
    on. Normalization: as `InferenceContext` resolves it (an explicit ``normalize``, else the
    statistics the checkpoint was trained with, else ``data.normalize``; foreign checkpoints
    record none: pass the one they were trained with). ``tta``, ``compile``, ``amp``: see
    `evaluate_split`.
    """
    context = InferenceContext.build(checkpoint, data, model=model, model_kwargs=model_kwargs,
                                     normalize=normalize, device=device, seed=seed,
                                     progress=progress)
    return evaluate_split(context, split, batch_size, tta=tta, compile=compile, amp=amp)


def evaluate_split(context: InferenceContext, split: str = "test",
                   batch_size: int = EVAL_BATCH_SIZE, *, tta: str = "none",
                   compile: bool = False, amp: str = "none") -> EvalResult:
    """The context's model on one of its splits, with which data it was computed on.

    ``tta`` other than "none" (config.TTA_MODES): the result is still the plain pass; a second,
    test-time-augmented pass over the same images is reported beside it in ``result.tta``, with
    the images per second of both passes (its cost). ``compile``: run a BatchNorm-folded copy
    compiled with frozen weights (engine/inference.py), faster once compiled, equal to the eager
    logits within float rounding (a near tie may flip); its compile time is
    ``result.compile_seconds``, outside the images per second. ``amp`` (bf16 on a CPU with
    bfloat16 instructions or a GPU, fp16 on a GPU): every forward under autocast, faster there
    but not the float32 result (a near tie may flip), so ``result.amp`` says so; not with
    ``compile``."""
    if compile and amp != "none":
        raise ConfigError("`compile` (--compile) and `amp` (--amp): choose one (the compiled "
                          "copy is float32)")
    model = context.model  # first: a broken checkpoint is refused before the data is decoded
    images, labels = context.split(split)
    loader = context.loader(images, labels, batch_size)
    compile_seconds = None
    if compile:
        from resnet_cifar.engine.inference import compile_for_inference

        model = compile_for_inference(model, piece_size(context.device, batch_size))
        compile_seconds = model.compile_seconds
    model = with_amp(model, amp)
    start = time.perf_counter()
    result = evaluate_model(model, loader, context.classes)
    plain_seconds = time.perf_counter() - start  # evaluate_model syncs: it ends on the host
    result.data = {**context.splits.data_info(), "split": split, "images": len(labels),
                   "normalization": context.normalization_info()}
    result.compile_seconds = compile_seconds
    result.amp = amp
    if tta != "none":
        start = time.perf_counter()
        augmented = evaluate_model(model, loader, context.classes, tta=tta)
        seconds = time.perf_counter() - start
        result.tta = TTAReport(
            mode=tta, accuracy=augmented.accuracy, correct=augmented.correct,
            total=augmented.total, loss=augmented.loss,
            images_per_second=augmented.total / max(seconds, 1e-9),
            plain_images_per_second=result.total / max(plain_seconds, 1e-9))
    return result


# Forward images per input image, for each mode: the cost of TTA relative to a plain pass.
TTA_VIEWS = {"none": 1, "flip": 2, "flip-translate": 6}

# The weight of each view, in the order tta_views stacks them (they sum to 1).
TTA_WEIGHTS = {
    "none": (1.0,),
    "flip": (0.5, 0.5),
    "flip-translate": (0.25, 0.25, 0.125, 0.125, 0.125, 0.125),
}


def check_tta_mode(mode: str) -> None:
    """Refuse a mode that is not one of config.TTA_MODES, naming the setting."""
    if mode not in TTA_MODES:
        raise ConfigError(f"`tta` (--tta) must be one of {', '.join(TTA_MODES)}, got {mode!r}")


def shift_batch(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (B, C, H, W) with its content moved ``dy`` rows down and ``dx`` columns right
    (|dy|, |dx| <= 1), the uncovered border filled by reflection."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def tta_views(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The views of ``x`` (B, C, H, W) for ``mode``, stacked view-major: (V * B, C, H, W)."""
    check_tta_mode(mode)
    views = [x]
    if mode in ("flip", "flip-translate"):
        views.append(x.flip(-1))
    if mode == "flip-translate":
        for shifted in (shift_batch(x, 1, 1), shift_batch(x, -1, -1)):
            views += [shifted, shifted.flip(-1)]
    return torch.cat(views)


def tta_logits(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Class scores of ``x`` (B, C, H, W) under test-time augmentation ``mode``: (B, K).

    ``none``: ``model(x)`` itself. Otherwise: log of the weighted mean of the views' softmax
    probabilities (float32), so that softmax, argmax and cross-entropy of the result are those of
    the averaged prediction."""
    if mode == "none":
        return model(x)
    weights = TTA_WEIGHTS[mode]
    logits = model(tta_views(x, mode)).float()  # (V * B, K)
    log_probs = F.log_softmax(logits, dim=1).view(len(weights), x.shape[0], -1)  # (V, B, K)
    log_weights = torch.tensor([math.log(w) for w in weights], device=logits.device)
    # log(sum_v w_v p_v), computed stably in log space
    return torch.logsumexp(log_probs + log_weights.view(-1, 1, 1), dim=0)


class TTAModel(nn.Module):
    """``model`` whose forward is ``tta_logits(model, x, mode)``: anything that runs a model
    (evaluation's chunked forwards, predict) runs the augmented one unchanged. The wrapped
    model is a submodule, so eval()/train()/parameters() reach it."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        check_tta_mode(mode)
        self.model = model
        self.mode = mode
        # a new Module says training=True: take the model's own mode, or a caller that saves and
        # restores it (evaluate_model) would leave an eval-mode model in training mode
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, x, self.mode)


def with_tta(model: nn.Module, mode: str) -> nn.Module:
    """``model`` itself for ``none`` (the same object, so results stay bitwise), else TTAModel."""
    return model if mode == "none" else TTAModel(model, mode)


@dataclass
class TTAReport:
    """A test-time-augmented pass, reported beside the plain one (never instead of it): its
    accuracy and loss, and what it cost in images per second against the plain pass."""

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
