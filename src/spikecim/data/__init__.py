"""Data sets (read from local files, never downloaded) and spike encoders."""

from spikecim.data import encode
from spikecim.data._registry import Dataset, list_datasets, load_dataset, register_dataset
from spikecim.data import digits  # noqa: F401  (registration)

__all__ = ["Dataset", "load_dataset", "list_datasets", "register_dataset", "encode"]
