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

from spikecim.errors import SpikecimError, first_line

__all__ = [
    "COUNT_FIELDS", "MAX_ELEMENTS_ENV", "NODE_TYPES", "WEIGHT_DIMS", "check_elements", "check_weight_rank",
    "integers", "max_elements", "number_problem", "read_graph", "write_graph", "written_by_spikecim",
]  # fmt: skip

MAX_ELEMENTS_ENV = "SPIKECIM_MAX_ELEMENTS"
DEFAULT_MAX_ELEMENTS = 2**28

NODE_TYPES = (
    "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
    "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "NIRGraph",
)  # fmt: skip

# Fields that count something, per node type: field -> (least value, one value only, text allowed).
_CONV_COUNTS = {
    "stride": (1, False, ()), "dilation": (1, False, ()), "groups": (1, True, ()),
    "padding": (0, False, ("same", "valid")),
}  # fmt: skip
_POOL_COUNTS = {"kernel_size": (1, False, ()), "stride": (1, False, ()), "padding": (0, False, ())}
_MAX_COUNT = 2**63 - 1  # what torch and nir hold in an int64
COUNT_FIELDS = {
    "Conv1d": _CONV_COUNTS,
    "Conv2d": _CONV_COUNTS,
    "SumPool2d": _POOL_COUNTS,
    "AvgPool2d": _POOL_COUNTS,
}
DIMENSION_FIELDS = {"Flatten": ("start_dim", "end_dim")}  # one dimension each, negative from the end
# The dimensions of a node's weight, per node type: a weight of another rank is refused.
WEIGHT_DIMS = {
    "Affine": ("out", "in"), "Linear": ("out", "in"),
    "Conv1d": ("out", "in/groups", "k"), "Conv2d": ("out", "in/groups", "kH", "kW"),
}  # fmt: skip


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
        raise SpikecimError(
            f"{path}: not a readable NIR file (corrupt or truncated HDF5: {first_line(e)})"
        ) from None
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


def written_by_spikecim(path: str | Path) -> bool:
    """Whether ``path`` is a NIR file spikecim exported (its graph's metadata names spikecim as
    ``producer``, as :func:`spikecim.interop.to_nir` writes it): the only kind of existing file
    an export may replace."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            producer = f["node/metadata/producer"][()]
    except Exception:  # noqa: BLE001  (not HDF5, no such entry, unreadable: not spikecim's)
        return False
    return producer in (b"spikecim", "spikecim")


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


def number_problem(value: Any) -> str | None:
    """Why ``value`` is not one real number or an array of them (text, a group of fields,
    complex, true/false or Python objects), or None when it is. A ragged list is None too:
    the node's builder names what does not fit."""
    if isinstance(value, str | bytes):
        return f"must be numbers, got the text {_text(value)!r}"
    if isinstance(value, dict):
        return "must be numbers, got a group of fields"
    try:
        kind = np.asarray(value).dtype.kind
    except (TypeError, ValueError):
        return None
    if kind in "iuf":
        return None
    if kind == "c":
        return "must be real numbers, got complex"
    if kind == "b":
        return "must be numbers, got true/false values"
    if kind in "SU":
        return "must be numbers, got text"
    return f"must be numbers, got {np.asarray(value).dtype} values"


def integers(
    value: Any, field: str, least: int, one: bool = False, words: tuple[str, ...] = ()
) -> list[int] | str:
    """``value`` (one number or a 1-D array) as whole numbers ``>= least``: a single one when
    ``one``; a text in ``words`` is returned as it is. Anything else (text, complex,
    true/false, 1.5, NaN) is a one-line error naming ``field``."""
    if isinstance(value, str) and value in words:
        return value
    ints = None
    try:
        a = np.atleast_1d(np.asarray(value))
        whole = a.dtype.kind in "iu" or (
            a.dtype.kind == "f" and bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))
        )
        if whole and a.ndim == 1 and a.size >= 1 and not (one and a.size != 1):
            ints = [int(v) for v in a.tolist()]
    except (TypeError, ValueError, OverflowError):
        ints = None
    if ints is None or min(ints) < least or max(ints) > _MAX_COUNT:
        what = "an integer" if one else "integers"
        also = "".join(f" or '{w}'" for w in words)
        big = " and <= 2**63-1" if ints is not None and max(ints) > _MAX_COUNT else ""
        raise SpikecimError(f"{field}: must be {what} >= {least}{big}{also}, got {_shown(value)}")
    return ints


def check_weight_rank(weight: Any, kind: str) -> np.ndarray:
    """``weight`` of a ``kind`` node as an array with the dimensions :data:`WEIGHT_DIMS`
    names (a ``Conv2d`` weight is ``(out, in/groups, kH, kW)``); another rank is a one-line
    error, before ``nir`` or torch index a dimension that is not there."""
    a = np.asarray(weight)
    dims = WEIGHT_DIMS[kind]
    if a.ndim != len(dims):
        raise SpikecimError(
            f"weight: must have {len(dims)} dimensions ({', '.join(dims)}), got shape {tuple(a.shape)}"
        )
    return a


def _dimension(value: Any, field: str) -> int:
    """``value`` as one dimension index (a whole number, negative counting from the end);
    anything else (1.5, NaN, several values, text) is a one-line error naming ``field``."""
    try:
        return integers(value, field, -_MAX_COUNT, one=True)[0]
    except SpikecimError:
        raise SpikecimError(
            f"{field}: must be one whole number (a dimension; negative counts from the end), got {_shown(value)}"
        ) from None


def _shown(value: Any) -> str:
    """``value`` as an error message quotes it: text quoted, a number as it is, an array as a
    list (at most 8 values)."""
    if isinstance(value, str | bytes):
        return repr(_text(value))
    try:
        a = np.asarray(value)
        if a.ndim == 0:
            return str(a.item())
        flat = a.reshape(-1).tolist()
        return str(flat) if len(flat) <= 8 else f"{str(flat[:8])[:-1]}, ...] ({a.size} values)"
    except (TypeError, ValueError):
        return repr(value)


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf8", "replace")


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
    _check_fields(tree, name, kind)
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
    except (ValueError, IndexError, AttributeError, ArithmeticError) as e:
        raise SpikecimError(
            f"node '{name}' ({kind}): {str(e).splitlines()[0] if str(e) else 'bad value'}"
        ) from None


def _check_fields(tree: dict, name: str, kind: str) -> None:
    """Every field of a node read from a file holds what ``nir`` builds the node from: real
    numbers, and whole numbers in range for the counts of a convolution or pooling (stride,
    dilation, kernel size, groups >= 1, padding >= 0). Checked before ``nir`` computes the
    output size with them (a stride of 0 divides by zero there)."""
    counts = COUNT_FIELDS.get(kind, {})
    for field, value in tree.items():
        if field in ("type", "metadata"):
            continue
        where = f"node '{name}' ({kind}): {field}"
        if field in counts:
            integers(value, where, *counts[field])
        elif field in DIMENSION_FIELDS.get(kind, ()):
            _dimension(value, where)
        elif isinstance(value, dict) and field in ("input_type", "output_type"):  # shapes by port
            for port, v in value.items():
                problem = number_problem(v) if v is not None else None
                if problem:
                    raise SpikecimError(f"{where}.{port}: {problem}")
        else:
            problem = number_problem(value)
            if problem:
                raise SpikecimError(f"{where}: {problem}")
            if field == "weight" and kind in WEIGHT_DIMS:
                try:
                    check_weight_rank(value, kind)
                except SpikecimError as e:
                    raise SpikecimError(f"node '{name}' ({kind}): {e}") from None
