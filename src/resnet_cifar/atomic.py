"""Files that are either complete or absent: a temporary file beside the target (with the mode a
plain ``open()`` gives), fsynced, then renamed over it. Each writer flocks its temporary file, which
the kernel drops however it ends: an unlocked one has lost its writer; the next write deletes it.

``atomic_path``/``atomic_write`` raise OSError as it comes (the data cache carries on without its
file); outputs the user asked for call ``check_target`` (or ``check_folder``) before the work and
wrap the write in ``explain_write_errors``: a one-line UserError with path and cause.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from resnet_cifar.errors import UserError

try:  # advisory locks: POSIX. Elsewhere stale temporary files are left (they are hidden).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _locked_temp(path: Path, suffix: str) -> tuple[int | None, Path]:
    """A new empty temporary file beside ``path``, and a descriptor holding its flock (None
    without flock: Windows cannot rename a file that is open)."""
    while True:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        if fcntl is None:
            os.close(fd)
            return None, Path(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(name)):
                return fd, Path(name)
        except FileNotFoundError:
            pass  # another writer took it for stale before we locked it: make another
        except OSError:  # a file system without locks: nothing to hold
            return fd, Path(name)
        os.close(fd)


def _remove_stale_temps(path: Path, suffix: str, own: Path) -> None:
    """Delete the temporary files of ``path`` whose writers are gone: those not locked."""
    if fcntl is None:
        return
    prefix = f".{path.name}."
    with os.scandir(path.parent) as entries:
        stale = [e.path for e in entries if e.name.startswith(prefix) and e.name.endswith(suffix)
                 and e.is_file(follow_symlinks=False) and e.name != own.name]
    for name in stale:
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
            os.unlink(name)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file name beside ``path``, ending in ``suffix``; on a clean exit, fsync
    it and rename it to ``path``; on any exception (KeyboardInterrupt included), delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp(path, suffix)  # locked first, so that it is not taken for stale
    try:
        _remove_stale_temps(path, suffix, tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)  # drops the lock, after the rename


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", suffix: str = ".tmp",
                 newline: str | None = None) -> Iterator[IO]:
    """``atomic_path``, with the file open (``newline`` as open()'s: csv wants "")."""
    with atomic_path(path, suffix) as tmp, open(tmp, mode, newline=newline) as f:
        yield f


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_save_bytes(path: str | os.PathLike, save: Callable[[io.BytesIO], None]) -> None:
    """``save(buffer)`` into memory, then the bytes to ``path``: a C++ serializer (torch.save)
    writing a file itself reports a full disk in its own words, Python as an OSError."""
    buffer = io.BytesIO()
    save(buffer)
    with atomic_write(path) as f:
        f.write(buffer.getbuffer())


def cannot_write(path: str | os.PathLike, what: str, cause: str, fix: str) -> UserError:
    """The one shape of every write error: what, where, why, and what to do about it."""
    return UserError(f"cannot write {what} {path}: {cause}; {fix}")


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder, else None."""
    parent = next((p for p in path.parents if p.exists()), None)
    return None if parent is None or parent.is_dir() else parent


def _refuse_a_file_in_the_way(path: Path, what: str, setting: str) -> Path:
    if (blocker := _file_in_the_way(path)) is not None:
        raise cannot_write(path, what, f"{blocker} is a file, not a folder",
                           f"choose another {setting}")
    return path


def check_target(path: str | os.PathLike, what: str, setting: str = "`out` (--out)") -> Path:
    """``path`` as a Path; a UserError now (cheaply) if no file can be written there."""
    path = Path(path)
    if path.is_dir():
        raise cannot_write(path, what, "it is a folder", f"give {setting} a file name")
    return _refuse_a_file_in_the_way(path, what, setting)


def check_folder(path: str | os.PathLike, what: str,
                 setting: str = "`out_dir` (--out-dir)") -> Path:
    """``path`` as a Path; a UserError now if it cannot be (or become) a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise cannot_write(path, what, "it is a file, not a folder", f"choose another {setting}")
    return _refuse_a_file_in_the_way(path, what, setting)


def _explain(err: OSError, path: Path, setting: str) -> tuple[str, str]:
    """(cause, fix) of a failed write to ``path``."""
    if (blocker := _file_in_the_way(path)) is not None:  # mkdir's ENOTDIR or EEXIST, said plainly
        return f"{blocker} is a file, not a folder", f"choose another {setting}"
    if err.errno == errno.ENOSPC:
        return os_error_cause(err), f"free some space or choose another {setting}"
    return os_error_cause(err), f"choose a writable {setting}"


def os_error_cause(err: OSError) -> str:
    """The OS's reason for a failed write, in its own words ("no space left on device")."""
    return (err.strerror or str(err) or type(err).__name__).lower()


@contextlib.contextmanager
def explain_write_errors(path: str | os.PathLike, what: str,
                         setting: str = "`out` (--out)") -> Iterator[None]:
    """Turn an OSError raised inside into a one-line UserError naming ``what`` and ``path``, the
    cause and the fix (``setting``: what chooses another place)."""
    try:
        yield
    except OSError as err:
        cause, fix = _explain(err, Path(path), setting)
        raise cannot_write(path, what, cause, fix) from None
