"""``from_nir``: a NIR graph (or ``.nir`` file) to a time-major spikecim module.

One builder per NIR node type, in a name -> function registry (``BUILDERS``). A chain
``Input -> ... -> Output`` becomes a :class:`spikecim.nn.Sequential` (what training,
tracing, ``to_analog`` and the hardware models already understand); a graph with branches
or recurrent edges becomes a :class:`~spikecim.interop.graph.GraphModule`. Neurons follow
the discretisation chosen by ``convention`` (:mod:`spikecim.interop.discretise`).

NIR's reset is a reset to ``v_reset`` on the same step. A node written by spikecim with
``metadata["reset"] == "subtract"`` (or ``metadata["reset_delay"]``) gets that reset back.

Every node is built and the whole graph is run once on zeros before anything is returned:
an unsupported node, bad parameters or shapes that do not fit raise a one-line
:class:`~spikecim.errors.SpikecimError` naming the node. Before the run, every declared shape
and every activation a node would compute (from its parameters and its input shape) is
counted, and one above ``SPIKECIM_MAX_ELEMENTS`` is refused before it is allocated
(:func:`~spikecim.interop.nirfile.check_elements`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from spikecim.errors import SpikecimError, first_line
from spikecim.interop import modules as M
from spikecim.interop.discretise import check_convention, discretise
from spikecim.interop.graph import FlatGraph, GraphModule, flatten_graph
from spikecim.interop.nirfile import (
    COUNT_FIELDS,
    check_elements,
    check_weight_rank,
    integers,
    max_elements,
    number_problem,
    read_graph,
)
from spikecim.nn import AvgPool2d, Conv2d, Linear, Sequential, TemporalModule
from spikecim.ops.conv import output_size

__all__ = ["BUILDERS", "DEFAULT_DT", "check_dt", "from_nir"]

DEFAULT_DT = 1e-4  # s; snnTorch's export step
MAX_DT = 1e3  # s; a step longer than a quarter of an hour is a unit mistake


@dataclass(frozen=True)
class Context:
    dt: float
    convention: str
    dtype: torch.dtype
    surrogate: str


def from_nir(
    graph_or_path: nir.NIRGraph | str | Path,
    dt: float | None = None,
    convention: str = "euler",
    dtype: torch.dtype | None = None,
    surrogate: str = "atan",
) -> nn.Module:
    """Build a time-major module ``[T, B, *input_shape] -> [T, B, *output_shape]``.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a ``.nir`` file.
        dt: simulation step in seconds; None takes ``graph.metadata["dt"]`` (written by
            spikecim's ``to_nir``), else 1e-4.
        convention: ``"euler"`` (forward Euler with the graph's r, NIR's reference) or
            ``"snntorch"`` (membrane in units of the input, snnTorch's import).
        dtype: dtype of weights and neuron parameters (default: torch's default dtype).
        surrogate: surrogate gradient of the spiking nodes.
    """
    graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else read_graph(graph_or_path)
    if not isinstance(graph, nir.NIRGraph):
        raise SpikecimError(f"graph: expected a nir.NIRGraph or a path, got {type(graph).__name__}")
    ctx = Context(_dt(graph, dt), check_convention(convention), dtype or torch.get_default_dtype(), surrogate)
    flat = flatten_graph(graph)
    _check_declared_sizes(flat)
    layers = {}
    for name in flat.order:
        if name != flat.input:
            layers[name] = _build(name, flat.nodes[name], ctx)
    shape = _input_shape(flat)
    module = _assemble(layers, flat)
    module.nir_shapes = _dry_run(layers, flat, shape, ctx.dtype)
    if isinstance(module, GraphModule):
        module.node_shapes = module.nir_shapes
    module.input_shape = shape
    module.nir_dt = ctx.dt
    module.nir_convention = ctx.convention
    module.spiking = True  # as create_model marks its models
    module.model_name = "nir"
    return module


def _dt(graph: nir.NIRGraph, dt: float | None) -> float:
    field = "dt"
    if dt is None:
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        dt, field = meta.get("dt", DEFAULT_DT), "metadata.dt"
    return check_dt(dt, field)


def check_dt(dt, field: str = "dt") -> float:
    """``dt`` as a float of seconds in ``(0, MAX_DT]``, or a one-line error naming ``field``."""
    try:
        a = np.asarray(dt)
        value = float(a) if a.size == 1 and a.dtype.kind in "iuf" else None
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or not 0 < value <= MAX_DT:
        raise SpikecimError(f"{field}: must be one number in (0, {MAX_DT:g}] seconds, got {dt!r}")
    return value


def _build(name: str, node: nir.NIRNode, ctx: Context) -> nn.Module:
    kind = type(node).__name__
    if kind not in BUILDERS:
        raise SpikecimError(f"node '{name}': unsupported type '{kind}', allowed: {', '.join(BUILDERS)}")
    try:
        _check_finite_fields(node)
        module = BUILDERS[kind](node, ctx)
        _check_finite_tensors(module, ctx.dtype)
    except SpikecimError as e:
        raise SpikecimError(f"node '{name}' ({kind}): {e}") from None
    except (ValueError, TypeError, RuntimeError, AttributeError, IndexError, ArithmeticError) as e:
        raise SpikecimError(f"node '{name}' ({kind}): {first_line(e)}") from None
    module.nir_name = name
    return module


_SHAPE_FIELDS = ("input_type", "output_type", "metadata")


def _check_finite_fields(node: nir.NIRNode) -> None:
    """Every parameter of the node is real numbers (not text, complex or true/false, which
    torch would convert or drop) and finite (NaN or inf would reach every output). The counts
    of a convolution or pooling (stride, padding...) are checked by its builder."""
    counts = COUNT_FIELDS.get(type(node).__name__, {})
    for field in getattr(node, "__dataclass_fields__", {}):
        value = getattr(node, field, None)
        if field in _SHAPE_FIELDS or field in counts or value is None:
            continue
        problem = number_problem(value)
        if problem:
            raise SpikecimError(f"{field}: {problem}")
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):  # ragged: the builder names it
            continue
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise SpikecimError(f"{field}: must be finite numbers, found NaN or inf")


def _check_finite_tensors(module: nn.Module, dtype: torch.dtype) -> None:
    """Parameters too large for ``dtype`` became inf when converted: refused, naming them."""
    for pname, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise SpikecimError(
                f"{pname}: a value does not fit {str(dtype).removeprefix('torch.')} (overflows to inf)"
            )


def _input_shape(flat: FlatGraph) -> tuple[int, ...]:
    shape = flat.nodes[flat.input].input_type.get("input")
    if shape is None:
        raise SpikecimError(f"node '{flat.input}': the Input node has no shape")
    shape = np.atleast_1d(shape).reshape(-1).tolist()
    if not shape:  # no size at all: as undeclared as no shape (a model's input needs its sizes)
        raise SpikecimError(f"node '{flat.input}' (Input): shape: must list the sizes of one sample, got []")
    check_elements(shape, f"node '{flat.input}' (Input): input shape")
    return tuple(int(s) for s in shape)


def _check_declared_sizes(flat: FlatGraph) -> None:
    """Count every shape the nodes declare (input/output types, a convolution's input size
    times its channels) before any tensor is built."""
    limit = max_elements()
    for name, node in flat.nodes.items():
        kind = _kind(flat, name)
        for types in (getattr(node, "input_type", None), getattr(node, "output_type", None)):
            for port, shape in (types or {}).items():
                if shape is not None and np.size(shape):
                    check_elements(
                        np.atleast_1d(shape).reshape(-1).tolist(),
                        f"node '{name}' ({kind}): {port} shape",
                        limit,
                    )
        spatial = getattr(node, "input_shape", None)
        weight = getattr(node, "weight", None)
        if spatial is not None and np.size(spatial) and weight is not None and np.ndim(weight) >= 2:
            groups = integers(getattr(node, "groups", 1), f"node '{name}' ({kind}): groups", 1, one=True)[0]
            channels = np.shape(weight)[1] * groups
            shape = [channels, *np.atleast_1d(spatial).reshape(-1).tolist()]
            check_elements(shape, f"node '{name}' ({kind}): input_shape with its channels", limit)


def _assemble(layers: dict[str, nn.Module], flat: FlatGraph) -> nn.Module:
    if flat.is_chain:
        chain = [layers[n] for n in flat.order if n != flat.input and not isinstance(layers[n], M.Identity)]
        return Sequential(*chain)
    return GraphModule(layers, flat)


def _dry_run(layers: dict, flat: FlatGraph, shape: tuple, dtype: torch.dtype) -> dict[str, tuple]:
    """Run one step on zeros, node by node, so a shape error names its node; the shapes."""
    values = {flat.input: torch.zeros((1, 1, *shape), dtype=dtype)}
    shapes = {flat.input: (shape, shape)}
    for name in flat.order[1:]:
        srcs = flat.sources(name)
        ins = [tuple(values[s].shape[2:]) for s in srcs]
        if len(set(ins)) > 1:
            raise SpikecimError(f"node '{name}': its inputs have different shapes {ins} ({', '.join(srcs)})")
        layer = layers[name]
        h = values[srcs[0]]
        if isinstance(layer, nn.Flatten):
            _check_flatten_dims(layer, ins[0], f"node '{name}' (Flatten)")
        predicted = _output_elements(layer, ins[0])
        if predicted is not None:
            check_elements(predicted, f"node '{name}' ({_kind(flat, name)}): output for input {list(ins[0])}")
        try:
            with torch.no_grad():
                out = layer(h) if isinstance(layer, TemporalModule) else layer(h[0])[None]
        except (RuntimeError, ValueError) as e:
            msg = str(e).splitlines()[0]
            raise SpikecimError(
                f"node '{name}' ({_kind(flat, name)}): input shape {ins[0]} does not fit: {msg}"
            ) from None
        _check_declared(flat, name, ins[0], tuple(out.shape[2:]))
        values[name] = out
        shapes[name] = (ins[0], tuple(out.shape[2:]))
    for a, b in flat.back:
        if values[a].shape != values[flat.sources(b)[0]].shape:
            raise SpikecimError(
                f"edge ({a}, {b}): recurrent input shape {tuple(values[a].shape[2:])} differs from "
                f"{tuple(values[flat.sources(b)[0]].shape[2:])}"
            )
    return shapes


def _check_flatten_dims(layer: nn.Flatten, in_shape: tuple[int, ...], where: str) -> None:
    """A Flatten's ``start_dim`` and ``end_dim`` name dimensions of its input, counted as NIR
    counts them (one sample, from 0, or from the end when negative)."""
    rank = len(in_shape)
    for field, dim in (("start_dim", layer.start_dim), ("end_dim", layer.end_dim)):
        nir_dim = dim - 1 if dim > 0 else dim  # _flatten shifted a dimension from 0 past the batch
        if not -rank <= nir_dim < rank:
            raise SpikecimError(
                f"{where}: {field}: {nir_dim} is not a dimension of the input {list(in_shape)} "
                f"(allowed: {-rank} to {rank - 1})"
            )


def _output_elements(layer: nn.Module, in_shape: tuple[int, ...]) -> list[int] | None:
    """Sizes whose product bounds the tensor ``layer`` makes from one sample of ``in_shape``
    (a layer that maps element by element: the input, or its parameters when they are larger);
    None when they cannot be told (torch then reports the misfit)."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.AvgPool2d)):
        nd = 1 if isinstance(layer, nn.Conv1d) else 2
        if len(in_shape) < nd:
            return None

        def per_dim(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd

        k, s, d = per_dim(layer.kernel_size), per_dim(layer.stride), per_dim(getattr(layer, "dilation", 1))
        pad = layer.padding
        spatial = in_shape[-nd:]
        if isinstance(pad, str):
            out = list(spatial) if pad == "same" else [n - d[i] * (k[i] - 1) for i, n in enumerate(spatial)]
        else:
            pad = per_dim(pad)
            out = list(output_size(spatial, k, s, pad, d))
        if min(out) < 1:
            return None
        channels = [layer.out_channels] if isinstance(layer, (nn.Conv1d, nn.Conv2d)) else list(in_shape[:-nd])
        return [*channels, *out]
    if isinstance(layer, nn.Linear):
        return [*in_shape[:-1], layer.out_features] if in_shape else None
    size = math.prod(in_shape)
    tensors = [*layer.parameters(), *layer.buffers()]
    if isinstance(layer, M.Delay) and layer.steps.numel():
        return [int(layer.steps.max()) + 1, size]  # step by step it keeps max(d) past inputs
    return [max([size, *(t.numel() for t in tensors)])]


def _kind(flat: FlatGraph, name: str) -> str:
    return type(flat.nodes[name]).__name__


def _check_declared(flat: FlatGraph, name: str, got_in: tuple, got_out: tuple) -> None:
    node = flat.nodes[name]
    for label, declared, got in (("input", node.input_type, got_in), ("output", node.output_type, got_out)):
        value = (declared or {}).get(label)
        if value is None:
            continue
        want = tuple(int(s) for s in np.atleast_1d(value))
        if int(np.prod(want)) != int(np.prod(got)) or (len(want) == len(got) and want != got):
            raise SpikecimError(
                f"node '{name}' ({_kind(flat, name)}): declared {label} shape {want}, but it is {got}"
            )


# ---- builders: NIR node -> module --------------------------------------------------------


def _tensor(a, ctx: Context) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=ctx.dtype).clone()


def _counts(node, field: str, n: int) -> tuple[int, ...] | str:
    """A convolution's or pooling's ``field`` as ``n`` integers (one value repeated), each in
    the range :data:`~spikecim.interop.nirfile.COUNT_FIELDS` gives, or its allowed text."""
    least, _, words = COUNT_FIELDS[type(node).__name__][field]
    a = integers(getattr(node, field), field, least, words=words)
    if isinstance(a, str):
        return a
    a = tuple(a * n if len(a) == 1 else a)
    if len(a) != n:
        raise SpikecimError(f"{field}: must be {n} integer(s) >= {least}, got {list(a)}")
    return a


def _affine(node, ctx: Context) -> nn.Module:
    w = check_weight_rank(node.weight, type(node).__name__)
    bias = getattr(node, "bias", None)
    layer = Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=ctx.dtype)
    with torch.no_grad():
        layer.weight.copy_(_tensor(w, ctx))
        if bias is not None:
            b = np.asarray(bias)
            if b.shape != (w.shape[0],):
                raise SpikecimError(f"bias: shape {b.shape} does not match weight {w.shape}")
            layer.bias.copy_(_tensor(b, ctx))
    return layer


def _conv(node, ctx: Context) -> nn.Module:
    w = check_weight_rank(node.weight, type(node).__name__)
    nd = w.ndim - 2  # Conv1d: 1 kernel dimension, Conv2d: 2
    cls = nn.Conv1d if nd == 1 else Conv2d
    groups = integers(node.groups, "groups", 1, one=True)[0]
    layer = cls(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=_counts(node, "stride", nd),
                padding=_counts(node, "padding", nd), dilation=_counts(node, "dilation", nd),
                groups=groups, bias=node.bias is not None, dtype=ctx.dtype)  # fmt: skip
    with torch.no_grad():
        layer.weight.copy_(_tensor(w, ctx))
        if node.bias is not None:
            layer.bias.copy_(_tensor(np.asarray(node.bias).reshape(-1), ctx))
    return layer


def _pool(node, ctx: Context) -> nn.Module:
    kind = type(node).__name__
    return AvgPool2d(_counts(node, "kernel_size", 2), _counts(node, "stride", 2), _counts(node, "padding", 2),
                     divisor_override=1 if kind == "SumPool2d" else None)  # fmt: skip


def _flatten(node, ctx: Context) -> nn.Module:
    start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
    return nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)


def _reset_args(node) -> dict:
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    reset = str(meta.get("reset", "zero"))
    if reset not in ("zero", "subtract"):
        raise SpikecimError(f"metadata.reset: must be 'zero' or 'subtract', got '{reset}'")
    return {
        "reset": reset,
        "reset_delay": bool(meta.get("reset_delay", False)),
        "detach_reset": bool(meta.get("detach_reset", False)),
    }


def _spiking(node, ctx: Context) -> nn.Module:
    kind = type(node).__name__
    d = discretise(node, kind, ctx.dt, ctx.convention)
    cls = M.NIRCubaLIF if kind == "CubaLIF" else M.NIRLIF
    return cls(d, surrogate=ctx.surrogate, dtype=ctx.dtype, **_reset_args(node))


def _integrator(node, ctx: Context) -> nn.Module:
    return M.LeakyIntegrator(discretise(node, type(node).__name__, ctx.dt, ctx.convention), dtype=ctx.dtype)


def _delay(node, ctx: Context) -> nn.Module:
    delay = np.asarray(node.delay, dtype=np.float64)
    if np.any(delay < 0) or not np.all(np.isfinite(delay)):
        raise SpikecimError("delay: must be finite and >= 0 seconds")
    steps = np.rint(delay / ctx.dt)
    if not np.allclose(steps * ctx.dt, delay, rtol=1e-6, atol=1e-12):
        raise SpikecimError(f"delay: {delay.max():g} s is not a whole number of steps of dt = {ctx.dt:g} s")
    return M.Delay(steps.astype(np.int64))


BUILDERS: dict[str, Callable[[nir.NIRNode, Context], nn.Module]] = {
    "Input": lambda n, c: M.Identity(),
    "Output": lambda n, c: M.Identity(),
    "Affine": _affine,
    "Linear": _affine,
    "Scale": lambda n, c: M.Scale(np.asarray(n.scale), c.dtype),
    "Conv1d": _conv,
    "Conv2d": _conv,
    "SumPool2d": _pool,
    "AvgPool2d": _pool,
    "Flatten": _flatten,
    "Delay": _delay,
    "Threshold": lambda n, c: M.Threshold(np.asarray(n.threshold), c.surrogate, c.dtype),
    "I": _integrator,
    "LI": _integrator,
    "CubaLI": _integrator,
    "IF": _spiking,
    "LIF": _spiking,
    "CubaLIF": _spiking,
}
