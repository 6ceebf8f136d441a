"""torch's own twins of the layers that run spikecim's CPU kernels (:class:`~spikecim.nn.AvgPool2d`,
:class:`~spikecim.nn.MaxPool2d`, :class:`~spikecim.nn.BatchNorm2d`, :class:`~spikecim.nn.Conv2d`,
:class:`~spikecim.nn.Linear`): what a model built with another library runs. The benchmarks
build the peers' copies of a spikecim model with :func:`torch_layers`, so that no peer is
timed on spikecim's kernels."""

from __future__ import annotations

from torch import nn

from spikecim.nn.conv import Conv2d
from spikecim.nn.linear import Linear
from spikecim.nn.norm import BatchNorm2d
from spikecim.nn.pool import AvgPool2d, MaxPool2d

__all__ = ["torch_layers"]

TWINS = (
    (AvgPool2d, nn.AvgPool2d),
    (MaxPool2d, nn.MaxPool2d),
    (BatchNorm2d, nn.BatchNorm2d),
    (Conv2d, nn.Conv2d),
    (Linear, nn.Linear),
)


def torch_layers(model: nn.Module) -> nn.Module:
    """``model`` with each of spikecim's kernel layers replaced by its torch twin (same
    settings, parameters and buffers, shared), in place; returns ``model``."""
    for name, child in model.named_children():
        twin = next((theirs for ours, theirs in TWINS if type(child) is ours), None)
        if twin is not None:
            setattr(model, name, _as(twin, child))
        else:
            torch_layers(child)
    return model


def _as(cls: type[nn.Module], layer: nn.Module) -> nn.Module:
    """A ``cls`` with the state of ``layer`` (a subclass of it that adds none)."""
    twin = cls.__new__(cls)
    twin.__dict__.update(layer.__dict__)
    return twin
