"""Reading and writing NIR files (HDF5, via the ``nir`` package) with one-line errors.

``nir.read`` builds the whole graph in one call and, when a node is bad, fails with an
assertion or a ``KeyError`` that does not say which node. :func:`read_graph` reads the HDF5
tree with ``nir``'s own reader and builds the nodes one at a time, so an unknown type, a
missing field or inconsistent parameter shapes name the node. Nothing is returned unless
every node was built.

A small file can declare a huge tensor (an input of ``[100000, 100000, 100]``, a compressed
dataset of zeros). Every dataset of the file, every declared shape and every activation the
graph would compute is counted before anything is allocated, and a tensor of more than
``SPIKECIM_MAX_ELEMENTS`` elements (environment variable, default 2**28: 1 GiB of float32)
is refused with one line naming it (:func:`check_elements`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from spikecim.errors import SpikecimError

__all__ = ["MAX_ELEMENTS_ENV", "NODE_TYPES", "check_elements", "max_elements", "read_graph", "write_graph"]

MAX_ELEMENTS_ENV = "SPIKECIM_MAX_ELEMENTS"
DEFAULT_MAX_ELEMENTS = 2**28

NODE_TYPES = (
    "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
    "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "NIRGraph",
)  # fmt: skip


def read_graph(path: str | Path) -> nir.NIRGraph:
    """Read a ``.nir`` file into a ``nir.NIRGraph`` (types are checked by spikecim's importer)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise SpikecimError(f"{path}: no such NIR file")
    limit = max_elements()
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise SpikecimError(f"{path}: not a NIR file (no 'node' group at the root)")
            f["node"].visititems(lambda name, obj: _check_dataset(path, name, obj, limit))
            tree = nir.serialization.hdf2dict(f["node"])
    except SpikecimError:
        raise
    except Exception as e:  # noqa: BLE001  (h5py raises OSError, KeyError, RuntimeError...)
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise SpikecimError(f"{path}: not a readable NIR file (corrupt or truncated HDF5: {first})") from None
    node = build_node(tree, "graph")
    if not isinstance(node, nir.NIRGraph):
        raise SpikecimError(f"{path}: the root node is a {type(node).__name__}, expected a NIRGraph")
    return node


def write_graph(graph: nir.NIRGraph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        nir.write(str(path), graph)
    except OSError as e:
        raise SpikecimError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def max_elements() -> int:
    """The most elements one tensor of an imported graph may have (``SPIKECIM_MAX_ELEMENTS``)."""
    text = os.environ.get(MAX_ELEMENTS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_ELEMENTS
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise SpikecimError(f"{MAX_ELEMENTS_ENV}: must be a positive integer, got '{text}'")
    return limit


def check_elements(shape, what: str, limit: int | None = None) -> int:
    """The element count of ``shape``; refused when a size is not a positive integer or the
    count is above the limit (:func:`max_elements`), before anything is allocated."""
    try:
        dims = [int(s) for s in shape]
        ok = all(d == s for d, s in zip(dims, shape, strict=True))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or any(d < 1 for d in dims):
        raise SpikecimError(f"{what}: sizes must be positive integers, got {_listed(shape)}")
    n = math.prod(dims)
    limit = max_elements() if limit is None else limit
    if n > limit:
        raise SpikecimError(
            f"{what}: shape {dims} has {n:.3g} elements, above the limit of {limit} per tensor "
            f"(raise it with the environment variable {MAX_ELEMENTS_ENV})"
        )
    return n


def _listed(shape) -> str:
    try:
        return str(list(np.asarray(shape).reshape(-1).tolist()))
    except (TypeError, ValueError):
        return repr(shape)


def _check_dataset(path: Path, name: str, obj: Any, limit: int) -> None:
    import h5py

    if isinstance(obj, h5py.Dataset) and obj.shape and 0 not in obj.shape:
        check_elements(obj.shape, f"{path}: dataset '{name}'", limit)


def _plain(value: Any) -> Any:
    """HDF5 scalars to Python values (bytes to str, 0-d arrays to numbers)."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.ndim == 0:
        return _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def build_node(tree: dict, name: str) -> nir.NIRNode:
    """One node (recursively for sub-graphs) from its dictionary, or an error naming it."""
    kind = _plain(tree.get("type"))
    if kind is None:
        raise SpikecimError(f"node '{name}': has no 'type' field")
    if kind not in NODE_TYPES:
        raise SpikecimError(f"node '{name}': unsupported type '{kind}', allowed: {', '.join(NODE_TYPES)}")
    tree = dict(tree, type=kind)
    if "metadata" in tree:
        tree["metadata"] = _plain(tree["metadata"]) if isinstance(tree["metadata"], dict) else {}
    if kind == "NIRGraph":
        if "nodes" not in tree or "edges" not in tree:
            raise SpikecimError(f"node '{name}': a NIRGraph needs 'nodes' and 'edges'")
        nodes = {
            str(k): build_node(v, f"{name}/{k}" if name != "graph" else str(k))
            for k, v in tree["nodes"].items()
        }
        try:
            edges = [(_plain(a), _plain(b)) for a, b in np.asarray(tree["edges"]).reshape(-1, 2)]
        except ValueError:
            raise SpikecimError(f"node '{name}': 'edges' must be a list of (source, target) pairs") from None
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=tree.get("metadata", {}), type_check=False)
    try:
        return nir.dict2NIRNode(tree)
    except SpikecimError:
        raise
    except AssertionError as e:
        raise SpikecimError(
            f"node '{name}' ({kind}): inconsistent parameters: {str(e) or 'shapes differ'}"
        ) from None
    except (KeyError, TypeError) as e:
        raise SpikecimError(f"node '{name}' ({kind}): missing or unexpected field ({e})") from None
    except (ValueError, IndexError) as e:
        raise SpikecimError(
            f"node '{name}' ({kind}): {str(e).splitlines()[0] if str(e) else 'bad value'}"
        ) from None
