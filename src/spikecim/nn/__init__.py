"""Neurons, surrogate gradients and time-major containers.

``spikecim.nn.functional`` holds the equations as pure functions
``step(x, state, params) -> (out, state)``; the modules here hold parameters, build the
default state and call them. Tensors are time-major ``[T, B, ...]``. Neurons are registered
by name: ``create_neuron("lif", beta=0.9)``, ``list_neurons()``.
"""

from spikecim.nn import functional, surrogate
from spikecim.nn.container import Sequential, apply_folded, fold, unfold
from spikecim.nn.conv import Conv2d
from spikecim.nn.dynamic import DynamicTimesteps
from spikecim.nn.linear import Linear
from spikecim.nn.neurons import ALIF, IF, LIF, Neuron, SynapticLIF, TemporalModule, is_spiking_neuron
from spikecim.nn.norm import BatchNorm2d
from spikecim.nn.pool import AvgPool2d, MaxPool2d
from spikecim.nn.registry import create_neuron, get_neuron, list_neurons, neuron_arguments, register_neuron
from spikecim.nn.shared import MembraneCell, SharedLIF, SharedStage
from spikecim.nn.tt import TTConv2d

__all__ = [
    "ALIF",
    "IF",
    "LIF",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "DynamicTimesteps",
    "Linear",
    "MaxPool2d",
    "MembraneCell",
    "Neuron",
    "Sequential",
    "SharedLIF",
    "SharedStage",
    "SynapticLIF",
    "TTConv2d",
    "TemporalModule",
    "apply_folded",
    "create_neuron",
    "fold",
    "functional",
    "get_neuron",
    "is_spiking_neuron",
    "list_neurons",
    "neuron_arguments",
    "register_neuron",
    "surrogate",
    "unfold",
]
