"""The neuron equations as pure functions (docs/references.md#lif).

Discrete LIF with input current I[t], decay beta in [0, 1], threshold theta and the strict
step H(x) = 1 if x > 0 else 0.

Delayed reset (``reset_delay=True``, snnTorch ``Leaky``'s default)::

    R[t] = H(U[t-1] - theta)                     (detached)
    subtract: U[t] = beta*U[t-1] + I[t] - R[t]*theta
    zero:     U[t] = beta*(1 - R[t])*U[t-1] + I[t]
    S[t] = H(U[t] - theta)

Same-step reset (``reset_delay=False``, SpikingJelly / Norse / NIR)::

    V = beta*U[t-1] + I[t];  S[t] = H(V - theta)
    subtract: U[t] = V - S[t]*theta;  zero: U[t] = (1 - S[t])*V
    (the reset term is S[t].detach() when ``detach_reset``)

IF is LIF with beta = 1. The synaptic (current-based) LIF filters its input first,
I_syn[t] = alpha*I_syn[t-1] + I_in[t], and feeds I_syn into the LIF (snnTorch ``Synaptic``).

Tensors are time-major: ``x[T, B, ...]``. ``beta`` and ``threshold`` are floats or tensors
broadcastable to one step ``x[t]`` (per-neuron values).

:func:`lif_step` is the one body of the equation. :func:`lif` runs it over a sequence;
when a fused kernel is registered for the tensors' device (``spikecim.nn.kernels``) and
``backend="auto"``, it runs that kernel instead, which is tested against this reference.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from spikecim.errors import SpikecimError
from spikecim.nn.surrogate import Surrogate, get_surrogate

Scalar = float | torch.Tensor
Reset = Literal["subtract", "zero"]
RESETS = ("subtract", "zero")

__all__ = ["LIFParams", "check_broadcast", "check_params", "leaky_integrate", "lif", "lif_step", "synaptic"]


class LIFParams(NamedTuple):
    """Parameters of the discrete LIF (see module docstring)."""

    beta: Scalar = 0.9
    threshold: Scalar = 1.0
    reset: Reset = "subtract"
    reset_delay: bool = True
    detach_reset: bool = False
    surrogate: Surrogate = Surrogate("atan", 2.0)


def check_params(beta: Scalar, threshold: Scalar, reset: str, surrogate: str | Surrogate) -> Surrogate:
    """Validate at the door; returns the resolved surrogate."""
    if reset not in RESETS:
        raise SpikecimError(f"reset: must be one of {', '.join(RESETS)}, got '{reset}'")
    if not isinstance(beta, torch.Tensor) and not 0.0 <= float(beta) <= 1.0:
        raise SpikecimError(f"beta: must be in [0, 1], got {beta}")
    if not isinstance(threshold, torch.Tensor) and not float(threshold) > 0.0:
        raise SpikecimError(f"threshold: must be > 0, got {threshold}")
    return get_surrogate(surrogate)


def check_broadcast(name: str, value: Scalar, step_shape: torch.Size) -> None:
    """A per-neuron ``value`` must broadcast to one step ``x[t]`` without enlarging it."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return
    try:
        ok = torch.broadcast_shapes(value.shape, step_shape) == step_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise SpikecimError(
            f"{name}: shape {tuple(value.shape)} does not broadcast to one step of x {tuple(step_shape)}; "
            "allowed: a scalar or a shape aligned to the trailing dims, e.g. (C, 1, 1) for [B, C, H, W]"
        )


def lif_step(x: torch.Tensor, mem: torch.Tensor, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: ``(x[t], U[t-1], params) -> (S[t], U[t])``."""
    if p.reset_delay:
        r = (mem - p.threshold > 0).to(x.dtype)  # R[t] = S[t-1], detached
        if p.reset == "subtract":
            mem = p.beta * mem + x - r * p.threshold
        else:
            mem = p.beta * (1 - r) * mem + x
        spk = p.surrogate(mem - p.threshold)
        return spk, mem
    v = p.beta * mem + x
    spk = p.surrogate(v - p.threshold)
    r = spk.detach() if p.detach_reset else spk
    mem = v - r * p.threshold if p.reset == "subtract" else (1 - r) * v
    return spk, mem


def lif(
    x: torch.Tensor,
    beta: Scalar = 0.9,
    threshold: Scalar = 1.0,
    reset: Reset = "subtract",
    reset_delay: bool = True,
    surrogate: str | Surrogate = "atan",
    detach_reset: bool = False,
    mem0: torch.Tensor | None = None,
    backend: Literal["auto", "reference"] | str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the LIF over ``x[T, B, ...]``; returns ``(spikes, membrane)``, both ``[T, B, ...]``.

    ``mem0`` is the membrane before the first step (zeros by default). ``backend="auto"``
    uses a registered fused kernel when one supports the call, else this reference loop;
    ``"reference"`` forces the loop; any other name forces that kernel.
    """
    if x.dim() < 1:
        raise SpikecimError("x: must be time-major [T, ...], got a scalar")
    sg = check_params(beta, threshold, reset, surrogate)
    check_broadcast("beta", beta, x.shape[1:])
    check_broadcast("threshold", threshold, x.shape[1:])
    p = LIFParams(beta, threshold, reset, reset_delay, detach_reset, sg)
    if backend != "reference":
        from spikecim.nn import kernels

        fused = kernels.select(x, p, mem0, backend)
        if fused is not None:
            return fused(x, p, mem0)
    mem = torch.zeros_like(x[0]) if mem0 is None else mem0
    spikes, mems = [], []
    for t in range(x.shape[0]):
        spk, mem = lif_step(x[t], mem, p)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def leaky_integrate(x: torch.Tensor, alpha: Scalar, state0: torch.Tensor | None = None) -> torch.Tensor:
    """The synaptic filter ``I[t] = alpha*I[t-1] + x[t]`` over ``x[T, ...]`` (a leaky integrator)."""
    state = torch.zeros_like(x[0]) if state0 is None else state0
    out = []
    for t in range(x.shape[0]):
        state = alpha * state + x[t]
        out.append(state)
    return torch.stack(out)


def synaptic(
    x: torch.Tensor,
    alpha: Scalar = 0.9,
    beta: Scalar = 0.8,
    threshold: Scalar = 1.0,
    reset: Reset = "subtract",
    reset_delay: bool = True,
    surrogate: str | Surrogate = "atan",
    detach_reset: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synaptic (current-based) LIF over ``x[T, B, ...]``: returns ``(spikes, membrane, i_syn)``."""
    if not isinstance(alpha, torch.Tensor) and not 0.0 <= float(alpha) <= 1.0:
        raise SpikecimError(f"alpha: must be in [0, 1], got {alpha}")
    check_broadcast("alpha", alpha, x.shape[1:])
    i_syn = leaky_integrate(x, alpha)
    spk, mem = lif(i_syn, beta, threshold, reset, reset_delay, surrogate, detach_reset, backend=backend)
    return spk, mem, i_syn
