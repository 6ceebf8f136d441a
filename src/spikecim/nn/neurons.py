"""Neuron modules: thin wrappers that hold parameters and call :mod:`spikecim.nn.functional`.

Every neuron takes ``x[T, B, ...]`` and returns spikes ``[T, B, ...]``; state starts at zero
on every call (nothing is carried between batches). ``forward_with_mem`` returns the
membrane trace as well, without changing ``forward``'s return type.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn import functional as F
from spikecim.nn.kernels import BACKENDS
from spikecim.nn.surrogate import Surrogate

__all__ = ["IF", "LIF", "SynapticLIF", "TemporalModule"]


class TemporalModule(nn.Module):
    """A module that takes time-major input ``[T, B, ...]`` (neurons, residual blocks).

    :class:`spikecim.nn.Sequential` applies every other child to ``[T*B, ...]`` in one call.
    """


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


def _param(value, learn: bool, name: str) -> torch.Tensor:
    """A floating tensor keeps its dtype; numbers take torch's default dtype."""
    floating = isinstance(value, torch.Tensor) and value.is_floating_point()
    t = _as_tensor(value, name).to(value.dtype if floating else torch.get_default_dtype()).clone()
    return nn.Parameter(t, requires_grad=True) if learn else t


class LIF(TemporalModule):
    """Leaky integrate-and-fire neuron (docs/references.md#lif).

    Args:
        beta: membrane decay in [0, 1], scalar or per neuron (broadcast to one step).
        threshold: firing threshold theta > 0, scalar or per neuron.
        reset: ``"subtract"`` or ``"zero"``.
        reset_delay: True for snnTorch's delayed reset, False for the same-step reset.
        detach_reset: cut the gradient through the reset term (same-step reset only).
        surrogate: name (``"atan"``, ``"fast_sigmoid(10)"``...) or a Surrogate.
        learn_beta, learn_threshold: make beta / theta trainable parameters.
        backend: ``"auto"`` runs a fused kernel (``spikecim.nn.kernels``) when one supports the
            call, ``"reference"`` the loop of :func:`spikecim.nn.functional.lif`, a kernel's
            name forces that kernel.
    """

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
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise SpikecimError(f"backend: unknown '{backend}', allowed: {', '.join(BACKENDS)}")
        self.backend = backend
        _check_unit(beta, "beta")
        if not (_as_tensor(threshold, "threshold") > 0).all():
            raise SpikecimError(f"threshold: must be > 0, got {threshold}")
        self.surrogate = F.check_params(0.5, 1.0, reset, surrogate)
        self.reset = reset
        self.reset_delay = bool(reset_delay)
        self.detach_reset = bool(detach_reset)
        beta_t = _param(beta, learn_beta, "beta")
        thr_t = _param(threshold, learn_threshold, "threshold")
        if learn_beta:
            self.beta = beta_t
        else:
            self.register_buffer("beta", beta_t)
        if learn_threshold:
            self.threshold = thr_t
        else:
            self.register_buffer("threshold", thr_t)

    def params(self) -> F.LIFParams:
        beta = self.beta.clamp(0.0, 1.0) if isinstance(self.beta, nn.Parameter) else self.beta
        return F.LIFParams(
            beta, self.threshold, self.reset, self.reset_delay, self.detach_reset, self.surrogate
        )

    def forward_with_mem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params()
        return F.lif(
            x, p.beta, p.threshold, p.reset, p.reset_delay, p.surrogate, p.detach_reset, backend=self.backend
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_mem(x)[0]

    def extra_repr(self) -> str:
        b = self.beta.item() if self.beta.numel() == 1 else f"[{self.beta.numel()}]"
        th = self.threshold.item() if self.threshold.numel() == 1 else f"[{self.threshold.numel()}]"
        return (
            f"beta={b}, threshold={th}, reset={self.reset}, reset_delay={self.reset_delay}, "
            f"surrogate={self.surrogate.name}({self.surrogate.param:g})"
        )


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
    ) -> None:
        super().__init__(
            1.0, threshold, reset, reset_delay, detach_reset, surrogate, False, learn_threshold, backend
        )


class SynapticLIF(LIF):
    """Current-based LIF (snnTorch ``Synaptic``): I_syn[t] = alpha*I_syn[t-1] + x[t] drives the LIF."""

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
        a_t = _param(alpha, learn_alpha, "alpha")
        if learn_alpha:
            self.alpha = a_t
        else:
            self.register_buffer("alpha", a_t)

    def forward_with_mem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.alpha.clamp(0.0, 1.0) if isinstance(self.alpha, nn.Parameter) else self.alpha
        p = self.params()
        spk, mem, _ = F.synaptic(
            x, alpha, p.beta, p.threshold, p.reset, p.reset_delay, p.surrogate, p.detach_reset, self.backend
        )
        return spk, mem
