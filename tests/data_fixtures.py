"""Builders of tiny CIFAR data sets in every official layout, for tests.

    root = make_image_folder(tmp_path, n_train_per_class=8, learnable=True)   # train/ and test/
    arrays = read_source(root)

The same arguments always give the same pixels: compare what a reader decodes with
`synthetic_cifar(...)` called with the builder's arguments. Images are ordered by class, then by
index, which is also the order in which the image-folder reader returns them.
With `learnable=True` every class is a distinct flat colour plus noise, which survives crops,
flips and JPEG, so a few training steps visibly lower the loss.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
# Well separated colours for the learnable classes; more classes get random colours.
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (128, 128, 0), (0, 0, 128)]


@dataclass
class Synthetic:
    train_images: np.ndarray  # uint8 (N, 3, 32, 32), class-major order
    train_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray  # uint8 (M, 3, 32, 32)
    test_labels: np.ndarray  # int64 (M,)
    classes: list[str]


def synthetic_cifar(n_train_per_class: int = 3, n_test_per_class: int = 2, *, seed: int = 0,
                    learnable: bool = False, classes: list[str] | None = None) -> Synthetic:
    """Random (or, with learnable=True, class-coloured) uint8 images, `n_*_per_class` per class."""
    classes = list(classes or CIFAR10_CLASSES)
    rng = np.random.default_rng(seed)
    colours = np.array(PALETTE + [tuple(rng.integers(0, 256, 3)) for _ in classes[len(PALETTE):]])

    def split(per_class: int):
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), per_class)
        if learnable:
            base = colours[labels][:, :, None, None]  # (N, 3, 1, 1)
            noise = rng.integers(-30, 31, (len(labels), 3, 32, 32))
            images = np.clip(base + noise, 0, 255).astype(np.uint8)
        else:
            images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
        return images, labels

    train, test = split(n_train_per_class), split(n_test_per_class)
    return Synthetic(*train, *test, classes)


# --------------------------------------------------------------------------- pickles


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 `str` (BINSTRING), like the official CIFAR pickles."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def dump_batch(obj: dict, path: Path, *, str_keys: bool) -> None:
    """Pickle a batch as Python 3 does (str keys) or as the official Python 2 files do."""
    if str_keys:
        path.write_bytes(pickle.dumps(obj))
        return
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    # Python 2's numpy lived at numpy.core; GLOBAL names are newline-terminated, so this is safe.
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.", b"numpy.core."))


def _rows(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)  # (N, 3072): C, H, W flattened, as in CIFAR


def make_cifar10_python_dir(root: Path, n_train_per_class: int = 3, n_test_per_class: int = 2, *,
                            seed: int = 0, learnable: bool = False, str_keys: bool = False,
                            n_batches: int = 5) -> Path:
    """root/cifar-10-batches-py with data_batch_1..n, test_batch and batches.meta."""
    data = synthetic_cifar(n_train_per_class, n_test_per_class, seed=seed, learnable=learnable)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(data.train_labels)), n_batches)
    for i, chunk in enumerate(chunks, start=1):
        batch = {"batch_label": f"training batch {i} of {n_batches}",
                 "labels": data.train_labels[chunk].tolist(),
                 "data": _rows(data.train_images[chunk]),
                 "filenames": [f"img_{j}.png" for j in chunk]}
        dump_batch(batch, folder / f"data_batch_{i}", str_keys=str_keys)
    test = {"batch_label": "testing batch 1 of 1", "labels": data.test_labels.tolist(),
            "data": _rows(data.test_images)}
    dump_batch(test, folder / "test_batch", str_keys=str_keys)
    meta = {"num_cases_per_batch": len(chunks[0]), "label_names": data.classes, "num_vis": 3072}
    dump_batch(meta, folder / "batches.meta", str_keys=str_keys)
    (folder / "readme.html").write_text("<html>synthetic</html>")
    return folder


CIFAR100_FINE = [f"fine{i:02d}" for i in range(100)]
CIFAR100_COARSE = [f"coarse{i:02d}" for i in range(20)]


def cifar100_coarse_of(fine_labels: np.ndarray) -> np.ndarray:
    """The synthetic fine → coarse map: five consecutive fine classes per coarse class."""
    return fine_labels // 5


def make_cifar100_python_dir(root: Path, n_train_per_class: int = 1, n_test_per_class: int = 1,
                             *, seed: int = 0, str_keys: bool = False) -> Path:
    """root/cifar-100-python with train, test and meta (fine and coarse labels)."""
    data = synthetic_cifar(n_train_per_class, n_test_per_class, seed=seed, classes=CIFAR100_FINE)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (("train", data.train_images, data.train_labels),
                                 ("test", data.test_images, data.test_labels)):
        batch = {"batch_label": f"{name}ing batch 1 of 1", "fine_labels": labels.tolist(),
                 "coarse_labels": cifar100_coarse_of(labels).tolist(), "data": _rows(images)}
        dump_batch(batch, folder / name, str_keys=str_keys)
    meta = {"fine_label_names": CIFAR100_FINE, "coarse_label_names": CIFAR100_COARSE}
    dump_batch(meta, folder / "meta", str_keys=str_keys)
    return folder


# --------------------------------------------------------------------------- binary records


def _records(images: np.ndarray, *label_columns: np.ndarray) -> bytes:
    labels = np.stack(label_columns, axis=1).astype(np.uint8)  # (N, L)
    return np.concatenate([labels, _rows(images)], axis=1).tobytes()


def make_cifar10_binary_dir(root: Path, n_train_per_class: int = 3, n_test_per_class: int = 2, *,
                            seed: int = 0, learnable: bool = False, n_batches: int = 5) -> Path:
    """root/cifar-10-batches-bin with data_batch_1..n.bin, test_batch.bin, batches.meta.txt."""
    data = synthetic_cifar(n_train_per_class, n_test_per_class, seed=seed, learnable=learnable)
    folder = Path(root) / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(data.train_labels)), n_batches), 1):
        records = _records(data.train_images[chunk], data.train_labels[chunk])
        (folder / f"data_batch_{i}.bin").write_bytes(records)
    (folder / "test_batch.bin").write_bytes(_records(data.test_images, data.test_labels))
    (folder / "batches.meta.txt").write_text("\n".join(data.classes) + "\n\n")
    return folder


def make_cifar100_binary_dir(root: Path, n_train_per_class: int = 1, n_test_per_class: int = 1,
                             *, seed: int = 0) -> Path:
    """root/cifar-100-binary with train.bin, test.bin and the two label-name files."""
    data = synthetic_cifar(n_train_per_class, n_test_per_class, seed=seed, classes=CIFAR100_FINE)
    folder = Path(root) / "cifar-100-binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (("train", data.train_images, data.train_labels),
                                 ("test", data.test_images, data.test_labels)):
        records = _records(images, cifar100_coarse_of(labels), labels)
        (folder / f"{name}.bin").write_bytes(records)
    (folder / "fine_label_names.txt").write_text("\n".join(CIFAR100_FINE) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(CIFAR100_COARSE) + "\n")
    return folder


# --------------------------------------------------------------------------- image folders


def save_image(image_chw: np.ndarray, path: Path, fmt: str = "png") -> None:
    """Write one (3, H, W) uint8 image as PNG (lossless) or JPEG (quality 95)."""
    image = Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0)))
    if fmt == "png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=95)


def make_image_folder(root: Path, n_train_per_class: int = 3, n_test_per_class: int = 2, *,
                      seed: int = 0, learnable: bool = False, fmt: str = "png",
                      with_test: bool = True, name: str = "cifar10-images") -> Path:
    """root/<name> holding train/<class>/NNNN.<fmt> and (with_test) test/<class>/NNNN.<fmt>.

    fmt is "png" (decodes back to exactly `synthetic_cifar(...)`) or "jpeg" (lossy).
    """
    data = synthetic_cifar(n_train_per_class, n_test_per_class, seed=seed, learnable=learnable)
    folder = Path(root) / name
    suffix = ".png" if fmt == "png" else ".jpg"
    splits = [("train", data.train_images, data.train_labels)]
    if with_test:
        splits.append(("test", data.test_images, data.test_labels))
    for split, images, labels in splits:
        counters = dict.fromkeys(range(len(data.classes)), 0)
        for image, label in zip(images, labels, strict=True):
            class_dir = folder / split / data.classes[label]
            class_dir.mkdir(parents=True, exist_ok=True)
            save_image(image, class_dir / f"{counters[label]:04d}{suffix}", fmt)
            counters[label] += 1
    return folder


# --------------------------------------------------------------------------- archives


def make_tar(src: Path, dest: Path, *, include_folder: bool = True) -> Path:
    """Tar `src` into `dest`; the compression follows the suffix (.tar, .tar.gz/.tgz, .tar.bz2).

    include_folder=True puts everything under `src.name/` (as the official tarballs do); False puts
    src's contents at the top level.
    """
    name = dest.name
    mode = "w:gz" if name.endswith((".gz", ".tgz")) else "w:bz2" if name.endswith(".bz2") else "w"
    with tarfile.open(dest, mode) as tar:
        if include_folder:
            tar.add(src, arcname=src.name)
        else:
            for child in sorted(src.iterdir()):
                tar.add(child, arcname=child.name)
    return dest


def make_zip(src: Path, dest: Path, *, include_folder: bool = True) -> Path:
    """Zip `src` into `dest`, with explicit folder entries, like common zip tools."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src.parent if include_folder else src).as_posix()
            if path.is_dir():
                archive.writestr(rel + "/", b"")
            else:
                archive.write(path, rel)
    return dest


def make_cifar10_python_tarball(root: Path, n_train_per_class: int = 3,
                                n_test_per_class: int = 2, *, seed: int = 0,
                                learnable: bool = False) -> Path:
    """root/cifar-10-python.tar.gz, laid out as the official download."""
    with tempfile.TemporaryDirectory(dir=root) as work:
        folder = make_cifar10_python_dir(Path(work), n_train_per_class, n_test_per_class,
                                         seed=seed, learnable=learnable)
        return make_tar(folder, Path(root) / "cifar-10-python.tar.gz")


def make_cifar10_binary_tarball(root: Path, n_train_per_class: int = 3,
                                n_test_per_class: int = 2, *, seed: int = 0) -> Path:
    """root/cifar-10-binary.tar.gz, laid out as the official download."""
    with tempfile.TemporaryDirectory(dir=root) as work:
        folder = make_cifar10_binary_dir(Path(work), n_train_per_class, n_test_per_class,
                                         seed=seed)
        return make_tar(folder, Path(root) / "cifar-10-binary.tar.gz")
