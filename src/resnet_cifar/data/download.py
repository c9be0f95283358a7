"""Streamed download with an md5 check and an atomic rename: only a complete, verified file is
renamed to `dest`; any failure (Ctrl-C included) deletes the partial `<dest>.<random>.part`.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from resnet_cifar.atomic import atomic_write
from resnet_cifar.errors import DataError

CHUNK_BYTES = 1 << 20


def file_md5(path: Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """md5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _stream_to(response, out, url: str, progress: bool) -> str:
    """Copy the response body into `out`; return its md5. DataError on a short body."""
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    digest, received, name = hashlib.md5(), 0, url.rsplit("/", 1)[-1]
    with tqdm(total=expected, unit="B", unit_scale=True, desc=f"downloading {name}",
              disable=not progress, leave=False) as bar:
        while block := response.read(CHUNK_BYTES):
            out.write(block)
            digest.update(block)
            received += len(block)
            bar.update(len(block))
    if expected is not None and received != expected:
        raise DataError(f"download of {url} stopped after {received} of {expected} bytes: "
                        "the connection dropped; run the command again")
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str | None, progress: bool = True,
                  *, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, verify its md5 (skipped when md5 is None), and return `dest`.

    Raises DataError on any failure, leaving no partial file; Ctrl-C cleans up and re-raises.
    """
    try:
        with atomic_write(dest, suffix=".part") as part:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                got = _stream_to(response, part, url, progress)
            if md5 is not None and got != md5.lower():
                raise DataError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}; "
                                "the download is corrupt or the file changed, run the command "
                                "again")
    except (DataError, KeyboardInterrupt):
        raise
    except urllib.error.HTTPError as err:
        raise DataError(f"download of {url} failed (HTTP {err.code} {err.reason}): check the "
                        "address, or download it by hand and pass its path") from None
    except (OSError, http.client.HTTPException) as err:  # URLError is an OSError
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise DataError(f"download of {url} to {dest} failed ({type(err).__name__}: {reason}): "
                        "check the connection and that the folder is writable, or download it "
                        "by hand and pass its path") from None
    return dest
