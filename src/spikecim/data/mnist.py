"""MNIST and Fashion-MNIST from their published IDX files (60 000 train, 10 000 test, 28x28).

Files (plain or ``.gz``), in ``root`` or ``root/MNIST/raw`` (``root/FashionMNIST/raw``), the
layout torchvision writes::

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

Sources: http://yann.lecun.com/exdb/mnist/ and https://github.com/zalandoresearch/fashion-mnist
(same format and file names). Pixels 0..255 are scaled to [0, 1]; shape ``[N, 1, 28, 28]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikecim.data._files import find_folder, require_root
from spikecim.data._pixels import bytes_to_unit
from spikecim.data._registry import Dataset, register_dataset
from spikecim.data.idx import IDX_IMAGES, IDX_LABELS, read_idx
from spikecim.errors import SpikecimError

__all__ = ["load_fashion_mnist", "load_mnist", "read_idx_split"]

_FILES = [
    ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
]
_HW = (28, 28)


@register_dataset("mnist")
def load_mnist(root: str | None = None, limit: int | None = None, test_limit: int | None = None) -> Dataset:
    return _load("mnist", root, ["MNIST/raw", "MNIST", "mnist"], limit, test_limit)


@register_dataset("fashion-mnist")
def load_fashion_mnist(
    root: str | None = None, limit: int | None = None, test_limit: int | None = None
) -> Dataset:
    subfolders = ["FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion_mnist"]
    return _load("fashion-mnist", root, subfolders, limit, test_limit)


def read_idx_split(
    images_path: Path, labels_path: Path, limit: int | None = None, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` images ``[N, 1, H, W]`` in [0, 1] and labels ``[N]`` of one IDX pair."""
    images = read_idx(images_path, IDX_IMAGES)
    labels = read_idx(labels_path, IDX_LABELS)
    if len(images) != len(labels):
        raise SpikecimError(
            f"data: {images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
        )
    if labels.size and labels.max() >= num_classes:
        raise SpikecimError(f"data: {labels_path} holds label {labels.max()}, allowed 0..{num_classes - 1}")
    x = bytes_to_unit(images, limit).unsqueeze(1)
    y = torch.from_numpy(labels[:limit].astype(np.int64))
    return x, y


def _load(
    name: str, root: str | None, subfolders: list[str], limit: int | None, test_limit: int | None
) -> Dataset:
    wanted = ", ".join(f[0] for f in _FILES)
    folder = require_root(root, name, wanted)
    tr_img, tr_lab, te_img, te_lab = find_folder(folder, subfolders, _FILES, name)
    x_tr, y_tr = read_idx_split(tr_img, tr_lab, limit)
    x_te, y_te = read_idx_split(te_img, te_lab, test_limit)
    ds = Dataset(name, x_tr, y_tr, x_te, y_te, 10, sources=(str(tr_img), str(te_img)))
    hw = tuple(x_tr.shape[2:])
    if hw != _HW:  # both splits agree (the Dataset contract): not this data set's files
        raise SpikecimError(
            f"data: {tr_img} and {te_img} hold {hw[0]}x{hw[1]} images; {name} images are {_HW[0]}x{_HW[1]}"
        )
    return ds
