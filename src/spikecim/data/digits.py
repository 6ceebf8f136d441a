"""scikit-learn's bundled 8x8 digits: the embedded default (1797 images, 10 classes).

Pixel values 0..16 are scaled to [0, 1]; the train/test split is scikit-learn's stratified
``train_test_split``, seeded (``seed=0``, 25 % test by default), so every machine sees the
same split. No network.

Importing scikit-learn takes about a second, more than the rest of loading. The images are
read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``, as its
``load_digits`` reads it) without importing it, and each split's indices are kept in
spikecim's cache folder (``data/``, :mod:`spikecim.cache`) under a key of scikit-learn's
version, the labels, the fraction and the seed: scikit-learn is imported only to make a
split the cache does not hold.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch

from spikecim.cache import cache_root, write_atomic
from spikecim.data._registry import Dataset, register_dataset
from spikecim.errors import SpikecimError


@register_dataset("digits")
def load_digits(root: str | None = None, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise SpikecimError(f"data.test_fraction: must lie strictly between 0 and 1, got {test_fraction!r}")
    images, labels = _digits()
    x = (images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8]
    y = labels.astype(np.int64)
    _check_split(test_fraction, len(y), 10)
    train, test = _split(y, test_fraction, seed)
    return Dataset(
        "digits",
        torch.from_numpy(x[train]),
        torch.from_numpy(y[train]),
        torch.from_numpy(x[test]),
        torch.from_numpy(y[test]),
        10,
    )


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images [1797, 8, 8] of 0..16, labels), read as its
    ``load_digits`` reads them; through ``load_digits`` where the file is not where it was."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    data_file = (
        Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    )
    if data_file is None or not data_file.is_file():
        from sklearn.datasets import load_digits as _load

        bunch = _load()
        return bunch.images, bunch.target
    data = np.loadtxt(data_file, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (train, test) indices of ``train_test_split(..., test_size=test_fraction,
    random_state=seed, stratify=y)``: from the cache where it holds them, else made by
    scikit-learn and kept. A cached file that is not a split of this size (cut short,
    edited) is made again."""
    version = importlib.metadata.version("scikit-learn")
    key = hashlib.sha256(f"{version}\0{test_fraction!r}\0{seed}\0".encode() + y.tobytes()).hexdigest()[:16]
    path = cache_root() / "data" / f"digits-split-{key}.json"
    n, n_test = len(y), math.ceil(test_fraction * len(y))
    try:
        kept = json.loads(path.read_text())
        train, test = np.asarray(kept["train"], dtype=np.int64), np.asarray(kept["test"], dtype=np.int64)
        if len(test) == n_test and np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n)):
            return train, test
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=y)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"train": train.tolist(), "test": test.tolist()}))
    except OSError:  # a read-only cache folder: the split is made again next time
        pass
    return train, test


def _check_split(test_fraction: float, n: int, classes: int) -> None:
    """The stratified split takes ceil(test_fraction * n) test images; each split must hold
    an image of every class."""
    n_test = math.ceil(test_fraction * n)
    if min(n_test, n - n_test) < classes:
        lo = math.ceil((classes - 1) / n * 1e4) / 1e4  # ceil(lo * n) >= classes
        hi = math.floor((n - classes) / n * 1e4) / 1e4  # ceil(hi * n) <= n - classes
        raise SpikecimError(
            f"data.test_fraction: {test_fraction!r} leaves {n - n_test} training and {n_test} test images "
            f"of {n}, and each split needs an image of each of the {classes} classes; allowed: {lo} to {hi}"
        )
