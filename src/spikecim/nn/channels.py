"""The channels of a network: which layer's output channels can be removed, who reads them,
and the network without the channels a mask removes.

A **link** is a synaptic layer (:class:`~torch.nn.Conv2d` of one group,
:class:`~torch.nn.Linear`) whose output channels reach exactly one other synaptic layer, its
**reader**, through the BatchNorm of those outputs and modules that act on each channel alone
(neurons, ReLU, pooling, dropout). ``Flatten`` turns a convolution's C channels of H·W
positions into C·H·W features, channel-major, so input f of a linear reader belongs to
channel f // (H·W). Removing a link's channel removes its row of the layer's weight and
bias, its BatchNorm entries and the reader's inputs (columns) that read it; where the
removed channels reach nothing (their columns in the reader are zero), the smaller network
computes exactly what the full one computes.

The links of a :class:`~spikecim.nn.Sequential` (or of the one Sequential a wrapper holds,
as ``dt-snn``'s does) are its consecutive synaptic layers, the last one excluded (its
outputs are the model's). A residual block declares its one link (``channel_link``: the
first convolution, read by the second; Li et al. 2017 prune ResNets so) and ties the
channels around it: those of the layer before the block feed its shortcut and its sum, and
its outputs are a sum. So ``mlp``, ``convnet`` and ``vgg*`` prune every layer but the last,
``resnet19`` the first convolution of each block and its hidden linear layer; a transformer
is refused.
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

__all__ = ["Link", "channel_links", "compact"]

# modules that act on each channel alone (they must hold no per-channel state)
_PER_CHANNEL = (Neuron, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class Link:
    """A layer whose output channels can be removed (names as in ``named_modules``)."""

    name: str  # the layer
    norms: tuple[str, ...]  # the BatchNorm layers of its outputs
    reader: str  # the one synaptic layer that reads them
    repeat: int  # the reader's inputs per channel: H·W after a Flatten, else 1


def _refuse(field: str, what: str) -> SpikecimError:
    return SpikecimError(
        f"{field}: prunes the channels of chains of convolutions and linear layers and of residual "
        f"blocks (the models mlp, convnet, vgg5, vgg9, vgg11, resnet19); {what}"
    )


def _chain(model: nn.Module, field: str) -> tuple[str, Sequential]:
    """The Sequential of ``model`` and its name prefix: ``model`` itself, or the one child of a
    wrapper that holds nothing else (the dynamic timesteps of ``dt-snn``)."""
    if isinstance(model, Sequential):
        return "", model
    children = list(model.named_children())
    own = [*model.parameters(recurse=False), *model.buffers(recurse=False)]
    if len(children) == 1 and isinstance(children[0][1], Sequential) and not own:
        return children[0][0] + ".", children[0][1]
    raise _refuse(field, f"the model is a {type(model).__name__}")


def _outputs(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


def _inputs(m: nn.Module) -> int:
    return m.in_channels if isinstance(m, nn.Conv2d) else m.in_features


def _check_per_channel(name: str, m: nn.Module, field: str) -> None:
    if not isinstance(m, _PER_CHANNEL):
        raise _refuse(field, f"'{name}' is a {type(m).__name__}")
    if any(t.numel() > 1 for t in (*m.parameters(), *m.buffers())):
        raise _refuse(field, f"'{name}' ({type(m).__name__}) holds per-channel state")


def _others(module: nn.Module, prefix: str):
    """(name, module) of what ``module`` holds besides synaptic layers and BatchNorms
    (into containers such as a projection shortcut's ``nn.Sequential``)."""
    for n, child in module.named_children():
        if isinstance(child, nn.Conv2d | nn.Linear | nn.BatchNorm1d | nn.BatchNorm2d):
            continue
        if type(child) is nn.Sequential:
            yield from _others(child, f"{prefix}.{n}")
        else:
            yield f"{prefix}.{n}", child


def _block_link(name: str, block: nn.Module, field: str) -> Link:
    """The link a residual block declares (``channel_link = (layer, norms, reader)``), its
    modules between them checked."""
    layer, norms, reader = block.channel_link
    for sub, m in _others(block, name):
        _check_per_channel(sub, m, field)
    conv = block.get_submodule(layer)
    if isinstance(conv, nn.Conv2d) and conv.groups != 1:
        raise _refuse(field, f"'{name}.{layer}' is a grouped convolution")
    return Link(f"{name}.{layer}", tuple(f"{name}.{n}" for n in norms), f"{name}.{reader}", 1)


def channel_links(model: nn.Module, field: str = "channels") -> list[Link]:
    """The links of ``model`` (see the module docstring), in module order; a module they
    cannot pass is refused in one line starting with ``field``."""
    prefix, chain = _chain(model, field)
    links: list[Link] = []
    layer: str | None = None  # the synaptic layer whose channels flow now (None: tied or the input)
    norms: list[str] = []
    channels: int | None = None  # how many channels flow now (None: the input's)
    flat = False
    for name, child in ((prefix + n, c) for n, c in chain.named_children()):
        if isinstance(child, nn.Conv2d | nn.Linear):
            if isinstance(child, nn.Conv2d) and (child.groups != 1 or flat):
                raise _refuse(
                    field,
                    f"'{name}' is a {'grouped ' if child.groups != 1 else ''}convolution"
                    + (" after a Flatten" if flat else ""),
                )
            fan_in, repeat = _inputs(child), 1
            if channels is not None:
                if flat and fan_in % channels == 0:
                    repeat = fan_in // channels
                elif fan_in != channels:
                    raise _refuse(field, f"'{name}' reads {fan_in} inputs of {channels} channels")
            if layer is not None:
                links.append(Link(layer, tuple(norms), name, repeat))
            layer, norms, channels, flat = name, [], _outputs(child), isinstance(child, nn.Linear)
        elif isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
            if child.num_features != channels:
                raise _refuse(field, f"'{name}' normalises {child.num_features} channels of {channels}")
            norms.append(name)
        elif isinstance(child, nn.Flatten):
            if (child.start_dim, child.end_dim) != (1, -1):
                raise _refuse(field, f"'{name}' flattens dimensions {child.start_dim}..{child.end_dim}")
            flat = True
        elif hasattr(child, "channel_link"):
            links.append(_block_link(name, child, field))
            first = child.get_submodule(child.channel_link[0])
            if channels is not None and _inputs(first) != channels:
                raise _refuse(field, f"'{name}' reads {_inputs(first)} channels of {channels}")
            # the channels before the block feed its shortcut and its sum too; its outputs are a sum
            layer, norms, channels, flat = (
                None,
                [],
                _outputs(child.get_submodule(child.channel_link[2])),
                False,
            )
        else:
            _check_per_channel(name, child, field)
    if not links:
        raise _refuse(field, "no layer's output channels reach another layer alone")
    return links


def compact(model: nn.Module, kept: dict[str, torch.Tensor], field: str = "channels") -> nn.Module:
    """A copy of ``model`` without the output channels ``kept[name]`` is False for (a link's
    layer not in ``kept`` keeps them all), nor the inputs that read them. Every layer of a
    link is a plain layer in the copy: its parametrisations, if any, evaluated into its
    weight. ``model`` is left as it is."""
    links = channel_links(model, field)
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    rows: dict[str, torch.Tensor] = {}
    cols: dict[str, torch.Tensor] = {}
    for link in links:
        k = kept.get(link.name)
        if k is None:
            k = torch.ones(_outputs(modules[link.name]), dtype=torch.bool)
        rows[link.name] = k.to("cpu", torch.bool)
        cols[link.reader] = rows[link.name].repeat_interleave(link.repeat)
    with torch.no_grad():
        for link in links:
            for norm in link.norms:
                _slice_norm(modules[norm], rows[link.name])
        for name in dict.fromkeys([*rows, *cols]):
            m = modules[name]
            w = m.weight  # after the parametrisations, if any
            r = rows.get(name, torch.ones(w.shape[0], dtype=torch.bool)).to(w.device)
            c = cols.get(name, torch.ones(w.shape[1], dtype=torch.bool)).to(w.device)
            bias = None if m.bias is None else m.bias[r]
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent), attr, _rebuilt(m, w[r][:, c], bias))
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
