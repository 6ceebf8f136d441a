"""Modules for the NIR primitives that spikecim.nn does not already have.

Every neuron here calls the one body of its equation in :mod:`spikecim.nn.functional`
(``lif`` / ``lif_step`` for the spiking ones, ``leaky_integrate`` for the synapse and the
leaky integrator); the module only adds the input gains, the constant drive and the initial
membrane that :mod:`spikecim.interop.discretise` derives from the NIR node::

    I[t]  = alpha I[t-1] + syn_gain x[t]                    (CubaLI, CubaLIF only)
    drive = mem_gain (I[t] or x[t]) + bias
    spiking:   (S[t], w[t]) = lif_step(drive, w[t-1])       zero reset, same step by default
    integrator: w[t] = beta w[t-1] + drive,  output w[t] + offset

Time-major ``[T, B, ...]`` in ``forward``; ``step(x[B, ...], state) -> (y, state)`` runs one
step for graphs with recurrent edges (``state=None`` at t = 0). State starts afresh on every
``forward`` call, from ``initial_state`` (the node's membrane at rest). The spiking ones are
:class:`spikecim.nn.Neuron` s and keep that contract (``forward_state``, ``forward_with_mem``).
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.interop.discretise import Discrete
from spikecim.nn import LIF, SynapticLIF, TemporalModule
from spikecim.nn import functional as F
from spikecim.nn.surrogate import get_surrogate

__all__ = ["NIRLIF", "Delay", "Identity", "LeakyIntegrator", "NIRCubaLIF", "Scale", "Threshold"]


def _t(a, dtype) -> torch.Tensor:
    return torch.as_tensor(a, dtype=dtype).clone()


def _set(module: nn.Module, name: str, value, dtype) -> None:
    """(Re)register a float buffer at full precision (LIF's constructor casts to float32)."""
    if name in module._buffers:
        del module._buffers[name]
    module.register_buffer(name, _t(value, dtype))


class _Gains:
    """Input gains and constant drive shared by the NIR neurons (see module docstring)."""

    def _init_gains(self, d: Discrete, dtype) -> None:
        for name in ("beta", "threshold"):
            if getattr(d, name) is not None:
                _set(self, name, getattr(d, name), dtype)
        _set(self, "mem_gain", d.mem_gain, dtype)
        _set(self, "bias", d.bias, dtype)
        _set(self, "mem0", d.mem0, dtype)
        _set(self, "offset", d.offset, dtype)

    def _drive(self, x: torch.Tensor) -> torch.Tensor:
        return self.mem_gain * x + self.bias

    def _mem0(self, like: torch.Tensor) -> torch.Tensor:
        return self.mem0.expand_as(like).to(like.dtype).clone()


class NIRLIF(_Gains, LIF):
    """NIR ``LIF`` / ``IF``: a spikecim :class:`~spikecim.nn.LIF` driven by ``mem_gain x + bias``,
    starting from the node's initial membrane; its membrane is reported in the node's units
    (``v``, or ``v/g`` for snntorch)."""

    def __init__(self, d: Discrete, reset: str = "zero", reset_delay: bool = False, detach_reset: bool = False,
                 surrogate: str = "atan", dtype: torch.dtype | None = None) -> None:  # fmt: skip
        super().__init__(1.0, 1.0, reset, reset_delay, detach_reset, surrogate)
        self._init_gains(d, dtype or torch.get_default_dtype())

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(self._mem0(x))

    def run(self, x: torch.Tensor, state: F.LIFState | None = None):
        return super().run(self._drive(x), state)

    def step(self, x: torch.Tensor, state: F.LIFState | None = None):
        return super().step(self._drive(x), state)

    def membrane(self, states: F.LIFState) -> torch.Tensor:
        return states.v + self.offset


class NIRCubaLIF(_Gains, SynapticLIF):
    """NIR ``CubaLIF``: a spikecim :class:`~spikecim.nn.SynapticLIF` with input gains and drive
    between the synapse and the membrane (the two bodies composed, see the module docstring)."""

    def __init__(self, d: Discrete, reset: str = "zero", reset_delay: bool = False, detach_reset: bool = False,
                 surrogate: str = "atan", dtype: torch.dtype | None = None) -> None:  # fmt: skip
        super().__init__(0.5, 0.5, 1.0, reset, reset_delay, detach_reset, surrogate)
        dtype = dtype or torch.get_default_dtype()
        self._init_gains(d, dtype)
        _set(self, "alpha", d.alpha, dtype)
        _set(self, "syn_gain", d.syn_gain, dtype)

    def initial_state(self, x: torch.Tensor) -> F.SynapticState:
        return F.SynapticState(torch.zeros_like(x), self._mem0(x))

    def run(self, x: torch.Tensor, state: F.SynapticState | None = None):
        state = self.initial_state(x[0]) if state is None else state
        p = self.params()
        i_syn = F.leaky_integrate(self.syn_gain * x, p.alpha, state.i)
        spk, mem = F.lif(self._drive(i_syn), F.LIFState(state.v), p.lif, self.backend)
        return spk, F.SynapticState(i_syn, mem.v)

    def step(self, x: torch.Tensor, state: F.SynapticState | None = None):
        spk, states = self.run(x[None], state)
        return spk[0], F.last(states)

    def membrane(self, states: F.SynapticState) -> torch.Tensor:
        return states.v + self.offset


class LeakyIntegrator(_Gains, TemporalModule):
    """NIR ``I``, ``LI`` and ``CubaLI``: outputs the membrane ``w[t] + offset`` (no spikes)."""

    def __init__(self, d: Discrete, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        self._init_gains(d, dtype)
        self.has_synapse = d.alpha is not None
        if self.has_synapse:
            _set(self, "alpha", d.alpha, dtype)
            _set(self, "syn_gain", d.syn_gain, dtype)

    def _input(self, x: torch.Tensor, i_prev=None) -> torch.Tensor:
        if not self.has_synapse:
            return x
        return F.leaky_integrate(self.syn_gain * x, self.alpha, i_prev)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.leaky_integrate(self._drive(self._input(x)), self.beta, self._mem0(x[0]))
        return w + self.offset

    def step(self, x: torch.Tensor, state):
        i_prev, w = (None, self._mem0(x)) if state is None else state
        i = self._input(x[None], i_prev)
        w = F.leaky_integrate(self._drive(i), self.beta, w)[0]
        return w + self.offset, (i[0] if self.has_synapse else None, w)


class Scale(nn.Module):
    """NIR ``Scale``: ``y = x * scale`` (elementwise, per neuron)."""

    def __init__(self, scale, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.register_buffer("scale", _t(scale, dtype or torch.get_default_dtype()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Threshold(nn.Module):
    """NIR ``Threshold``: ``y = H(x - threshold)`` (strict step, surrogate gradient)."""

    def __init__(self, threshold, surrogate: str = "atan", dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.register_buffer("threshold", _t(threshold, dtype or torch.get_default_dtype()))
        self.surrogate = get_surrogate(surrogate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.surrogate(x - self.threshold)


class Identity(nn.Identity):
    """The Input and Output nodes of a nested NIR sub-graph (a pass-through)."""


class Delay(TemporalModule):
    """NIR ``Delay``: ``y[t] = x[t - d]`` with ``d = round(delay / dt)`` steps per neuron (zeros before)."""

    def __init__(self, steps) -> None:
        super().__init__()
        self.register_buffer("steps", torch.as_tensor(steps, dtype=torch.long).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for d in torch.unique(self.steps).tolist():
            if d >= x.shape[0]:
                continue
            shifted = torch.cat([torch.zeros_like(x[:d]), x[: x.shape[0] - d]]) if d else x
            out = torch.where(self.steps == d, shifted, out)
        return out

    def step(self, x: torch.Tensor, state):
        """``state`` holds the last ``max(d)`` inputs, oldest first."""
        depth = int(self.steps.max()) if self.steps.numel() else 0
        past = torch.zeros((depth, *x.shape), dtype=x.dtype, device=x.device) if state is None else state
        seq = torch.cat([past, x[None]])  # seq[-1 - d] = x[t - d]
        return self.forward(seq)[-1], seq[1:]
