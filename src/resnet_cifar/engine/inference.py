"""Data options -> the splits a run uses; checkpoint + data + device -> the model to run on them.

Model and data are made on first use. Normalization: an explicit ``normalize`` wins, then the
checkpoint's statistics, then the data's; without data, "dataset" means the checkpoint's own
statistics when it was trained with "dataset", else CIFAR-10's.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from resnet_cifar.config import DataConfig, merge_into
from resnet_cifar.data import (
    CifarArrays,
    DeviceLoader,
    load_cifar,
    split_train_val,
    stratified_subset,
)
from resnet_cifar.data.normalization import Normalization
from resnet_cifar.engine.checkpoint import Checkpoint, load_checkpoint
from resnet_cifar.engine.runtime import resolve_device
from resnet_cifar.errors import CheckpointError, ConfigError, DataError
from resnet_cifar.models.fold import fold_batchnorm


@dataclass
class Splits:
    train_images: np.ndarray  # uint8 (N, 3, 32, 32)
    train_labels: np.ndarray  # int64 (N,)
    val_images: np.ndarray  # the held-out split, or the test split when val_is_test
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    val_is_test: bool  # no data.val_split: validation (and best-checkpoint choice) uses test
    source: str
    fingerprint: str = ""  # of the decoded data (CifarArrays.fingerprint)
    expected_fingerprint: str | None = None  # what the run recorded; None: nothing recorded
    normalize: str | None = None  # the mode mean/std come from (data.normalize)

    @property
    def normalization(self) -> Normalization:
        return Normalization.explicit(self.mean, self.std, mode=self.normalize)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def data_matches(self) -> bool | None:
        """Whether the data is what the run recorded; None: the run recorded none."""
        return None if self.expected_fingerprint is None else \
            self.expected_fingerprint == self.fingerprint

    def data_info(self) -> dict[str, Any]:
        """Which data a result was computed on (text and JSON outputs)."""
        return {"source": self.source, "fingerprint": self.fingerprint,
                "recorded_fingerprint": self.expected_fingerprint,
                "matches_run": self.data_matches}

    def data_line(self) -> str:
        return describe_data(self.data_info())


def describe_data(info: dict[str, Any]) -> str:
    """``Splits.data_info()`` in one line."""
    verdict = {True: "the data the run recorded",
               None: "the run recorded no fingerprint to check it against",
               False: f"NOT the data the run recorded ({short(info['recorded_fingerprint'])}); "
                      "used because of `data.allow_other_data` (--allow-other-data)"
               }[info["matches_run"]]
    return f"data {info['source']} ({short(info['fingerprint'])}): {verdict}"


def short(fingerprint: str | None) -> str:
    """``sha256:`` and the first 12 hex digits."""
    return (fingerprint or "none")[:19]


def load_arrays(data: DataConfig, progress: bool = True, download: bool = True) -> CifarArrays:
    """The decoded data ``data`` names, refused when ``data.fingerprint`` names other data."""
    arrays = load_cifar(data.path, cache_dir=data.cache_dir, dataset=data.dataset,
                        coarse=data.coarse, resize=data.resize, download=download,
                        progress=progress)
    if data.fingerprint is not None and not data.allow_other_data and \
            arrays.fingerprint != data.fingerprint:
        raise DataError(
            f"{arrays.source} is not the data the run recorded: its content fingerprint is "
            f"{short(arrays.fingerprint)}, the run's is {short(data.fingerprint)}; pass the run's "
            "data with `data.path` (--data) PATH, or add `data.allow_other_data` "
            "(--allow-other-data) to use this data anyway (every result then says so)")
    return arrays


def make_splits(arrays: CifarArrays, data: DataConfig, seed: int) -> Splits:
    """Apply data.val_split and data.train_subset (stratified, seeded) and the normalization."""
    train_x, train_y = arrays.train_images, arrays.train_labels
    if data.val_split:
        if data.val_split >= len(train_y):
            raise DataError(
                f"`data.val_split` (--val-split) {data.val_split} leaves no training images "
                f"({len(train_y)} in {arrays.source}); choose a smaller value")
        train_x, train_y, val_x, val_y = split_train_val(train_x, train_y, data.val_split, seed)
    else:
        if len(arrays.test_labels) == 0:
            raise DataError(f"{arrays.source} has no test split to validate on; "
                            "pass `data.val_split` (--val-split) N")
        val_x, val_y = arrays.test_images, arrays.test_labels
    if data.train_subset > len(train_y):  # a typo, or other data than meant: never a silent "all"
        raise DataError(
            f"`data.train_subset` (--train-subset) {data.train_subset} is more than the "
            f"{len(train_y)} training images of {arrays.source}"
            + (" left by `data.val_split` (--val-split)" if data.val_split else "")
            + f"; choose at most {len(train_y)}, or leave it out to train on all of them")
    if 0 < data.train_subset < len(train_y):
        train_x, train_y = stratified_subset(train_x, train_y, data.train_subset, seed)
    norm = Normalization.for_mode(data.normalize, (arrays.mean, arrays.std))
    return Splits(train_images=train_x, train_labels=train_y, val_images=val_x, val_labels=val_y,
                  test_images=arrays.test_images, test_labels=arrays.test_labels,
                  classes=list(arrays.classes), mean=norm.mean, std=norm.std,
                  val_is_test=not data.val_split, source=arrays.source,
                  fingerprint=arrays.fingerprint, expected_fingerprint=data.fingerprint,
                  normalize=data.normalize)


def pick_split(splits: Splits, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "test":
        if len(splits.test_labels) == 0:
            raise DataError(f"{splits.source} has no test split; use `split` (--split) val "
                            "with `data.val_split` (--val-split)")
        return splits.test_images, splits.test_labels
    if split == "val":
        if splits.val_is_test:  # a val split drawn now would hold images the run trained on
            raise DataError(
                "`split` (--split) val: no images were held out (without `data.val_split` "
                "(--val-split), validation is the test set); evaluate on `split` (--split) test")
        return splits.val_images, splits.val_labels
    if split == "train":
        return splits.train_images, splits.train_labels
    raise DataError(f"unknown split {split!r}; use test, val or train")


# Data options a run records that still hold later (cache_dir belongs to the machine, not the run)
RECORDED_DATA_KEYS = ("path", "dataset", "coarse", "resize", "val_split", "normalize",
                      "fingerprint")


def data_for_run(run_config: dict[str, Any] | None, flags: dict[str, Any]) -> DataConfig:
    """The data a run recorded, overridden by the data ``flags`` given now."""
    recorded = (run_config or {}).get("data") or {}
    values = {k: recorded[k] for k in RECORDED_DATA_KEYS if k in recorded}
    path = values.get("path")
    if path and not flags.get("path") and not Path(path).exists():
        raise DataError(
            f"the data this run was trained on, {path}, is not there any more (moved, deleted, or "
            "a run directory from another machine); pass `data.path` (--data) PATH to where that "
            "data is now (it is checked against the run's fingerprint)")
    config = DataConfig()
    merge_into(config, {**values, **flags}, prefix="data.")
    return config


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
    def build(cls, checkpoint: str | os.PathLike | Checkpoint, data: DataConfig | None = None, *,
              dataset: bool = True, model: str | None = None,
              model_kwargs: dict[str, Any] | None = None, normalize: str | None = None,
              device: str = "auto", seed: int | None = None,
              progress: bool = False) -> InferenceContext:
        """``data``: default, what the run recorded; ``dataset=False``: none. ``model`` and
        ``model_kwargs`` name a foreign file's architecture."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_named(
            checkpoint, model, model_kwargs)
        data = (data or data_for_run(ckpt.config, {})) if dataset else None
        if data is not None and normalize is not None:
            data = dataclasses.replace(data, normalize=normalize)
        seed = run_seed(ckpt) if seed is None else seed
        return cls(ckpt, resolve_device(device), data, normalize, seed, progress)

    @cached_property
    def model(self) -> nn.Module:
        return self.checkpoint.build_model().to(self.device).eval()

    @cached_property
    def normalization(self) -> Normalization:
        """The module docstring's rule; a guess is warned of once."""
        norm = self._resolve_normalization()
        if note := self._guess_note(norm):
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
        """"`data.normalize`" (given), "checkpoint", or the guesses "data" and "default"."""
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
        """How inputs are normalized and why, with the warning's text as ``note`` for a guess."""
        norm = self.normalization
        info = {"mode": norm.mode, "mean": list(norm.mean), "std": list(norm.std),
                "source": self.normalization_source()}
        if note := self._guess_note(norm):
            info["note"] = note
        return info

    @cached_property
    def arrays(self) -> CifarArrays:
        assert self.data is not None, "this context has no data set"
        return load_arrays(self.data, self.progress)

    @cached_property
    def splits(self) -> Splits:
        """Train / validation / test as the run drew them (its seed, its data.val_split)."""
        splits = make_splits(self.arrays, self.data, self.seed)
        check_classes(self.checkpoint, splits.classes)  # on every read, whatever the consumer
        return splits

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of ``test``, ``val`` or ``train``."""
        if name == "val":
            self._check_held_out()
        return pick_split(self.splits, name)

    def _check_held_out(self) -> None:
        """`split` val must be the very images the run held out."""
        config = self.checkpoint.config
        if not config:  # a foreign checkpoint records no run
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
            "and the seed as the run recorded them, or evaluate on the test split")

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.classes or self.splits.classes)

    def loader(self, images, labels, batch_size: int) -> DeviceLoader:
        """Fixed order, no augmentation, normalized as the model needs."""
        return DeviceLoader(images, labels, batch_size=batch_size, train=False,
                            normalization=self.normalization, device=self.device)


CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".tar", ".bin", ".safetensors"}


def load_named(name: str | os.PathLike, model: str | None,
               model_kwargs: dict[str, Any] | None) -> Checkpoint:
    """A checkpoint file, a weights folder, or published weights by tag where no file has it."""
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
    return int((ckpt.config or {}).get("seed", 0))


def check_classes(ckpt: Checkpoint, classes: list[str]) -> None:
    """The data's labels must mean what the checkpoint's outputs mean (count, and names)."""
    if ckpt.num_classes != len(classes):
        raise CheckpointError(
            f"{ckpt.path}: class-count mismatch: the checkpoint has {ckpt.num_classes} classes, "
            f"the data has {len(classes)}")
    if ckpt.classes is not None and list(ckpt.classes) != list(classes):
        i = next(i for i, (a, b) in enumerate(zip(ckpt.classes, classes, strict=True)) if a != b)
        raise CheckpointError(
            f"{ckpt.path}: class {i} is {ckpt.classes[i]!r} in the checkpoint but {classes[i]!r} "
            f"in the data (checkpoint: {', '.join(ckpt.classes)}); its labels would not mean the "
            "same classes: use data with the checkpoint's class folders in that order")


class CompiledInference(nn.Module):
    """``compiled`` (a torch.compile'd module) fed fixed-size pieces of ``batch`` images."""

    def __init__(self, compiled: nn.Module, batch: int, compile_seconds: float,
                 threads: int | None):
        super().__init__()
        self.compiled, self.batch = compiled, batch
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
    """A folded, frozen copy of ``model`` for inputs like ``example`` (default: CIFAR-shaped),
    compiled now on ``batch`` zero images; a failed compilation is a ConfigError."""
    device = next(model.parameters()).device
    if example is None:
        example = torch.zeros(1, 3, 32, 32, device=device)
    compiled = torch.compile(fold_batchnorm(model), options={"freezing": True}, dynamic=False)
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
