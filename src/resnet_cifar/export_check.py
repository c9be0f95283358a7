"""The real test images an export's parity check feeds, and where they come from."""

from __future__ import annotations

import numpy as np

from resnet_cifar.engine.checkpoint import Checkpoint
from resnet_cifar.errors import DataError

PARITY_IMAGES = 100


def load_parity_images(ckpt: Checkpoint, data=None, n: int = PARITY_IMAGES
                       ) -> tuple[np.ndarray | None, str]:
    """Up to ``n`` test images (uint8 NCHW, evenly spaced so every class shows up) for the parity
    check, and where they came from; or (None, why not).

    ``data`` (a DataConfig) given: that data set, downloaded if need be. Otherwise the data path
    recorded in the checkpoint's config, read from disk or the cache only; else none.
    """
    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine.splits import load_arrays

    recorded = ((ckpt.config or {}).get("data") or {})
    if data is None and not recorded.get("path"):
        return None, ("no data set given and none recorded in the checkpoint: parity checked "
                      "on random inputs only (pass `data.path` for real images)")
    # The run's data is read where it was, never downloaded, and not checked against its
    # fingerprint: any images of the right shape check parity.
    run_data = DataConfig(path=recorded.get("path"), cache_dir=recorded.get("cache_dir"),
                          coarse=bool(recorded.get("coarse")), resize=bool(recorded.get("resize")))
    try:
        arrays = load_arrays(data or run_data, progress=False, download=data is not None)
    except DataError as err:
        if data is not None:
            raise
        return None, (f"the checkpoint's data set could not be read ({err}): parity checked "
                      "on random inputs only (pass `data.path` for real images)")
    split, images = "test", arrays.test_images
    if len(images) == 0:
        split, images = "training", arrays.train_images
    index = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).astype(np.int64))
    return images[index], f"{split} images of {arrays.source}"
