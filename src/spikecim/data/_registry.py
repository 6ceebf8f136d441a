"""Data set registry: ``load_dataset(name, root=None, limit=None, **options) -> Dataset``.

A loader is a function ``fn(root=None, **options) -> Dataset`` registered by name with
:func:`register_dataset`. :func:`load_dataset` checks the options against the loader's
signature (an unknown one is a one-line error listing the allowed ones) and applies the
options common to every data set, ``limit`` and ``test_limit`` (keep the first N samples of
a split). A loader that itself accepts ``limit``/``test_limit`` gets them too, so it can
read fewer files.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from spikecim.errors import SpikecimError

__all__ = [
    "Dataset",
    "dataset_from_config",
    "dataset_options",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]


@dataclass
class Dataset:
    """A data set held in memory: images or event frames with labels (``task``
    ``"classification"``), or windows of text tokens with their next tokens (``"lm"``,
    :mod:`spikecim.data.text`).

    Static data: ``x_train[N, C, H, W]`` (or ``[N, F]``) float in [0, 1], ``y_train[N]``
    int64; the same for test. Event data (N-MNIST) are already spike frames:
    ``x_train[N, T, C, H, W]`` holding 0/1 (``uint8`` to save memory) with ``frames=True``;
    encode them with the ``frames`` encoder, which only moves time first.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    frames: bool = False
    sources: tuple[str, str] = ("", "")  # the files the train and test splits were read from
    task: str = "classification"  # the task whose samples these are (spikecim.tasks)

    def __post_init__(self) -> None:
        """The contract every loader's result meets, else one line naming the split's file:
        at least one sample and as many labels per split, labels in ``[0, num_classes)``,
        finite values, and train and test samples of the same shape."""
        splits = (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test))
        for (split, x, y), source in zip(splits, self.sources, strict=True):
            where = f"data: {self.name} {split} split" + (f" ({source})" if source else "")
            if len(x) != len(y):
                raise SpikecimError(f"{where} has {len(x)} samples but {len(y)} labels")
            if len(x) == 0:
                raise SpikecimError(f"{where} holds no samples; each split needs at least 1")
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                bad = low if low < 0 else high
                raise SpikecimError(f"{where} holds label {bad}, allowed 0..{self.num_classes - 1}")
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise SpikecimError(f"{where} holds NaN or infinite values")
        train_shape, test_shape = tuple(self.x_train.shape[1:]), tuple(self.x_test.shape[1:])
        if train_shape != test_shape:
            src_tr, src_te = (f" ({s})" if s else "" for s in self.sources)
            raise SpikecimError(
                f"data: {self.name} test split{src_te} holds samples of shape {_dims(test_shape)} but the "
                f"train split{src_tr} {_dims(train_shape)}; both must have the same shape"
            )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape, without the sample axis (``(T, C, H, W)`` for frames)."""
        return tuple(self.x_train.shape[1:])

    @property
    def in_channels(self) -> int:
        image = self.sample_shape[1:] if self.frames else self.sample_shape
        return image[0] if len(image) == 3 else 1

    @property
    def input_size(self) -> int:
        return self.sample_shape[-1]

    def limit(self, n_train: int | None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` training and ``n_test`` test samples (``None``: all)."""
        if n_train is None and n_test is None:
            return self
        return Dataset(
            self.name,
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.num_classes,
            self.frames,
            self.sources,
            self.task,
        )


_DATASETS: dict[str, Callable[..., Dataset]] = {}
_COMMON = ("limit", "test_limit")


def register_dataset(name: str) -> Callable:
    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _DATASETS[name] = fn
        return fn

    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_options(name: str) -> list[str]:
    """The keyword options ``load_dataset(name, ...)`` accepts besides ``root``."""
    params = inspect.signature(_get(name)).parameters
    own = [p for p in params if p != "root" and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    return sorted(set(own) | set(_COMMON))


def load_dataset(
    name: str,
    root: str | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    **options: Any,
) -> Dataset:
    """Load a registered data set; files are read from ``root`` (never downloaded)."""
    loader = _get(name)
    for key, value in (("limit", limit), ("test_limit", test_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SpikecimError(f"data.{key}: must be a positive integer or null, got {value!r}")
    allowed = dataset_options(name)
    open_ended = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(loader).parameters.values()
    )
    for key in options:
        if key not in allowed and not open_ended:
            raise SpikecimError(
                f"data.{key}: not an option of data set '{name}', allowed: {', '.join(allowed)}"
            )
    own = inspect.signature(loader).parameters
    for key, value in (("limit", limit), ("test_limit", test_limit)):
        if key in own:
            options[key] = value
    return loader(root=root, **options).limit(limit, test_limit)


def dataset_from_config(data: Any) -> Dataset:
    """Load the data set a :class:`spikecim.config.DataConfig` describes.

    ``root`` and ``limit`` always apply; ``test_fraction``, ``timesteps`` and ``context`` are
    passed only to loaders that take them (``digits``, ``nmnist``, the text corpora).
    """
    own = inspect.signature(_get(data.name)).parameters
    options = {
        key: getattr(data, key)
        for key in ("test_fraction", "timesteps", "context")
        if key in own and hasattr(data, key)
    }
    return load_dataset(data.name, data.root, limit=data.limit, **options)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _get(name: str) -> Callable[..., Dataset]:
    if name not in _DATASETS:
        raise SpikecimError(f"data.name: unknown '{name}', allowed: {', '.join(list_datasets())}")
    return _DATASETS[name]
