"""``to_nir``: a spikecim model to a NIR graph (docs/references.md#nir-discretisation).

Neurons are written with snnTorch's convention, the inverse of :mod:`discretise`::

    LIF:     tau = dt/(1 - beta),  r = mem_gain/(1 - beta),  v_threshold = theta + v_reset
    CubaLIF: tau_syn = dt/(1 - alpha),  w_in = syn_gain/(1 - alpha)
    IF:      (beta = 1) r = mem_gain

so that for a native neuron (gains 1) ``r = tau/dt`` and ``w_in = tau_syn/dt``, and reading
the graph back with either convention gives the same neuron. Parameters are computed in
float64. Layers map one to one (Linear -> Affine/Linear, Conv1d/Conv2d, AvgPool2d,
AvgPool2d(divisor_override=1) -> SumPool2d, Flatten); BatchNorm (eval statistics) is folded
into the convolution or linear layer before it; max pooling of spikes (inputs in {0, 1}) is
written as SumPool2d followed by Threshold(0), which is the same function on spikes.

NIR's neurons reset to ``v_reset`` on the step they fire. A neuron with a subtract reset or
a delayed reset is written with ``metadata = {"reset": ..., "reset_delay": ...}`` (which
``from_nir`` restores); a subtract reset also warns, since other tools will read the node
as a reset to zero.
"""

from __future__ import annotations

import itertools

import nir
import numpy as np
import torch
from torch import nn

from spikecim import ops
from spikecim.errors import SpikecimError
from spikecim.interop import modules as M
from spikecim.interop.export_layers import LEAVES
from spikecim.interop.graph import GraphModule
from spikecim.interop.importer import DEFAULT_DT, MAX_DT
from spikecim.nn import TemporalModule

__all__ = ["to_nir"]


def to_nir(
    model: nn.Module, dt: float = DEFAULT_DT, input_shape: tuple[int, ...] | None = None
) -> nir.NIRGraph:
    """Write ``model`` (time-major, ``[T, B, *input_shape] -> [T, B, ...]``) as a NIR graph.

    ``input_shape`` is one sample's shape without T and B; None takes ``model.input_shape``
    (set by ``from_nir``) or the ``in_features`` of a first Linear layer. The graph's
    metadata records ``dt`` so ``from_nir`` reads it back with the same step.
    """
    if not 0 < float(dt) <= MAX_DT:
        raise SpikecimError(f"dt: must be a number in (0, {MAX_DT:g}] seconds, got {dt}")
    shape = _input_shape(model, input_shape)
    was_training = model.training
    model.eval()
    try:
        shapes = _record_shapes(model, shape)
        w = _Writer(float(dt), shapes)
        entries, exit_ = w.emit(model, "")
    finally:
        model.train(was_training)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    nodes.update(w.nodes)
    edges = [("input", e) for e in entries] + w.edges
    out_shape = shapes[id(model)][1] if id(model) in shapes else None
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    edges.append((exit_ or "input", "output"))
    return nir.NIRGraph(
        nodes=nodes, edges=edges, metadata={"dt": float(dt), "producer": "spikecim"}, type_check=False
    )


def _input_shape(model: nn.Module, shape) -> tuple[int, ...]:
    if shape is None:
        shape = getattr(model, "input_shape", None)
    if shape is None:
        first = next((m for m in model.modules() if not list(m.children())), None)
        if isinstance(first, nn.Linear):
            shape = (first.in_features,)
    if shape is None:
        raise SpikecimError(
            "input_shape: cannot be inferred from the model; pass one sample's shape, e.g. (1, 8, 8)"
        )
    return tuple(int(s) for s in np.atleast_1d(shape))


def _record_shapes(model: nn.Module, shape: tuple) -> dict[int, tuple[tuple, tuple]]:
    """Run one step on zeros; per module, the per-sample input and output shapes."""
    shapes: dict[int, tuple[tuple, tuple]] = {}

    def hook(mod, args, out):
        if not args:  # a parametrisation computing a weight (torch.nn.utils.parametrize), not a layer
            return
        lead = 2 if isinstance(mod, TemporalModule) else 1
        out = out[0] if isinstance(out, (tuple, list)) else out  # a block returning (x, extra)
        shapes[id(mod)] = (tuple(args[0].shape[lead:]), tuple(out.shape[lead:]))

    # shapes do not depend on recurrent edges: run recurrent graphs layer by layer once
    graphs = [m for m in model.modules() if isinstance(m, GraphModule) and m.recurrent]
    for g in graphs:
        g.recurrent = False
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        with torch.no_grad():
            model(torch.zeros((1, 1, *shape), dtype=dtype, device=p.device if p is not None else None))
    except (RuntimeError, ValueError) as e:
        raise SpikecimError(
            f"input_shape: {shape} does not fit the model ({str(e).splitlines()[0]})"
        ) from None
    finally:
        for h in handles:
            h.remove()
        for g in graphs:
            g.recurrent = True
    return shapes


class _Writer:
    """Collects NIR nodes and edges while walking the module tree."""

    def __init__(self, dt: float, shapes: dict) -> None:
        self.dt, self.shapes = dt, shapes
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.binary: set[str] = set()  # nodes whose output is in {0, 1}

    def shape(self, module: nn.Module, name: str, which: int) -> tuple:
        if id(module) not in self.shapes:
            raise SpikecimError(f"layer '{name}' ({type(module).__name__}): not reached by the forward pass")
        return self.shapes[id(module)][which]

    def emit(self, module: nn.Module, name: str, prev: str | None = None) -> tuple[list[str], str | None]:
        """Add ``module``; returns (the nodes fed by its input, the node giving its output)."""
        if isinstance(module, GraphModule):
            return self._graph(module, name)
        if isinstance(module, nn.Sequential):
            entries: list[str] = []
            last: str | None = None
            for child_name, child in module.named_children():
                ins, out = self.emit(child, f"{name}.{child_name}" if name else child_name, last or prev)
                if ins and last is None:
                    entries = ins
                elif ins:
                    self.edges += [(last, i) for i in ins]
                last = out or last
            return entries, last
        op = ops.find(module)
        if op is not None:
            return op.to_nir(self, module, name or type(module).__name__.lower(), prev)
        for cls, fn in LEAVES:
            if isinstance(module, cls):
                return fn(self, module, name or type(module).__name__.lower(), prev)
        raise SpikecimError(f"layer '{name}' ({type(module).__name__}): no NIR equivalent")

    def add(self, name: str, node: nir.NIRNode, binary: bool = False) -> tuple[list[str], str]:
        self.nodes[name] = node
        if binary:
            self.binary.add(name)
        return [name], name

    def chain(self, names: list[tuple[str, nir.NIRNode, bool]]) -> tuple[list[str], str]:
        for (a, _, _), (b, _, _) in itertools.pairwise(names):
            self.edges.append((a, b))
        for n, node, binary in names:
            self.add(n, node, binary)
        return [names[0][0]], names[-1][0]

    def _graph(self, g: GraphModule, name: str) -> tuple[list[str], str | None]:
        """Write an imported graph back; its pass-through nodes (sub-graph I/O) are dropped."""
        prefix = f"{name}." if name else ""
        alias: dict[str, list[str]] = {}
        ins_of: dict[str, list[str]] = {}
        out_of: dict[str, str] = {}

        def resolve(src: str) -> list[str]:
            return alias.get(src, [src])

        for n in g.node_names:
            layer = g.layers[n.replace(".", "__")]
            if isinstance(layer, M.Identity):
                alias[n] = [s for src in g.sources[n] + g.back_sources[n] for s in resolve(src)]
                continue
            ins_of[n], out = self.emit(layer, prefix + n)
            out_of[n] = out
        entries: list[str] = []
        for n, ins in ins_of.items():
            for src in g.sources[n] + g.back_sources[n]:
                for s in resolve(src):
                    if s == g.input_name:
                        entries += ins
                    else:
                        self.edges += [(out_of[s], i) for i in ins]
        out = resolve(g.output_name)
        if len(out) != 1 or out[0] not in out_of:
            raise SpikecimError(
                f"layer '{name or 'graph'}': the output must come from exactly one node to be exported"
            )
        return entries, out_of[out[0]]
