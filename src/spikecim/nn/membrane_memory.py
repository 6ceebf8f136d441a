"""Membrane memory of a spiking network during one training step: measured, and by formula.

Two figures, as EfficientLIF-Net reports them (docs/references.md#efficientlif-net):

**Forward**: the membrane buffers a forward pass holds, one per neuron layer, or one per
shared stage (:class:`~spikecim.nn.SharedStage`), of C/G channels with G channel groups
(:class:`~spikecim.nn.SharedLIF`)::

    forward = B · Σ_membranes N_m · bytes,   N_m = C·H·W / G (C·H·W of the stage's layers)

Measured by :func:`measure` as the bytes of every state a neuron starts a sequence from
(``initial_state``), counted as the forward pass allocates them.

**Backward**: the membrane tensors autograd keeps for the backward pass inside the neuron
calls (what BPTT stores). spikecim differentiates the LIF as it runs it, so every neuron
update keeps its membrane (the surrogate's input, or the fused kernel's membrane trace)::

    backward = T · B · Σ_layers C·H·W · bytes      (sharing or not)

Measured by :func:`measure` with ``torch.autograd.graph.saved_tensors_hooks`` around the
neuron calls (distinct storages, tensors of more than one element: scalar parameters are
not membranes). Sharing leaves this figure unchanged in spikecim: the paper's backward
saving (up to 21.9×) comes from storing less for backward, which spikecim does not do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spikecim.nn.neurons import Neuron
from spikecim.nn.shared import MembraneCell

__all__ = ["MembraneMemory", "measure"]


@dataclass(frozen=True)
class MembraneMemory:
    """Bytes of membrane state in one training step (see the module docstring)."""

    forward_bytes: int
    backward_bytes: int


def measure(model: nn.Module, x: torch.Tensor) -> MembraneMemory:
    """Run one forward and backward pass of ``model`` on ``x[T, B, ...]`` (training mode, the
    loss is the sum of the outputs) and count its membrane bytes. Gradients are left in the
    parameters; the model is returned to its mode."""
    neurons = [m for m in model.modules() if isinstance(m, Neuron)]
    callers = [m for m in model.modules() if isinstance(m, (Neuron, MembraneCell))]
    started: dict[int, torch.Tensor] = {}  # held until the end, so no address is reused
    saved: dict[int, int] = {}
    depth = [0]

    def count_state(state) -> None:
        for t in state:
            started[t.untyped_storage().data_ptr()] = t

    def pack(t: torch.Tensor) -> torch.Tensor:
        if depth[0] and t.numel() > 1:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    def enter(mod, args):
        depth[0] += 1

    def leave(mod, args, out):
        depth[0] -= 1

    for m in neurons:
        m.initial_state = _counting(m, count_state)  # counted for this pass only, removed below
    hooks = [m.register_forward_pre_hook(enter) for m in callers]
    hooks += [m.register_forward_hook(leave) for m in callers]
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        out.sum().backward()
    finally:
        for h in hooks:
            h.remove()
        for m in neurons:
            del m.initial_state
        model.train(was_training)
    forward = sum(t.untyped_storage().nbytes() for t in started.values())
    return MembraneMemory(forward, sum(saved.values()))


def _counting(neuron: Neuron, count):
    """``neuron.initial_state`` that also hands each state it builds to ``count``."""
    build = type(neuron).initial_state

    def initial_state(x0: torch.Tensor):
        state = build(neuron, x0)
        count(state)
        return state

    return initial_state
