"""The neuron equations as pure functions: ``step(x, state, params) -> (out, state)``.

The equations follow docs/references.md#lif.

Discrete LIF with input current I[t], decay beta in [0, 1], threshold theta and the strict
step H(x) = 1 if x > 0 else 0.

Delayed reset (``reset_delay=True``, snnTorch ``Leaky``'s default,
``snntorch/_neurons/leaky.py``)::

    R[t] = H(U[t-1] - theta)                     (detached)
    subtract: U[t] = beta*U[t-1] + I[t] - R[t]*theta
    zero:     U[t] = beta*(1 - R[t])*U[t-1] + I[t]
    S[t] = H(U[t] - theta)

Same-step reset (``reset_delay=False``, SpikingJelly ``neuron.LIFNode`` with
``decay_input=False``, Norse ``functional/lif.py``, NIR)::

    V = beta*U[t-1] + I[t];  S[t] = H(V - theta)
    subtract: U[t] = V - S[t]*theta;  zero: U[t] = (1 - S[t])*V
    (the reset term is S[t].detach() when ``detach_reset``)

IF is LIF with beta = 1. The synaptic (current-based) LIF filters its input first,
I_syn[t] = alpha*I_syn[t-1] + I_in[t], and feeds I_syn into the LIF (snnTorch ``Synaptic``,
``snntorch/_neurons/synaptic.py``).

The adaptive LIF (ALIF; Bellec et al., "Long short-term memory and learning-to-learn in
networks of spiking neurons", NeurIPS 2018; docs/references.md#alif) raises its threshold
after each spike, the raise decaying by rho per step; same-step reset::

    theta[t] = theta0 + gamma*A[t-1]
    V = beta*U[t-1] + I[t];  S[t] = H(V - theta[t])
    subtract: U[t] = V - S[t]*theta[t];  zero: U[t] = (1 - S[t])*V
    A[t] = rho*A[t-1] + S[t]

The contract (as Norse's ``norse/torch/functional/lif.py``):

- a **state** is a small NamedTuple of tensors of one step's shape (:class:`LIFState`,
  :class:`SynapticState`); a **params** object is a frozen dataclass validated when it is
  built (:class:`LIFParams`, :class:`SynapticParams`);
- ``*_step(x[B, ...], state, params) -> (spikes[B, ...], state)`` is the one body of the
  equation;
- the multi-step form ``lif(x[T, B, ...], state, params, backend)`` runs it over time and
  returns ``(spikes[T, B, ...], states)``, where ``states`` is the same NamedTuple with every
  field stacked over time (``states.v[t]`` is the membrane after step t); :func:`last` takes
  the final state, which continues the sequence in a later call. ``state=None`` starts at
  zero. When a fused kernel is registered for the tensors' device (``spikecim.nn.kernels``)
  and ``backend="auto"``, the LIF's time loop runs in that kernel instead: the kernel is the
  injected piece, tested against the loop over :func:`lif_step`.

``beta``, ``threshold`` and ``alpha`` are floats or tensors broadcastable to one step
``x[t]`` (per-neuron values).

A quantised membrane (docs/quant.md) is an injected function ``membrane_quant(v) -> v`` on
the params, applied at one point of the same body (``quantize_after``):

- ``"update"`` (SQUAT, snnTorch ``state_quant``): the charged membrane is quantised before
  the threshold test, U[t] = q(β·U[t−1] + I[t] − R[t]·θ) with the delayed reset,
  V = q(β·U[t−1] + I[t]) with the same-step reset;
- ``"reset"`` (MINT's reference LIF, ``LIFSpike`` in ``spike_related.py`` of
  RuokaiYin/MINT_Quantization): the leak and the quantiser act on the membrane left after
  the same-step reset, U[t] = q(β·(V − S[t]·θ)) (or q(β·(1 − S[t])·V)), and the next step
  adds the input to it without a further leak, V = U[t−1] + I[t]: the stored membrane lies
  on the quantiser's grid, and the threshold test sees the unquantised V. Without the
  quantiser the spikes are those of the other points (the stored membrane is β times
  theirs). With the delayed reset the stored membrane is the one tested, so the two points
  coincide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, TypeVar

import torch

from spikecim.errors import SpikecimError
from spikecim.nn.surrogate import Surrogate, get_surrogate

Scalar = float | torch.Tensor
Reset = Literal["subtract", "zero"]
RESETS = ("subtract", "zero")
QuantizeAfter = Literal["update", "reset"]
QUANTIZE_AFTER = ("update", "reset")

__all__ = [
    "ALIFParams",
    "ALIFState",
    "LIFParams",
    "LIFState",
    "SynapticParams",
    "SynapticState",
    "alif",
    "alif_step",
    "check_broadcast",
    "check_inplace",
    "check_time_major",
    "last",
    "leaky_integrate",
    "lif",
    "lif_spikes",
    "lif_step",
    "scan",
    "synaptic",
    "synaptic_step",
]


class ALIFState(NamedTuple):
    """State of the adaptive LIF: the membrane ``v`` and the threshold adaptation ``a``."""

    v: torch.Tensor
    a: torch.Tensor


class LIFState(NamedTuple):
    """State of the LIF: the membrane ``v`` (U[t-1] before a step, U[t] after it)."""

    v: torch.Tensor


class SynapticState(NamedTuple):
    """State of the synaptic LIF: the synaptic current ``i`` and the membrane ``v``."""

    i: torch.Tensor
    v: torch.Tensor


@dataclass(frozen=True, eq=False)
class LIFParams:
    """Parameters of the discrete LIF (see the module docstring), checked when built.

    ``surrogate`` may be given as a name (``"atan"``, ``"fast_sigmoid(10)"``); it is stored
    resolved. Tensor values (per neuron, or learnable) are checked by the module that holds
    them and for shape by :func:`check_broadcast` when a sequence runs.
    """

    beta: Scalar = 0.9
    threshold: Scalar = 1.0
    reset: Reset = "subtract"
    reset_delay: bool = True
    detach_reset: bool = False
    surrogate: Surrogate = field(default_factory=lambda: get_surrogate("atan"))
    membrane_quant: Callable[[torch.Tensor], torch.Tensor] | None = None
    quantize_after: QuantizeAfter = "update"

    def __post_init__(self) -> None:
        if self.quantize_after not in QUANTIZE_AFTER:
            raise SpikecimError(
                f"quantize_after: must be one of {', '.join(QUANTIZE_AFTER)}, got '{self.quantize_after}'"
            )
        if self.reset not in RESETS:
            raise SpikecimError(f"reset: must be one of {', '.join(RESETS)}, got '{self.reset}'")
        if not isinstance(self.beta, torch.Tensor) and not 0.0 <= float(self.beta) <= 1.0:
            raise SpikecimError(f"beta: must be in [0, 1], got {self.beta}")
        if not isinstance(self.threshold, torch.Tensor) and not float(self.threshold) > 0.0:
            raise SpikecimError(f"threshold: must be > 0, got {self.threshold}")
        object.__setattr__(self, "surrogate", get_surrogate(self.surrogate))


@dataclass(frozen=True, eq=False)
class SynapticParams:
    """Parameters of the synaptic LIF: the current decay ``alpha`` and the LIF's parameters."""

    alpha: Scalar = 0.9
    lif: LIFParams = field(default_factory=lambda: LIFParams(beta=0.8))

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, torch.Tensor) and not 0.0 <= float(self.alpha) <= 1.0:
            raise SpikecimError(f"alpha: must be in [0, 1], got {self.alpha}")


@dataclass(frozen=True, eq=False)
class ALIFParams:
    """Parameters of the adaptive LIF: the adaptation's decay ``rho``, the threshold's raise
    per unit of adaptation ``gamma`` (Bellec et al.'s beta) and the LIF's parameters (the
    same-step reset; ``threshold`` is theta0)."""

    rho: Scalar = 0.9
    gamma: Scalar = 0.5
    lif: LIFParams = field(default_factory=lambda: LIFParams(reset_delay=False))

    def __post_init__(self) -> None:
        if not isinstance(self.rho, torch.Tensor) and not 0.0 <= float(self.rho) <= 1.0:
            raise SpikecimError(f"rho: must be in [0, 1], got {self.rho}")
        if not isinstance(self.gamma, torch.Tensor) and not float(self.gamma) >= 0.0:
            raise SpikecimError(f"gamma: must be >= 0, got {self.gamma}")
        if self.lif.reset_delay:
            raise SpikecimError("reset_delay: the adaptive LIF resets in the same step (reset_delay=False)")


State = TypeVar("State", LIFState, SynapticState, ALIFState)


def last(states: State) -> State:
    """The final state of a multi-step result (every field's last step)."""
    return type(states)(*(f[-1] for f in states))


def lif_step(x: torch.Tensor, state: LIFState, p: LIFParams) -> tuple[torch.Tensor, LIFState]:
    """One LIF step: ``(I[t], U[t-1], params) -> (S[t], U[t])``."""
    mem, q = state.v, p.membrane_quant
    if p.reset_delay:
        r = (mem - p.threshold > 0).to(x.dtype)  # R[t] = S[t-1], detached
        if p.reset == "subtract":
            mem = p.beta * mem + x - r * p.threshold
        else:
            mem = p.beta * (1 - r) * mem + x
        if q is not None:
            mem = q(mem)
        return p.surrogate(mem - p.threshold), LIFState(mem)
    leaked = q is not None and p.quantize_after == "reset"  # MINT: the stored membrane holds its leak
    v = (mem if leaked else p.beta * mem) + x
    if q is not None and p.quantize_after == "update":
        v = q(v)
    spk = p.surrogate(v - p.threshold)
    r = spk.detach() if p.detach_reset else spk
    mem = v - r * p.threshold if p.reset == "subtract" else (1 - r) * v
    if leaked:
        mem = q(p.beta * mem)
    return spk, LIFState(mem)


def lif(
    x: torch.Tensor,
    state: LIFState | None = None,
    p: LIFParams = LIFParams(),
    backend: Literal["auto", "reference"] | str = "auto",
) -> tuple[torch.Tensor, LIFState]:
    """Run the LIF over ``x[T, B, ...]`` from ``state`` (zeros when None).

    Returns ``(spikes[T, B, ...], LIFState(v[T, B, ...]))``. ``backend="auto"`` uses a
    registered fused kernel when one supports the call, else the loop over :func:`lif_step`;
    ``"reference"`` forces the loop; any other name forces that kernel.
    """
    _check_sequence(x, {"beta": p.beta, "threshold": p.threshold})
    mem0 = None if state is None else state.v
    if backend != "reference":
        from spikecim.nn import kernels

        fused = kernels.select(x, p, mem0, backend)
        if fused is not None:
            spk, mem = fused(x, p, mem0)
            return spk, LIFState(mem)
    state = LIFState(torch.zeros_like(x[0])) if state is None else state
    return scan(lif_step, x, state, p)


def scan(step: Callable, x: torch.Tensor, state: State, p) -> tuple[torch.Tensor, State]:
    """``step(x[t], state, p)`` over the T steps of ``x``: ``(spikes[T, ...], states)``, every
    state field stacked over time (the reference loop of the multi-step forms)."""
    spikes, states = [], []
    for t in range(x.shape[0]):
        spk, state = step(x[t], state, p)
        spikes.append(spk)
        states.append(state)
    return torch.stack(spikes), type(state)(*(torch.stack(f) for f in zip(*states, strict=True)))


def lif_spikes(
    x: torch.Tensor,
    state: LIFState | None = None,
    p: LIFParams = LIFParams(),
    backend: Literal["auto", "reference"] | str = "auto",
    inplace: bool = False,
) -> torch.Tensor:
    """The spikes of :func:`lif` alone, ``spikes[T, B, ...]``. A fused kernel then writes no
    membrane sequence where the backward pass does not read it (the same-step reset).

    ``inplace=True`` writes the spikes over ``x`` and returns ``x``, as ``torch.relu_`` does:
    the CPU kernel writes them there directly (a contiguous ``x``), so the forward pass
    allocates only what the backward pass keeps; any other path computes them and copies
    them into ``x`` (same result, no memory saved). Autograd's version counter then refuses a
    backward pass through an operation that saved ``x`` before (one-line error from torch).
    A leaf tensor that requires grad is refused (torch forbids writing over it).
    """
    _check_sequence(x, {"beta": p.beta, "threshold": p.threshold})
    if inplace:
        check_inplace(x)
    mem0 = None if state is None else state.v
    fused = None
    if backend != "reference":
        from spikecim.nn import kernels

        fused = kernels.select_spikes(x, p, mem0, backend, inplace)
    spk = fused(x, p, mem0) if fused is not None else lif(x, state, p, "reference")[0]
    if inplace and (fused is None or spk.data_ptr() != x.data_ptr()):
        spk = x.copy_(spk)
    return spk


def leaky_integrate(x: torch.Tensor, alpha: Scalar, state0: torch.Tensor | None = None) -> torch.Tensor:
    """The leaky integrator ``I[t] = alpha*I[t-1] + x[t]`` over ``x[T, ...]`` from ``state0``
    (zeros when None); returns ``I[T, ...]``. The synapse of :func:`synaptic_step`."""
    state = torch.zeros_like(x[0]) if state0 is None else state0
    out = []
    for t in range(x.shape[0]):
        state = alpha * state + x[t]
        out.append(state)
    return torch.stack(out)


def synaptic_step(
    x: torch.Tensor, state: SynapticState, p: SynapticParams
) -> tuple[torch.Tensor, SynapticState]:
    """One synaptic-LIF step: the synapse then :func:`lif_step`."""
    i = leaky_integrate(x[None], p.alpha, state.i)[0]
    spk, mem = lif_step(i, LIFState(state.v), p.lif)
    return spk, SynapticState(i, mem.v)


def synaptic(
    x: torch.Tensor,
    state: SynapticState | None = None,
    p: SynapticParams = SynapticParams(),
    backend: str = "auto",
) -> tuple[torch.Tensor, SynapticState]:
    """Synaptic LIF over ``x[T, B, ...]``: returns ``(spikes, SynapticState(i[T, ...], v[T, ...]))``.

    The synapse runs first over the whole sequence, then :func:`lif` (and its fused kernel).
    """
    _check_sequence(x, {"alpha": p.alpha})
    i = leaky_integrate(x, p.alpha, None if state is None else state.i)
    spk, mem = lif(i, None if state is None else LIFState(state.v), p.lif, backend)
    return spk, SynapticState(i, mem.v)


def alif_step(x: torch.Tensor, state: ALIFState, p: ALIFParams) -> tuple[torch.Tensor, ALIFState]:
    """One adaptive-LIF step: the threshold theta0 + gamma*A[t-1], then :func:`lif_step`
    (same-step reset) at that threshold, then the adaptation."""
    theta = p.lif.threshold + p.gamma * state.a
    spk, mem = lif_step(x, LIFState(state.v), replace(p.lif, threshold=theta))
    return spk, ALIFState(mem.v, p.rho * state.a + spk)


def alif(
    x: torch.Tensor,
    state: ALIFState | None = None,
    p: ALIFParams = ALIFParams(),
    backend: str = "auto",
) -> tuple[torch.Tensor, ALIFState]:
    """The adaptive LIF over ``x[T, B, ...]`` from ``state`` (zeros when None): returns
    ``(spikes, ALIFState(v[T, ...], a[T, ...]))``. It has no fused kernel: ``"auto"`` and
    ``"reference"`` run the loop over :func:`alif_step`, another backend is refused."""
    if backend not in ("auto", "reference"):
        raise SpikecimError(
            f"backend: the adaptive LIF runs the reference loop only (auto, reference), got '{backend}'"
        )
    _check_sequence(x, {"beta": p.lif.beta, "threshold": p.lif.threshold, "rho": p.rho, "gamma": p.gamma})
    if state is None:
        state = ALIFState(torch.zeros_like(x[0]), torch.zeros_like(x[0]))
    return scan(alif_step, x, state, p)


def check_inplace(x: torch.Tensor) -> None:
    """Refuse to write a neuron's spikes over ``x`` where torch forbids it: a leaf tensor that
    requires grad, or a view of one (while autograd records)."""
    if torch.compiler.is_compiling():  # the compiler's graph has no views' bases; torch checks the write
        return
    base = x if x._base is None else x._base
    if torch.is_grad_enabled() and base.is_leaf and base.requires_grad:
        raise SpikecimError(
            "inplace: the neuron's input is (a view of) a leaf tensor that requires grad and "
            "cannot be overwritten; use inplace=False"
        )


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


def check_time_major(x: torch.Tensor) -> None:
    """``x`` must be a sequence ``x[T, ...]`` of at least one step, of real numbers."""
    if x.dtype == torch.bool or x.is_complex():
        raise SpikecimError(f"x: dtype {x.dtype} is not allowed; allowed: floating point or integer")
    if x.dim() < 1:
        raise SpikecimError("x: must be time-major [T, ...], got a scalar")
    if x.shape[0] == 0:
        raise SpikecimError(f"x: must hold at least one time step, got shape {tuple(x.shape)}")


def _check_sequence(x: torch.Tensor, values: dict[str, Scalar]) -> None:
    check_time_major(x)
    for name, value in values.items():
        check_broadcast(name, value, x.shape[1:])
