"""A readable summary of a NIR graph: one row per node (name, type, shapes, parameters).

The graph is built with :func:`~spikecim.interop.from_nir` first, so a file that
``describe`` accepts is one spikecim can run, and the shapes are the ones it runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from spikecim.interop.graph import flatten_graph
from spikecim.interop.importer import from_nir
from spikecim.interop.nirfile import read_graph

__all__ = ["NodeRow", "describe"]

_SKIP = {"input_type", "output_type", "metadata", "input_shape"}


@dataclass(frozen=True)
class NodeRow:
    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: str
    inputs: tuple[str, ...]


def describe(
    path_or_graph: str | Path | nir.NIRGraph, dt: float | None = None, convention: str = "euler"
) -> tuple[list[NodeRow], float]:
    """Rows in execution order and the dt (s) the graph is read with (built with ``convention``)."""
    graph = path_or_graph if isinstance(path_or_graph, nir.NIRGraph) else read_graph(path_or_graph)
    module = from_nir(graph, dt=dt, convention=convention)
    flat = flatten_graph(graph)
    rows = []
    for name in flat.order:
        node = flat.nodes[name]
        ins, outs = module.nir_shapes.get(name, ((), ()))
        srcs = tuple(flat.sources(name)) + tuple(f"{s} (t-1)" for s in flat.sources(name, back=True))
        rows.append(NodeRow(name, type(node).__name__, ins, outs, _params(node), srcs))
    return rows, module.nir_dt


def _params(node: nir.NIRNode) -> str:
    parts = []
    for field in getattr(node, "__dataclass_fields__", {}):
        if field in _SKIP:
            continue
        value = getattr(node, field, None)
        if value is None:
            continue
        parts.append(f"{field}={_fmt(value)}")
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    parts += [f"{k}={v}" for k, v in meta.items()]
    return ", ".join(parts)


def _fmt(value) -> str:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        return str(value)
    if a.size == 1:
        return f"{a.item():g}"
    if a.size <= 4 and a.ndim == 1:
        return "(" + ", ".join(f"{v:g}" for v in a.tolist()) + ")"
    lo, hi = float(a.min()), float(a.max())
    shape = "x".join(str(s) for s in a.shape)
    return f"[{shape}] {lo:g}" if lo == hi else f"[{shape}] {lo:.3g}..{hi:.3g}"
