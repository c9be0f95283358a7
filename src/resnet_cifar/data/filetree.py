"""A data source's files, by relative POSIX path: a folder listed lazily, or an archive read into
memory in one pass (tar, tar.gz, tgz, tar.bz2, tar.xz, zip; recognized by their first bytes).

Archives are never extracted: members with absolute names, `..` components or link types are
refused, so nothing a source holds can name a file outside it.
"""

from __future__ import annotations

import io
import lzma
import os
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from resnet_cifar.errors import DataError

ACCEPTED_LAYOUTS = (
    "cifar-10-batches-py/ (or cifar-10-python.tar.gz), cifar-100-python/ (or its .tar.gz), "
    "cifar-10-batches-bin/ (or cifar-10-binary.tar.gz), cifar-100-binary/, or an image folder "
    "train/<class>/*.png|jpg [+ test/<class>/...] (or a .tar, .tar.gz, .tgz or .zip of one)"
)
# A folder source is listed this deep (wrapper/train/<class>/<image>), so pointing at a large parent
# folder does not walk it all.
MAX_LIST_DEPTH = 4
# What a damaged archive raises while it is read.
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError,
                  OSError, NotImplementedError, RuntimeError)


@dataclass
class FileTree:
    """The files of a source by relative POSIX path: a folder, or an archive read into memory."""

    label: str  # the path, for messages
    files: dict[str, int]  # relative path → size in bytes
    dirs: set[str]  # relative folder paths, without trailing slash
    root: Path | None = None  # set for a folder (files are read lazily)
    blobs: dict[str, bytes] = field(default_factory=dict)  # set for an archive

    def read(self, name: str) -> bytes:
        if self.root is None:
            return self.blobs[name]
        try:
            # os.read: much faster than Path.read_bytes for many small files
            fd = os.open(os.path.join(self.root, name), os.O_RDONLY)
            try:
                parts = []
                while part := os.read(fd, 1 << 24):
                    parts.append(part)
                return b"".join(parts)
            finally:
                os.close(fd)
        except OSError as err:
            raise DataError(f"cannot read {self.describe(name)}: {err.strerror}; "
                            "check the file's permissions") from None

    def describe(self, name: str) -> str:
        """How to name a member in a message: a path for a folder, 'member in archive' else."""
        return str(self.root / name) if self.root is not None else f"{name} in {self.label}"


def _list_folder(root: Path) -> FileTree:
    tree = FileTree(label=str(root), files={}, dirs=set(), root=root)

    def walk(folder: str, prefix: str, depth: int) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = prefix + entry.name
                if entry.is_dir():
                    # Skip hidden folders (.git) and stop descending past the deepest layout.
                    if depth < MAX_LIST_DEPTH - 1 and not entry.name.startswith("."):
                        tree.dirs.add(name)
                        walk(entry.path, name + "/", depth + 1)
                elif entry.is_file():
                    tree.files[name] = entry.stat().st_size

    walk(str(root), "", 0)
    return tree


def _checked_member_name(name: str, archive: Path) -> str:
    """The member's normalized relative name; DataError if it could land outside the tree."""
    normalized = name.replace("\\", "/")
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    is_drive = bool(parts) and len(parts[0]) == 2 and parts[0][1] == ":"  # C:/...
    if normalized.startswith("/") or ".." in parts or is_drive:
        raise DataError(f"refusing unsafe archive member {name!r} in {archive}: absolute paths and "
                        "'..' are not allowed; re-create the archive with relative member names")
    return "/".join(parts)


def _archive_tree(path: Path, members, read) -> FileTree:
    """The tree of archive `members`, (raw name, kind, size, member) with kind link, dir, file or
    other; `read(member)` gives a file's bytes. Links and unsafe names are refused."""
    tree = FileTree(label=str(path), files={}, dirs=set())
    for raw_name, kind, size, member in members:
        name = _checked_member_name(raw_name, path)
        if kind == "link":
            raise DataError(f"refusing link member {raw_name!r} in {path}: links could point "
                            "outside the data; re-create the archive without links")
        if kind == "dir" and name:
            tree.dirs.add(name)
        elif kind == "file" and name:
            tree.blobs[name] = read(member)
            tree.files[name] = size
            while "/" in name:  # archives need not list a member's folders as members
                name = name.rpartition("/")[0]
                tree.dirs.add(name)
    return tree


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return "link"
    return "dir" if member.isdir() else "file" if member.isfile() else "other"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if (info.external_attr >> 16) & 0o170000 == 0o120000:  # S_IFLNK in the Unix mode
        return "link"
    return "dir" if info.is_dir() else "file"


def _read_tar(path: Path, progress: bool) -> FileTree:
    with open(path, "rb") as raw, _ReadProgress(raw, path, progress) as counted:
        # "r|*": one streaming pass, transparent gzip/bz2/xz, nothing written to disk.
        with tarfile.open(fileobj=counted, mode="r|*") as tar:
            members = ((m.name, _tar_kind(m), m.size, m) for m in tar)
            return _archive_tree(path, members, lambda m: tar.extractfile(m).read())


def _read_zip(path: Path) -> FileTree:
    with zipfile.ZipFile(path) as archive:
        members = ((i.filename, _zip_kind(i), i.file_size, i) for i in archive.infolist())
        return _archive_tree(path, members, archive.read)


class _ReadProgress(io.RawIOBase):
    """Wraps a binary file to show a byte progress bar while an archive is streamed."""

    def __init__(self, raw, path: Path, enabled: bool):
        self._raw = raw
        self._bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                         desc=f"reading {path.name}", disable=not enabled, leave=False)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self._bar.update(n or 0)
        return n

    def close(self) -> None:
        self._bar.close()
        super().close()


def _archive_kind(path: Path) -> str | None:
    """'zip', 'tar' or None, from the file's first bytes (not its name)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    return None


def open_tree(path: Path, progress: bool = True) -> FileTree:
    """List a folder, or read an archive into memory; DataError for anything else."""
    if not path.exists():
        raise DataError(f"data path {path} does not exist: pass the folder or archive that holds "
                        "CIFAR, or omit it to use the cache / download")
    if path.is_dir():
        try:
            return _list_folder(path)
        except OSError as err:
            raise DataError(f"cannot list {err.filename or path} ({err.strerror}): check the "
                            "folder's permissions") from None
    kind = _archive_kind(path)
    if kind is None:
        raise DataError(f"{path} is not a folder, tar or zip archive: expected {ACCEPTED_LAYOUTS}")
    try:
        return _read_zip(path) if kind == "zip" else _read_tar(path, progress)
    except DataError:
        raise
    except ARCHIVE_ERRORS as err:
        raise DataError(f"archive {path} is truncated or corrupt ({type(err).__name__}: {err}); "
                        "download or re-create it") from None
