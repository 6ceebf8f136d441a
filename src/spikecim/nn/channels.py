"""The channels of a chain network: which layer's outputs each layer reads, and the network
without the channels a mask removes.

A chain is a :class:`~spikecim.nn.Sequential` (or a wrapper holding one, as ``dt-snn``'s)
whose children run one after the other:
synaptic layers (:class:`~torch.nn.Conv2d` of one group, :class:`~torch.nn.Linear`), the
BatchNorm of their outputs, and modules that act on each channel alone (neurons, ReLU,
pooling, dropout). ``Flatten`` turns a convolution's C channels of H·W positions into C·H·W
features, channel-major, so feature f of the next linear layer belongs to channel f // (H·W).
The built-in ``mlp``, ``convnet`` and ``vgg*`` are chains; a residual network (its sums tie
channels of several layers together) and the transformers are not.

:func:`channel_links` reads a chain's structure; :func:`compact` builds the same network
without the output channels a per-layer boolean removes: each such channel's row of its
layer's weight and bias, its BatchNorm entries, and the inputs (columns) of the next layer
that read it. Where the removed channels reach nothing (their columns in the next layer are
zero), the compact network computes exactly what the full one computes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from spikecim.errors import SpikecimError
from spikecim.nn.container import Sequential
from spikecim.nn.neurons import Neuron

__all__ = ["Link", "channel_links", "compact", "kept_inputs"]

# children that act on each channel alone and hold no per-channel state
_PER_CHANNEL = (Neuron, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class Link:
    """One synaptic layer of a chain."""

    name: str  # the layer's name in the model (``named_modules``)
    source: int | None  # the index (in the links) of the layer whose outputs it reads; None: the input
    repeat: int  # input features per source channel: H·W after a Flatten, else 1
    norms: tuple[str, ...]  # the BatchNorm layers of its outputs


def _refuse(field: str, what: str) -> SpikecimError:
    return SpikecimError(
        f"{field}: prunes channels of a chain of convolutions and linear layers "
        f"(the models mlp, convnet, vgg5, vgg9, vgg11); {what}"
    )


def _chain(model: nn.Module, field: str) -> tuple[str, Sequential]:
    """The chain of ``model`` and its name prefix: ``model`` itself, or the one child of a
    wrapper that holds nothing else (the dynamic timesteps of ``dt-snn``)."""
    if isinstance(model, Sequential):
        return "", model
    children = list(model.named_children())
    own = [*model.parameters(recurse=False), *model.buffers(recurse=False)]
    if len(children) == 1 and isinstance(children[0][1], Sequential) and not own:
        return children[0][0] + ".", children[0][1]
    raise _refuse(field, f"the model is a {type(model).__name__}, not a chain")


def channel_links(model: nn.Module, field: str = "channels") -> list[Link]:
    """The synaptic layers of the chain ``model`` (or of the one chain a wrapper holds), in
    order; anything else is refused in one line starting with ``field``."""
    prefix, chain = _chain(model, field)
    links: list[Link] = []
    norms: list[str] = []
    flat = False
    channels: int | None = None  # output channels of the last synaptic layer
    for name, child in ((prefix + n, c) for n, c in chain.named_children()):
        if isinstance(child, nn.Conv2d | nn.Linear):
            if isinstance(child, nn.Conv2d) and child.groups != 1:
                raise _refuse(field, f"'{name}' is a grouped convolution")
            if isinstance(child, nn.Conv2d) and flat:
                raise _refuse(field, f"'{name}' is a convolution after a Flatten")
            fan_in = child.in_channels if isinstance(child, nn.Conv2d) else child.in_features
            repeat = 1
            if channels is not None and flat:
                if fan_in % channels:
                    raise _refuse(field, f"'{name}' reads {fan_in} features of {channels} channels")
                repeat = fan_in // channels
            elif channels is not None and fan_in != channels:
                raise _refuse(field, f"'{name}' reads {fan_in} channels of {channels}")
            if links:
                links[-1] = Link(links[-1].name, links[-1].source, links[-1].repeat, tuple(norms))
            links.append(Link(name, len(links) - 1 if links else None, repeat, ()))
            norms = []
            channels = child.out_channels if isinstance(child, nn.Conv2d) else child.out_features
            flat = isinstance(child, nn.Linear)
        elif isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
            if channels is None or child.num_features != channels:
                raise _refuse(field, f"'{name}' normalises {child.num_features} channels of {channels}")
            norms.append(name)
        elif isinstance(child, nn.Flatten):
            if (child.start_dim, child.end_dim) != (1, -1):
                raise _refuse(field, f"'{name}' flattens dimensions {child.start_dim}..{child.end_dim}")
            flat = True
        elif isinstance(child, _PER_CHANNEL):
            tensors = [t for t in (*child.parameters(), *child.buffers()) if t.numel() > 1]
            if tensors:
                raise _refuse(field, f"'{name}' ({type(child).__name__}) holds per-channel state")
        else:
            raise _refuse(field, f"'{name}' is a {type(child).__name__}")
    if not links:
        raise _refuse(field, "the model has no synaptic layer")
    links[-1] = Link(links[-1].name, links[-1].source, links[-1].repeat, tuple(norms))
    return links


def kept_inputs(
    links: list[Link], kept: list[torch.Tensor], i: int, fan_in: int, device=None
) -> torch.Tensor:
    """The inputs of link ``i`` that read a kept channel (``kept[j]``: the kept output
    channels of link j, for j < i), as a boolean over its ``fan_in`` inputs on ``device``."""
    link = links[i]
    if link.source is None:
        return torch.ones(fan_in, dtype=torch.bool, device=device)
    return kept[link.source].repeat_interleave(link.repeat).to(device)


def compact(model: nn.Module, kept: dict[str, torch.Tensor], field: str = "channels") -> nn.Module:
    """A copy of the chain ``model`` without the output channels ``kept[name]`` is False for
    (a layer not in ``kept`` keeps them all), nor the inputs that read them. A weight may
    carry parametrisations: they are evaluated (``leave_parametrized``) into the copy's
    plain weight. ``model`` is left as it is."""
    links = channel_links(model, field)
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    keep = []
    for link in links:
        m = modules[link.name]
        n = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        k = kept.get(link.name)
        keep.append(torch.ones(n, dtype=torch.bool) if k is None else k.to("cpu", torch.bool))
    with torch.no_grad():
        for i, link in enumerate(links):
            m = modules[link.name]
            w = m.weight  # after the parametrisations, if any
            rows = keep[i].to(w.device)
            cols = kept_inputs(links, keep, i, w.shape[1], w.device)
            bias = None if m.bias is None else m.bias[rows]
            parent, _, attr = link.name.rpartition(".")
            setattr(out.get_submodule(parent), attr, _rebuilt(m, w[rows][:, cols], bias))
            for norm in link.norms:
                _slice_norm(modules[norm], rows)
    return out


def _rebuilt(m: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A plain layer of ``m``'s class (before parametrisations) and settings holding
    ``weight`` and ``bias``. (A new module rather than ``m`` without its parametrisations:
    ``remove_parametrizations`` on a deep copy would also strip the original, whose
    parametrised class the copy shares.)"""
    cls = parametrize.type_before_parametrizations(m)
    kw = {"bias": bias is not None, "device": weight.device, "dtype": weight.dtype}
    if isinstance(m, nn.Conv2d):
        new = cls(
            weight.shape[1],
            weight.shape[0],
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            padding_mode=m.padding_mode,
            **kw,
        )
    else:
        new = cls(weight.shape[1], weight.shape[0], **kw)
    new.weight.copy_(weight)
    if bias is not None:
        new.bias.copy_(bias)
    new.train(m.training)
    return new


def _slice_norm(bn: nn.Module, rows: torch.Tensor) -> None:
    rows = rows.to(bn.weight.device if bn.weight is not None else rows.device)
    for name in ("weight", "bias"):
        p = getattr(bn, name)
        if p is not None:
            setattr(bn, name, nn.Parameter(p[rows].clone(), requires_grad=p.requires_grad))
    for name in ("running_mean", "running_var"):
        b = getattr(bn, name)
        if b is not None:
            setattr(bn, name, b[rows].clone())
    bn.num_features = int(rows.sum())
