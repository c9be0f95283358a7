"""The real CIFAR-10 JPEG copy under ../shared: decoded once, then served from the cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from resnet_cifar.data import CIFAR10_CLASSES, load_cifar, summarize

JPEG_TARBALL = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10-jpeg.tar.gz"


@pytest.mark.slow
@pytest.mark.skipif(not JPEG_TARBALL.exists(), reason=f"{JPEG_TARBALL} is absent")
def test_real_jpeg_tarball_decodes_and_caches(tmp_path):
    start = time.perf_counter()
    arrays = load_cifar(JPEG_TARBALL, cache_dir=tmp_path, progress=False)
    decoded = time.perf_counter() - start
    assert arrays.train_images.shape == (50_000, 3, 32, 32)
    assert arrays.test_images.shape == (10_000, 3, 32, 32)
    assert arrays.classes == list(CIFAR10_CLASSES)
    assert np.bincount(arrays.train_labels).tolist() == [5_000] * 10
    assert np.bincount(arrays.test_labels).tolist() == [1_000] * 10
    # The statistics the data README gives for this copy.
    np.testing.assert_allclose(arrays.mean, (0.4913, 0.4821, 0.4465), atol=1e-4)
    np.testing.assert_allclose(arrays.std, (0.2452, 0.2428, 0.2606), atol=1e-4)

    start = time.perf_counter()
    cached = load_cifar(JPEG_TARBALL, cache_dir=tmp_path, progress=False)
    reloaded = time.perf_counter() - start
    assert cached.cache_file == arrays.cache_file
    np.testing.assert_array_equal(cached.train_images, arrays.train_images)
    assert summarize(cached)["counts"] == {"train": 50_000, "test": 10_000}
    print(f"decode {decoded:.1f} s, cached reload {reloaded:.2f} s")
    assert reloaded < 5  # about 0.3 s on an idle machine; generous for a shared one
