"""Spike-rate regularisation: a penalty on the spikes of every spiking neuron layer.

``train.spike_reg: λ`` adds ``λ·r`` to the training loss, where ``r`` is the mean number of
spikes per neuron and per step over every spiking neuron layer of the forward pass (total
spikes / total neuron outputs, in [0, 1]). It is snnTorch's L1 rate penalty
(``snntorch.functional.reg.l1_rate_sparsity``: ``Lambda·Σ spikes``) over all layers with
``Lambda = λ / (T·B·N)``, N the neurons of all layers, so one λ means the same for any
batch, length or width. The gradient reaches each layer's membrane through its surrogate,
so training trades accuracy for fewer spikes. What that saves is measured from the traced
activity (:mod:`spikecim.trace`): much on hardware that skips zero inputs, little on a
crossbar whose converters run for every column (docs/pipeline.md gives figures).

Only spiking neurons count (LIF, IF, synaptic, shared membranes): an ANN twin's ReLUs do not,
so an ANN variant trains exactly as with ``λ = 0``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from spikecim.nn import is_spiking_neuron

__all__ = ["SpikeRate", "spike_rate", "spiking_layers"]


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The spiking neuron modules of ``model`` by name (a shared stage's neuron too, whose
    layers' cells emit its spikes: hooks on it never fire, so nothing is counted twice)."""
    return {name: m for name, m in model.named_modules() if is_spiking_neuron(m)}


class SpikeRate:
    """The spikes emitted since the last :meth:`take`, kept with their graph."""

    def __init__(self) -> None:
        self._spikes: list[torch.Tensor] = []
        self._outputs = 0

    def add(self, spikes: torch.Tensor) -> None:
        self._spikes.append(spikes.sum())
        self._outputs += spikes.numel()

    @property
    def empty(self) -> bool:
        return not self._spikes

    def take(self) -> torch.Tensor:
        """The mean spikes per neuron output since the last call (0 when none fired a
        forward), differentiable through each layer's surrogate; starts a new count."""
        if not self._spikes:
            return torch.zeros(())
        rate = torch.stack(self._spikes).sum() / self._outputs
        self._spikes, self._outputs = [], 0
        return rate


@contextmanager
def spike_rate(model: nn.Module) -> Iterator[SpikeRate]:
    """Forward hooks on every spiking neuron layer of ``model`` while the block runs; they
    keep the spikes of forwards in training mode."""
    meter = SpikeRate()

    def hook(module, args, out):
        if module.training:  # an evaluation inside the block (model.eval()) is not counted
            meter.add(out[0] if isinstance(out, tuple) else out)  # a one-step cell returns (spikes, state)

    handles = [m.register_forward_hook(hook) for m in spiking_layers(model).values()]
    try:
        yield meter
    finally:
        for h in handles:
            h.remove()
