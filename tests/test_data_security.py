"""Hostile inputs: pickles that run code, archive members that escape, links."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from data_fixtures import dump_batch, make_cifar10_python_dir, make_image_folder, make_tar

from resnet_cifar.data import read_source
from resnet_cifar.data.safe_pickle import safe_loads
from resnet_cifar.errors import DataError


class ShellPayload:
    """Unpickling this runs a shell command, as a doctored CIFAR batch could."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalPayload:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def test_pickle_with_shell_payload_is_refused_before_it_runs(tmp_path):
    folder = make_cifar10_python_dir(tmp_path / "data", str_keys=True)
    marker = tmp_path / "pwned"
    payload = {"data": ShellPayload(f"echo pwned > {marker}"), "labels": [0]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError) as info:
        read_source(folder, progress=False)
    assert not marker.exists()
    message = str(info.value)
    assert message.startswith("refusing to unpickle ") and "system" in message
    assert "data_batch_1" in message and "malicious" in message


def test_pickle_payload_inside_a_tarball_is_refused(tmp_path):
    folder = make_cifar10_python_dir(tmp_path / "data")
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps(ShellPayload(f"touch {marker}"), protocol=2))
    tarball = make_tar(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match=r"refusing to unpickle .*test_batch in .*\.tar\.gz"):
        read_source(tarball, progress=False)
    assert not marker.exists()


def test_builtin_eval_is_refused():
    with pytest.raises(DataError, match="refusing to unpickle builtins.eval"):
        safe_loads(pickle.dumps(EvalPayload()), source="x")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_numpy_pickles_load_at_every_protocol(protocol):
    batch = {"data": np.arange(3072, dtype=np.uint8).reshape(1, 3072), "labels": [np.int64(3)],
             "label_names": ["cat"], "raw": b"\x00\x01"}
    loaded = safe_loads(pickle.dumps(batch, protocol=protocol), source="x")
    np.testing.assert_array_equal(loaded["data"], batch["data"])
    assert loaded["labels"] == [3] and loaded["raw"] == b"\x00\x01"


def test_python2_style_pickle_keeps_bytes_keys(tmp_path):
    dump_batch({"labels": [1, 2], "data": np.zeros((2, 3072), np.uint8)}, tmp_path / "b",
               str_keys=False)
    loaded = safe_loads((tmp_path / "b").read_bytes(), source="b")
    assert set(loaded) == {b"labels", b"data"} and loaded[b"data"].shape == (2, 3072)


def _tar_with(path, members: dict[str, bytes], *, link: str | None = None):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("images/train/cat/link.png")
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    return path


@pytest.mark.parametrize("evil", ["../evil", "images/../../evil", "/tmp/evil-absolute"])
def test_tar_member_escaping_the_tree_is_refused(tmp_path, evil):
    workdir = tmp_path / "inner"
    workdir.mkdir()
    tarball = _tar_with(workdir / "images.tar.gz", {"images/train/cat/0.png": b"x", evil: b"boom"})
    with pytest.raises(DataError, match="refusing unsafe archive member"):
        read_source(tarball, progress=False)
    assert not (tmp_path / "evil").exists() and not os.path.exists("/tmp/evil-absolute")
    assert sorted(p.name for p in workdir.iterdir()) == ["images.tar.gz"]


def test_tar_link_member_is_refused(tmp_path):
    tarball = _tar_with(tmp_path / "images.tar.gz", {"images/train/cat/0.png": b"x"},
                        link="/etc/passwd")
    with pytest.raises(DataError, match="refusing link member"):
        read_source(tarball, progress=False)


@pytest.mark.parametrize("evil", ["../evil", "/evil-absolute"])
def test_zip_member_escaping_the_tree_is_refused(tmp_path, evil):
    workdir = tmp_path / "inner"
    workdir.mkdir()
    archive = workdir / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("images/train/cat/0.png", b"x")
        z.writestr(zipfile.ZipInfo(evil), b"boom")
    with pytest.raises(DataError, match="refusing unsafe archive member"):
        read_source(archive, progress=False)
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["images.zip"]


def test_zip_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        info = zipfile.ZipInfo("images/train/cat/link.png")
        info.external_attr = (0o120777 << 16)  # a symlink in the Unix mode bits
        z.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="refusing link member"):
        read_source(archive, progress=False)


def test_reading_an_archive_writes_nothing(tmp_path):
    folder = make_image_folder(tmp_path / "work", 1, 1)
    tarball = make_tar(folder, tmp_path / "images.tar.gz")
    before = sorted(tmp_path.rglob("*"))
    read_source(tarball, progress=False)
    assert sorted(tmp_path.rglob("*")) == before
