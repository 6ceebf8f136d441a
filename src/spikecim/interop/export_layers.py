"""One NIR writer per non-operator layer type (``LEAVES``), used by :mod:`spikecim.interop.exporter`.

Operators (linear, conv, matmul) are written by their entry in :mod:`spikecim.ops`.

Each writer is ``fn(writer, module, name, prev) -> (entry nodes, exit node)``: it adds the
module's NIR node(s) to the writer and says which node takes the module's input and which
gives its output (``([], None)`` for a layer folded into the one before or skipped). ``prev``
is the node before, for folding BatchNorm and for knowing whether the input is spikes.
The equations of the neuron parameters are in :mod:`spikecim.interop.exporter`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import nir
import numpy as np
import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.interop import modules as M
from spikecim.models._resnet import BasicBlock
from spikecim.nn import LIF, SynapticLIF, TTConv2d

__all__ = ["LEAVES", "as_numpy", "full"]


def as_numpy(t) -> np.ndarray:
    """A tensor or number as a float64 array."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def full(value, shape) -> np.ndarray:
    try:
        return np.ascontiguousarray(np.broadcast_to(as_numpy(value), shape), dtype=np.float64)
    except ValueError:
        raise SpikecimError(
            f"parameter of shape {np.shape(as_numpy(value))} does not fit the layer shape {shape}"
        ) from None


def _batchnorm(w, m: nn.modules.batchnorm._BatchNorm, name: str, prev):
    """Fold eval-mode BN, y = (x - mean)/sqrt(var + eps)*gamma + beta, into the layer before."""
    node = w.nodes.get(prev) if prev else None
    if not isinstance(node, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)):
        raise SpikecimError(
            f"layer '{name}' ({type(m).__name__}): NIR has no batch norm, and no linear or conv layer before it to fold it into"
        )
    if m.running_mean is None:
        raise SpikecimError(f"layer '{name}' ({type(m).__name__}): needs running statistics to be folded")
    s = as_numpy(m.weight if m.affine else torch.ones_like(m.running_var)) / np.sqrt(
        as_numpy(m.running_var) + m.eps
    )
    shift = (as_numpy(m.bias) if m.affine else 0.0) - as_numpy(m.running_mean) * s
    weight = np.asarray(node.weight, dtype=np.float64) * s.reshape(-1, *([1] * (node.weight.ndim - 1)))
    old_bias = np.asarray(getattr(node, "bias", np.zeros(len(s))), dtype=np.float64)
    bias = old_bias * s + shift
    if isinstance(node, (nir.Affine, nir.Linear)):
        w.nodes[prev] = nir.Affine(weight=weight, bias=bias)
    else:
        node.weight, node.bias = weight, bias
    return [], None


def _pool(w, m: nn.AvgPool2d, name: str, prev):
    if m.ceil_mode:
        raise SpikecimError(f"layer '{name}' (AvgPool2d): ceil_mode has no NIR equivalent")
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p = _pair(m.padding)
    if m.divisor_override == 1:
        return w.add(name, nir.SumPool2d(kernel_size=k, stride=s, padding=p))
    if m.divisor_override is not None or (not m.count_include_pad and p.any()):
        raise SpikecimError(
            f"layer '{name}' (AvgPool2d): only the plain average (or divisor_override=1) has a NIR equivalent"
        )
    return w.add(name, nir.AvgPool2d(kernel_size=k, stride=s, padding=p))


def _adaptive_pool(w, m: nn.AdaptiveAvgPool2d, name: str, prev):
    """Adaptive average pooling with an output size that divides the input: a plain AvgPool2d."""
    h, wd = w.shape(m, name, 0)[-2:]
    oh, ow = _pair(tuple(v if v is not None else d for v, d in zip(_pair2(m.output_size), (h, wd))))
    if h % oh or wd % ow:
        raise SpikecimError(
            f"layer '{name}' (AdaptiveAvgPool2d): output {oh}x{ow} does not divide the input {h}x{wd}"
        )
    k = np.array([h // oh, wd // ow])
    return w.add(name, nir.AvgPool2d(kernel_size=k, stride=k, padding=np.zeros(2, dtype=int)))


def _pair2(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _residual(w, m, name: str, prev):
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


def _tt_conv(w, m: TTConv2d, name: str, prev):
    """Tensor-train cores as Conv2d nodes: stt g1 -> g2 -> g3 -> g4; ptt g1 -> (g2, g3) -> g4
    with g4's weight halved (NIR sums a node's inputs: g4((a + b)/2) = (g4/2)(a + b) + bias).
    The last core takes the layer's own name, so a BatchNorm after it folds into it.

    NIR 1.0's Conv2d computes its output shape with the kernel height on both axes
    (``nir/ir/conv.py``), so the k x 1 and 1 x k cores are written as k x k kernels that are
    zero outside their centre column (row), padded by (k-1)/2 more on that axis: the same
    function, with k times the weight entries. Even windows have no centre and are refused."""
    if m.mode == "htt":
        raise SpikecimError(
            f"layer '{name}' (TTConv2d): mode htt switches cores by step, which NIR cannot express; "
            "export a model with mode stt or ptt"
        )
    names = {"g1": f"{name}.g1", "g2": f"{name}.g2", "g3": f"{name}.g3", "g4": name}
    ends = {core: w.emit(getattr(m, core), n, prev) for core, n in names.items()}
    feeds = (
        [("g1", "g2"), ("g2", "g3"), ("g3", "g4")]
        if m.mode == "stt"
        else [("g1", "g2"), ("g1", "g3"), ("g2", "g4"), ("g3", "g4")]
    )
    w.edges += [(ends[a][1], i) for a, b in feeds for i in ends[b][0]]
    if m.mode == "ptt":
        w.nodes[name].weight = np.asarray(w.nodes[name].weight) / 2
    for core, axis in (("g2", 1), ("g3", 0)):
        w.nodes[names[core]] = _square(w.nodes[names[core]], axis, f"{name}.{core}")
    return ends["g1"][0], ends["g4"][1]


def _square(node: nir.Conv2d, axis: int, name: str) -> nir.Conv2d:
    """A conv node with a width-1 window on ``axis`` (0: height, 1: width) as a k x k window
    that is zero off its centre line (see :func:`_tt_conv`)."""
    weight = np.asarray(node.weight)
    k = weight.shape[2 + (1 - axis)]
    if k % 2 == 0:
        raise SpikecimError(f"layer '{name}' (TTConv2d): an even {k}-wide window has no NIR equivalent")
    square = np.zeros((*weight.shape[:2], k, k))
    centre = (k - 1) // 2
    if axis == 1:
        square[:, :, :, centre] = weight[:, :, :, 0]
    else:
        square[:, :, centre, :] = weight[:, :, 0, :]
    padding = np.array(node.padding, dtype=int)
    padding[axis] += centre
    return nir.Conv2d(
        input_shape=node.input_shape, weight=square, stride=node.stride, padding=tuple(int(p) for p in padding),
        dilation=node.dilation, groups=node.groups, bias=node.bias,
    )  # fmt: skip


def _maxpool(w, m: nn.MaxPool2d, name: str, prev):
    """On spikes, max over a window = H(sum over the window): SumPool2d -> Threshold(0)."""
    if prev not in w.binary:
        raise SpikecimError(
            f"layer '{name}' (MaxPool2d): NIR has no max pooling; it is exported only on spikes (after a neuron)"
        )
    if m.ceil_mode or _pair(m.dilation).max() != 1 or _pair(m.padding).any():
        raise SpikecimError(
            f"layer '{name}' (MaxPool2d): only padding 0, dilation 1, ceil_mode False can be exported"
        )
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


def _flatten(w, m: nn.Flatten, name: str, prev):
    in_shape = w.shape(m, name, 0)
    start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
    end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    if m.start_dim == 0:
        raise SpikecimError(f"layer '{name}' (Flatten): start_dim 0 would flatten the batch")
    return w.add(
        name,
        nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end),
        prev in w.binary,
    )


def _skip(w, m, name: str, prev):
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


def _unexported_state(m: LIF, name: str) -> dict:
    """Metadata and a warning for what a NIR LIF cannot hold: a quantised membrane (MINT,
    SQUAT) or a membrane shared by channel groups (EfficientLIF-Net); the node is written as
    the plain neuron, which behaves otherwise."""
    meta, lost = {}, []
    if getattr(m, "membrane_quant", None) is not None:
        bits = getattr(m, "membrane_bits", None)
        if bits is not None:
            meta["membrane_bits"] = int(bits)
        lost.append("its membrane quantiser" + ("" if bits is None else f" ({bits} bits)"))
    groups = getattr(m, "channel_groups", 1)
    if groups > 1:
        meta["channel_groups"] = groups
        lost.append(f"its membrane shared by {groups} channel groups")
    if lost:
        warnings.warn(
            f"node '{name}': {' and '.join(lost)} has no NIR equivalent; written as a plain neuron "
            f"with metadata {meta} (other tools, and spikecim's import, run it unquantised and unshared)",
            UserWarning,
            stacklevel=4,
        )
    return meta


def _neuron(w, m: LIF, name: str, prev):
    shape = w.shape(m, name, 1)
    beta = full(m.beta.clamp(0, 1) if isinstance(m.beta, nn.Parameter) else m.beta, shape)
    gain = full(getattr(m, "mem_gain", 1.0), shape)
    bias = full(getattr(m, "bias", 0.0), shape)
    v_reset = full(getattr(m, "offset", 0.0), shape)
    v_th = full(m.threshold, shape) + v_reset
    meta = {**_reset_meta(m, name), **_unexported_state(m, name)}
    synaptic = isinstance(m, SynapticLIF)
    if not synaptic and np.all(beta == 1.0) and not bias.any():
        return w.add(name, nir.IF(r=gain, v_threshold=v_th, v_reset=v_reset, metadata=meta), True)
    if np.any(beta >= 1.0):
        raise SpikecimError(
            f"layer '{name}' ({type(m).__name__}): beta = 1 on some neurons; NIR's LIF needs a finite tau"
        )
    tau = w.dt / (1.0 - beta)
    r = gain / (1.0 - beta)
    v_leak = bias / (1.0 - beta) + v_reset
    if not synaptic:
        return w.add(
            name, nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset, metadata=meta), True
        )
    tau_syn, w_in = _synapse(w, m, name, shape)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset,
                       w_in=w_in, metadata=meta)  # fmt: skip
    return w.add(name, node, True)


def _synapse(w, m, name: str, shape) -> tuple[np.ndarray, np.ndarray]:
    alpha = full(m.alpha.clamp(0, 1) if isinstance(m.alpha, nn.Parameter) else m.alpha, shape)
    if np.any(alpha >= 1.0):
        raise SpikecimError(
            f"layer '{name}' ({type(m).__name__}): alpha = 1 on some neurons; NIR needs a finite tau_syn"
        )
    return w.dt / (1.0 - alpha), full(getattr(m, "syn_gain", 1.0), shape) / (1.0 - alpha)


def _integrator(w, m: M.LeakyIntegrator, name: str, prev):
    shape = w.shape(m, name, 1)
    beta, gain, bias = full(m.beta, shape), full(m.mem_gain, shape), full(m.bias, shape)
    if not m.has_synapse and np.all(beta == 1.0) and not bias.any():
        return w.add(name, nir.I(r=gain))
    if np.any(beta >= 1.0):
        raise SpikecimError(
            f"layer '{name}' (LeakyIntegrator): beta = 1 with a leak or synapse has no NIR equivalent"
        )
    tau, r, v_leak = w.dt / (1.0 - beta), gain / (1.0 - beta), bias / (1.0 - beta)
    if not m.has_synapse:
        return w.add(name, nir.LI(tau=tau, r=r, v_leak=v_leak))
    tau_syn, w_in = _synapse(w, m, name, shape)
    return w.add(name, nir.CubaLI(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, w_in=w_in))


def _scale(w, m: M.Scale, name: str, prev):
    return w.add(name, nir.Scale(scale=full(m.scale, w.shape(m, name, 1))))


def _threshold(w, m: M.Threshold, name: str, prev):
    return w.add(name, nir.Threshold(threshold=full(m.threshold, w.shape(m, name, 1))), True)


def _delay(w, m: M.Delay, name: str, prev):
    shape = w.shape(m, name, 1)
    return w.add(name, nir.Delay(delay=full(m.steps, shape) * w.dt), prev in w.binary)


LEAVES: list[tuple[type, Callable]] = [
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
    (TTConv2d, _tt_conv),
]
