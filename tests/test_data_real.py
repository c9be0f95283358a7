"""The real CIFAR-10 JPEG copy under ../shared: decoded once, then served from the cache.

The first load of the session, a decode into the session's empty cache, is conftest.py's
jpeg_cache (every test on the real data shares it); here its record is checked against a
cached reload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import JPEG_TARBALL, arrays_digest

from resnet_cifar.data import CIFAR10_CLASSES, load_cifar, summarize

REGISTRY = Path(__file__).resolve().parents[1] / "src/resnet_cifar/weights/registry.json"
# What the shipped weights and the runs made on this copy record: a decoder or cache change that
# moved it would make every one of them refuse the data they were trained on.
JPEG_FINGERPRINT = "sha256:04ac30a6a1f287047f18781b7c0cf143b29d2c87199662424a553a795c088089"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not JPEG_TARBALL.exists(), reason=f"{JPEG_TARBALL} is absent")]


@pytest.fixture(scope="module")
def reload(jpeg_cache, session_cache):
    """(arrays, seconds) of a load after the first: from the cache file the first one wrote."""
    start = time.perf_counter()
    arrays = load_cifar(JPEG_TARBALL, cache_dir=session_cache, progress=False)
    return arrays, time.perf_counter() - start


def test_real_jpeg_tarball_decodes_and_caches(jpeg_cache, reload):
    cached, reloaded = reload
    assert cached.train_images.shape == (50_000, 3, 32, 32)
    assert cached.test_images.shape == (10_000, 3, 32, 32)
    assert cached.classes == list(CIFAR10_CLASSES)
    assert np.bincount(cached.train_labels).tolist() == [5_000] * 10
    assert np.bincount(cached.test_labels).tolist() == [1_000] * 10
    # The statistics the data README gives for this copy.
    np.testing.assert_allclose(cached.mean, (0.4913, 0.4821, 0.4465), atol=1e-4)
    np.testing.assert_allclose(cached.std, (0.2452, 0.2428, 0.2606), atol=1e-4)

    # the reload came from the file the decode wrote, and holds exactly what the decode gave
    assert cached.cache_file == jpeg_cache["cache_file"]
    assert arrays_digest(cached) == jpeg_cache["digest"]
    assert summarize(cached)["counts"] == {"train": 50_000, "test": 10_000}
    print(f"decode {jpeg_cache['seconds']:.1f} s, cached reload {reloaded:.2f} s")
    assert reloaded < 5  # about 0.3 s on an idle machine; generous for a shared one


def test_the_decoded_fingerprint_is_the_one_the_shipped_weights_record(reload):
    recorded = {entry["data"]["fingerprint"] for entry in json.loads(REGISTRY.read_text()).values()
                if Path(entry["data"]["source"]).name == JPEG_TARBALL.name}
    assert recorded == {JPEG_FINGERPRINT}
    assert reload[0].fingerprint == JPEG_FINGERPRINT
