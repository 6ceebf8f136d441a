"""Surrogate gradients for the spike function (docs/references.md#surrogate-gradients).

The forward pass is always the strict step H(u) = 1 if u > 0 else 0; only the backward
pass differs. A surrogate is a small frozen object holding its name and one shape
parameter; ``grad(u)`` is its derivative dS/du as a pure tensor function, used by the
autograd function here and by the fused kernels (which key their compiled formula on
``name``).

    atan(alpha=2):          (alpha/2) / (1 + (pi/2 * alpha * u)^2)
    fast_sigmoid(slope=25): 1 / (slope*|u| + 1)^2
    sigmoid(slope=25):      k e^(-k u) / (1 + e^(-k u))^2,  k = slope
    triangular(width=1):    max(0, 1 - |u|/width) / width
    straight_through():     1
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spikecim.autograd import Function
from spikecim.errors import SpikecimError

__all__ = [
    "SURROGATES",
    "Surrogate",
    "atan",
    "fast_sigmoid",
    "get_surrogate",
    "sigmoid",
    "straight_through",
    "triangular",
]


def _atan_grad(u: torch.Tensor, alpha: float) -> torch.Tensor:
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2)


def _fast_sigmoid_grad(u: torch.Tensor, slope: float) -> torch.Tensor:
    return 1.0 / (slope * u.abs() + 1.0) ** 2


def _sigmoid_grad(u: torch.Tensor, slope: float) -> torch.Tensor:
    s = torch.sigmoid(slope * u)
    return slope * s * (1 - s)


def _triangular_grad(u: torch.Tensor, width: float) -> torch.Tensor:
    return torch.clamp(1 - u.abs() / width, min=0) / width


def _straight_through_grad(u: torch.Tensor, _: float) -> torch.Tensor:
    return torch.ones_like(u)


_GRADS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "atan": _atan_grad,
    "fast_sigmoid": _fast_sigmoid_grad,
    "sigmoid": _sigmoid_grad,
    "triangular": _triangular_grad,
    "straight_through": _straight_through_grad,
}


class _Heaviside(Function):
    """Strict step forward, surrogate derivative backward; its forward and context set up
    apart (and a vmap rule generated), so ``torch.func``'s transforms take it too."""

    generate_vmap_rule = True

    @staticmethod
    def forward(u: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        return (u > 0).to(u.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        u, surrogate = inputs
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(u), None


@dataclass(frozen=True)
class Surrogate:
    """A spike function with a surrogate derivative: ``name`` and one shape parameter."""

    name: str
    param: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in _GRADS:
            raise SpikecimError(f"surrogate: unknown '{self.name}', allowed: {', '.join(_GRADS)}")
        if self.name != "straight_through" and not self.param > 0:
            raise SpikecimError(f"surrogate.{self.name}: parameter must be > 0, got {self.param}")

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return _Heaviside.apply(u, self)

    def grad(self, u: torch.Tensor) -> torch.Tensor:
        """dS/du of the surrogate at ``u`` (a pure function)."""
        return _GRADS[self.name](u, self.param)


def atan(alpha: float = 2.0) -> Surrogate:
    return Surrogate("atan", float(alpha))


def fast_sigmoid(slope: float = 25.0) -> Surrogate:
    return Surrogate("fast_sigmoid", float(slope))


def sigmoid(slope: float = 25.0) -> Surrogate:
    return Surrogate("sigmoid", float(slope))


def triangular(width: float = 1.0) -> Surrogate:
    return Surrogate("triangular", float(width))


def straight_through() -> Surrogate:
    return Surrogate("straight_through", 0.0)


SURROGATES: dict[str, Callable[..., Surrogate]] = {
    "atan": atan,
    "fast_sigmoid": fast_sigmoid,
    "sigmoid": sigmoid,
    "triangular": triangular,
    "straight_through": straight_through,
}

_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([0-9.eE+-]*)\s*\))?\s*$")


def get_surrogate(spec: str | Surrogate) -> Surrogate:
    """Resolve ``"atan"``, ``"fast_sigmoid(10)"`` or a :class:`Surrogate` to a surrogate."""
    if isinstance(spec, Surrogate):
        return spec
    m = _SPEC.match(str(spec))
    if not m or m.group(1) not in SURROGATES:
        raise SpikecimError(
            f"surrogate: unknown '{spec}', allowed: {', '.join(SURROGATES)} (optionally 'name(param)')"
        )
    factory = SURROGATES[m.group(1)]
    if m.group(2):
        try:
            return factory(float(m.group(2)))
        except (TypeError, ValueError):
            raise SpikecimError(f"surrogate: bad parameter in '{spec}'") from None
    return factory()
