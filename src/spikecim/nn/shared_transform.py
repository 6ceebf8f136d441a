"""The ``shared-lif`` method transform (EfficientLIF-Net; docs/references.md#efficientlif-net).

In a variant's methods::

    methods: [{name: shared-lif, layers: true, channel_groups: 2}]

- ``layers`` (default true): the neuron layers of each stage share one membrane
  (:class:`~spikecim.nn.SharedStage`). A stage is a run of neuron layers in one
  :class:`~spikecim.nn.Sequential` whose outputs have the same shape, told from the structure:
  between two of its neurons only layers that keep the shape (a convolution with as many
  output as input channels, stride 1 and "same" padding; a linear layer with as many outputs
  as inputs; BatchNorm, Dropout, Identity). A model with no such pair is refused in one line.
- ``channel_groups`` (default 1): every LIF/IF neuron becomes a
  :class:`~spikecim.nn.SharedLIF` whose channels form G chunks sharing one membrane; G must
  divide the channels (or features) of every neuron layer.

With ``layers: false, channel_groups: 1`` the network computes exactly what it did.
"""

from __future__ import annotations

import itertools

from torch import nn

from spikecim.errors import SpikecimError
from spikecim.methods import register_method
from spikecim.nn.container import Sequential
from spikecim.nn.neurons import IF, LIF, Neuron, TemporalModule
from spikecim.nn.shared import SharedLIF, SharedStage

__all__ = ["find_stages", "share_lif"]

_KEEP = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity)


@register_method("shared-lif", changes={"membrane-sharing"})
def share_lif(model: nn.Module, layers: bool = True, channel_groups: int = 1) -> nn.Module:
    """Share LIF state across the layers of each stage and across channel groups (in place)."""
    if not isinstance(layers, bool):
        raise SpikecimError(f"methods.shared-lif.layers: must be true or false, got {layers!r}")
    if isinstance(channel_groups, bool) or not isinstance(channel_groups, int) or channel_groups < 1:
        raise SpikecimError(
            f"methods.shared-lif.channel_groups: must be an integer >= 1, got {channel_groups!r}"
        )
    seqs = [m for m in model.modules() if isinstance(m, Sequential)]
    neurons = [m for m in model.modules() if isinstance(m, Neuron)]
    if not neurons:
        raise SpikecimError(
            "methods.shared-lif: the model has no LIF or IF neuron to share (an ANN variant?)"
        )
    for m in neurons:
        if type(m) not in (LIF, IF):
            raise SpikecimError(
                f"methods.shared-lif: shares LIF and IF neurons only, the model has {type(m).__name__}"
            )
    for seq in seqs:
        _check_groups(seq, channel_groups)
    if layers:
        found = {id(seq): find_stages(seq) for seq in seqs}
        if not any(found.values()):
            raise SpikecimError(
                f"methods.shared-lif.layers: no two neuron layers of {getattr(model, 'model_name', type(model).__name__)} share an output shape "
                "(no stage to share); use layers: false with channel_groups"
            )
        for seq in seqs:
            _share_stages(seq, found[id(seq)], channel_groups)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (LIF, IF):
                setattr(parent, name, SharedLIF.from_lif(child, channel_groups))
    return model


def find_stages(seq: nn.Sequential) -> list[tuple[int, int]]:
    """``(first, last)`` child indices of each stage of ``seq``: neuron ``first`` to neuron
    ``last``, every pair of consecutive neurons separated by shape-keeping layers only."""
    children = list(seq)
    stages: list[tuple[int, int]] = []
    start = prev = None
    for i, m in enumerate(children):
        if not isinstance(m, (LIF, IF)):
            continue
        if prev is not None and all(_keeps_shape(x) for x in children[prev + 1 : i]):
            prev = i
            continue
        if start is not None and prev != start:
            stages.append((start, prev))
        start = prev = i
    if start is not None and prev != start:
        stages.append((start, prev))
    return stages


def _keeps_shape(m: nn.Module) -> bool:
    if isinstance(m, _KEEP):
        return True
    if isinstance(m, nn.Linear):
        return m.in_features == m.out_features
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        same = all(p == d * (k - 1) // 2 and (k - 1) * d % 2 == 0 for p, d, k in _pads(m))
        return m.in_channels == m.out_channels and all(s == 1 for s in m.stride) and same
    return False


def _pads(m: nn.Module) -> list[tuple[int, int, int]]:
    if m.padding == "same":
        return [(d * (k - 1) // 2, d, k) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        return [(-1, 1, 1)]  # 'valid' or a padding mode: not told apart here, not shape-keeping
    return list(zip(m.padding, m.dilation, m.kernel_size, strict=True))


def _share_stages(seq: nn.Sequential, stages: list[tuple[int, int]], groups: int) -> None:
    children = list(seq)
    out: list[nn.Module] = []
    i = 0
    for first, last in stages:
        out += children[i:first]
        neuron_at = [k for k in range(first, last + 1) if isinstance(children[k], (LIF, IF))]
        parts = [[]] + [children[a + 1 : b] for a, b in itertools.pairwise(neuron_at)]
        out.append(SharedStage(parts, SharedLIF.from_lif(children[first], groups)))
        i = last + 1
    out += children[i:]
    for key in list(seq._modules):
        del seq._modules[key]
    for k, m in enumerate(out):
        seq.add_module(str(k), m)


def _check_groups(seq: nn.Sequential, groups: int) -> None:
    """G must divide the channels (features) each neuron of ``seq`` receives, where the layer
    before it says (a convolution's output channels, a linear layer's outputs)."""
    if groups == 1:
        return
    channels = None
    for name, m in seq.named_children():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            channels = m.out_channels
        elif isinstance(m, nn.Linear):
            channels = m.out_features
        elif isinstance(m, TemporalModule) and not isinstance(m, Neuron):
            channels = None
        elif isinstance(m, (LIF, IF)) and channels is not None and channels % groups:
            raise SpikecimError(
                f"methods.shared-lif.channel_groups: {groups} does not divide the {channels} channels "
                f"of neuron layer '{name}'"
            )
