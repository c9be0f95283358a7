"""Decoded arrays cached by content hash, and `load_cifar`: resolve → download → decode → cache.

The key and file rules are in docs/data.md ("The cache"): an archive is keyed by its md5, a folder
by the sha256 of the files the decoder reads; files are written atomically, a corrupt one is
ignored and rewritten, and an unwritable cache folder only costs a warning.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from resnet_cifar.atomic import atomic_write
from resnet_cifar.data.constants import (
    CACHE_ENV,
    DATA_ENV,
    DEFAULT_CACHE_DIR,
    IMAGE_SHAPE,
    OFFICIAL_ARCHIVES,
)
from resnet_cifar.data.download import download_file, file_md5
from resnet_cifar.data.sources import (
    CifarArrays,
    FileTree,
    Layout,
    decode_tree,
    find_layout,
    layout_files,
    open_tree,
    read_source,
    resolve_path,
)
from resnet_cifar.errors import DataError

# Bump when the decoded result of a source changes, so that older cache files are not reused.
CACHE_FORMAT = 2
_warned_dirs: set[str] = set()


def default_cache_dir() -> Path:
    """$RESNET_CIFAR_CACHE, else ~/.cache/resnet_cifar."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def cache_key(content_digest: str, *, coarse: bool, resize: bool) -> str:
    """sha256 hex of what determines the decoded arrays."""
    text = f"resnet_cifar cache v{CACHE_FORMAT}\n{content_digest}\ncoarse={coarse} resize={resize}"
    return hashlib.sha256(text.encode()).hexdigest()


def folder_digest(tree: FileTree, layout: Layout) -> str:
    """Digest of a folder source: relative path and content of every file the decoder reads."""
    assert tree.root is not None, "folder_digest is for folders; archives are keyed by their md5"
    digest = hashlib.sha256(layout.kind.encode())
    for name in layout_files(tree, layout):
        data = tree.read(name)
        digest.update(f"\0{name}\0{len(data)}\0".encode())  # the length keeps names apart
        digest.update(data)
    return f"folder:{digest.hexdigest()}"


def read_cache(file: Path, key: str) -> CifarArrays | None:
    """The arrays cached in `file` under `key`, or None if absent; a corrupt file is ignored."""
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                raise ValueError("it was written for a different source")
            arrays = CifarArrays(
                *(saved[k] for k in ("train_images", "train_labels", "test_images", "test_labels")),
                [str(c) for c in saved["classes"]], tuple(float(m) for m in saved["mean"]),
                tuple(float(s) for s in saved["std"]), str(saved["source"]), str(file))
        for images, labels in ((arrays.train_images, arrays.train_labels),
                               (arrays.test_images, arrays.test_labels)):
            if (images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE
                    or labels.dtype != np.int64 or labels.shape != images.shape[:1]):
                raise ValueError(f"arrays of shape {images.shape} / {labels.shape} are not CIFAR")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring unreadable cache file {file} ({err}); decoding the source again",
                      RuntimeWarning, stacklevel=3)
        return None
    return arrays


def write_cache(file: Path, key: str, arrays: CifarArrays) -> str | None:
    """Save `arrays` atomically to `file`; return its path, or None (with a warning) if the
    folder cannot be written."""
    try:
        with atomic_write(file) as f:
            np.savez(f, key=np.array(key), format=np.array(CACHE_FORMAT),
                     train_images=arrays.train_images, train_labels=arrays.train_labels,
                     test_images=arrays.test_images, test_labels=arrays.test_labels,
                     classes=np.array(arrays.classes, dtype=np.str_), mean=np.array(arrays.mean),
                     std=np.array(arrays.std), source=np.array(arrays.source))
    except OSError as err:
        if str(file.parent) not in _warned_dirs:
            _warned_dirs.add(str(file.parent))
            warnings.warn(f"cannot write the data cache {file} ({err}); continuing without it: set "
                          "RESNET_CIFAR_CACHE to a writable folder with free space",
                          RuntimeWarning, stacklevel=3)
        return None
    return str(file)


def _cached(cache_dir: Path, key: str, source: str,
            decode: Callable[[], CifarArrays]) -> CifarArrays:
    """The cached arrays for `key`, else `decode()` them and cache the result."""
    file = cache_dir / f"cifar-{key[:16]}.npz"
    arrays = read_cache(file, key) or decode()
    fresh = arrays.cache_file is None
    arrays.source = source  # where it comes from now, not where it came from then
    if fresh:
        arrays.cache_file = write_cache(file, key, arrays)
    return arrays


def _load_path(source: Path, cache_dir: Path, coarse: bool, resize: bool,
               progress: bool) -> CifarArrays:
    if not source.exists():
        raise DataError(f"data path {source} does not exist: pass the folder or archive that holds "
                        f"CIFAR, or unset {DATA_ENV} and omit the path to use the cache / download")
    options = {"coarse": coarse, "resize": resize, "progress": progress}
    if source.is_dir():
        tree = open_tree(source, progress)
        layout = find_layout(tree)
        digest = folder_digest(tree, layout)
        decode = functools.partial(decode_tree, tree, layout, **options)
    else:
        digest = f"md5:{file_md5(source)}"
        decode = functools.partial(read_source, source, **options)
    return _cached(cache_dir, cache_key(digest, coarse=coarse, resize=resize), str(source), decode)


def _load_official(dataset: str, cache_dir: Path, *, coarse: bool, resize: bool, download: bool,
                   progress: bool, url: str | None, md5: str | None) -> CifarArrays:
    if dataset not in OFFICIAL_ARCHIVES:
        raise DataError(f"unknown dataset {dataset!r}: choose one of {sorted(OFFICIAL_ARCHIVES)}")
    official = OFFICIAL_ARCHIVES[dataset]
    url, md5 = url or official.url, md5 or official.md5
    tarball = cache_dir / official.filename
    key = cache_key(f"md5:{md5}", coarse=coarse, resize=resize)

    def decode() -> CifarArrays:
        damaged = None  # a tarball placed by hand must say why it was passed over
        if tarball.exists():
            got = file_md5(tarball)
            if got == md5:
                return read_source(tarball, coarse=coarse, resize=resize, progress=progress)
            damaged = (f"{tarball} has md5 {got}, not the official {md5} (damaged, or another "
                       "file)")
        if not download:
            raise DataError(f"no {dataset} data: no path given, {DATA_ENV} is unset and "
                            f"{damaged or f'{tarball} is missing'}; pass a path, or allow "
                            "downloading")
        try:
            download_file(url, tarball, md5, progress)
        except DataError as err:
            if damaged is None:
                raise
            raise DataError(f"{damaged}, and downloading a good copy failed: {err}") from err
        return read_source(tarball, coarse=coarse, resize=resize, progress=progress)

    return _cached(cache_dir, key, url, decode)


def dataset_of(classes: list[str]) -> str | None:
    """Which CIFAR data with these classes is: cifar10 (10 classes), cifar100 (100, or 20 coarse
    ones), else None (an image folder of other classes)."""
    return {10: "cifar10", 100: "cifar100", 20: "cifar100"}.get(len(classes))


def load_cifar(path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
               dataset: str | None = None, coarse: bool = False, resize: bool = False,
               download: bool = True, progress: bool = True, url: str | None = None,
               md5: str | None = None) -> CifarArrays:
    """Decoded CIFAR arrays, from the cache (`cache_dir`, else default_cache_dir()) when the same
    content was decoded before. The data comes from `path`, else $RESNET_CIFAR_DATA (any layout;
    a `dataset` given with it must agree with the data), else the official `dataset`: its cached
    arrays, its tarball in the cache folder, else a download (unless `download=False`) from `url`
    with `md5` (default: the official ones)."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if path is None and os.environ.get(DATA_ENV):
        path = os.environ[DATA_ENV]
    if path is not None:
        arrays = _load_path(resolve_path(path), folder, coarse, resize, progress)
        if dataset is not None and dataset != dataset_of(arrays.classes):
            raise DataError(
                f"{arrays.source} holds {len(arrays.classes)} classes, not the "
                f"{'10' if dataset == 'cifar10' else '100 (or 20 coarse)'} of `data.dataset` "
                f"(--dataset) {dataset}: leave `data.dataset` (--dataset) out for this data, or "
                f"point `data.path` (--data) at {dataset}"
            )
        return arrays
    return _load_official(dataset or "cifar10", folder, coarse=coarse, resize=resize,
                          download=download, progress=progress, url=url, md5=md5)
