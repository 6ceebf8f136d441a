"""``to_nir``: a spikecim model to a NIR graph (REFERENCE §2).

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

import warnings
from typing import Callable

import nir
import numpy as np
import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.interop import modules as M
from spikecim.interop.graph import GraphModule
from spikecim.interop.importer import DEFAULT_DT
from spikecim.models._resnet import BasicBlock
from spikecim.nn import LIF, SynapticLIF, TemporalModule

__all__ = ["to_nir"]


def to_nir(model: nn.Module, dt: float = DEFAULT_DT, input_shape: tuple[int, ...] | None = None) -> nir.NIRGraph:
    """Write ``model`` (time-major, ``[T, B, *input_shape] -> [T, B, ...]``) as a NIR graph.

    ``input_shape`` is one sample's shape without T and B; None takes ``model.input_shape``
    (set by ``from_nir``) or the ``in_features`` of a first Linear layer. The graph's
    metadata records ``dt`` so ``from_nir`` reads it back with the same step.
    """
    if not float(dt) > 0:
        raise SpikecimError(f"dt: must be > 0 seconds, got {dt}")
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
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": float(dt), "producer": "spikecim"}, type_check=False)


def _input_shape(model: nn.Module, shape) -> tuple[int, ...]:
    if shape is None:
        shape = getattr(model, "input_shape", None)
    if shape is None:
        first = next((m for m in model.modules() if not list(m.children())), None)
        if isinstance(first, nn.Linear):
            shape = (first.in_features,)
    if shape is None:
        raise SpikecimError("input_shape: cannot be inferred from the model; pass one sample's shape, e.g. (1, 8, 8)")
    return tuple(int(s) for s in np.atleast_1d(shape))


def _record_shapes(model: nn.Module, shape: tuple) -> dict[int, tuple[tuple, tuple]]:
    """Run one step on zeros; per module, the per-sample input and output shapes."""
    shapes: dict[int, tuple[tuple, tuple]] = {}

    def hook(mod, args, out):
        lead = 2 if isinstance(mod, TemporalModule) else 1
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
        raise SpikecimError(f"input_shape: {shape} does not fit the model ({str(e).splitlines()[0]})") from None
    finally:
        for h in handles:
            h.remove()
        for g in graphs:
            g.recurrent = True
    return shapes


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def _full(value, shape) -> np.ndarray:
    try:
        return np.ascontiguousarray(np.broadcast_to(_np(value), shape), dtype=np.float64)
    except ValueError:
        raise SpikecimError(f"parameter of shape {np.shape(_np(value))} does not fit the layer shape {shape}") from None


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
        for cls, fn in _LEAVES:
            if isinstance(module, cls):
                return fn(self, module, name or type(module).__name__.lower(), prev)
        raise SpikecimError(f"layer '{name}' ({type(module).__name__}): no NIR equivalent")

    def add(self, name: str, node: nir.NIRNode, binary: bool = False) -> tuple[list[str], str]:
        self.nodes[name] = node
        if binary:
            self.binary.add(name)
        return [name], name

    def chain(self, names: list[tuple[str, nir.NIRNode, bool]]) -> tuple[list[str], str]:
        for (a, _, _), (b, _, _) in zip(names, names[1:]):
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
        for n in ins_of:
            for src in g.sources[n] + g.back_sources[n]:
                for s in resolve(src):
                    if s == g.input_name:
                        entries += ins_of[n]
                    else:
                        self.edges += [(out_of[s], i) for i in ins_of[n]]
        out = resolve(g.output_name)
        if len(out) != 1 or out[0] not in out_of:
            raise SpikecimError(f"layer '{name or 'graph'}': the output must come from exactly one node to be exported")
        return entries, out_of[out[0]]


# ---- leaves -------------------------------------------------------------------------------


def _linear(w: _Writer, m: nn.Linear, name: str, prev):
    weight = _np(m.weight)
    node = nir.Affine(weight=weight, bias=_np(m.bias)) if m.bias is not None else nir.Linear(weight=weight)
    return w.add(name, node)


def _conv(w: _Writer, m, name: str, prev):
    nd = m.weight.dim() - 2
    in_shape = w.shape(m, name, 0)
    if m.padding_mode != "zeros":
        raise SpikecimError(f"layer '{name}' ({type(m).__name__}): padding_mode '{m.padding_mode}' has no NIR equivalent")
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
    pad = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    if nd == 1:
        node = nir.Conv1d(input_shape=int(in_shape[-1]), weight=_np(m.weight), stride=int(m.stride[0]),
                          padding=pad if isinstance(pad, str) else int(pad[0]), dilation=int(m.dilation[0]),
                          groups=int(m.groups), bias=bias)  # fmt: skip
    else:
        node = nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[-2:]), weight=_np(m.weight),
                          stride=tuple(m.stride), padding=pad, dilation=tuple(m.dilation), groups=int(m.groups),
                          bias=bias)  # fmt: skip
    return w.add(name, node)


def _batchnorm(w: _Writer, m: nn.modules.batchnorm._BatchNorm, name: str, prev):
    """Fold eval-mode BN, y = (x - mean)/sqrt(var + eps)*gamma + beta, into the layer before."""
    node = w.nodes.get(prev) if prev else None
    if not isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)):
        raise SpikecimError(f"layer '{name}' ({type(m).__name__}): NIR has no batch norm, and no linear or conv layer before it to fold it into")
    if m.running_mean is None:
        raise SpikecimError(f"layer '{name}' ({type(m).__name__}): needs running statistics to be folded")
    s = _np(m.weight if m.affine else torch.ones_like(m.running_var)) / np.sqrt(_np(m.running_var) + m.eps)
    shift = (_np(m.bias) if m.affine else 0.0) - _np(m.running_mean) * s
    weight = np.asarray(node.weight, dtype=np.float64) * s.reshape(-1, *([1] * (node.weight.ndim - 1)))
    old_bias = np.asarray(getattr(node, "bias", np.zeros(len(s))), dtype=np.float64)
    bias = old_bias * s + shift
    if isinstance(node, (nir.Affine, nir.Linear)):
        w.nodes[prev] = nir.Affine(weight=weight, bias=bias)
    else:
        node.weight, node.bias = weight, bias
    return [], None


def _pool(w: _Writer, m: nn.AvgPool2d, name: str, prev):
    if m.ceil_mode:
        raise SpikecimError(f"layer '{name}' (AvgPool2d): ceil_mode has no NIR equivalent")
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p = _pair(m.padding)
    if m.divisor_override == 1:
        return w.add(name, nir.SumPool2d(kernel_size=k, stride=s, padding=p))
    if m.divisor_override is not None or (not m.count_include_pad and p.any()):
        raise SpikecimError(f"layer '{name}' (AvgPool2d): only the plain average (or divisor_override=1) has a NIR equivalent")
    return w.add(name, nir.AvgPool2d(kernel_size=k, stride=s, padding=p))


def _adaptive_pool(w: _Writer, m: nn.AdaptiveAvgPool2d, name: str, prev):
    """Adaptive average pooling with an output size that divides the input: a plain AvgPool2d."""
    h, wd = w.shape(m, name, 0)[-2:]
    oh, ow = _pair(tuple(v if v is not None else d for v, d in zip(_pair2(m.output_size), (h, wd))))
    if h % oh or wd % ow:
        raise SpikecimError(f"layer '{name}' (AdaptiveAvgPool2d): output {oh}x{ow} does not divide the input {h}x{wd}")
    k = np.array([h // oh, wd // ow])
    return w.add(name, nir.AvgPool2d(kernel_size=k, stride=k, padding=np.zeros(2, dtype=int)))


def _pair2(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _residual(w: _Writer, m, name: str, prev):
    """A basic residual block: act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x)).

    NIR sums the inputs of a node, so the shortcut is one more edge into ``act2``: from the
    block's input (identity) or from the folded 1x1 projection.
    """
    entries, _ = w.emit(m.conv1, f"{name}.conv1", prev)
    w.emit(m.bn1, f"{name}.bn1", f"{name}.conv1")
    a1_in, a1 = w.emit(m.act1, f"{name}.act1", f"{name}.conv1")
    w.edges += [(f"{name}.conv1", i) for i in a1_in]
    c2_in, c2 = w.emit(m.conv2, f"{name}.conv2", a1)
    w.edges += [(a1, i) for i in c2_in]
    w.emit(m.bn2, f"{name}.bn2", c2)
    s_in, s_out = w.emit(m.shortcut, f"{name}.shortcut", prev)
    a2_in, a2 = w.emit(m.act2, f"{name}.act2", c2)
    w.edges += [(c2, i) for i in a2_in]
    if s_out is None:  # identity shortcut: the block input feeds act2 directly
        entries = entries + a2_in
    else:
        entries = entries + s_in
        w.edges += [(s_out, i) for i in a2_in]
    return entries, a2


def _maxpool(w: _Writer, m: nn.MaxPool2d, name: str, prev):
    """On spikes, max over a window = H(sum over the window): SumPool2d -> Threshold(0)."""
    if prev not in w.binary:
        raise SpikecimError(f"layer '{name}' (MaxPool2d): NIR has no max pooling; it is exported only on spikes (after a neuron)")
    if m.ceil_mode or _pair(m.dilation).max() != 1 or _pair(m.padding).any():
        raise SpikecimError(f"layer '{name}' (MaxPool2d): only padding 0, dilation 1, ceil_mode False can be exported")
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    out = w.shape(m, name, 1)
    return w.chain([
        (name, nir.SumPool2d(kernel_size=k, stride=s, padding=np.zeros(2, dtype=int)), False),
        (f"{name}.spike", nir.Threshold(threshold=np.zeros(out)), True),
    ])  # fmt: skip


def _pair(v) -> np.ndarray:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return np.repeat(a, 2) if a.size == 1 else a


def _flatten(w: _Writer, m: nn.Flatten, name: str, prev):
    in_shape = w.shape(m, name, 0)
    start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
    end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    if m.start_dim == 0:
        raise SpikecimError(f"layer '{name}' (Flatten): start_dim 0 would flatten the batch")
    return w.add(name, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end), prev in w.binary)


def _skip(w: _Writer, m, name: str, prev):
    return [], None


def _reset_meta(m: LIF, name: str) -> dict:
    meta = {}
    if m.reset != "zero" or m.reset_delay:
        meta = {"reset": m.reset, "reset_delay": bool(m.reset_delay)}
    if m.reset == "subtract":
        warnings.warn(
            f"node '{name}': subtract reset has no NIR equivalent; written as metadata reset='subtract' "
            "(spikecim restores it, other tools will reset to v_reset)",
            UserWarning,
            stacklevel=4,
        )
    return meta


def _neuron(w: _Writer, m: LIF, name: str, prev):
    shape = w.shape(m, name, 1)
    beta = _full(m.beta.clamp(0, 1) if isinstance(m.beta, nn.Parameter) else m.beta, shape)
    gain = _full(getattr(m, "mem_gain", 1.0), shape)
    bias = _full(getattr(m, "bias", 0.0), shape)
    v_reset = _full(getattr(m, "offset", 0.0), shape)
    v_th = _full(m.threshold, shape) + v_reset
    meta = _reset_meta(m, name)
    synaptic = isinstance(m, SynapticLIF)
    if not synaptic and np.all(beta == 1.0) and not bias.any():
        return w.add(name, nir.IF(r=gain, v_threshold=v_th, v_reset=v_reset, metadata=meta), True)
    if np.any(beta >= 1.0):
        raise SpikecimError(f"layer '{name}' ({type(m).__name__}): beta = 1 on some neurons; NIR's LIF needs a finite tau")
    tau = w.dt / (1.0 - beta)
    r = gain / (1.0 - beta)
    v_leak = bias / (1.0 - beta) + v_reset
    if not synaptic:
        return w.add(name, nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset, metadata=meta), True)
    tau_syn, w_in = _synapse(w, m, name, shape)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset,
                       w_in=w_in, metadata=meta)  # fmt: skip
    return w.add(name, node, True)


def _synapse(w: _Writer, m, name: str, shape) -> tuple[np.ndarray, np.ndarray]:
    alpha = _full(m.alpha.clamp(0, 1) if isinstance(m.alpha, nn.Parameter) else m.alpha, shape)
    if np.any(alpha >= 1.0):
        raise SpikecimError(f"layer '{name}' ({type(m).__name__}): alpha = 1 on some neurons; NIR needs a finite tau_syn")
    return w.dt / (1.0 - alpha), _full(getattr(m, "syn_gain", 1.0), shape) / (1.0 - alpha)


def _integrator(w: _Writer, m: M.LeakyIntegrator, name: str, prev):
    shape = w.shape(m, name, 1)
    beta, gain, bias = _full(m.beta, shape), _full(m.mem_gain, shape), _full(m.bias, shape)
    if not m.has_synapse and np.all(beta == 1.0) and not bias.any():
        return w.add(name, nir.I(r=gain))
    if np.any(beta >= 1.0):
        raise SpikecimError(f"layer '{name}' (LeakyIntegrator): beta = 1 with a leak or synapse has no NIR equivalent")
    tau, r, v_leak = w.dt / (1.0 - beta), gain / (1.0 - beta), bias / (1.0 - beta)
    if not m.has_synapse:
        return w.add(name, nir.LI(tau=tau, r=r, v_leak=v_leak))
    tau_syn, w_in = _synapse(w, m, name, shape)
    return w.add(name, nir.CubaLI(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, w_in=w_in))


def _scale(w: _Writer, m: M.Scale, name: str, prev):
    return w.add(name, nir.Scale(scale=_full(m.scale, w.shape(m, name, 1))))


def _threshold(w: _Writer, m: M.Threshold, name: str, prev):
    return w.add(name, nir.Threshold(threshold=_full(m.threshold, w.shape(m, name, 1))), True)


def _delay(w: _Writer, m: M.Delay, name: str, prev):
    shape = w.shape(m, name, 1)
    return w.add(name, nir.Delay(delay=_full(m.steps, shape) * w.dt), prev in w.binary)


_LEAVES: list[tuple[type, Callable]] = [
    (nn.Linear, _linear),
    (nn.Conv1d, _conv),
    (nn.Conv2d, _conv),
    (nn.modules.batchnorm._BatchNorm, _batchnorm),
    (nn.AvgPool2d, _pool),
    (nn.MaxPool2d, _maxpool),
    (nn.AdaptiveAvgPool2d, _adaptive_pool),
    (nn.Flatten, _flatten),
    ((nn.Identity, nn.Dropout), _skip),
    (LIF, _neuron),
    (M.LeakyIntegrator, _integrator),
    (M.Scale, _scale),
    (M.Threshold, _threshold),
    (M.Delay, _delay),
    (BasicBlock, _residual),
]
