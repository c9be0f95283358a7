"""Every source layout decodes to the same arrays; bad sources fail with a one-line DataError."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE,
    CIFAR100_FINE,
    cifar100_coarse_of,
    make_cifar10_binary_dir,
    make_cifar10_binary_tarball,
    make_cifar10_python_dir,
    make_cifar10_python_tarball,
    make_cifar100_binary_dir,
    make_cifar100_python_dir,
    make_image_folder,
    make_tar,
    make_zip,
    synthetic_cifar,
)
from PIL import Image
from refusals import assert_refused

from resnet_cifar.data import channel_stats, read_source, summarize
from resnet_cifar.errors import DataError


def assert_decoded(arrays, expected) -> None:
    np.testing.assert_array_equal(arrays.train_images, expected.train_images)
    np.testing.assert_array_equal(arrays.train_labels, expected.train_labels)
    np.testing.assert_array_equal(arrays.test_images, expected.test_images)
    np.testing.assert_array_equal(arrays.test_labels, expected.test_labels)
    assert arrays.classes == list(expected.classes)
    assert arrays.train_images.dtype == np.uint8 and arrays.train_labels.dtype == np.int64
    assert arrays.train_images.flags.c_contiguous


def read(path, **kwargs):
    return read_source(path, progress=False, **kwargs)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("str_keys", [False, True], ids=["py2-bytes-keys", "py3-str-keys"])
def test_cifar10_python_folder_and_its_parent(tmp_path, str_keys):
    folder = make_cifar10_python_dir(tmp_path, str_keys=str_keys)
    assert_decoded(read(folder), synthetic_cifar())
    assert_decoded(read(tmp_path), synthetic_cifar())  # the folder that holds it


def test_cifar10_python_tarball(tmp_path):
    tarball = make_cifar10_python_tarball(tmp_path)
    arrays = read(tarball)
    assert_decoded(arrays, synthetic_cifar())
    assert arrays.source == str(tarball.resolve())


@pytest.mark.parametrize("str_keys", [False, True], ids=["py2-bytes-keys", "py3-str-keys"])
@pytest.mark.parametrize("coarse", [False, True], ids=["fine", "coarse"])
def test_cifar100_python(tmp_path, str_keys, coarse):
    folder = make_cifar100_python_dir(tmp_path, str_keys=str_keys)
    arrays = read(folder, coarse=coarse)
    expected = synthetic_cifar(1, 1, classes=CIFAR100_FINE)
    np.testing.assert_array_equal(arrays.train_images, expected.train_images)
    labels = cifar100_coarse_of(expected.test_labels) if coarse else expected.test_labels
    np.testing.assert_array_equal(arrays.test_labels, labels)
    assert arrays.classes == (CIFAR100_COARSE if coarse else CIFAR100_FINE)


def test_cifar100_tarball_of_python_folder(tmp_path):
    folder = make_cifar100_python_dir(tmp_path / "work")
    arrays = read(make_tar(folder, tmp_path / "cifar-100-python.tar.gz"))
    assert len(arrays.train_labels) == 100 and arrays.classes == CIFAR100_FINE


def test_cifar10_binary_folder_and_tarball(tmp_path):
    assert_decoded(read(make_cifar10_binary_dir(tmp_path / "work")), synthetic_cifar())
    assert_decoded(read(make_cifar10_binary_tarball(tmp_path)), synthetic_cifar())


@pytest.mark.parametrize("coarse", [False, True], ids=["fine", "coarse"])
def test_cifar100_binary(tmp_path, coarse):
    arrays = read(make_cifar100_binary_dir(tmp_path), coarse=coarse)
    expected = synthetic_cifar(1, 1, classes=CIFAR100_FINE)
    np.testing.assert_array_equal(arrays.test_images, expected.test_images)
    labels = cifar100_coarse_of(expected.train_labels) if coarse else expected.train_labels
    np.testing.assert_array_equal(arrays.train_labels, labels)
    assert arrays.classes == (CIFAR100_COARSE if coarse else CIFAR100_FINE)


@pytest.mark.parametrize("container", ["folder", "tar", "tar.gz", "tgz", "tar.bz2", "zip",
                                       "tar.gz-flat", "zip-flat"])
def test_png_image_folder_in_every_container(tmp_path, container):
    folder = make_image_folder(tmp_path / "work")
    kind, _, flat = container.partition("-")
    if kind == "folder":
        source = folder
    elif kind == "zip":
        source = make_zip(folder, tmp_path / "images.zip", include_folder=not flat)
    else:
        source = make_tar(folder, tmp_path / f"images.{kind}", include_folder=not flat)
    assert_decoded(read(source), synthetic_cifar())


def test_jpeg_image_folder_matches_pillow(tmp_path):
    folder = make_image_folder(tmp_path, fmt="jpeg")
    arrays = read(make_tar(folder, tmp_path / "images.tgz"))
    expected = synthetic_cifar()
    np.testing.assert_array_equal(arrays.train_labels, expected.train_labels)
    assert arrays.classes == CIFAR10_CLASSES and arrays.test_images.shape == (20, 3, 32, 32)
    # JPEG is lossy: compare with what Pillow itself decodes from the same file.
    first_cat = np.asarray(Image.open(folder / "train" / "cat" / "0000.jpg").convert("RGB"))
    np.testing.assert_array_equal(arrays.train_images[3 * 3], first_cat.transpose(2, 0, 1))


def test_train_only_folder_gives_empty_test_split(tmp_path):
    arrays = read(make_image_folder(tmp_path, with_test=False))
    assert arrays.test_images.shape == (0, 3, 32, 32) and arrays.test_labels.shape == (0,)
    summary = summarize(arrays)
    assert summary["counts"] == {"train": 30, "test": 0}
    assert "`data.val_split` (--val-split)" in summary["note"]  # the key and its flag


def test_grey_and_rgba_images_become_rgb(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)
    grey = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(grey, mode="L").save(folder / "train" / "cat" / "0000.png")
    Image.new("RGBA", (32, 32), (10, 20, 30, 40)).save(folder / "train" / "dog" / "0000.png")
    arrays = read(folder)
    np.testing.assert_array_equal(arrays.train_images[3], np.stack([grey] * 3))
    assert arrays.train_images[5, :, 0, 0].tolist() == [10, 20, 30]


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    folder = make_image_folder(tmp_path)
    (folder / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (folder / "train" / "cat" / "._0000.png").write_bytes(b"junk")  # macOS resource fork
    (folder / "train" / "README.txt").write_text("notes")
    assert_decoded(read(folder), synthetic_cifar())


def test_summary_counts_and_statistics(tmp_path):
    arrays = read(make_image_folder(tmp_path))
    summary = summarize(arrays)
    assert summary["classes"] == CIFAR10_CLASSES
    assert summary["counts"] == {"train": 30, "test": 20}
    assert summary["per_class"]["train"] == dict.fromkeys(CIFAR10_CLASSES, 3)
    assert summary["per_class"]["test"] == dict.fromkeys(CIFAR10_CLASSES, 2)
    assert "note" not in summary and summary["cache_file"] is None
    pixels = arrays.train_images.astype(np.float64) / 255
    np.testing.assert_allclose(arrays.mean, pixels.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(arrays.std, pixels.std(axis=(0, 2, 3)), atol=1e-12)


def test_channel_stats_chunking_is_exact():
    images = np.random.default_rng(1).integers(0, 256, (37, 3, 32, 32), dtype=np.uint8)
    assert channel_stats(images, chunk=5) == channel_stats(images, chunk=1000)
    mean, std = channel_stats(images, chunk=5)
    np.testing.assert_allclose(mean, (images / 255).mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(std, (images / 255).std(axis=(0, 2, 3)), atol=1e-12)


def test_resize_turns_large_images_into_32x32(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)
    big = Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    big.save(folder / "train" / "cat" / "0000.png")
    arrays = read(folder, resize=True)
    expected = np.asarray(big.resize((32, 32), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    np.testing.assert_array_equal(arrays.train_images[3], expected)


# --------------------------------------------------------------------------- errors


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    message = error_of(tmp_path / "nowhere")
    assert "does not exist" in message and str(tmp_path / "nowhere") in message


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "x.bin"], ids=["empty-dir", "file"])
def test_unknown_layout_lists_accepted_layouts(tmp_path, make):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 1000)
    message = error_of(make(tmp_path))
    assert "cifar-10-batches-py" in message and "train/<class>" in message


def test_train_and_test_class_folders_must_match(tmp_path):
    folder = make_image_folder(tmp_path)
    (folder / "test" / "cat").rename(folder / "test" / "kitten")
    message = error_of(folder)
    assert "differ" in message and "'cat'" in message and "'kitten'" in message


def test_image_of_wrong_size_suggests_resize(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)
    Image.new("RGB", (64, 48)).save(folder / "train" / "cat" / "big.png")
    message = error_of(folder)
    assert "big.png" in message and "64x48" in message and "`data.resize`" in message


def test_unreadable_image_is_named(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)
    (folder / "train" / "cat" / "broken.png").write_bytes(b"not an image at all")
    assert "broken.png" in error_of(folder)


def test_truncated_image_is_named(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1, fmt="jpeg")
    victim = folder / "test" / "dog" / "0000.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    assert "0000.jpg" in error_of(folder)


def test_empty_test_split(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)
    shutil.rmtree(folder / "test")
    (folder / "test").mkdir()
    assert "empty test/" in error_of(folder)


def test_empty_train_split(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    assert "no training images" in error_of(tmp_path)


def test_test_without_train(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)
    shutil.rmtree(folder / "train")
    assert "no train/" in error_of(folder)


@pytest.mark.parametrize("suffix", ["tar.gz", "tar", "zip"])
def test_truncated_archive(tmp_path, suffix):
    folder = make_image_folder(tmp_path / "work", 2, 1)
    archive = tmp_path / f"images.{suffix}"
    make_zip(folder, archive) if suffix == "zip" else make_tar(folder, archive)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    message = error_of(archive)
    assert str(archive) in message and ("truncated or corrupt" in message or "cannot" in message)


def test_truncated_binary_batch(tmp_path):
    folder = make_cifar10_binary_dir(tmp_path)
    batch = folder / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-10])
    assert "data_batch_2.bin" in error_of(folder) and "truncated" in error_of(folder)


def test_corrupt_pickle_batch(tmp_path):
    folder = make_cifar10_python_dir(tmp_path)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    assert "data_batch_3" in error_of(folder)


def test_missing_test_batch(tmp_path):
    folder = make_cifar10_python_dir(tmp_path)
    (folder / "test_batch").unlink()
    assert "test_batch" in error_of(folder)


def test_coarse_needs_cifar100(tmp_path):
    assert "CIFAR-100" in error_of(make_cifar10_python_dir(tmp_path), coarse=True)


def test_labels_out_of_range(tmp_path):
    folder = make_cifar10_binary_dir(tmp_path)
    (folder / "batches.meta.txt").write_text("a\nb\n")
    assert "2 class names" in error_of(folder)


def test_message_is_one_line_for_binary_garbage(tmp_path):
    raw = io.BytesIO()
    Image.new("RGB", (2, 2)).save(raw, format="PNG")
    (tmp_path / "picture.png").write_bytes(raw.getvalue())
    assert "not a folder, tar or zip" in error_of(Path(tmp_path / "picture.png"))


# --------------------------------------------------------------------------- the one image decoder

_rng = np.random.default_rng(7)
_BITS = _rng.integers(0, 2, (32, 32)).astype(bool)
_GREY = _rng.integers(0, 256, (32, 32), dtype=np.uint8)
_GREY_ALPHA = _rng.integers(0, 256, (32, 32, 2), dtype=np.uint8)
_INDEX = _rng.integers(0, 256, (32, 32), dtype=np.uint8)
_PALETTE = _rng.integers(0, 256, (256, 3), dtype=np.uint8)
_RGBA = _rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
_U16 = _rng.integers(0, 65536, (32, 32), dtype=np.uint16)
_I32 = _rng.integers(-5000, 80000, (32, 32), dtype=np.int32)  # beyond 16 bits both ways
_FLOAT = _rng.uniform(-0.1, 1.1, (32, 32)).astype(np.float32)  # beyond [0, 1] both ways
_CMYK = _rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(values, 0, 255)[..., None], 3, axis=2)


def _palette_image() -> Image.Image:
    image = Image.frombytes("P", (32, 32), _INDEX.tobytes())
    image.putpalette(_PALETTE.tobytes())
    return image


def _cmyk_by_hand(cmyk: np.ndarray) -> np.ndarray:
    cmy, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    return np.rint((255 - cmy) * (255 - k) / 255)


def _rotated_by_exif(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, show the pixels rotated 90° clockwise
    Image.fromarray(_RGBA[..., :3]).save(path, exif=exif)


# (id, file name, writes the file, the RGB it must decode to, computed by hand from the pixels)
DECODER_CASES = [
    ("1", "x.png", lambda p: Image.fromarray(_BITS).save(p), lambda p: _grey(_BITS * 255)),
    ("L", "x.png", lambda p: Image.fromarray(_GREY).save(p), lambda p: _grey(_GREY)),
    ("LA", "x.png", lambda p: Image.fromarray(_GREY_ALPHA).save(p),
     lambda p: _grey(_GREY_ALPHA[..., 0])),
    ("P", "x.png", lambda p: _palette_image().save(p), lambda p: _PALETTE[_INDEX]),
    ("RGB", "x.png", lambda p: Image.fromarray(_RGBA[..., :3]).save(p), lambda p: _RGBA[..., :3]),
    ("RGBA", "x.png", lambda p: Image.fromarray(_RGBA).save(p), lambda p: _RGBA[..., :3]),
    ("I;16", "x.png", lambda p: Image.fromarray(_U16).save(p),
     lambda p: _grey(np.rint(_U16 / 257))),
    ("I", "x.tif", lambda p: Image.fromarray(_I32).save(p), lambda p: _grey(np.rint(_I32 / 257))),
    ("F", "x.tiff", lambda p: Image.fromarray(_FLOAT).save(p),
     lambda p: _grey(np.rint(_FLOAT.astype(np.float64) * 255))),
    ("CMYK", "x.tif", lambda p: Image.frombytes("CMYK", (32, 32), _CMYK.tobytes()).save(p),
     lambda p: _cmyk_by_hand(_CMYK)),
    # JPEG is lossy: the CMYK values are the ones the file holds
    ("CMYK-jpeg", "x.jpg", lambda p: Image.frombytes("CMYK", (32, 32), _CMYK.tobytes()).save(p),
     lambda p: _cmyk_by_hand(np.asarray(Image.open(p)))),
    ("RGB-exif-rotated", "x.png", _rotated_by_exif, lambda p: np.rot90(_RGBA[..., :3], k=-1)),
]


@pytest.mark.parametrize(("name", "write", "by_hand"), [case[1:] for case in DECODER_CASES],
                         ids=[case[0] for case in DECODER_CASES])
def test_an_image_folder_and_predict_decode_every_mode_alike(tmp_path, name, write, by_hand):
    """A 16-bit PNG was cached as all 255 in an image folder while predict scaled it; now both
    read each file through the one decoder, whose rules are checked here mode by mode."""
    from resnet_cifar.predict import read_image

    file = tmp_path / "data" / "train" / "a" / name
    file.parent.mkdir(parents=True)
    write(file)
    expected = by_hand(file).astype(np.uint8).transpose(2, 0, 1)
    np.testing.assert_array_equal(read(tmp_path / "data").train_images[0], expected)
    np.testing.assert_array_equal(read_image(file)[0], expected)


# --------------------------------------------------------------------------- one data set per path


def _empty_path(tmp_path):
    make_image_folder(tmp_path)  # "" used to mean the current folder, which holds a data set
    return "", "''", []


def _two_wrapped(tmp_path):
    a, b = make_cifar10_python_dir(tmp_path / "d"), make_image_folder(tmp_path / "d", 1, 1)
    return tmp_path / "d", tmp_path / "d", [a, b]


def _layout_beside_a_wrapped_one(tmp_path):
    folder = make_image_folder(tmp_path, 1, 1)  # train/ and test/ at its top
    return folder, folder, [make_cifar10_python_dir(folder)]


def _two_layouts_in_one_folder(tmp_path):
    folder = make_cifar10_python_dir(tmp_path)
    for file in make_cifar10_binary_dir(tmp_path / "bin").iterdir():
        shutil.move(file, folder)
    return folder, folder, []


def _archive_of_two(tmp_path):
    a, b = make_cifar10_python_dir(tmp_path / "d"), make_image_folder(tmp_path / "d", 1, 1)
    archive = make_tar(tmp_path / "d", tmp_path / "two.tar.gz", include_folder=False)
    return archive, archive, [a.name, b.name]


@pytest.mark.parametrize("command", ["data", "train"])
@pytest.mark.parametrize("case", [_empty_path, _two_wrapped, _layout_beside_a_wrapped_one,
                                  _two_layouts_in_one_folder, _archive_of_two],
                         ids=lambda case: case.__name__.strip("_"))
def test_one_data_set_per_path(tmp_path, monkeypatch, capsys, case, command):
    """An empty path, or a path holding more than one data set, is refused with the candidates
    named: the first in alphabetical order was used silently."""
    monkeypatch.chdir(tmp_path)
    data, named, candidates = case(tmp_path)
    argv = [command, "--data", data, "--cache-dir", tmp_path / "cache"]
    if command == "train":
        argv += ["--out", tmp_path / "run", "--epochs", "1", "--device", "cpu"]
    line = assert_refused(argv, named, tmp_path, capsys)
    assert all(str(candidate) in line for candidate in candidates), line
