"""Neurons, surrogate gradients and time-major containers.

``spikecim.nn.functional`` holds the equations as pure functions; the modules here hold
parameters and call them. Tensors are time-major ``[T, B, ...]``.
"""

from spikecim.nn import functional, surrogate
from spikecim.nn.container import Sequential, apply_folded, fold, unfold
from spikecim.nn.neurons import IF, LIF, SynapticLIF, TemporalModule

__all__ = [
    "IF",
    "LIF",
    "Sequential",
    "SynapticLIF",
    "TemporalModule",
    "apply_folded",
    "fold",
    "functional",
    "surrogate",
    "unfold",
]
