"""Neuron modules: thin wrappers that hold parameters and build the default state.

The equations are the pure functions of :mod:`spikecim.nn.functional`
(``step(x, state, params) -> (out, state)``); a module only holds the parameters, turns
them into a params object (:meth:`Neuron.params`) and builds the state a sequence starts
from (:meth:`Neuron.initial_state`). It stores nothing between calls.

Every neuron has the same methods (:class:`Neuron`):

``forward(x[T, B, ...]) -> spikes[T, B, ...]``
    what ``nn.Sequential`` models, the tracer's hooks and NIR export see; the state starts
    afresh on every call (nothing is carried between batches).
``forward_state(x[T, B, ...], state=None) -> (spikes, state)``
    the state in and out explicitly (Norse's module convention): ``state=None`` starts from
    :meth:`~Neuron.initial_state`; the returned final state continues the sequence in a
    later call, so two chunks passing the state equal one call over both.
``forward_with_mem(x, state=None) -> (spikes, membrane[T, B, ...])``
    the membrane trace as well, without changing ``forward``'s return type.
``step(x[B, ...], state=None) -> (spikes[B, ...], state)``
    one step, for graphs with recurrent edges.

Each class is registered by name (:mod:`spikecim.nn.registry`): ``create_neuron("lif", ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn import functional as F
from spikecim.nn.kernels import BACKENDS
from spikecim.nn.registry import register_neuron
from spikecim.nn.surrogate import Surrogate

__all__ = ["IF", "LIF", "Neuron", "SynapticLIF", "TemporalModule", "is_spiking_neuron"]


class TemporalModule(nn.Module):
    """A module that takes time-major input ``[T, B, ...]`` (neurons, residual blocks).

    :class:`spikecim.nn.Sequential` applies every other child to ``[T*B, ...]`` in one call.
    """


def is_spiking_neuron(m: nn.Module) -> bool:
    """Whether ``m`` emits spikes from its own forward: a neuron, or one layer's cell of a
    shared membrane (both have ``forward_with_mem``)."""
    return isinstance(m, TemporalModule) and hasattr(m, "forward_with_mem")


class Neuron(TemporalModule):
    """The common part of every neuron (see the module docstring).

    A subclass names its functional pair (``step_fn``, ``steps_fn``) and defines
    :meth:`params` and :meth:`initial_state`; everything else is here, once.
    """

    step_fn: ClassVar[Callable[..., tuple[torch.Tensor, Any]]]
    steps_fn: ClassVar[Callable[..., tuple[torch.Tensor, Any]]]
    backend: str
    # set by a quantisation method (docs/quant.md): the injected membrane quantiser, where
    # the step applies it, and the bits the tracer records for the membrane
    membrane_quant: Callable[[torch.Tensor], torch.Tensor] | None = None
    quantize_after: str = "update"
    membrane_bits: int | None = None
    # state variables each neuron keeps from one step to the next (LIF, IF: the membrane),
    # which the tracer records and the hardware models store and move (Workload neuron_states)
    state_words: ClassVar[int] = 1

    def params(self) -> Any:
        """The params object of this neuron's functional core, built from its parameters."""
        raise NotImplementedError

    def initial_state(self, x: torch.Tensor) -> Any:
        """The state a sequence starts from, for one step ``x[B, ...]``."""
        raise NotImplementedError

    def run(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``(spikes[T, ...], states)``: every state field stacked over the T steps."""
        F.check_time_major(x)
        state = self.initial_state(x[0]) if state is None else state
        return type(self).steps_fn(x, state, self.params(), self.backend)

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        spk, states = self.run(x, state)
        return spk, F.last(states)

    def forward_with_mem(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        spk, states = self.run(x, state)
        return spk, self.membrane(states)

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        state = self.initial_state(x) if state is None else state
        return type(self).step_fn(x, state, self.params())

    def membrane(self, states: Any) -> torch.Tensor:
        """The membrane as reported by :meth:`forward_with_mem`."""
        return states.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]


def _as_tensor(value, name: str) -> torch.Tensor:
    """``value`` as a detached float tensor, or a one-line error naming ``name``."""
    try:
        t = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise SpikecimError(f"{name}: must be a number or a tensor of numbers, got {value!r}") from None
    if not torch.isfinite(t).all():
        raise SpikecimError(f"{name}: must be finite, got {value}")
    return t


def _check_unit(value, name: str) -> None:
    t = _as_tensor(value, name)
    if not ((t >= 0) & (t <= 1)).all():
        raise SpikecimError(f"{name}: must be in [0, 1], got {value}")


def _hold(module: nn.Module, name: str, value, learn: bool) -> None:
    """Hold ``value`` on ``module`` as the parameter ``name`` when ``learn``, else as a buffer;
    a floating tensor keeps its dtype, numbers take torch's default dtype."""
    floating = isinstance(value, torch.Tensor) and value.is_floating_point()
    t = _as_tensor(value, name).to(value.dtype if floating else torch.get_default_dtype()).clone()
    if learn:
        module.register_parameter(name, nn.Parameter(t, requires_grad=True))
    else:
        module.register_buffer(name, t)


def _unit(value: torch.Tensor) -> torch.Tensor:
    """A learnable decay clamped to [0, 1] where it is used; a buffer as it is."""
    return value.clamp(0.0, 1.0) if isinstance(value, nn.Parameter) else value


@register_neuron("lif")
class LIF(Neuron):
    """Leaky integrate-and-fire neuron (:func:`spikecim.nn.functional.lif_step`).

    State :class:`~spikecim.nn.functional.LIFState` (the membrane, zeros at the start),
    params :class:`~spikecim.nn.functional.LIFParams`.

    Args:
        beta: membrane decay in [0, 1], scalar or per neuron (broadcast to one step).
        threshold: firing threshold theta > 0, scalar or per neuron.
        reset: ``"subtract"`` or ``"zero"``.
        reset_delay: True for snnTorch's delayed reset, False for the same-step reset.
        detach_reset: cut the gradient through the reset term (same-step reset only).
        surrogate: name (``"atan"``, ``"fast_sigmoid(10)"``...) or a Surrogate.
        learn_beta, learn_threshold: make beta / theta trainable parameters.
        backend: ``"auto"`` runs a fused kernel (``spikecim.nn.kernels``) when one supports the
            call, ``"reference"`` the loop over :func:`~spikecim.nn.functional.lif_step`, a
            kernel's name forces that kernel.
        inplace: :meth:`forward` writes the spikes over its input and returns it, like
            ``torch.nn.ReLU(inplace=True)``: the CPU kernel then allocates only what the
            backward pass keeps (no fresh spike sequence). Use it only where nothing reads the
            input again (the output of a BatchNorm, a Linear or a convolution, or of a sum:
            their backward passes do not keep it); a backward pass through an operation that
            saved the input fails with torch's in-place error, never silently. A leaf input
            that requires grad is refused. ``forward_state``, ``forward_with_mem`` and
            ``step`` leave their input as it is.
    """

    step_fn = staticmethod(F.lif_step)
    steps_fn = staticmethod(F.lif)

    def __init__(
        self,
        beta: float | torch.Tensor = 0.9,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        detach_reset: bool = False,
        surrogate: str | Surrogate = "atan",
        learn_beta: bool = False,
        learn_threshold: bool = False,
        backend: str = "auto",
        inplace: bool = False,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise SpikecimError(f"backend: unknown '{backend}', allowed: {', '.join(BACKENDS)}")
        self.backend = backend
        self.inplace = bool(inplace)
        _check_unit(beta, "beta")
        if not (_as_tensor(threshold, "threshold") > 0).all():
            raise SpikecimError(f"threshold: must be > 0, got {threshold}")
        self.surrogate = F.LIFParams(reset=reset, surrogate=surrogate).surrogate  # checked at the door
        self.reset = reset
        self.reset_delay = bool(reset_delay)
        self.detach_reset = bool(detach_reset)
        _hold(self, "beta", beta, learn_beta)
        _hold(self, "threshold", threshold, learn_threshold)

    def params(self) -> F.LIFParams:
        return F.LIFParams(
            _unit(self.beta),
            self.threshold,
            self.reset,
            self.reset_delay,
            self.detach_reset,
            self.surrogate,
            self.membrane_quant,
            self.quantize_after,
        )

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        return F.LIFState(torch.zeros_like(x))

    def run(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """As :meth:`Neuron.run`; from LIF's zero state, :func:`~spikecim.nn.functional.lif`
        starts from zeros itself, so no zeros tensor is filled and kept for the backward pass."""
        if state is None and getattr(self.initial_state, "__func__", None) is not LIF.initial_state:
            F.check_time_major(x)
            state = self.initial_state(x[0])  # another start (e.g. a NIR node's membrane)
        return type(self).steps_fn(x, state, self.params(), self.backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The spikes; from LIF's zero state through :func:`~spikecim.nn.functional.lif_spikes`,
        so a fused kernel writes no membrane sequence that nobody reads (and, ``inplace``, no
        spike sequence either: the spikes overwrite ``x``)."""
        if (
            type(self).steps_fn is not F.lif
            or getattr(self.initial_state, "__func__", None) is not LIF.initial_state
        ):
            if not self.inplace:
                return super().forward(x)
            F.check_inplace(x)
            return x.copy_(super().forward(x))
        return F.lif_spikes(x, None, self.params(), self.backend, self.inplace)

    def extra_repr(self) -> str:
        b = self.beta.item() if self.beta.numel() == 1 else f"[{self.beta.numel()}]"
        th = self.threshold.item() if self.threshold.numel() == 1 else f"[{self.threshold.numel()}]"
        return (
            f"beta={b}, threshold={th}, reset={self.reset}, reset_delay={self.reset_delay}, "
            f"surrogate={self.surrogate.name}({self.surrogate.param:g})"
            + (", inplace=True" if self.inplace else "")
        )


@register_neuron("if")
class IF(LIF):
    """Integrate-and-fire: LIF with beta = 1 (no leak)."""

    def __init__(
        self,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        detach_reset: bool = False,
        surrogate: str | Surrogate = "atan",
        learn_threshold: bool = False,
        backend: str = "auto",
        inplace: bool = False,
    ) -> None:
        super().__init__(
            1.0,
            threshold,
            reset,
            reset_delay,
            detach_reset,
            surrogate,
            False,
            learn_threshold,
            backend,
            inplace,
        )


@register_neuron("synaptic")
class SynapticLIF(LIF):
    """Current-based LIF (snnTorch ``Synaptic``): I_syn[t] = alpha*I_syn[t-1] + x[t] drives the LIF.

    State :class:`~spikecim.nn.functional.SynapticState` (current and membrane, zeros at
    the start), params :class:`~spikecim.nn.functional.SynapticParams`.
    """

    step_fn = staticmethod(F.synaptic_step)
    steps_fn = staticmethod(F.synaptic)
    state_words = 2  # the synaptic current and the membrane

    def __init__(
        self,
        alpha: float | torch.Tensor = 0.9,
        beta: float | torch.Tensor = 0.8,
        threshold: float | torch.Tensor = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        detach_reset: bool = False,
        surrogate: str | Surrogate = "atan",
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            beta, threshold, reset, reset_delay, detach_reset, surrogate, learn_beta, learn_threshold, backend
        )
        _check_unit(alpha, "alpha")
        _hold(self, "alpha", alpha, learn_alpha)

    def params(self) -> F.SynapticParams:
        return F.SynapticParams(_unit(self.alpha), super().params())

    def initial_state(self, x: torch.Tensor) -> F.SynapticState:
        return F.SynapticState(torch.zeros_like(x), torch.zeros_like(x))


@register_neuron("alif")
class ALIF(Neuron):
    """Adaptive LIF (Bellec et al., NeurIPS 2018): each spike raises the threshold by
    ``gamma``, the raise decaying by ``rho`` per step (:func:`spikecim.nn.functional.alif_step`;
    the same-step reset, subtracting the raised threshold or to zero).

    State :class:`~spikecim.nn.functional.ALIFState` (the membrane and the adaptation, zeros
    at the start), params :class:`~spikecim.nn.functional.ALIFParams`. It runs the reference
    loop (no fused kernel), and NIR has no node for it (export refuses it).

    Args:
        beta: membrane decay in [0, 1]; threshold: theta0 > 0 (the threshold at rest);
        rho: adaptation decay in [0, 1] (exp(-dt/tau_a)); gamma: threshold raise per unit of
            adaptation, >= 0 (0: a LIF with the same-step reset);
        reset, detach_reset, surrogate: as :class:`LIF`;
        learn_beta, learn_threshold, learn_rho, learn_gamma: make them trainable;
        backend: ``"auto"`` or ``"reference"`` (the same loop).
    """

    step_fn = staticmethod(F.alif_step)
    steps_fn = staticmethod(F.alif)
    state_words = 2  # the membrane and the adaptation

    def __init__(
        self,
        beta: float | torch.Tensor = 0.9,
        threshold: float | torch.Tensor = 1.0,
        rho: float | torch.Tensor = 0.9,
        gamma: float | torch.Tensor = 0.5,
        reset: str = "subtract",
        detach_reset: bool = False,
        surrogate: str | Surrogate = "atan",
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_rho: bool = False,
        learn_gamma: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in ("auto", "reference"):
            raise SpikecimError(
                f"backend: the adaptive LIF runs the reference loop only (auto, reference), got '{backend}'"
            )
        self.backend = backend
        _check_unit(beta, "beta")
        _check_unit(rho, "rho")
        if not (_as_tensor(threshold, "threshold") > 0).all():
            raise SpikecimError(f"threshold: must be > 0, got {threshold}")
        if not (_as_tensor(gamma, "gamma") >= 0).all():
            raise SpikecimError(f"gamma: must be >= 0, got {gamma}")
        self.surrogate = F.LIFParams(reset=reset, surrogate=surrogate).surrogate  # checked at the door
        self.reset = reset
        self.detach_reset = bool(detach_reset)
        _hold(self, "beta", beta, learn_beta)
        _hold(self, "threshold", threshold, learn_threshold)
        _hold(self, "rho", rho, learn_rho)
        _hold(self, "gamma", gamma, learn_gamma)

    def params(self) -> F.ALIFParams:
        lif = F.LIFParams(
            _unit(self.beta),
            self.threshold,
            self.reset,
            False,
            self.detach_reset,
            self.surrogate,
            self.membrane_quant,
            self.quantize_after,
        )
        gamma = self.gamma.clamp(min=0.0) if isinstance(self.gamma, nn.Parameter) else self.gamma
        return F.ALIFParams(_unit(self.rho), gamma, lif)

    def initial_state(self, x: torch.Tensor) -> F.ALIFState:
        return F.ALIFState(torch.zeros_like(x), torch.zeros_like(x))

    def extra_repr(self) -> str:
        def show(t):
            return t.item() if t.numel() == 1 else f"[{t.numel()}]"

        return (
            f"beta={show(self.beta)}, threshold={show(self.threshold)}, rho={show(self.rho)}, "
            f"gamma={show(self.gamma)}, reset={self.reset}, surrogate={self.surrogate.name}({self.surrogate.param:g})"
        )
