"""CIFAR-10 and CIFAR-100 from their published *binary* versions (no pickle is ever loaded).

Format (Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"): a file
is a sequence of fixed-size records. CIFAR-10: 1 label byte (0..9) then 3072 pixel bytes;
CIFAR-100: a coarse label byte (0..19), a fine label byte (0..99), then 3072 pixel bytes.
The pixels are the red, green and blue 32x32 planes in row-major order, so a record
reshapes directly to ``[3, 32, 32]``. Pixels 0..255 are scaled to [0, 1].

Files (plain or ``.gz``) in ``root`` or the folder the archive unpacks to:
``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``, ``cifar-100-binary/{train,test}.bin``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikecim.data._files import find_folder, read_bytes, require_root
from spikecim.data._registry import Dataset, register_dataset
from spikecim.errors import SpikecimError

__all__ = ["load_cifar10", "load_cifar100", "read_cifar_records"]

_PIXELS = 3 * 32 * 32
_CIFAR10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_LABELS_100 = {"coarse": (0, 20), "fine": (1, 100)}


@register_dataset("cifar10")
def load_cifar10(root: str | None = None) -> Dataset:
    names = [*_CIFAR10_TRAIN, "test_batch.bin"]
    folder = require_root(root, "cifar10", f"cifar-10-batches-bin/{{{','.join(names)}}}")
    paths = find_folder(folder, ["cifar-10-batches-bin"], [(n,) for n in names], "cifar10")
    train = [read_cifar_records(p, label_bytes=1, label_index=0, num_classes=10) for p in paths[:5]]
    x_te, y_te = read_cifar_records(paths[5], label_bytes=1, label_index=0, num_classes=10)
    x_tr = torch.cat([x for x, _ in train])
    y_tr = torch.cat([y for _, y in train])
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, 10)


@register_dataset("cifar100")
def load_cifar100(root: str | None = None, label: str = "fine") -> Dataset:
    """``label="fine"`` gives the 100 classes, ``label="coarse"`` the 20 superclasses."""
    if label not in _LABELS_100:
        raise SpikecimError(f"data.label: unknown '{label}', allowed: {', '.join(_LABELS_100)}")
    index, num_classes = _LABELS_100[label]
    folder = require_root(root, "cifar100", "cifar-100-binary/{train,test}.bin")
    tr, te = find_folder(folder, ["cifar-100-binary"], [("train.bin",), ("test.bin",)], "cifar100")
    x_tr, y_tr = read_cifar_records(tr, label_bytes=2, label_index=index, num_classes=num_classes)
    x_te, y_te = read_cifar_records(te, label_bytes=2, label_index=index, num_classes=num_classes)
    return Dataset("cifar100", x_tr, y_tr, x_te, y_te, num_classes)


def read_cifar_records(
    path: Path, label_bytes: int, label_index: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 3, 32, 32]`` in [0, 1] and labels ``[N]`` from one binary CIFAR file."""
    buf = read_bytes(path)
    record = label_bytes + _PIXELS
    if len(buf) == 0 or len(buf) % record:
        raise SpikecimError(
            f"data: {path} holds {len(buf)} bytes, not a whole number of {record}-byte records; it is truncated or corrupt"
        )
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_index]
    if labels.max() >= num_classes:
        raise SpikecimError(f"data: {path} holds label {labels.max()}, allowed 0..{num_classes - 1}; the file is corrupt")
    x = torch.from_numpy(rows[:, label_bytes:].astype(np.float32) / 255.0).reshape(-1, 3, 32, 32)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y
