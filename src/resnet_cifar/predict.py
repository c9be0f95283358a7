"""Class predictions for images of any size, mode and container. Images are decoded as data sets
are (data/images.py; a large JPEG at reduced scale unless ``exact``), resized whole to 32x32 (PIL
bicubic) and normalized inside the model as `eval` does, so its inputs are bit-identical."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from resnet_cifar.data.constants import CIFAR10_CLASSES
from resnet_cifar.data.images import read_rgb, to_rgb
from resnet_cifar.data.normalization import Normalization
from resnet_cifar.data.sources import IMAGE_EXTENSIONS  # what a directory walk picks up
from resnet_cifar.engine.checkpoint import Checkpoint
from resnet_cifar.engine.evaluate import with_tta
from resnet_cifar.engine.inference import InferenceContext
from resnet_cifar.errors import UserError

IMAGE_SIZE = 32  # every image is resized to IMAGE_SIZE x IMAGE_SIZE
CHANNEL_COUNTS = (1, 2, 3, 4)  # of an array or tensor image: L, LA, RGB, RGBA


def class_names(ckpt: Checkpoint) -> list[str]:
    """The checkpoint's class names; CIFAR-10's for an unnamed 10-class model; else class_<i>."""
    if ckpt.classes:
        assert len(ckpt.classes) == ckpt.num_classes, "checkpoint classes do not match its head"
        return list(ckpt.classes)
    if ckpt.num_classes == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return [f"class_{i}" for i in range(ckpt.num_classes)]


class NormalizedModel(nn.Module):
    """uint8 (B, 3, 32, 32) RGB pixels -> logits: ``x * scale - shift`` as the evaluation loader
    computes it (Normalization.scale_shift), so the model sees bit-identical inputs. Other dtypes
    are read as 0-255 values. The statistics are ``normalization``, or ``mean`` and ``std``."""

    def __init__(self, model: nn.Module, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, *,
                 normalization: Normalization | None = None):
        super().__init__()
        self.model = model
        scale, shift = (normalization or Normalization.explicit(mean, std)).scale_shift()
        self.register_buffer("scale", scale)  # (1, 3, 1, 1) float32
        self.register_buffer("shift", shift)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.float() * self.scale - self.shift)


@dataclass(frozen=True)
class ImageInfo:
    size: tuple[int, int]  # original (width, height)
    mode: str  # original PIL mode ("RGB", "L", "RGBA", "P", ...)


def pil_to_uint8(image: Image.Image) -> np.ndarray:
    """Any PIL image -> (3, 32, 32) uint8 RGB."""
    rgb = to_rgb(image)
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


def read_image(path: str | os.PathLike, exact: bool = False) -> tuple[np.ndarray, ImageInfo]:
    """One image file -> ((3, 32, 32) uint8, its original size and mode). Raises on a bad file."""
    rgb, size, mode = read_rgb(path, reduce=not exact)
    return pil_to_uint8(rgb), ImageInfo(size, mode)


def _as_pixels(array: np.ndarray) -> np.ndarray:
    """uint8 as is; other integers must lie in 0-255; floats in [0, 1] are scaled by 255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise UserError(f"integer images must hold values 0-255, got {array.min()}.."
                            f"{array.max()}")
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"cannot read images of dtype {array.dtype}")
    if array.size and not np.isfinite(array).all():
        raise UserError("float images contain NaN or infinity")
    if array.size and (array.min() < -1e-3 or array.max() > 1.0 + 1e-3):
        raise UserError(f"float images must hold values in [0, 1], got {array.min():.3g}.."
                        f"{array.max():.3g}; pass uint8 pixels for 0-255 values")
    return np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _array_to_pil(array: np.ndarray, prefer_first: bool) -> Image.Image:
    """(H, W), (H, W, C) or (C, H, W) pixels -> a PIL image of the matching mode. A shape whose
    first and last axes could both be the channels follows ``prefer_first``."""
    if array.ndim == 3:
        last, first = array.shape[-1] in CHANNEL_COUNTS, array.shape[0] in CHANNEL_COUNTS
        if not (last or first):
            raise UserError(f"cannot tell the channels of an image of shape {array.shape}: "
                            "expected 1, 2, 3 or 4 channels first or last")
        if first and (prefer_first or not last):
            array = array.transpose(1, 2, 0)
        if array.shape[-1] == 1:
            array = array[..., 0]
    if array.ndim != 2 and array.ndim != 3:
        raise UserError(f"expected an image of 2 or 3 dimensions, got shape {array.shape}")
    # uint8 (H, W) / (H, W, 2|3|4) -> "L" / "LA" / "RGB" / "RGBA", inferred by PIL
    return Image.fromarray(np.ascontiguousarray(_as_pixels(array)))


def _split_items(images: Any) -> tuple[list[Any], bool]:
    """The single images of `images`, and whether arrays among them are torch-born."""
    if isinstance(images, (Image.Image, str, os.PathLike)):
        return [images], False
    if torch.is_tensor(images) or isinstance(images, np.ndarray):
        array = images.detach().cpu().numpy() if torch.is_tensor(images) else images
        return (list(array) if array.ndim == 4 else [array]), torch.is_tensor(images)
    if isinstance(images, Iterable):
        items = list(images)
        return [item.detach().cpu().numpy() if torch.is_tensor(item) else item
                for item in items], any(torch.is_tensor(item) for item in items)
    raise UserError(f"cannot predict a {type(images).__name__}: pass PIL images, paths, numpy "
                    "arrays or tensors")


def to_uint8_batch(images: Any, exact: bool = False) -> tuple[torch.Tensor, list[ImageInfo]]:
    """PIL images, paths, arrays or tensors (2-D, 3-D with 1-4 channels first or last, or 4-D
    batches), or a sequence of these -> (uint8 (N, 3, 32, 32), their original info). Pixels are
    uint8, integers 0-255 or floats in [0, 1]; an ambiguous channel axis is last for numpy arrays,
    first for tensors."""
    cifar_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    if (torch.is_tensor(images) and images.dtype == torch.uint8 and images.ndim in (3, 4)
            and tuple(images.shape[-3:]) == cifar_shape):
        batch = images.detach().cpu().reshape(-1, *cifar_shape)  # fast path
        return batch, [ImageInfo((IMAGE_SIZE, IMAGE_SIZE), "RGB")] * len(batch)
    items, prefer_first = _split_items(images)
    pixels, infos = [], []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            array, info = read_image(item, exact)
        else:
            image = item if isinstance(item, Image.Image) else \
                _array_to_pil(np.asarray(item), prefer_first)
            array, info = pil_to_uint8(image), ImageInfo(image.size, image.mode)
        pixels.append(array)
        infos.append(info)
    if not pixels:
        return torch.zeros(0, *cifar_shape, dtype=torch.uint8), []
    return torch.from_numpy(np.stack(pixels)), infos


@dataclass(frozen=True)
class ClassProb:
    index: int
    name: str
    prob: float  # softmax probability


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, best first; ``index``/``name``/``prob`` are the top-1."""

    topk: list[ClassProb]
    size: tuple[int, int]  # original (width, height)
    mode: str  # original PIL mode

    index = property(lambda self: self.topk[0].index)
    name = property(lambda self: self.topk[0].name)
    prob = property(lambda self: self.topk[0].prob)
    topk_indices = property(lambda self: [c.index for c in self.topk])
    topk_names = property(lambda self: [c.name for c in self.topk])
    topk_probs = property(lambda self: [c.prob for c in self.topk])

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "mode": self.mode,
                "topk": [{"class": c.name, "index": c.index, "prob": c.prob} for c in self.topk]}


@dataclass(frozen=True)
class FileResult:
    """The prediction for one file, or why it could not be read."""

    file: str
    prediction: Prediction | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.prediction is None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, **self.prediction.to_dict()}


class Predictor:
    """A checkpoint (a path, a published tag or a Checkpoint; ``model``/``model_kwargs`` for a
    foreign file) ready to classify images in batches on ``device``. ``tta``: the probabilities
    are the mean over test-time-augmented views (config.TTA_MODES), as eval takes them."""

    def __init__(self, checkpoint: str | os.PathLike | Checkpoint, *, model: str | None = None,
                 model_kwargs: dict[str, Any] | None = None, normalize: str | None = None,
                 device: str = "auto", batch_size: int = 256, exact: bool = False,
                 tta: str = "none"):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        context = InferenceContext.build(checkpoint, dataset=False, model=model,
                                         model_kwargs=model_kwargs, normalize=normalize,
                                         device=device)
        self.checkpoint = context.checkpoint
        self.classes = class_names(self.checkpoint)
        model = context.model  # first: weights that do not fit are the error, before any warning
        norm = context.normalization
        self.mean, self.std = norm.mean, norm.std
        self.device, self.batch_size, self.exact, self.tta = context.device, batch_size, exact, tta
        self.model = NormalizedModel(with_tta(model, tta),
                                     normalization=norm).to(self.device).eval()

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, 32, 32) -> float32 logits (N, num_classes) on the CPU, in batches
        (with ``tta``: the log of the views' averaged probabilities)."""
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                # contiguous NCHW, as the eval loader feeds: a channels-last batch would pick
                # other conv kernels, whose results differ in the last bits
                x = batch[start : start + self.batch_size].contiguous().to(self.device)
                outputs.append(self.model(x).float().cpu())
        return torch.cat(outputs) if outputs else torch.zeros(0, len(self.classes))

    def predict(self, images: Any, topk: int = 1) -> list[Prediction]:
        """One Prediction per image (see `to_uint8_batch`); ``topk`` capped at the classes."""
        if topk < 1:
            raise UserError(f"`topk` (--topk) must be at least 1, got {topk}")
        batch, infos = to_uint8_batch(images, self.exact)
        probs = self.logits(batch).softmax(dim=1)
        top_probs, top_indices = probs.topk(min(topk, len(self.classes)), dim=1)
        return [Prediction([ClassProb(int(i), self.classes[int(i)], float(p))
                            for p, i in zip(row_probs, row_indices, strict=True)],
                           info.size, info.mode)
                for row_probs, row_indices, info in zip(top_probs, top_indices, infos, strict=True)]

    def predict_files(self, paths: Iterable[str | os.PathLike], topk: int = 1) -> list[FileResult]:
        """One FileResult per path: a prediction, or why the file could not be read or decoded."""
        results: list[FileResult] = []
        paths = list(paths)
        for start in range(0, len(paths), self.batch_size):
            chunk = paths[start : start + self.batch_size]
            decoded: dict[int, tuple[np.ndarray, ImageInfo]] = {}
            errors: dict[int, str] = {}
            for i, path in enumerate(chunk):
                try:
                    decoded[i] = read_image(path, self.exact)
                except Exception as err:  # noqa: BLE001  (any decoder failure is the file's fault)
                    errors[i] = describe_read_error(err)
            preds = {}
            if decoded:
                batch = torch.from_numpy(np.stack([pixels for pixels, _ in decoded.values()]))
                # the batch takes the 32x32 fast path: put back each file's own size and mode
                preds = {i: Prediction(p.topk, info.size, info.mode) for (i, (_, info)), p
                         in zip(decoded.items(), self.predict(batch, topk), strict=True)}
            results += [FileResult(str(path), preds.get(i), errors.get(i))
                        for i, path in enumerate(chunk)]
        return results


def describe_read_error(err: BaseException) -> str:
    """One line for a file that failed to open or decode."""
    for kind, text in ((FileNotFoundError, "no such file"), (IsADirectoryError, "is a directory"),
                       (PermissionError, "permission denied")):
        if isinstance(err, kind):
            return text
    message = str(err).splitlines()[0] if str(err) else ""
    return f"cannot read image: {message or type(err).__name__}"


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named (whatever their extension, even missing: reading them reports it), then every
    image under each directory, sorted; hidden entries and links to folders are skipped."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            found.append(path)
            continue
        walked = []
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            walked += [Path(root) / name for name in files
                       if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)]
        found += sorted(walked)
    return found
