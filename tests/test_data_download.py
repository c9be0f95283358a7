"""Downloads against a local HTTP server, the decoded-array cache, and load_cifar's resolution."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import (
    make_cifar10_python_tarball,
    make_cifar100_python_dir,
    make_image_folder,
    synthetic_cifar,
)
from PIL import Image

import resnet_cifar.data.cache as cache_module
import resnet_cifar.data.download as download_module
from resnet_cifar.atomic import atomic_path, atomic_write
from resnet_cifar.data import download_file, load_cifar, read_source
from resnet_cifar.errors import DataError


class LocalServer:
    """Serves `routes[path] = (body, declared Content-Length)` on 127.0.0.1; counts requests."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)  # fewer bytes than declared: the client sees a drop
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.closed = False
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"

    def serve(self, path: str, body: bytes, declared: int | None = None) -> str:
        self.routes[path] = (body, len(body) if declared is None else declared)
        return self.base + path

    def close(self):
        if not self.closed:
            self.closed = True
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    """A tiny cifar-10-python.tar.gz, laid out as the official one."""
    return make_cifar10_python_tarball(tmp_path_factory.mktemp("official"))


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- download_file


def test_download_good_file(server, tarball, tmp_path):
    body = tarball.read_bytes()
    url = server.serve("/cifar-10-python.tar.gz", body)
    dest = download_file(url, tmp_path / "dl" / "cifar-10-python.tar.gz", md5_of(body),
                         progress=False)
    assert dest.read_bytes() == body
    assert leftovers(tmp_path / "dl") == ["cifar-10-python.tar.gz"]  # no .part left over


def test_truncated_download_leaves_nothing(server, tarball, tmp_path):
    body = tarball.read_bytes()
    url = server.serve("/short.tar.gz", body[: len(body) // 2], declared=len(body))
    with pytest.raises(DataError, match=r"stopped after \d+ of \d+ bytes"):
        download_file(url, tmp_path / "short.tar.gz", md5_of(body), progress=False)
    assert leftovers(tmp_path) == []


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url = server.serve("/tampered.tar.gz", b"not the real archive")
    with pytest.raises(DataError, match="checksum mismatch.*expected md5 0{32}"):
        download_file(url, tmp_path / "tampered.tar.gz", "0" * 32, progress=False)
    assert leftovers(tmp_path) == []


def test_http_error_and_refused_connection(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download_file(server.base + "/missing", tmp_path / "x", None, progress=False)
    port = server.httpd.server_port
    server.close()
    with pytest.raises(DataError, match="download of .* failed"):
        download_file(f"http://127.0.0.1:{port}/gone", tmp_path / "x", None, progress=False,
                      timeout=5)
    assert leftovers(tmp_path) == []


def test_ctrl_c_cleans_up_and_propagates(server, tmp_path, monkeypatch):
    url = server.serve("/slow", b"x" * 1000)

    def interrupted(response, out, url, progress):
        out.write(response.read(10))
        raise KeyboardInterrupt

    monkeypatch.setattr(download_module, "_stream_to", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_file(url, tmp_path / "slow", None, progress=False)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- load_cifar + cache


def test_load_cifar_downloads_decodes_and_caches(server, tarball, tmp_path):
    body = tarball.read_bytes()
    url = server.serve("/cifar-10-python.tar.gz", body)
    cache = tmp_path / "cache"
    arrays = load_cifar(cache_dir=cache, url=url, md5=md5_of(body), progress=False)
    expected = synthetic_cifar()
    np.testing.assert_array_equal(arrays.train_images, expected.train_images)
    np.testing.assert_array_equal(arrays.test_labels, expected.test_labels)
    assert arrays.source == url and Path(arrays.cache_file).parent == cache
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == body
    # Later runs need neither the network nor the tarball: the arrays are keyed by its md5.
    (cache / "cifar-10-python.tar.gz").unlink()
    again = load_cifar(cache_dir=cache, url=url, md5=md5_of(body), download=False,
                       progress=False)
    np.testing.assert_array_equal(again.train_images, arrays.train_images)
    assert server.requests == ["/cifar-10-python.tar.gz"]


def test_official_tarball_in_the_cache_folder_is_used_without_download(tarball, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(tarball.read_bytes())
    arrays = load_cifar(cache_dir=cache, md5=md5_of(tarball.read_bytes()), download=False,
                        progress=False)
    assert len(arrays.train_labels) == 30


def test_explicit_tarball_and_official_route_share_the_cache(tarball, tmp_path):
    cache = tmp_path / "cache"
    first = load_cifar(tarball, cache_dir=cache, progress=False)
    second = load_cifar(cache_dir=cache, md5=md5_of(tarball.read_bytes()), download=False,
                        progress=False)
    assert first.cache_file == second.cache_file


def test_no_data_and_no_download(tmp_path):
    with pytest.raises(DataError, match="no cifar10 data.*allow downloading"):
        load_cifar(cache_dir=tmp_path, download=False, progress=False)
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_cifar(cache_dir=tmp_path, dataset="mnist", progress=False)


def test_failed_download_in_load_cifar_leaves_cache_clean(server, tarball, tmp_path):
    body = tarball.read_bytes()
    url = server.serve("/c.tar.gz", body[:100], declared=len(body))
    with pytest.raises(DataError, match="stopped after"):
        load_cifar(cache_dir=tmp_path, url=url, md5=md5_of(body), progress=False)
    assert leftovers(tmp_path) == []


def test_a_damaged_tarball_in_the_cache_is_named_with_its_checksum(server, tarball, tmp_path):
    """A tarball placed by hand whose md5 is wrong is not silently passed over for a download
    whose failure would then be all the message says."""
    damaged = tmp_path / "cifar-10-python.tar.gz"
    damaged.write_bytes(b"not the archive")
    good = md5_of(tarball.read_bytes())
    with pytest.raises(DataError, match=f"has md5 {md5_of(b'not the archive')}, not the "
                                        f"official {good}") as err:
        load_cifar(cache_dir=tmp_path, md5=good, download=False, progress=False)
    assert "is missing" not in str(err.value)
    body = tarball.read_bytes()
    url = server.serve("/cut.tar.gz", body[:100], declared=len(body))
    with pytest.raises(DataError, match="has md5 .* and downloading a good copy failed: "):
        load_cifar(cache_dir=tmp_path, url=url, md5=good, progress=False)


def test_cifar100_asked_for_but_other_data_given_is_refused(tarball, tmp_path):
    with pytest.raises(DataError, match="holds 10 classes"):
        load_cifar(tarball, cache_dir=tmp_path, dataset="cifar100", progress=False)


def test_environment_variables_choose_data_and_cache(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "data", 1, 1)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(folder))
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(tmp_path / "env-cache"))
    arrays = load_cifar(progress=False)
    assert arrays.source == str(folder.resolve())
    assert Path(arrays.cache_file).parent == tmp_path / "env-cache"
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="does not exist.*RESNET_CIFAR_DATA"):
        load_cifar(progress=False)


def test_cache_hit_skips_decoding(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "data")
    first = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    assert Path(first.cache_file).name.startswith("cifar-") and first.cache_file.endswith(".npz")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a cache hit")

    monkeypatch.setattr(cache_module, "decode_tree", no_decoding)
    second = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    assert (second.classes, second.mean, second.std) == (first.classes, first.mean, first.std)
    assert second.cache_file == first.cache_file


def test_cache_key_follows_content_and_flags(tmp_path):
    cache = tmp_path / "cache"
    a = make_image_folder(tmp_path / "a", 1, 1, seed=0)
    b = shutil.copytree(a, tmp_path / "b")  # a copy that keeps sizes and times: same key
    c = make_image_folder(tmp_path / "c", 1, 1, seed=1)
    file_a = load_cifar(a, cache_dir=cache, progress=False).cache_file
    assert load_cifar(b, cache_dir=cache, progress=False).cache_file == file_a
    assert load_cifar(c, cache_dir=cache, progress=False).cache_file != file_a
    assert load_cifar(a, cache_dir=cache, resize=True, progress=False).cache_file != file_a
    # Editing one image changes the key, so stale arrays are never served.
    victim = a / "train" / "cat" / "0000.png"
    replacement = make_image_folder(tmp_path / "d", 1, 1, seed=5) / "train" / "cat" / "0000.png"
    victim.write_bytes(replacement.read_bytes())
    edited = load_cifar(a, cache_dir=cache, progress=False)
    assert edited.cache_file != file_a
    np.testing.assert_array_equal(edited.train_images, read_source(a, progress=False).train_images)


def test_an_edit_that_keeps_size_and_mtime_changes_pixels_and_fingerprint(tmp_path):
    """The folder key hashes the files' bytes: a key of sizes and times would serve the old
    pixels under the old fingerprint."""
    folder = make_image_folder(tmp_path / "data", 1, 1)
    png = folder / "train" / "cat" / "0000.png"
    victim = png.with_suffix(".ppm")  # uncompressed: new pixels in the same number of bytes
    Image.open(png).save(victim)
    png.unlink()
    before = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    stat = victim.stat()
    victim.write_bytes(victim.read_bytes()[:-3072] + bytes(3072))  # the same header, all black
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    assert before.train_images[3].any() and not after.train_images[3].any()  # cat is class 3
    assert after.fingerprint != before.fingerprint and after.cache_file != before.cache_file


def test_cifar100_coarse_and_fine_are_cached_apart(tmp_path):
    folder = make_cifar100_python_dir(tmp_path)
    fine = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    coarse = load_cifar(folder, cache_dir=tmp_path / "cache", coarse=True, progress=False)
    assert fine.cache_file != coarse.cache_file
    assert len(fine.classes) == 100 and len(coarse.classes) == 20


def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path):
    folder = make_image_folder(tmp_path / "data", 1, 1)
    first = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    Path(first.cache_file).write_bytes(b"PK\x03\x04 garbage")
    with pytest.warns(RuntimeWarning, match="ignoring unreadable cache file"):
        second = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(second.train_images, first.train_images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)  # rewritten, clean hit


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch, error):
    folder = make_image_folder(tmp_path / "data", 1, 1)

    def failing_savez(file, **arrays):
        file.write(b"half of an npz")
        raise error

    monkeypatch.setattr(cache_module.np, "savez", failing_savez)
    cache = tmp_path / "cache"
    if isinstance(error, OSError):
        with pytest.warns(RuntimeWarning, match="continuing without it"):
            arrays = load_cifar(folder, cache_dir=cache, progress=False)
        assert arrays.cache_file is None and len(arrays.train_labels) == 10
    else:
        with pytest.raises(KeyboardInterrupt):
            load_cifar(folder, cache_dir=cache, progress=False)
    assert leftovers(cache) == []


def test_unwritable_cache_folder_warns_once(tmp_path):
    folder = make_image_folder(tmp_path / "data", 1, 1)
    (tmp_path / "a-file").write_text("")
    cache = tmp_path / "a-file" / "cache"  # cannot be created: its parent is a file
    with pytest.warns(RuntimeWarning, match="cannot write the data cache"):
        arrays = load_cifar(folder, cache_dir=cache, progress=False)
    assert arrays.cache_file is None and len(arrays.train_labels) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cifar(folder, cache_dir=cache, progress=False)


def test_a_killed_writers_temporary_file_goes_at_the_next_write(tmp_path):
    """kill -9 during a cache write leaves its temporary file (67 MB for CIFAR-10); the next write
    of that cache file deletes it, while a live writer's (two runs starting together) is kept."""
    folder = make_image_folder(tmp_path / "data", 1, 1)
    cache = tmp_path / "cache"
    target = Path(load_cifar(folder, cache_dir=cache, progress=False).cache_file)
    target.unlink()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer that is killed in the middle of its write
        try:
            with atomic_write(target) as f:
                f.write(b"half of an npz")
                f.flush()
                os.write(ready_w, b"x")
                signal.pause()
        finally:
            os._exit(1)
    os.close(ready_w)
    os.read(ready_r, 1)  # b"" if the writer ended early: the assertion below says so
    os.close(ready_r)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert len(leftovers(cache)) == 1 and leftovers(cache)[0].startswith(f".{target.name}.")

    with atomic_path(target) as live:  # a writer still at work on the same file
        arrays = load_cifar(folder, cache_dir=cache, progress=False)  # decodes and writes
        assert arrays.cache_file == str(target)
        assert leftovers(cache) == sorted([target.name, live.name])
        live.write_bytes(target.read_bytes())
    assert leftovers(cache) == [target.name]
