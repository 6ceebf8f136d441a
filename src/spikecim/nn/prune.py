"""The method transform ``prune``: unstructured magnitude pruning, gradual during training.

In a run config::

    variants:
      - name: snn-pruned
        methods: [{name: prune, sparsity: 0.9}]

puts a mask on the weight of every synaptic layer (the operators :mod:`spikecim.ops` maps
to crossbars: linear and convolutions), as a ``torch.nn.utils.parametrize``
parametrisation (:class:`PruneMask`): the layer's ``weight`` is its trained weight times
the mask, exactly zero where pruned, for training, tracing, ``to_analog`` and NIR export
alike, and the mask is a buffer of the checkpoint. Training (:func:`spikecim.train.fit`)
sets the masks at the epoch boundaries b = 0 (before the first epoch), 1, ..., E (after
the last) to the sparsity of gradual pruning (Zhu and Gupta, "To prune, or not to prune",
2017, eq. 1, with s_i = 0 and one step per epoch):

    s(b) = 0                                    b < b0
    s(b) = s_f · (1 − (1 − (b − b0)/(b1 − b0))³)   b0 ≤ b ≤ b1
    s(b) = s_f                                  b > b1     (b1 = b0: one shot at b0)

pruning the smallest |w| of each layer (``scope: layer``) or of all the pruned layers
together (``scope: global``). A weight once pruned stays pruned (its gradient is zero through
the mask, and the masked weights sort first). Options:

- ``sparsity`` (s_f, from 0 to below 1): the fraction of the weights set to zero at the end;
- ``start_epoch`` (b0, default 0) and ``end_epoch`` (b1, default ⌊3E/4⌋, at least b0):
  the boundaries where pruning starts and where it reaches s_f; b1 at most E;
- ``scope``: ``layer`` (default, s_f of every layer) or ``global`` (s_f of all together);
- ``exclude``: layer names or ``fnmatch`` patterns left dense (e.g. ``[features.0]``).

Each epoch's history row gets ``weight_sparsity``, the zero fraction of the pruned layers'
weights.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from spikecim import ops
from spikecim.errors import SpikecimError
from spikecim.methods import read_options, register_method
from spikecim.schema import Schema

__all__ = ["PruneMask", "PruneOptions", "gradual_sparsity", "magnitude_masks", "prune", "prune_at"]


class PruneOptions(Schema):
    """Options of the ``prune`` method (see the module docstring)."""

    sparsity: float = Field(ge=0.0, lt=1.0, description="fraction of the weights set to zero at the end")
    start_epoch: int = Field(0, ge=0, description="epoch boundary where pruning starts (0: before training)")
    end_epoch: int | None = Field(
        None, ge=0, description="epoch boundary where the sparsity is reached; default 3/4 of train.epochs"
    )
    scope: Literal["layer", "global"] = Field("layer", description="the sparsity of each layer or of all")
    exclude: list[str] = Field(default_factory=list, description="layer names or fnmatch patterns left dense")


class PruneMask(nn.Module):
    """The parametrisation ``w ↦ w · mask`` of one layer's weight; the mask is a buffer."""

    def __init__(self, shape: torch.Size, options: PruneOptions, device=None):
        super().__init__()
        self.options = options  # the method's, read by prune_at
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


@register_method("prune", changes={"weight-sparsity"})
def prune(model: nn.Module, **options) -> nn.Module:
    """Put a :class:`PruneMask` on every synaptic layer's weight (in place; returns the model)."""
    opts = read_options(PruneOptions, "prune", options)
    if opts.end_epoch is not None and opts.end_epoch < opts.start_epoch:
        raise SpikecimError(
            f"methods.prune.end_epoch: must be at least start_epoch ({opts.start_epoch}), got {opts.end_epoch}"
        )
    layers = [(name, m) for name, m, _ in ops.programmed_layers(model)]
    for pattern in opts.exclude:
        if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in layers):
            names = ", ".join(name for name, _ in layers) or "none"
            raise SpikecimError(
                f"methods.prune.exclude: '{pattern}' names no synaptic layer (they are: {names})"
            )
    kept = [(n, m) for n, m in layers if not any(fnmatch.fnmatchcase(n, p) for p in opts.exclude)]
    if not kept:
        raise SpikecimError("methods.prune: no synaptic layer (linear or convolution) is left to prune")
    for _, m in kept:
        weight = m.weight
        parametrize.register_parametrization(m, "weight", PruneMask(weight.shape, opts, weight.device))
    return model


def gradual_sparsity(boundary: int, final: float, start: int, end: int) -> float:
    """s(b) of the module docstring (Zhu and Gupta 2017, eq. 1, s_i = 0, one step per epoch)."""
    if boundary < start:
        return 0.0
    if boundary >= end:
        return final
    return final * (1.0 - (1.0 - (boundary - start) / (end - start)) ** 3)


def magnitude_masks(
    weights: list[torch.Tensor], masks: list[torch.Tensor], sparsity: float
) -> list[torch.Tensor]:
    """New masks pruning ``round(sparsity · n)`` of the ``n`` weights together, the smallest
    |w| first, the ones already masked before any other (so a pruned weight stays pruned)."""
    magnitude = torch.cat(
        [torch.where(m, w.detach().abs(), -1.0).flatten() for w, m in zip(weights, masks, strict=True)]
    )
    k = round(sparsity * magnitude.numel())
    keep = torch.ones_like(magnitude, dtype=torch.bool)
    keep[torch.argsort(magnitude, stable=True)[:k]] = False
    sizes = [w.numel() for w in weights]
    return [part.view_as(w) for part, w in zip(keep.split(sizes), weights, strict=True)]


def _pruned(model: nn.Module) -> list[tuple[torch.Tensor, PruneMask]]:
    """(the trained weight, its mask) of every masked layer, in module order."""
    out = []
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            chain = m.parametrizations["weight"]
            out.extend((chain.original, p) for p in chain if isinstance(p, PruneMask))
    return out


def prune_at(model: nn.Module, boundary: int, epochs: int) -> float | None:
    """Set the masks of ``model`` to the sparsity s(``boundary``) of training for ``epochs``
    epochs; returns the fraction of the masked layers' weights that are pruned, or None when
    ``model`` has no mask (the method was not applied)."""
    pruned = _pruned(model)
    if not pruned:
        return None
    schedule = pruned[0][1].options
    end = schedule.end_epoch if schedule.end_epoch is not None else max(schedule.start_epoch, 3 * epochs // 4)
    for field, value in (("start_epoch", schedule.start_epoch), ("end_epoch", end)):
        if value > epochs:
            raise SpikecimError(
                f"methods.prune.{field}: must be at most train.epochs ({epochs}), got {value}"
            )
    target = gradual_sparsity(boundary, schedule.sparsity, schedule.start_epoch, end)
    groups = [pruned] if schedule.scope == "global" else [[pair] for pair in pruned]
    with torch.no_grad():
        for group in groups:
            new = magnitude_masks([w for w, _ in group], [p.mask for _, p in group], target)
            for (_, p), mask in zip(group, new, strict=True):
                p.mask.copy_(mask)
    zeros = sum(int((~p.mask).sum()) for _, p in pruned)
    return zeros / sum(p.mask.numel() for _, p in pruned)
