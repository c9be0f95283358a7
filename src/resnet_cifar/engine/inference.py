"""Checkpoint + data options + device -> the model, its input normalization and the splits.

    context = InferenceContext.build("runs/r20/best.pt", device="cpu")
    images, labels = context.split("test")
    loader = context.loader(images, labels, batch_size=1000)
    logits = context.model(next(iter(loader))[0])

The one home of what eval, show, report, predict and export each need before they run a model,
built once and shared (report evaluates and draws its grid from the same context). The model
and the data are made on first use: predict on user images never decodes a data set, and export
refuses an impossible output before the model is built.

Normalization, one rule for every consumer: an explicit ``normalize`` mode wins, then the
statistics the checkpoint recorded, then the data's own (the data config's mode on the data at
hand). Without a data set (predict, export), "dataset" means the checkpoint's own statistics when
it was trained with "dataset", else CIFAR-10's published ones.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from resnet_cifar.data.normalization import Normalization
from resnet_cifar.engine.checkpoint import Checkpoint, load_checkpoint
from resnet_cifar.errors import CheckpointError, ConfigError, DataError
from resnet_cifar.models.fold import fold_batchnorm

if TYPE_CHECKING:
    from resnet_cifar.config import DataConfig
    from resnet_cifar.data import CifarArrays, DeviceLoader
    from resnet_cifar.engine.splits import Splits


@dataclass
class InferenceContext:
    """A checkpoint ready to run on a device, with the data it is evaluated on (if any)."""

    checkpoint: Checkpoint
    device: torch.device
    data: DataConfig | None  # resolved data options; None: no data set (user images)
    normalize: str | None = None  # an explicit mode, which wins over everything
    seed: int = 0  # draws data.val_split as the run did: the run's own seed by default
    progress: bool = False  # progress bars while the data set is decoded

    @classmethod
    def build(
        cls,
        checkpoint: str | os.PathLike | Checkpoint,
        data: DataConfig | None = None,
        *,
        dataset: bool = True,
        model: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        normalize: str | None = None,
        device: str = "auto",
        seed: int | None = None,
        progress: bool = False,
    ) -> InferenceContext:
        """A context for ``checkpoint`` (a path, ours or foreign, or a loaded Checkpoint).

        ``data`` defaults to the data the run recorded; ``dataset=False``: no data set at all.
        ``model``/``model_kwargs`` name the architecture of a foreign file. ``seed`` draws the
        validation hold-out (default: the run's own, so ``val`` is what the run held out).
        """
        from resnet_cifar.engine.runtime import resolve_device
        from resnet_cifar.engine.splits import data_for_run

        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_named(
            checkpoint, model, model_kwargs)
        if dataset:
            data = data or data_for_run(ckpt.config, {})  # default: what the run was trained on
            if normalize is not None:
                data = dataclasses.replace(data, normalize=normalize)
        else:
            data = None
        if seed is None:
            seed = run_seed(ckpt)
        return cls(ckpt, resolve_device(device), data, normalize, seed, progress)

    # ---- the model

    @cached_property
    def model(self) -> nn.Module:
        """The checkpoint's model in eval mode on the device, built on first use."""
        return self.checkpoint.build_model().to(self.device).eval()

    @cached_property
    def normalization(self) -> Normalization:
        """How inputs are normalized, by the rule in this module's docstring; a guess (the
        checkpoint records none and no `data.normalize` was given) is warned of, once."""
        norm = self._resolve_normalization()
        note = self._guess_note(norm)
        if note:
            warnings.warn(note, UserWarning, stacklevel=3)  # at the caller, past functools
        return norm

    def _resolve_normalization(self) -> Normalization:
        ckpt = self.checkpoint
        if self.normalize is None and ckpt.mean is not None and ckpt.std is not None:
            return Normalization.explicit(ckpt.mean, ckpt.std, mode=ckpt.normalize)
        if self.data is not None:
            return self.splits.normalization  # data.normalize (= normalize, when given)
        mode = self.normalize or "dataset"
        if mode == "dataset":
            own = ckpt.normalize == "dataset" and ckpt.mean is not None and ckpt.std is not None
            return Normalization.explicit(ckpt.mean, ckpt.std, mode) if own else \
                Normalization.cifar10()
        return Normalization.for_mode(mode, None)

    def normalization_source(self) -> str:
        """Where the normalization comes from: "`data.normalize`" (given), "checkpoint", or,
        for a checkpoint that records none, "data" or "default" (CIFAR-10's): a guess."""
        if self.normalize is not None:
            return "`data.normalize`"  # a value eval's JSON records
        if self.checkpoint.mean is not None and self.checkpoint.std is not None:
            return "checkpoint"
        return "data" if self.data is not None else "default"

    def _guess_note(self, norm: Normalization) -> str | None:
        source = self.normalization_source()
        if source not in ("data", "default"):
            return None
        return (f"{self.checkpoint.path.name} records no normalization: inputs are normalized "
                f"with {'this data' if source == 'data' else 'CIFAR-10'}'s {norm.mode!r} "
                "statistics; if it was trained otherwise, pass `data.normalize` (--normalize) "
                "dataset, half or imagenet, or its results here are not its own")

    def normalization_info(self) -> dict[str, Any]:
        """How inputs are normalized and why (eval prints it, its JSON records it), with the
        warning's text as ``note`` when it is a guess (see normalization_source)."""
        norm = self.normalization
        info = {"mode": norm.mode, "mean": list(norm.mean), "std": list(norm.std),
                "source": self.normalization_source()}
        note = self._guess_note(norm)
        return {**info, "note": note} if note else info

    # ---- the data

    @cached_property
    def arrays(self) -> CifarArrays:
        """The decoded data set, checked against the fingerprint the run recorded."""
        from resnet_cifar.engine.splits import load_arrays

        assert self.data is not None, "this context has no data set"
        return load_arrays(self.data, self.progress)

    @cached_property
    def splits(self) -> Splits:
        """Train / validation / test as the run drew them (its seed, its data.val_split)."""
        from resnet_cifar.engine.splits import make_splits

        splits = make_splits(self.arrays, self.data, self.seed)
        check_classes(self.checkpoint, splits.classes)  # on every read, whatever the consumer
        return splits

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of ``test``, ``val`` or ``train``."""
        from resnet_cifar.engine.splits import pick_split

        if name == "val":
            self._check_held_out()
        return pick_split(self.splits, name)

    def _check_held_out(self) -> None:
        """`split` val must be the very images the run held out: another size or seed draws
        images the run trained on, and their accuracy would pass for a held-out one."""
        config = self.checkpoint.config
        if not config:  # a foreign checkpoint records no run: nothing to check against
            return
        held = int((config.get("data") or {}).get("val_split") or 0)
        seed = run_seed(self.checkpoint)
        asked = self.data.val_split if self.data is not None else 0
        if not asked or (held, seed) == (asked, self.seed):
            return  # no val split asked for: pick_split says what is missing
        ran = (f"held out {held} images with seed {seed}" if held
               else "held out no images (it trained on the whole training split)")
        raise DataError(
            f"{self.checkpoint.path}: its run {ran}, so a val split of {asked} images drawn with "
            f"seed {self.seed} holds images it trained on; leave `data.val_split` (--val-split) "
            "and the seed as the run recorded them, or evaluate on the test split"
        )

    @property
    def classes(self) -> list[str]:
        """Class names of results on the data: the checkpoint's, else the data's."""
        return list(self.checkpoint.classes or self.splits.classes)

    def loader(self, images, labels, batch_size: int) -> DeviceLoader:
        """An evaluation loader (fixed order, no augmentation) normalized as the model needs."""
        from resnet_cifar.data import DeviceLoader

        return DeviceLoader(images, labels, batch_size=batch_size, train=False,
                            normalization=self.normalization, device=self.device)


CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".tar", ".bin", ".safetensors"}


def load_named(name: str | os.PathLike, model: str | None,
               model_kwargs: dict[str, Any] | None) -> Checkpoint:
    """A checkpoint file, a weights folder, or published weights by their tag
    ("resnet20.fast15_jpeg") where no file has that name."""
    from resnet_cifar.engine.checkpoint import pretrained_checkpoint
    from resnet_cifar.models.pretrained import canonical_tag

    if os.path.isdir(name):
        return pretrained_checkpoint(name)
    if not os.path.exists(name):
        path = Path(name)
        tag = canonical_tag(str(name))
        if tag or (path.name == str(name) and path.suffix not in CHECKPOINT_SUFFIXES):
            return pretrained_checkpoint(tag or name)  # a mistyped tag: the error lists them
    return load_checkpoint(name, model, model_kwargs)


def run_seed(ckpt: Checkpoint) -> int:
    """The seed the checkpoint's run drew its splits with (0 when it records none)."""
    return int((ckpt.config or {}).get("seed", 0))


def check_classes(ckpt: Checkpoint, classes: list[str]) -> None:
    """The data's labels must mean what the checkpoint's outputs mean: the same number of
    classes, and the same names in the same order where the checkpoint records them. Other pixels
    may be allowed (`data.allow_other_data`); other labels never are."""
    if ckpt.num_classes != len(classes):
        raise CheckpointError(
            f"{ckpt.path}: class-count mismatch: the checkpoint has {ckpt.num_classes} classes, "
            f"the data has {len(classes)}"
        )
    if ckpt.classes is not None and list(ckpt.classes) != list(classes):
        i = next(i for i, (a, b) in enumerate(zip(ckpt.classes, classes, strict=True)) if a != b)
        raise CheckpointError(
            f"{ckpt.path}: class {i} is {ckpt.classes[i]!r} in the checkpoint but {classes[i]!r} "
            f"in the data (checkpoint: {', '.join(ckpt.classes)}); its labels would not mean the "
            "same classes: use data with the checkpoint's class folders in that order"
        )


class CompiledInference(nn.Module):
    """``compiled`` (a torch.compile'd module) fed fixed-size pieces of ``batch`` images."""

    def __init__(self, compiled: nn.Module, batch: int, compile_seconds: float,
                 threads: int | None):
        super().__init__()
        self.compiled = compiled
        self.batch = batch
        self.compile_seconds = compile_seconds  # the first call: tracing and code generation
        self.threads = threads  # CPU: the intra-op thread count it was compiled for

    def forward(self, x: Tensor) -> Tensor:
        # torch.compile guards on the thread count: another one would compile a second graph
        before = torch.get_num_threads()
        if self.threads is not None and before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            outputs = []
            with torch.inference_mode():  # compiled under it: its guards expect it
                for piece in x.split(self.batch):
                    n = len(piece)
                    if n < self.batch:  # pad: one static shape, never a second compilation
                        padding = piece.new_zeros((self.batch - n, *piece.shape[1:]))
                        piece = torch.cat([piece, padding])
                    elif not piece.is_inference():  # the guards also check this: a copy made
                        piece = piece.clone()  # here is an inference tensor, as compiled
                    outputs.append(self.compiled(piece.contiguous())[:n])
            return torch.cat(outputs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)


def compile_for_inference(model: nn.Module, batch: int,
                          example: Tensor | None = None) -> CompiledInference:
    """A folded, frozen, compiled copy of ``model`` (left untouched) for inputs like ``example``
    (default: CIFAR-shaped, on the model's device), compiled now on a zero batch of ``batch``
    images. A failed compilation (no C++ compiler, an unsupported device) is a ConfigError that
    says to run without compiling."""
    device = next(model.parameters()).device
    folded = fold_batchnorm(model)
    if example is None:
        example = torch.zeros(1, 3, 32, 32, device=device)
    compiled = torch.compile(folded, options={"freezing": True}, dynamic=False)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            if device.type == "cpu":  # kernels are generated for the thread count at hand
                torch.set_num_threads(1)
            compiled(example.new_zeros((batch, *example.shape[1:])))
    except Exception as err:  # dynamo wraps every backend failure; its first line says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"torch.compile could not compile {type(model).__name__} on {device} "
                          f"({first[:200]}); run without `compile` (--compile)") from None
    finally:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return CompiledInference(compiled, batch, time.perf_counter() - start,
                             1 if device.type == "cpu" else None)
