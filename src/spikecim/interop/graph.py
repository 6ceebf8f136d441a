"""Running a NIR graph: flattening sub-graphs, ordering nodes, recurrent edges.

A node's input is the sum of the outputs of the nodes with an edge into it (NIR's rule).
Nested ``NIRGraph`` nodes are inlined: their nodes are renamed ``outer.inner`` and their own
Input/Output nodes become pass-throughs, so the executor sees one flat graph.

Cycles (recurrent edges) are allowed. A depth-first walk from the Input marks the edges
that close a cycle; such a back edge carries the value its source produced at the previous
step, every other edge the value of the same step: the usual convention of
recurrent SNNs (snnTorch ``RLeaky``/``RSynaptic``: ``x[t] + V S[t-1] + b``). Before the first
step every neuron is at rest, so a back edge first carries its source evaluated on zeros:
``b`` for an Affine, zero for a neuron. A graph without back
edges runs layer by layer over the whole sequence (stateless layers folded over ``T*B``); a
graph with back edges runs step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn import TemporalModule, apply_folded
from spikecim.trace.steps import REST, at_step

__all__ = ["FlatGraph", "GraphModule", "flatten_graph"]


@dataclass
class FlatGraph:
    """A flat NIR graph: named nodes, edges, one input and one output, an order and back edges."""

    nodes: dict[str, nir.NIRNode]
    edges: list[tuple[str, str]]
    input: str = ""
    output: str = ""
    order: list[str] = field(default_factory=list)
    back: set[tuple[str, str]] = field(default_factory=set)

    def sources(self, name: str, back: bool = False) -> list[str]:
        return [a for a, b in self.edges if b == name and ((a, b) in self.back) == back]

    @property
    def is_chain(self) -> bool:
        """True when every node has at most one input and one output and there are no cycles."""
        outs: dict[str, int] = {}
        ins: dict[str, int] = {}
        for a, b in self.edges:
            outs[a] = outs.get(a, 0) + 1
            ins[b] = ins.get(b, 0) + 1
        return not self.back and all(v == 1 for v in outs.values()) and all(v == 1 for v in ins.values())


def flatten_graph(graph: nir.NIRGraph) -> FlatGraph:
    """Inline sub-graphs, check the edges, find the single Input/Output, order, back edges."""
    nodes, edges = _inline(graph, "")
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise SpikecimError(f"edge ({a}, {b}): node '{end}' does not exist")
    if len(set(edges)) != len(edges):
        dup = next(e for e in edges if edges.count(e) > 1)
        raise SpikecimError(f"edge {dup}: listed twice")
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise SpikecimError(
            f"graph: needs exactly one Input and one Output node, found {len(inputs)} and {len(outputs)}"
        )
    flat = FlatGraph(nodes, edges, inputs[0], outputs[0])
    flat.order, flat.back = _order(flat)
    for name in nodes:
        if name not in flat.order:
            raise SpikecimError(f"node '{name}': not reachable from the Input node '{flat.input}'")
    if flat.sources(flat.input) or flat.sources(flat.input, back=True):
        raise SpikecimError(f"node '{flat.input}': an Input node cannot have incoming edges")
    if not flat.sources(flat.output):
        raise SpikecimError(f"node '{flat.output}': the Output node has no incoming edge")
    return flat


def _inline(graph: nir.NIRGraph, prefix: str) -> tuple[dict, list]:
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    subs: dict[str, tuple[str, str]] = {}
    for key, node in graph.nodes.items():
        name = prefix + str(key)
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = _inline(node, name + ".")
            ins = [k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise SpikecimError(f"node '{name}': a sub-graph needs one Input and one Output node")
            subs[name] = (f"{name}.{ins[0]}", f"{name}.{outs[0]}")
            nodes.update(inner_nodes)
            edges += inner_edges
        else:
            nodes[name] = node
    for a, b in graph.edges:
        a, b = prefix + str(a), prefix + str(b)
        edges.append((subs[a][1] if a in subs else a, subs[b][0] if b in subs else b))
    return nodes, edges


def _order(flat: FlatGraph) -> tuple[list[str], set]:
    """Depth-first from the Input: back edges, then a topological order of the rest."""
    succ: dict[str, list[str]] = {k: [] for k in flat.nodes}
    for a, b in flat.edges:
        succ[a].append(b)
    back: set = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack = [(flat.input, iter(succ[flat.input]))]
    state[flat.input] = 1
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[node] = 2
            stack.pop()
        elif state.get(nxt) == 1:
            back.add((node, nxt))
        elif nxt not in state:
            state[nxt] = 1
            stack.append((nxt, iter(succ[nxt])))
    indeg = {k: 0 for k in state}
    for a, b in flat.edges:
        if (a, b) not in back and a in state:
            indeg[b] += 1
    order, ready = [], [flat.input]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for b in succ[n]:
            if (n, b) not in back:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    return order, back


def _key(name: str) -> str:
    return name.replace(".", "__")


class GraphModule(TemporalModule):
    """A NIR graph as a time-major module: ``x[T, B, ...] -> y[T, B, ...]``.

    ``layers`` holds one module per node (keys are the node names with ``.`` written as
    ``__``); ``node_names`` keeps the NIR names, ``sources`` the same-step inputs of each node
    and ``back_sources`` the previous-step (recurrent) ones.
    """

    def __init__(self, layers: dict[str, nn.Module], flat: FlatGraph) -> None:
        super().__init__()
        self.node_names = [n for n in flat.order if n not in (flat.input,)]
        self.layers = nn.ModuleDict({_key(n): layers[n] for n in self.node_names})
        self.input_name, self.output_name = flat.input, flat.output
        self.sources = {n: flat.sources(n) for n in self.node_names}
        self.back_sources = {n: flat.sources(n, back=True) for n in self.node_names}
        self.recurrent = bool(flat.back)
        self.node_shapes: dict[str, tuple[tuple, tuple]] = {}  # per node (input, output), set by from_nir
        for n in self.node_names if self.recurrent else ():
            layer = self.layers[_key(n)]
            if isinstance(layer, TemporalModule) and not hasattr(layer, "step"):
                raise SpikecimError(
                    f"node '{n}': {type(layer).__name__} cannot run step by step in a recurrent graph"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_steps(x) if self.recurrent else self._run_sequence(x)

    def _run_sequence(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name in self.node_names:
            layer = self.layers[_key(name)]
            h = _sum(values[s] for s in self.sources[name])
            values[name] = layer(h) if isinstance(layer, TemporalModule) else apply_folded(layer, h)
        return values[self.output_name]

    def _run_steps(self, x: torch.Tensor) -> torch.Tensor:
        states: dict[str, object] = {n: None for n in self.node_names}
        with at_step(REST):  # a back edge's value before step 0 is no step's work (for trace)
            prev = {s: self._at_rest(s, x) for srcs in self.back_sources.values() for s in srcs}
        outs = []
        for t in range(x.shape[0]):
            with at_step(t):  # the layers run on [B, ...] at step t (for trace)
                prev = self._step(x[t], prev, states)
            outs.append(prev[self.output_name])
        return torch.stack(outs)

    def _step(self, xt: torch.Tensor, prev: dict, states: dict) -> dict:
        """Every node once on ``[B, ...]``, back edges read from ``prev``; the values of all nodes."""
        values = {self.input_name: xt}
        for name in self.node_names:
            layer = self.layers[_key(name)]
            h = _sum(
                [values[s] for s in self.sources[name]]
                + [prev[s] for s in self.back_sources[name] if s in prev]
            )
            if hasattr(layer, "step"):
                values[name], states[name] = layer.step(h, states[name])
            else:
                values[name] = layer(h)
        return values

    def _at_rest(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """A back edge's value before the first step: its source run on zeros, state at rest."""
        shape_in, shape_out = self.node_shapes[name]
        layer = self.layers[_key(name)]
        if isinstance(layer, TemporalModule):
            return x.new_zeros((x.shape[1], *shape_out))
        return layer(x.new_zeros((x.shape[1], *shape_in)))


def _sum(tensors) -> torch.Tensor:
    tensors = list(tensors)
    out = tensors[0]
    for t in tensors[1:]:
        out = out + t
    return out
