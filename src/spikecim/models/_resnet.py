"""Residual networks for time-major input (He et al. 2016; the spiking form of Zheng et al.
2021, "Going Deeper With Directly-Trained Larger Spiking Neural Networks", tdBN).

A basic block, on x[T, B, C, H, W]::

    h   = act(BN(conv3x3(x, stride)))
    out = act(BN(conv3x3(h)) + shortcut(x))
    shortcut = x, or BN(conv1x1(x, stride)) when the stride or channel count changes

The convolutions and BatchNorms are stateless and run once over T*B (time folded); the
activation (a neuron, or ReLU in the ANN twin) sees [T, B, ...]. BatchNorm over the folded
T*B batch normalises over time and batch together, as tdBN does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from spikecim.models._layers import check_hidden, check_width, conv_bn, scaled
from spikecim.nn import Sequential, TemporalModule, apply_folded
from spikecim.nn.linear import Linear

__all__ = ["BasicBlock", "build_resnet"]


class BasicBlock(TemporalModule):
    """Two 3x3 convolutions with an identity or 1x1 projection shortcut (see module docstring)."""

    # conv1's output channels reach conv2 alone, through bn1 and act1: what channel pruning
    # may remove (spikecim.nn.channels; the block's other channels are tied by the sum)
    channel_link = ("conv1", ("bn1",), "conv2")

    def __init__(self, in_ch: int, out_ch: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_ch, out_ch, 3, stride)
        self.act1 = act(inplace=True)  # reads the BatchNorm output alone
        self.conv2, self.bn2 = conv_bn(out_ch, out_ch, 3, 1)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(*conv_bn(in_ch, out_ch, 1, stride))
        else:
            self.shortcut = nn.Identity()
        self.act2 = act(inplace=True)  # reads the sum alone (x stays as it is)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(apply_folded(lambda z: self.bn1(self.conv1(z)), x))
        h = apply_folded(lambda z: self.bn2(self.conv2(z)), h)
        return self.act2(h + apply_folded(self.shortcut, x))


def build_resnet(
    name: str,
    stem: int,
    stages: Sequence[tuple[int, int, int]],
    hidden: Sequence[int],
    act: Callable[[], nn.Module],
    num_classes: int,
    in_channels: int,
    width: float,
) -> Sequential:
    """``stem``: channels of the first 3x3 conv; ``stages``: (channels, blocks, stride) each;
    then global average pooling and ``[Linear(h) -> act]`` for h in ``hidden``, Linear(classes)."""
    width = check_width(name, width)
    hidden = check_hidden(name, hidden)
    ch = scaled(stem, width)
    layers: list[nn.Module] = [*conv_bn(in_channels, ch), act(inplace=True)]
    for base, blocks, stride in stages:
        out = scaled(base, width)
        for i in range(blocks):
            layers.append(BasicBlock(ch, out, stride if i == 0 else 1, act))
            ch = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for h in hidden:
        h = scaled(h, width)
        layers += [Linear(ch, h), act(inplace=True)]
        ch = h
    layers.append(Linear(ch, num_classes))
    return Sequential(*layers)
