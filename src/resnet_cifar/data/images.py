"""One image file → 8-bit RGB: the one decoder of image folders (sources.py) and of `predict`, so
that a file gives the same pixels in a data set as when it is predicted alone. Its rules (EXIF
orientation, alpha dropped, 16/32-bit and float greyscale scaled) are in docs/data.md.
"""

from __future__ import annotations

import os
from typing import IO

import numpy as np
from PIL import Image, ImageOps


def to_rgb(image: Image.Image) -> Image.Image:
    """A PIL image in any mode → mode RGB: I;16 and I divided by 257, F multiplied by 255 (clipped,
    rounded half to even), every other mode through Pillow's convert("RGB")."""
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64) * 255.0
    elif image.mode == "I" or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64) / 257.0
    else:
        return image.convert("RGB")
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)).convert("RGB")


def read_rgb(file: str | os.PathLike | IO[bytes], *,
             reduce: bool = False) -> tuple[Image.Image, tuple[int, int], str]:
    """An image file (path or binary file object) → (its RGB image, upright; its original size
    and mode). ``reduce``: a JPEG larger than 32x32 is decoded at a reduced scale (PIL's draft():
    1/2, 1/4 or 1/8, keeping both sides at least 32). Raises what Pillow raises for a bad file."""
    with Image.open(file) as image:
        size, mode = image.size, image.mode
        if reduce and size != (32, 32):
            image.draft("RGB", (32, 32))  # a no-op for formats other than JPEG
        return to_rgb(ImageOps.exif_transpose(image)), size, mode
