"""scikit-learn's bundled 8x8 digits: the embedded default (1797 images, 10 classes).

Pixel values 0..16 are scaled to [0, 1]; the train/test split is stratified and seeded
(``seed=0``, 25 % test by default), so every machine sees the same split. No network.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from spikecim.data._registry import Dataset, register_dataset
from spikecim.errors import SpikecimError


@register_dataset("digits")
def load_digits(root: str | None = None, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise SpikecimError(f"data.test_fraction: must lie strictly between 0 and 1, got {test_fraction!r}")
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    bunch = _load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    _check_split(test_fraction, len(y), 10)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Dataset(
        "digits",
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
        10,
    )


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
