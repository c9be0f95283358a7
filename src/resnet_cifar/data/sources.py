"""Every layout users keep CIFAR in → `CifarArrays` (uint8 NCHW images, int64 labels, class names).

The layouts, archive types and image-decoding rules are in docs/data.md. Reading the folder or
archive into a `FileTree` is filetree.py's job; pickles go through safe_pickle.py.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from resnet_cifar.data.constants import CIFAR10_CLASSES, IMAGE_SHAPE, PIXELS_PER_IMAGE
from resnet_cifar.data.filetree import ACCEPTED_LAYOUTS, FileTree, open_tree
from resnet_cifar.data.images import read_rgb
from resnet_cifar.data.safe_pickle import safe_loads
from resnet_cifar.errors import DataError

Stats = tuple[float, float, float]

# The image files an image folder is read from; predict's directory walk uses it too (lower-case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


@dataclass
class CifarArrays:
    """A decoded data set, ready for the loader. Images are canonical uint8 NCHW."""

    train_images: np.ndarray  # uint8 (N, 3, 32, 32)
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray  # uint8 (M, 3, 32, 32); M may be 0 (image folder without test/)
    test_labels: np.ndarray  # int64 (M,)
    classes: list[str]
    mean: Stats  # per-channel mean of the training split, pixels scaled to [0, 1]
    std: Stats
    source: str  # resolved path or URL it came from
    cache_file: str | None = None

    @functools.cached_property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of pixels, labels and class names (docs/data.md); computed lazily."""
        digest = hashlib.sha256(b"resnet_cifar data v1\0")
        digest.update("\0".join(self.classes).encode())
        for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            array = np.ascontiguousarray(array)
            digest.update(f"\0{array.dtype.str}{array.shape}\0".encode())
            digest.update(array.data)
        return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class Layout:
    """Which layout a tree holds, and under which folder of it ('' or 'wrapper/')."""

    kind: str
    prefix: str

    def where(self, tree: FileTree) -> str:
        return tree.describe(self.prefix.rstrip("/")) if self.prefix else tree.label


def _detect_at(tree: FileTree, prefix: str) -> list[str]:
    """The layouts whose marker files are at `prefix`: one, none, or (two data sets) more."""
    files, dirs = tree.files, tree.dirs
    markers = [("cifar10-python", prefix + "data_batch_1" in files),
               ("cifar100-python", prefix + "train" in files and prefix + "meta" in files),
               ("cifar10-binary", prefix + "data_batch_1.bin" in files),
               ("cifar100-binary", prefix + "train.bin" in files),
               ("image-folder", prefix + "train" in dirs or prefix + "test" in dirs)]
    return [kind for kind, present in markers if present]


def find_layout(tree: FileTree) -> Layout:
    """The one layout the tree holds: at its top, or inside one of its top-level folders.

    More than one (two layouts side by side, or two folders each holding one) is refused with the
    candidates named: picking one would silently train on whichever sorts first."""
    top_dirs = sorted(d for d in tree.dirs if "/" not in d and not d.startswith((".", "__MACOSX")))
    found = [Layout(kind, "") for kind in _detect_at(tree, "")]
    # an image folder's own train/ and test/ are its splits, not data sets of their own
    own = {"train", "test"} if any(f.kind == "image-folder" for f in found) else set()
    found += [Layout(kind, d + "/") for d in top_dirs if d not in own
              for kind in _detect_at(tree, d + "/")]
    if not found:
        raise DataError(f"no CIFAR layout found in {tree.label}: expected {ACCEPTED_LAYOUTS}")
    if len(found) > 1:
        where = ", ".join(f"{f.kind} at {f.where(tree)}" for f in found)
        raise DataError(f"{tree.label} holds more than one data set ({where}): point "
                        "`data.path` (--data) at the one you mean, or move the others away")
    return found[0]


def _numbered_batches(tree: FileTree, prefix: str, suffix: str = "") -> list[str]:
    """data_batch_1, data_batch_2, ... in numeric order."""
    stem = prefix + "data_batch_"
    found = [n for n in tree.files if n.startswith(stem) and n.endswith(suffix)
             and n[len(stem):len(n) - len(suffix)].isdigit()]
    return sorted(found, key=lambda n: int(n[len(stem):len(n) - len(suffix)]))


def _image_members(tree: FileTree, prefix: str) -> dict[str, list[tuple[str, str]]]:
    """{"train": [...], "test": [...]}: (relative path, class) of every image at
    <prefix><split>/<class>/<image>, sorted by class, then path. Hidden files are skipped."""
    members: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for name in tree.files:
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("/")  # [split, class, file]
        if (len(parts) == 3 and parts[0] in members and not parts[2].startswith(".")
                and "." + parts[2].rpartition(".")[2].lower() in IMAGE_EXTENSIONS):
            members[parts[0]].append((name, parts[1]))
    for found in members.values():
        found.sort(key=lambda m: (m[1], m[0]))
    return members


def layout_files(tree: FileTree, layout: Layout) -> list[str]:
    """Every file the decoder of `layout` reads, sorted: what a folder's cache key hashes."""
    p, files = layout.prefix, tree.files
    if layout.kind == "cifar10-python":
        names = [*_numbered_batches(tree, p), p + "test_batch", p + "batches.meta"]
    elif layout.kind == "cifar100-python":
        names = [p + "train", p + "test", p + "meta"]
    elif layout.kind == "cifar10-binary":
        names = [*_numbered_batches(tree, p, ".bin"), p + "test_batch.bin", p + "batches.meta.txt"]
    elif layout.kind == "cifar100-binary":
        names = [p + n for n in ("train.bin", "test.bin", "fine_label_names.txt",
                                 "coarse_label_names.txt")]
    else:
        names = [m for found in _image_members(tree, p).values() for m, _ in found]
    return sorted(n for n in names if n in files)


def _require(tree: FileTree, name: str, layout: Layout) -> bytes:
    if name not in tree.files:
        raise DataError(f"{tree.label} looks like {layout.kind} but has no {name}: "
                        "extract or download the complete data set again")
    return tree.read(name)


def _load_pickle(tree: FileTree, name: str, layout: Layout) -> dict[str, Any]:
    """A pickled dict with str keys (Python 2 pickles have bytes keys)."""
    obj = safe_loads(_require(tree, name, layout), source=tree.describe(name))
    if not isinstance(obj, dict):
        raise DataError(f"{tree.describe(name)} is not a CIFAR batch (a {type(obj).__name__}, "
                        "not a dict); extract or download the data set again")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(values: Iterable) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _pickled_split(tree: FileTree, name: str, layout: Layout, label_key: str):
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from one pickled batch."""
    batch, source = _load_pickle(tree, name, layout), tree.describe(name)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)  # (N, 3072): each row is C, H, W flattened
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except KeyError as err:
        raise DataError(f"{source} has no {err.args[0]!r} entry; it is not a CIFAR batch of this "
                        "kind (pass coarse=True only for CIFAR-100)") from None
    if data.ndim != 2 or data.shape[1] != PIXELS_PER_IMAGE or len(labels) != len(data):
        raise DataError(f"{source} holds data of shape {data.shape} with {len(labels)} labels, "
                        f"expected (N, {PIXELS_PER_IMAGE}) with N labels; the file is corrupt")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _decode_cifar10_python(tree: FileTree, layout: Layout):
    p = layout.prefix
    train = [_pickled_split(tree, n, layout, "labels") for n in _numbered_batches(tree, p)]
    test = _pickled_split(tree, p + "test_batch", layout, "labels")
    has_meta = p + "batches.meta" in tree.files  # optional: the names are the official ones
    meta = _load_pickle(tree, p + "batches.meta", layout) if has_meta else {}
    return _concat(train), test, _names(meta.get("label_names", []))


def _decode_cifar100_python(tree: FileTree, layout: Layout, coarse: bool):
    p, key = layout.prefix, "coarse" if coarse else "fine"
    train = _pickled_split(tree, p + "train", layout, f"{key}_labels")
    test = _pickled_split(tree, p + "test", layout, f"{key}_labels")
    meta = _load_pickle(tree, p + "meta", layout)
    return train, test, _names(meta.get(f"{key}_label_names", []))


def _binary_split(tree: FileTree, name: str, layout: Layout, label_bytes: int, column: int):
    """(images, labels) from records of label bytes, then 3072 CHW pixel bytes."""
    data, size = _require(tree, name, layout), label_bytes + PIXELS_PER_IMAGE
    if len(data) % size:
        raise DataError(f"{tree.describe(name)} is {len(data)} bytes, not a whole number of "
                        f"{size}-byte records; the file is truncated: extract or download it again")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, size)
    return records[:, label_bytes:].reshape(-1, *IMAGE_SHAPE), records[:, column].astype(np.int64)


def _text_names(tree: FileTree, name: str) -> list[str]:
    """The class names of an optional text file, one a line; [] when it is absent."""
    if name not in tree.files:
        return []
    return [line.strip() for line in tree.read(name).decode("utf-8").splitlines() if line.strip()]


def _decode_cifar10_binary(tree: FileTree, layout: Layout):
    p = layout.prefix
    train = [_binary_split(tree, n, layout, 1, 0) for n in _numbered_batches(tree, p, ".bin")]
    test = _binary_split(tree, p + "test_batch.bin", layout, 1, 0)
    return _concat(train), test, _text_names(tree, p + "batches.meta.txt")


def _decode_cifar100_binary(tree: FileTree, layout: Layout, coarse: bool):
    p = layout.prefix
    column = 0 if coarse else 1  # each record starts with the coarse label byte, then the fine one
    train, test = (_binary_split(tree, p + n, layout, 2, column) for n in ("train.bin", "test.bin"))
    names = p + ("coarse" if coarse else "fine") + "_label_names.txt"
    return train, test, _text_names(tree, names)


def _decode_image(data: bytes, source: str, resize: bool) -> np.ndarray:
    """One image file → (32, 32, 3) uint8 RGB, by images.py's rules."""
    try:
        rgb, _, _ = read_rgb(io.BytesIO(data), reduce=resize)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {source}: it is not an image format Pillow knows; "
                        "replace or delete the file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {source} ({err}); replace or delete the file") from None
    if rgb.size != (32, 32):
        if not resize:
            width, height = rgb.size
            raise DataError(f"image {source} is {width}x{height}, not 32x32: pass `data.resize` "
                            "(--resize) to resize images to 32x32, or fix the file")
        rgb = rgb.resize((32, 32), Image.Resampling.BICUBIC)
    return np.asarray(rgb)


def _image_splits(tree: FileTree, layout: Layout):
    """The train and test members and the class names of an image folder, validated."""
    where = layout.where(tree)
    has_test = layout.prefix + "test" in tree.dirs
    if layout.prefix + "train" not in tree.dirs:
        raise DataError(f"{where} has a test/ folder but no train/ folder: an image folder needs "
                        "train/<class>/<image> (test/ is optional)")
    members = _image_members(tree, layout.prefix)
    train, test = members["train"], members["test"]
    if not train:
        raise DataError(f"no training images in {where}: expected train/<class>/<image>.png or "
                        ".jpg, one folder per class")
    if has_test and not test:
        raise DataError(f"{where} has an empty test/ folder: add test/<class>/<image> files, or "
                        "remove test/ and hold out a validation split instead")
    classes = sorted({c for _, c in train})
    test_classes = sorted({c for _, c in test})
    if test and test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise DataError(f"class folders of train/ and test/ differ in {where} (only in train: "
                        f"{only_train}, only in test: {only_test}); use the same class folders")
    return train, test, classes


def _decode_image_folder(tree: FileTree, layout: Layout, resize: bool, progress: bool):
    train, test, classes = _image_splits(tree, layout)
    index = {name: i for i, name in enumerate(classes)}
    members = train + test
    images = np.empty((len(members), 32, 32, 3), dtype=np.uint8)  # HWC, as Pillow gives it
    for i, (name, _) in enumerate(tqdm(members, desc="decoding images", unit="img",
                                       disable=not progress, leave=False)):
        images[i] = _decode_image(tree.read(name), tree.describe(name), resize)
    images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # (N, 3, 32, 32)
    labels = np.array([index[c] for _, c in members], dtype=np.int64)
    n = len(train)
    return (images[:n], labels[:n]), (images[n:], labels[n:]), classes


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]):
    if not parts:
        return np.empty((0, *IMAGE_SHAPE), np.uint8), np.empty(0, np.int64)
    return (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[Stats, Stats]:
    """Exact per-channel mean and std of uint8 (N, 3, H, W) images scaled to [0, 1], by chunks."""
    counts = np.zeros((3, 256), dtype=np.int64)
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk]
        for c in range(3):
            counts[c] += np.bincount(block[:, c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1)
    if not total.all():
        return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    mean = counts @ values / total
    std = np.sqrt(np.maximum(counts @ values**2 / total - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def decode_tree(tree: FileTree, layout: Layout, *, coarse: bool = False, resize: bool = False,
                progress: bool = True, source: str | None = None) -> CifarArrays:
    """Decode a listed tree whose layout is known (see `read_source`)."""
    if coarse and not layout.kind.startswith("cifar100"):
        raise DataError(f"{tree.label} is {layout.kind}: coarse labels exist only for CIFAR-100, "
                        "drop `data.coarse` (--coarse)")
    if layout.kind == "cifar10-python":
        train, test, classes = _decode_cifar10_python(tree, layout)
    elif layout.kind == "cifar100-python":
        train, test, classes = _decode_cifar100_python(tree, layout, coarse)
    elif layout.kind == "cifar10-binary":
        train, test, classes = _decode_cifar10_binary(tree, layout)
    elif layout.kind == "cifar100-binary":
        train, test, classes = _decode_cifar100_binary(tree, layout, coarse)
    else:
        train, test, classes = _decode_image_folder(tree, layout, resize, progress)
    if layout.kind in ("cifar10-python", "cifar10-binary"):
        classes = classes or list(CIFAR10_CLASSES)  # the meta file is optional for CIFAR-10
    if len(train[0]) == 0:
        raise DataError(f"{tree.label} holds no training images: extract or download the complete "
                        "data set again")
    for split, (_, labels) in (("train", train), ("test", test)):
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{tree.label}: {split} labels span {labels.min()}..{labels.max()} but "
                            f"there are {len(classes)} class names; the data or its meta file is "
                            "corrupt")
    mean, std = channel_stats(train[0])
    return CifarArrays(np.ascontiguousarray(train[0]), train[1], np.ascontiguousarray(test[0]),
                       test[1], list(classes), mean, std, source or tree.label)


def resolve_path(path: str | os.PathLike) -> Path:
    """`path` made absolute; an empty one is refused (Path("") would be the current folder)."""
    if not os.fspath(path):
        raise DataError("the data path is empty (''): pass `data.path` (--data) the folder or "
                        "archive that holds CIFAR, or leave it out to use the cache / download")
    return Path(path).expanduser().resolve()


def read_source(path: str | os.PathLike, *, coarse: bool = False, resize: bool = False,
                progress: bool = True) -> CifarArrays:
    """Decode any accepted layout at `path` (see the module docstring). No caching."""
    tree = open_tree(resolve_path(path), progress)
    return decode_tree(tree, find_layout(tree), coarse=coarse, resize=resize, progress=progress)


def summarize(arrays: CifarArrays) -> dict[str, Any]:
    """A JSON-able description: where the data came from, split and class counts, statistics."""
    def per_class(labels: np.ndarray) -> dict[str, int]:
        counts = np.bincount(labels, minlength=len(arrays.classes))
        return {name: int(n) for name, n in zip(arrays.classes, counts, strict=True)}

    summary: dict[str, Any] = {
        "source": arrays.source, "cache_file": arrays.cache_file, "classes": list(arrays.classes),
        "counts": {"train": len(arrays.train_labels), "test": len(arrays.test_labels)},
        "per_class": {"train": per_class(arrays.train_labels),
                      "test": per_class(arrays.test_labels)},
        "mean": [round(m, 4) for m in arrays.mean], "std": [round(s, 4) for s in arrays.std],
        "fingerprint": arrays.fingerprint}
    if len(arrays.test_labels) == 0:
        summary["note"] = ("no test split in this source: hold out a validation split with "
                           "`data.val_split` (--val-split) to measure accuracy")
    return summary
