"""From NIR's continuous neurons to spikecim's discrete ones (docs/references.md#nir-discretisation).

NIR describes neurons in continuous time::

    tau_syn dI/dt = -I + w_in S                       (CubaLI, CubaLIF)
    tau     dv/dt = (v_leak - v) + r I                (LI, LIF, CubaLI, CubaLIF)
            dv/dt = r I                               (I, IF)
    spike when v > v_threshold, then v <- v_reset     (IF, LIF, CubaLIF)

spikecim steps them at a fixed ``dt`` with the decays ``alpha = 1 - dt/tau_syn`` and
``beta = 1 - dt/tau``, on the shifted membrane ``w = v - v_reset`` (so the reset is a reset
to zero and the threshold is ``v_threshold - v_reset``). Two conventions, chosen explicitly:

``"euler"`` (forward Euler, the NIR paper's reference; Norse's)::

    I[t] = alpha I[t-1] + (1 - alpha) w_in S[t]
    w[t] = beta w[t-1] + (1 - beta) r I[t] + (1 - beta)(v_leak - v_reset)

``"snntorch"`` (snnTorch's import: the same dynamics with the membrane counted in units of
the input, so the input gains are 1 and the threshold is divided by the total gain g)::

    g = (1 - beta) r (1 - alpha) w_in            (without the synapse: g = (1 - beta) r)
    I[t] = alpha I[t-1] + S[t]
    u[t] = beta u[t-1] + I[t] + (1 - beta)(v_leak - v_reset)/g,   threshold (v_th - v_reset)/g

Both give the same spikes; the membranes differ by the factor g. For a graph written by
snnTorch (r = tau/dt, w_in = tau_syn/dt) g = 1 and the conventions coincide. I and IF have no
time constant: their input is the charge per step, ``w[t] = w[t-1] + r I[t]``, in both
conventions (as Sinabs, Norse and snnTorch run them).

Everything here is computed in float64 from the node's arrays; the caller casts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from spikecim.errors import SpikecimError

__all__ = ["CONVENTIONS", "Discrete", "check_convention", "discretise"]

Convention = Literal["euler", "snntorch"]
CONVENTIONS = ("euler", "snntorch")


@dataclass(frozen=True)
class Discrete:
    """A neuron's discrete parameters (float64 arrays, the node's shape or scalars).

    ``syn_gain`` multiplies the input before the synaptic filter ``alpha`` (None: no synapse);
    ``mem_gain`` multiplies what reaches the membrane, ``bias`` is added every step;
    ``mem0`` is the shifted membrane at t = 0: at rest, ``v_leak - v_reset`` for the leaky
    kinds (the fixed point of the equation with no input), ``-v_reset`` (v = 0) for I and IF,
    which have no rest; ``offset`` is added to the
    shifted membrane to report it in the node's units (``v_reset`` for euler).
    """

    beta: np.ndarray
    mem_gain: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray | None
    mem0: np.ndarray
    offset: np.ndarray
    alpha: np.ndarray | None = None
    syn_gain: np.ndarray | None = None


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise SpikecimError(f"convention: must be one of {', '.join(CONVENTIONS)}, got '{convention}'")
    return convention


def _arr(node, field: str, default: float | None = None) -> np.ndarray:
    value = getattr(node, field, None)
    if value is None:
        if default is None:
            raise SpikecimError(f"{type(node).__name__}.{field}: missing")
        value = default
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise SpikecimError(f"{type(node).__name__}.{field}: must be finite")
    return a


def _decay(node, field: str, dt: float) -> np.ndarray:
    tau = _arr(node, field)
    if np.any(tau <= 0):
        raise SpikecimError(f"{type(node).__name__}.{field}: must be > 0, got min {tau.min():g}")
    if np.any(tau < dt):
        raise SpikecimError(
            f"{type(node).__name__}.{field}: {tau.min():g} s is shorter than dt = {dt:g} s; "
            "forward Euler needs tau >= dt (pass a smaller dt)"
        )
    return 1.0 - dt / tau


def discretise(node, kind: str, dt: float, convention: str = "euler") -> Discrete:
    """Discrete parameters of a NIR neuron node ``kind`` in I, IF, LI, LIF, CubaLI, CubaLIF."""
    check_convention(convention)
    if not dt > 0:
        raise SpikecimError(f"dt: must be > 0, got {dt}")
    r = _arr(node, "r")
    spiking = kind in ("IF", "LIF", "CubaLIF")
    v_reset = _arr(node, "v_reset", 0.0) if spiking else np.zeros(())
    v_th = _arr(node, "v_threshold") - v_reset if spiking else None
    if v_th is not None and np.any(v_th <= 0):
        raise SpikecimError(f"{kind}.v_threshold: must be above v_reset")
    if kind in ("I", "IF"):
        return Discrete(np.ones(()), r, np.zeros(()), v_th, -v_reset, v_reset)
    tau_field = "tau" if kind in ("LI", "LIF") else "tau_mem"
    beta = _decay(node, tau_field, dt)
    rest = _arr(node, "v_leak", 0.0) - v_reset  # the shifted membrane at rest, where it starts
    bias = (1.0 - beta) * rest
    mem_gain = (1.0 - beta) * r
    alpha = syn_gain = None
    if kind in ("CubaLI", "CubaLIF"):
        alpha = _decay(node, "tau_syn", dt)
        syn_gain = (1.0 - alpha) * _arr(node, "w_in", 1.0)
    if convention == "euler":
        return Discrete(beta, mem_gain, bias, v_th, rest, v_reset, alpha, syn_gain)
    g = mem_gain * (syn_gain if syn_gain is not None else 1.0)
    if np.any(g == 0):
        raise SpikecimError(f"{kind}.r: the snntorch convention needs a nonzero input gain")
    one = np.ones(())
    return Discrete(
        beta,
        one,
        bias / g,
        None if v_th is None else v_th / g,
        rest / g,
        v_reset / g,
        alpha,
        None if alpha is None else one,
    )
