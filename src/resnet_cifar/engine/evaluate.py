"""Accuracy, mean loss, per-class accuracy and the confusion matrix of a model on a split."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.config import EVAL_BATCH_SIZE, DataConfig
from resnet_cifar.engine.checkpoint import Checkpoint
from resnet_cifar.engine.inference import InferenceContext
from resnet_cifar.engine.tta import TTAReport, with_tta
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
    chunk: int | None = None,
    tta: str = "none",
) -> EvalResult:
    """Run ``model`` in eval mode over ``loader``, sums kept on the device (one sync, at the end).

    ``all_reduce(tensor)`` sums a tensor over DDP ranks in place, so sharded evaluation is exact.
    ``chunk``: on CPU, images per forward (default CPU_EVAL_CHUNK; see cpu_chunk_pool).
    ``tta``: a config.TTA_MODES mode; its logits are those of engine/tta.py (the loss is then the
    negative log-likelihood of the averaged probabilities); "none" runs ``model`` itself.
    """
    model = with_tta(model, tta)  # "none": the same object, so the result is bitwise unchanged
    chunk = chunk or CPU_EVAL_CHUNK
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
                                                 x.split(chunk))))
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


def piece_size(device: torch.device, batch_size: int, chunk: int | None = None) -> int:
    """The images per call evaluate_model gives a model: on CPU its chunk (``chunk``, default
    CPU_EVAL_CHUNK), elsewhere the loader's whole batch: the static shape a compiled copy
    (engine/compiled.py) is built for."""
    return (chunk or CPU_EVAL_CHUNK) if device.type == "cpu" else batch_size


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
    from resnet_cifar.engine.train_setup import autocast_for, check_amp

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
    compiled with frozen weights (engine/compiled.py), faster once compiled, equal to the eager
    logits within float rounding (a near tie may flip); its compile time is
    ``result.compile_seconds``, outside the images per second. ``amp`` (bf16 on a CPU with
    bfloat16 instructions or a GPU, fp16 on a GPU): every forward under autocast, faster there
    but not the float32 result (a near tie may flip), so ``result.amp`` says so; not with
    ``compile``."""
    if compile and amp != "none":
        raise ConfigError("`compile` and `amp`: choose one (the compiled copy is float32)")
    model = context.model  # first: a broken checkpoint is refused before the data is decoded
    images, labels = context.split(split)
    loader = context.loader(images, labels, batch_size)
    compile_seconds = None
    if compile:
        from resnet_cifar.engine.compiled import compile_for_inference

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
