import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # so test modules can `import data_fixtures`

SHARED = TESTS.parents[1] / "shared"
JPEG_TARBALL = SHARED / "data" / "cifar10-jpeg.tar.gz"
FOREIGN_CHECKPOINT = SHARED / "data" / "foreign" / "resnet20-12fca82f.th"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny batches gain nothing from threads, and threads that spin for a core busy with other
    work make the tests many times slower on a shared two-core machine. Set for every test: a
    command run in-process (eval, show...) sets its own count and would leave it behind."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decoded-array cache for the session: the real data set is decoded once, not per test."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    """Never read or write the user's real cache, and never reach the network, from a test."""
    monkeypatch.setenv("RESNET_CIFAR_CACHE", str(session_cache))
    monkeypatch.delenv("RESNET_CIFAR_DATA", raising=False)
