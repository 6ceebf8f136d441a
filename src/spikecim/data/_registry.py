"""Data set registry: ``load_dataset(name, root=None, **kw) -> Dataset``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from spikecim.errors import SpikecimError

__all__ = ["Dataset", "register_dataset", "load_dataset", "list_datasets"]


@dataclass
class Dataset:
    """A classification data set held in memory as float tensors in [0, 1].

    ``x_train[N, C, H, W]`` (or ``[N, F]``), ``y_train[N]`` (int64); same for test.
    Event data (N-MNIST...) use ``[N, T, C, H, W]`` and ``time_major_input=True``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def in_channels(self) -> int:
        return self.sample_shape[0] if len(self.sample_shape) == 3 else 1

    @property
    def input_size(self) -> int:
        return self.sample_shape[-1]

    def limit(self, n_train: int | None) -> "Dataset":
        if n_train is None:
            return self
        return Dataset(self.name, self.x_train[:n_train], self.y_train[:n_train], self.x_test, self.y_test, self.num_classes)


_DATASETS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str) -> Callable:
    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def load_dataset(name: str, root: str | None = None, **kw) -> Dataset:
    """Load a registered data set; files are read from ``root`` (never downloaded)."""
    if name not in _DATASETS:
        raise SpikecimError(f"data.name: unknown '{name}', allowed: {', '.join(list_datasets())}")
    return _DATASETS[name](root=root, **kw)
