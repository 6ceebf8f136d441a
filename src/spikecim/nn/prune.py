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
- ``exclude``: layer names or ``fnmatch`` patterns left dense (e.g. ``["0"]``; a number
  names the layer of that number, as YAML reads ``[0]``).

- ``granularity``: ``weight`` (default) or ``channel``: the output channels of smallest L1
  norm go instead, layer after layer (Li et al., "Pruning Filters for Efficient ConvNets",
  ICLR 2017), with the inputs of the layer that reads them (:mod:`spikecim.nn.channels`);
  the run deploys the network without them (:func:`deploy`).

Each epoch's history row gets ``weight_sparsity``, the zero fraction of the pruned layers'
weights.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn.utils import parametrize

from spikecim import ops
from spikecim.errors import SpikecimError
from spikecim.methods import read_options, register_method
from spikecim.nn.channels import Link, channel_links, compact
from spikecim.schema import Schema

__all__ = [
    "PruneMask",
    "PruneOptions",
    "channel_masks",
    "check_schedule",
    "deploy",
    "gradual_sparsity",
    "magnitude_masks",
    "prune",
    "prune_at",
]


class PruneOptions(Schema):
    """Options of the ``prune`` method (see the module docstring)."""

    sparsity: float = Field(ge=0.0, lt=1.0, description="fraction of the weights set to zero at the end")
    start_epoch: int = Field(0, ge=0, description="epoch boundary where pruning starts (0: before training)")
    end_epoch: int | None = Field(
        None, ge=0, description="epoch boundary where the sparsity is reached; default 3/4 of train.epochs"
    )
    scope: Literal["layer", "global"] = Field("layer", description="the sparsity of each layer or of all")
    exclude: list[str] = Field(default_factory=list, description="layer names or fnmatch patterns left dense")

    granularity: Literal["weight", "channel"] = Field(
        "weight", description="weight: single weights; channel: whole output channels, removed for deployment"
    )

    @field_validator("exclude", mode="before")
    @classmethod
    def _names(cls, value):
        """A Sequential's layers are named by number: ``exclude: [0]`` names layer '0'."""
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value


class PruneMask(nn.Module):
    """The parametrisation ``w ↦ w · mask`` of one layer's weight; the mask is a buffer.
    ``outputs``: whether :func:`prune_at` prunes the layer's output channels (granularity
    ``channel``; the model's last layer and the excluded ones keep theirs)."""

    def __init__(self, shape: torch.Size, options: PruneOptions, device=None, outputs: bool = True):
        super().__init__()
        self.options = options  # the method's, read by prune_at
        self.outputs = outputs
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def deploy(model: nn.Module) -> nn.Module:
    """The trained network as it is deployed: with granularity ``channel``, a copy without
    the pruned channels (:func:`spikecim.nn.channels.compact`; it computes what ``model``
    computes); otherwise ``model`` itself."""
    masked = _named_masks(model)
    if not masked or masked[0][2].options.granularity != "channel":
        return model
    modules = _modules(model)
    for name, _, _ in masked:
        chain = modules[name].parametrizations["weight"]
        if len(chain) != 1:
            other = type(chain[1] if isinstance(chain[0], PruneMask) else chain[0]).__name__
            raise SpikecimError(
                f"methods.prune.granularity: 'channel' removes channels from plain weights; '{name}' "
                f"is also parametrised by {other} (weight-qat, mint): use granularity 'weight' with them"
            )
    kept = {name: p.mask.flatten(1).any(1) for name, _, p in masked if p.outputs}
    return compact(model, kept, "methods.prune.granularity")


@register_method("prune", changes={"weight-sparsity"}, deploy=deploy)
def prune(model: nn.Module, **options) -> nn.Module:
    """Put a :class:`PruneMask` on every synaptic layer's weight (granularity ``channel``: on
    those whose channels can be pruned and their readers), in place; returns the model."""
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
    if opts.granularity == "channel":
        return _mask_channels(model, opts, {n for n, _ in kept})
    if not kept:
        raise SpikecimError("methods.prune: no synaptic layer (linear or convolution) is left to prune")
    for _, m in kept:
        weight = m.weight
        parametrize.register_parametrization(m, "weight", PruneMask(weight.shape, opts, weight.device))
    return model


def _mask_channels(model: nn.Module, opts: PruneOptions, pruned: set[str]) -> nn.Module:
    """Granularity ``channel``: a mask on every layer of a link and on its reader
    (:func:`spikecim.nn.channels.channel_links`), the outputs pruned of the links in ``pruned``."""
    if opts.scope == "global":
        raise SpikecimError(
            "methods.prune.scope: granularity 'channel' prunes the channels of each layer (scope: layer); "
            "'global' ranks single weights"
        )
    links = channel_links(model, "methods.prune.granularity")
    outputs = {link.name for link in links if link.name in pruned}
    if not outputs:
        raise SpikecimError(
            "methods.prune: no layer's output channels are left to prune (exclude keeps "
            + ", ".join(link.name for link in links)
            + ")"
        )
    masked = {n for link in links for n in (link.name, link.reader)}
    for name, m in model.named_modules():
        if name not in masked:
            continue
        if parametrize.is_parametrized(m, "weight"):
            raise SpikecimError(
                f"methods.prune.granularity: 'channel' removes channels from plain weights; '{name}' is "
                "parametrised by an earlier method (weight-qat, mint): use granularity 'weight' with them"
            )
        mask = PruneMask(m.weight.shape, opts, m.weight.device, outputs=name in outputs)
        parametrize.register_parametrization(m, "weight", mask)
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


def channel_masks(
    links: list[Link], layers: list[tuple[str, torch.Tensor, PruneMask]], sparsity: float
) -> list[torch.Tensor]:
    """New masks of ``layers`` ((name, trained weight, mask) in module order: a link's layer
    before its reader; granularity ``channel``), layer after layer: a reader's inputs that
    read a pruned channel are masked; then, where the layer's ``outputs`` are pruned,
    ``min(round(sparsity · C), C − 1)`` of its C output channels go, those with the smallest
    L1 norm of the weights left on its kept inputs (Li et al., "Pruning Filters for Efficient
    ConvNets", ICLR 2017, filters ranked by the sum of their absolute kernel weights,
    greedily: the feature maps removed before do not count), the ones already pruned before
    any other."""
    source = {link.reader: link for link in links}
    kept: dict[str, torch.Tensor] = {}
    new = []
    for name, w, p in layers:
        shape = (1,) * (w.dim() - 2)
        link = source.get(name)
        if link is None:
            cols = torch.ones(w.shape[1], dtype=torch.bool, device=w.device)
        else:
            cols = kept[link.name].repeat_interleave(link.repeat)
        cols = cols.view(1, -1, *shape)
        rows = p.mask.flatten(1).any(1)
        if p.outputs:
            norm = (w.detach() * p.mask * cols).abs().flatten(1).sum(1)
            order = torch.argsort(torch.where(rows, norm, -1.0), stable=True)
            rows = torch.ones_like(rows)
            rows[order[: min(round(sparsity * rows.numel()), rows.numel() - 1)]] = False
        kept[name] = rows
        new.append((rows.view(-1, 1, *shape) & cols).expand_as(w))
    return new


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def _named_masks(model: nn.Module) -> list[tuple[str, torch.Tensor, PruneMask]]:
    """(name, the trained weight, its mask) of every masked layer, in module order."""
    out = []
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            chain = m.parametrizations["weight"]
            out.extend((name, chain.original, p) for p in chain if isinstance(p, PruneMask))
    return out


def check_schedule(model: nn.Module, epochs: int) -> int | None:
    """The boundary b1 where the masks of ``model`` reach their sparsity in training for
    ``epochs`` epochs (None: no mask); a schedule starting or ending after the last epoch is
    refused in one line."""
    named = _named_masks(model)
    return _schedule_end(named[0][2].options, epochs) if named else None


def _schedule_end(schedule: PruneOptions, epochs: int) -> int:
    end = schedule.end_epoch if schedule.end_epoch is not None else max(schedule.start_epoch, 3 * epochs // 4)
    for field, value in (("start_epoch", schedule.start_epoch), ("end_epoch", end)):
        if value > epochs:
            raise SpikecimError(
                f"methods.prune.{field}: must be at most train.epochs ({epochs}), got {value}"
            )
    return end


def prune_at(model: nn.Module, boundary: int, epochs: int) -> float | None:
    """Set the masks of ``model`` to the sparsity s(``boundary``) of training for ``epochs``
    epochs; returns the fraction of the masked layers' weights that are pruned, or None when
    ``model`` has no mask (the method was not applied)."""
    named = _named_masks(model)
    if not named:
        return None
    schedule = named[0][2].options
    target = gradual_sparsity(
        boundary, schedule.sparsity, schedule.start_epoch, _schedule_end(schedule, epochs)
    )
    with torch.no_grad():
        if schedule.granularity == "channel":
            groups = [named]
            new = [channel_masks(channel_links(model, "methods.prune.granularity"), named, target)]
        else:
            groups = [[entry] for entry in named] if schedule.scope == "layer" else [named]
            new = [magnitude_masks([w for _, w, _ in g], [p.mask for _, _, p in g], target) for g in groups]
        for group, masks in zip(groups, new, strict=True):
            for (_, _, p), mask in zip(group, masks, strict=True):
                p.mask.copy_(mask)
    masks = [p.mask for _, _, p in named]
    return sum(int((~m).sum()) for m in masks) / sum(m.numel() for m in masks)
