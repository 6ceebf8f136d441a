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
from spikecim.data._pixels import bytes_to_unit
from spikecim.data._registry import Dataset, register_dataset
from spikecim.errors import SpikecimError

__all__ = ["load_cifar10", "load_cifar100", "read_cifar_records", "read_cifar_split"]

_PIXELS = 3 * 32 * 32
_CIFAR10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_LABELS_100 = {"fine": 1, "coarse": 0}  # the label byte each kind reads
# A record's label bytes, in order: (name, number of classes). Every one is checked, also
# the one a run does not read: a value beyond its classes means a corrupt or foreign file.
_LABEL_BYTES = {"cifar10": (("label", 10),), "cifar100": (("coarse label", 20), ("fine label", 100))}
_PICKLED = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@register_dataset("cifar10")
def load_cifar10(root: str | None = None, limit: int | None = None, test_limit: int | None = None) -> Dataset:
    names = [*_CIFAR10_TRAIN, "test_batch.bin"]
    folder = require_root(root, "cifar10", f"cifar-10-batches-bin/{{{','.join(names)}}}")
    paths = _find(folder, "cifar-10-batches-bin", names, "cifar10")
    labels = _LABEL_BYTES["cifar10"]
    x_tr, y_tr = read_cifar_split(paths[:5], labels, 0, limit)
    x_te, y_te = read_cifar_split(paths[5:], labels, 0, test_limit)
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, 10, sources=(_names(paths[:5]), _names(paths[5:])))


@register_dataset("cifar100")
def load_cifar100(
    root: str | None = None, label: str = "fine", limit: int | None = None, test_limit: int | None = None
) -> Dataset:
    """``label="fine"`` gives the 100 classes, ``label="coarse"`` the 20 superclasses."""
    if not isinstance(label, str) or label not in _LABELS_100:
        raise SpikecimError(f"data.label: unknown '{label}', allowed: {', '.join(_LABELS_100)}")
    index, labels = _LABELS_100[label], _LABEL_BYTES["cifar100"]
    num_classes = labels[index][1]
    folder = require_root(root, "cifar100", "cifar-100-binary/{train,test}.bin")
    tr, te = _find(folder, "cifar-100-binary", ["train.bin", "test.bin"], "cifar100")
    x_tr, y_tr = read_cifar_split([tr], labels, index, limit)
    x_te, y_te = read_cifar_split([te], labels, index, test_limit)
    return Dataset("cifar100", x_tr, y_tr, x_te, y_te, num_classes, sources=(str(tr), str(te)))


def read_cifar_split(
    paths: list[Path], labels: tuple[tuple[str, int], ...], label_index: int, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` images ``[N, 3, 32, 32]`` in [0, 1] and labels ``[N]`` (label byte
    ``label_index`` of ``labels``, the record's ``(name, classes)``) of these files.

    Files are read in order and only until ``limit`` records are in hand.
    """
    label_bytes = len(labels)
    parts, held = [], 0
    for path in paths:
        if limit is not None and held >= limit:
            break
        rows = read_cifar_records(path, labels)
        parts.append(rows)
        held += len(rows)
    rows = np.concatenate(parts)[:limit]
    x = bytes_to_unit(rows[:, label_bytes:]).reshape(-1, 3, 32, 32)
    y = torch.from_numpy(rows[:, label_index].astype(np.int64))
    return x, y


def read_cifar_records(path: Path, labels: tuple[tuple[str, int], ...]) -> np.ndarray:
    """One binary CIFAR file as ``uint8`` records ``[N, len(labels) + 3072]``; every label
    byte checked against its ``(name, classes)`` in ``labels``."""
    buf = read_bytes(path)
    record = len(labels) + _PIXELS
    if len(buf) == 0 or len(buf) % record:
        raise SpikecimError(
            f"data: {path} holds {len(buf)} bytes, not a whole number of {record}-byte records; it is truncated or corrupt"
        )
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(-1, record)
    for column, (name, classes) in enumerate(labels):
        top = rows[:, column].max()
        if top >= classes:
            raise SpikecimError(
                f"data: {path} holds {name} {top}, allowed 0..{classes - 1}; the file is corrupt"
            )
    return rows


def _names(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0].parent}/{{{','.join(p.name for p in paths)}}}"


def _find(folder: Path, subfolder: str, names: list[str], dataset: str) -> list[Path]:
    try:
        return find_folder(folder, [subfolder], [(n,) for n in names], dataset)
    except SpikecimError:
        pickled = next(
            (p for p in (folder, folder / _PICKLED[dataset]) if p.name == _PICKLED[dataset] and p.is_dir()),
            None,
        )
        if pickled is None:
            raise
        raise SpikecimError(
            f"data.root: {pickled} is the pickled python version of {dataset}, which spikecim never loads; "
            f"place the binary version ({subfolder}/) in {folder}"
        ) from None
