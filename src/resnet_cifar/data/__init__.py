"""The data layer: source → cache → loader.

    arrays = load_cifar("cifar10-jpeg.tar.gz")        # any layout; decoded once, then cached
    train = DeviceLoader(arrays.train_images, arrays.train_labels, batch_size=128, train=True,
                         mean=arrays.mean, std=arrays.std, device="cuda")
    for epoch in range(epochs):
        train.set_epoch(epoch)
        for x, y in train: ...
"""

from resnet_cifar.data.cache import default_cache_dir, load_cifar
from resnet_cifar.data.constants import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    NORMALIZATIONS,
    OFFICIAL_ARCHIVES,
)
from resnet_cifar.data.download import download_file
from resnet_cifar.data.loader import (
    DeviceLoader,
    crop_flip_batch,
    normalization_stats,
    split_train_val,
    stratified_subset,
)
from resnet_cifar.data.sources import CifarArrays, channel_stats, read_source, summarize

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "NORMALIZATIONS", "OFFICIAL_ARCHIVES",
           "CifarArrays", "DeviceLoader", "channel_stats", "crop_flip_batch", "default_cache_dir",
           "download_file", "load_cifar", "normalization_stats", "read_source", "split_train_val",
           "stratified_subset", "summarize"]
