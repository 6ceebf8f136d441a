"""N-MNIST: MNIST digits recorded by an ATIS event camera during three saccades (34x34, 2 polarities).

Files, as unpacked from the published ``Train.zip`` and ``Test.zip``
(Orchard et al. 2015, https://www.garrickorchard.com/datasets/n-mnist)::

    <root>/Train/<digit>/*.bin     <root>/Test/<digit>/*.bin

(``root`` may also be the folder holding ``N-MNIST/`` or ``NMNIST/``). Each sample is binned
into ``timesteps`` 0/1 frames (see :mod:`spikecim.data.events`), so ``x_train`` is
``[N, T, 2, 34, 34]`` (``uint8``, to keep 60 000 samples in memory) and the data set has
``frames=True``: the ``frames`` encoder feeds it to a model as ``[T, B, 2, 34, 34]``.

Samples are listed per split in a fixed shuffled order (sorted paths permuted with seed 0),
so ``limit`` reads a class-balanced prefix and never more files than it keeps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spikecim.data._files import require_root
from spikecim.data._registry import Dataset, register_dataset
from spikecim.data.events import events_to_frames, read_atis_events
from spikecim.errors import SpikecimError

__all__ = ["list_samples", "load_nmnist"]

SENSOR_HW = (34, 34)
_SUBFOLDERS = ["N-MNIST", "NMNIST", "nmnist"]
_WANTED = "Train/<digit>/*.bin and Test/<digit>/*.bin (unpacked Train.zip and Test.zip)"


@register_dataset("nmnist")
def load_nmnist(
    root: str | None = None, timesteps: int = 10, limit: int | None = None, test_limit: int | None = None
) -> Dataset:
    """``timesteps`` frames per sample; ``limit``/``test_limit`` cap the files read per split."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise SpikecimError(f"data.timesteps: must be a positive integer, got {timesteps!r}")
    folder = _find_root(require_root(root, "nmnist", _WANTED))
    x_tr, y_tr = _read_split(list_samples(folder / "Train")[:limit], timesteps)
    x_te, y_te = _read_split(list_samples(folder / "Test")[:test_limit], timesteps)
    sources = (str(folder / "Train"), str(folder / "Test"))
    return Dataset("nmnist", x_tr, y_tr, x_te, y_te, 10, frames=True, sources=sources)


def list_samples(split_dir: Path) -> list[tuple[Path, int]]:
    """``(file, digit)`` pairs of one split in the fixed shuffled order."""
    samples = [
        (p, d)
        for d in range(10)
        for p in sorted((split_dir / str(d)).iterdir() if (split_dir / str(d)).is_dir() else [])
        if p.is_file() and p.name.endswith((".bin", ".bin.gz"))  # plain or gzip-compressed (_files.py)
    ]
    if not samples:
        raise SpikecimError(f"data.root: no nmnist samples in {split_dir}; place {_WANTED} there")
    order = np.random.default_rng(0).permutation(len(samples))
    return [samples[i] for i in order]


def _find_root(root: Path) -> Path:
    for folder in [root, *(root / s for s in _SUBFOLDERS)]:
        if (folder / "Train").is_dir() and (folder / "Test").is_dir():
            return folder
    raise SpikecimError(f"data.root: nmnist folders not found; place {_WANTED} in {root}")


def _read_split(samples: list[tuple[Path, int]], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.zeros((len(samples), steps, 2, *SENSOR_HW), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        events = read_atis_events(path)
        if len(events.t_us) == 0:  # an all-zero sample under a digit's label
            raise SpikecimError(
                f"data: {path} holds no pixel events ({path.stat().st_size} bytes); "
                "it is empty or truncated, replace it with a fresh copy"
            )
        x[i] = events_to_frames(events, steps, *SENSOR_HW, source=path)
    y = np.array([d for _, d in samples], dtype=np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)
