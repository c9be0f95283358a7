"""The real CIFAR-10 JPEG copy under ../shared: decoded once, then served from the cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from resnet_cifar.data import CIFAR10_CLASSES, load_cifar, summarize

JPEG_TARBALL = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpeg.tar.gz"
REGISTRY = Path(__file__).resolve().parents[1] / "src/resnet_cifar/weights/registry.json"
# What the shipped weights and the runs made on this copy record: a decoder or cache change that
# moved it would make every one of them refuse the data they were trained on.
JPEG_FINGERPRINT = "sha256:04ac30a6a1f287047f18781b7c0cf143b29d2c87199662424a553a795c088089"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not JPEG_TARBALL.exists(), reason=f"{JPEG_TARBALL} is absent")]


@pytest.fixture(scope="module")
def first_load(tmp_path_factory):
    """(arrays, seconds, cache folder) of a first load: a decode, into an empty cache."""
    cache = tmp_path_factory.mktemp("cache")
    start = time.perf_counter()
    arrays = load_cifar(JPEG_TARBALL, cache_dir=cache, progress=False)
    return arrays, time.perf_counter() - start, cache


def test_real_jpeg_tarball_decodes_and_caches(first_load):
    arrays, decoded, cache = first_load
    assert arrays.train_images.shape == (50_000, 3, 32, 32)
    assert arrays.test_images.shape == (10_000, 3, 32, 32)
    assert arrays.classes == list(CIFAR10_CLASSES)
    assert np.bincount(arrays.train_labels).tolist() == [5_000] * 10
    assert np.bincount(arrays.test_labels).tolist() == [1_000] * 10
    # The statistics the data README gives for this copy.
    np.testing.assert_allclose(arrays.mean, (0.4913, 0.4821, 0.4465), atol=1e-4)
    np.testing.assert_allclose(arrays.std, (0.2452, 0.2428, 0.2606), atol=1e-4)

    start = time.perf_counter()
    cached = load_cifar(JPEG_TARBALL, cache_dir=cache, progress=False)
    reloaded = time.perf_counter() - start
    assert cached.cache_file == arrays.cache_file
    np.testing.assert_array_equal(cached.train_images, arrays.train_images)
    assert summarize(cached)["counts"] == {"train": 50_000, "test": 10_000}
    print(f"decode {decoded:.1f} s, cached reload {reloaded:.2f} s")
    assert reloaded < 5  # about 0.3 s on an idle machine; generous for a shared one


def test_the_decoded_fingerprint_is_the_one_the_shipped_weights_record(first_load):
    recorded = {entry["data"]["fingerprint"] for entry in json.loads(REGISTRY.read_text()).values()
                if Path(entry["data"]["source"]).name == JPEG_TARBALL.name}
    assert recorded == {JPEG_FINGERPRINT}
    assert first_load[0].fingerprint == JPEG_FINGERPRINT
