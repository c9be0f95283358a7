"""From data options to the train / validation / test arrays a run uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_cifar.config import DataConfig, merge_into
from resnet_cifar.data import CifarArrays, load_cifar, split_train_val, stratified_subset
from resnet_cifar.data.normalization import Normalization
from resnet_cifar.errors import DataError


@dataclass
class Splits:
    train_images: np.ndarray  # uint8 (N, 3, 32, 32)
    train_labels: np.ndarray  # int64 (N,)
    val_images: np.ndarray  # the held-out split, or the test split when val_is_test
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    val_is_test: bool  # no data.val_split: validation (and best-checkpoint choice) uses test
    source: str
    fingerprint: str = ""  # of the decoded data (CifarArrays.fingerprint)
    expected_fingerprint: str | None = None  # what the run recorded; None: nothing recorded
    normalize: str | None = None  # the mode mean/std come from (data.normalize)

    @property
    def normalization(self) -> Normalization:
        """How the inputs of this data are normalized (the data config's mode)."""
        return Normalization.explicit(self.mean, self.std, mode=self.normalize)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def data_matches(self) -> bool | None:
        """True/False: the data is/is not what the run recorded; None: the run recorded none."""
        if self.expected_fingerprint is None:
            return None
        return self.expected_fingerprint == self.fingerprint

    def data_info(self) -> dict[str, Any]:
        """Which data a result was computed on: for every output that reads a run (text, JSON)."""
        return {"source": self.source, "fingerprint": self.fingerprint,
                "recorded_fingerprint": self.expected_fingerprint,
                "matches_run": self.data_matches}

    def data_line(self) -> str:
        return describe_data(self.data_info())


def describe_data(info: dict[str, Any]) -> str:
    """``Splits.data_info()`` in one line of text: where, which content, and whether it is the
    data the run recorded."""
    verdict = {True: "the data the run recorded",
               None: "the run recorded no fingerprint to check it against",
               False: f"NOT the data the run recorded ({short(info['recorded_fingerprint'])}); "
                      "used because of `data.allow_other_data` (--allow-other-data)"
               }[info["matches_run"]]
    return f"data {info['source']} ({short(info['fingerprint'])}): {verdict}"


def short(fingerprint: str | None) -> str:
    """``sha256:`` and the first 12 hex digits: enough to tell data sets apart in a message."""
    return (fingerprint or "none")[:19]


def load_arrays(data: DataConfig, progress: bool = True, download: bool = True) -> CifarArrays:
    """The decoded data ``data`` names, refused when ``data.fingerprint`` names other data."""
    arrays = load_cifar(
        data.path,
        cache_dir=data.cache_dir,
        dataset=data.dataset,
        coarse=data.coarse,
        resize=data.resize,
        download=download,
        progress=progress,
    )
    check_fingerprint(arrays, data)
    return arrays


def check_fingerprint(arrays: CifarArrays, data: DataConfig) -> None:
    """A result computed on other data than the user meant is the worst bug we can ship: data
    whose content differs from the recorded fingerprint is an error unless explicitly allowed."""
    if data.fingerprint is None or data.allow_other_data:
        return
    if arrays.fingerprint != data.fingerprint:
        raise DataError(
            f"{arrays.source} is not the data the run recorded: its content fingerprint is "
            f"{short(arrays.fingerprint)}, the run's is {short(data.fingerprint)}; pass the run's "
            "data with `data.path` (--data) PATH, or add `data.allow_other_data` "
            "(--allow-other-data) to use this data anyway (every result then says so)"
        )


def make_splits(arrays: CifarArrays, data: DataConfig, seed: int) -> Splits:
    """Apply data.val_split and data.train_subset (both stratified and seeded) and the
    normalization."""
    train_x, train_y = arrays.train_images, arrays.train_labels
    if data.val_split:
        if data.val_split >= len(train_y):
            raise DataError(
                f"`data.val_split` (--val-split) {data.val_split} leaves no training images "
                f"({len(train_y)} in {arrays.source}); choose a smaller value"
            )
        train_x, train_y, val_x, val_y = split_train_val(train_x, train_y, data.val_split, seed)
    else:
        if len(arrays.test_labels) == 0:
            raise DataError(f"{arrays.source} has no test split to validate on; "
                            "pass `data.val_split` (--val-split) N")
        val_x, val_y = arrays.test_images, arrays.test_labels
    if data.train_subset > len(train_y):  # a typo, or other data than meant: never a silent "all"
        raise DataError(
            f"`data.train_subset` (--train-subset) {data.train_subset} is more than the "
            f"{len(train_y)} training images of {arrays.source}"
            + (" left by `data.val_split` (--val-split)" if data.val_split else "")
            + f"; choose at most {len(train_y)}, or leave it out to train on all of them"
        )
    if 0 < data.train_subset < len(train_y):
        train_x, train_y = stratified_subset(train_x, train_y, data.train_subset, seed)
    norm = Normalization.for_mode(data.normalize, (arrays.mean, arrays.std))
    return Splits(
        train_images=train_x,
        train_labels=train_y,
        val_images=val_x,
        val_labels=val_y,
        test_images=arrays.test_images,
        test_labels=arrays.test_labels,
        classes=list(arrays.classes),
        mean=norm.mean,
        std=norm.std,
        val_is_test=not data.val_split,
        source=arrays.source,
        fingerprint=arrays.fingerprint,
        expected_fingerprint=data.fingerprint,
        normalize=data.normalize,
    )


def pick_split(splits: Splits, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``test``, ``val`` or ``train``."""
    if split == "test":
        if len(splits.test_labels) == 0:
            raise DataError(f"{splits.source} has no test split; use `split` (--split) val "
                            "with `data.val_split` (--val-split)")
        return splits.test_images, splits.test_labels
    if split == "val":
        if splits.val_is_test:  # a val split drawn now would hold images the run trained on
            raise DataError(
                "`split` (--split) val: no images were held out (without `data.val_split` "
                "(--val-split), validation is the test set); evaluate on `split` (--split) test"
            )
        return splits.val_images, splits.val_labels
    if split == "train":
        return splits.train_images, splits.train_labels
    raise DataError(f"unknown split {split!r}; use test, val or train")


# Data options a run records that still hold when its checkpoint is used later (cache_dir is left
# out: it belongs to the machine, not the run).
RECORDED_DATA_KEYS = ("path", "dataset", "coarse", "resize", "val_split", "normalize",
                      "fingerprint")


def data_for_run(run_config: dict[str, Any] | None, flags: dict[str, Any]) -> DataConfig:
    """The data a run was trained on (its recorded options), overridden by the data flags given
    now. A recorded path that is gone is an error unless ``flags`` names another path; whichever
    path is used must hold data with the recorded fingerprint (``load_arrays`` checks it)."""
    recorded = dict((run_config or {}).get("data") or {})
    values = {k: recorded[k] for k in RECORDED_DATA_KEYS if k in recorded}
    path = values.get("path")
    if path and not flags.get("path") and not Path(path).exists():
        raise DataError(
            f"the data this run was trained on, {path}, is not there any more (moved, deleted, or "
            "a run directory from another machine); pass `data.path` (--data) PATH to where that "
            "data is now (it is checked against the run's fingerprint)"
        )
    config = DataConfig()
    merge_into(config, {**values, **flags}, prefix="data.")
    return config
