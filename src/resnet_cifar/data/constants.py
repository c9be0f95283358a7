"""The one home for data constants: official downloads, class names, normalization statistics."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SHAPE = (3, 32, 32)  # (C, H, W): every decoded image, stored as uint8
PIXELS_PER_IMAGE = 3 * 32 * 32  # 3072 bytes in the pickled and binary records

# Environment variables that point at the data and at the decoded-array cache.
DATA_ENV = "RESNET_CIFAR_DATA"
CACHE_ENV = "RESNET_CIFAR_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/resnet_cifar"


@dataclass(frozen=True)
class OfficialArchive:
    """An official tarball: where it lives, what it is called, and its published md5."""

    url: str
    filename: str
    md5: str


OFFICIAL_ARCHIVES = {
    "cifar10": OfficialArchive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                               "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": OfficialArchive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}

# CIFAR-10 label order. It happens to be alphabetical, so an image-folder tree (whose classes are
# its sorted folder names) gets the official label numbers.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")

# Per-channel statistics of the original CIFAR-10 training split, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# Normalization presets other than "dataset" (which uses the statistics of the data at hand).
NORMALIZATIONS = {
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

AUGMENTATIONS = ("standard", "none")
