"""The VGG family, built from a layer list (Simonyan & Zisserman 2015), in the form common
in SNN work: BatchNorm after every convolution, average pooling.

    features:   for each entry of ``cfg``: an int c is Conv3x3(c) -> BatchNorm -> act,
                "P" is AvgPool2d(2) (skipped once the feature map is 1x1, so the same
                network runs on 8x8 digits and 32x32 CIFAR)
    classifier: Flatten -> [Linear(h) -> act] for h in ``hidden`` -> Linear(classes)

Channel and hidden counts are multiplied by ``width``. Average pooling keeps the pooled
spikes a linear function of the input, which maps onto a crossbar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from spikecim.models._layers import check_hidden, check_width, conv_bn, scaled
from spikecim.nn import AvgPool2d, Sequential
from spikecim.nn.linear import Linear

__all__ = ["build_vgg"]


def build_vgg(
    name: str,
    cfg: Sequence[int | str],
    hidden: Sequence[int],
    act: Callable[[], nn.Module],
    num_classes: int,
    in_channels: int,
    input_size: int,
    width: float,
) -> Sequential:
    width = check_width(name, width)
    hidden = check_hidden(name, hidden)
    layers: list[nn.Module] = []
    ch, size = in_channels, input_size
    for item in cfg:
        if item == "P":
            if size >= 2:
                layers.append(AvgPool2d(2))
                size //= 2
            continue
        out = scaled(int(item), width)
        layers += [*conv_bn(ch, out), act(inplace=True)]
        ch = out
    layers.append(nn.Flatten())
    feat = ch * size * size
    for h in hidden:
        h = scaled(h, width)
        layers += [Linear(feat, h), act(inplace=True)]
        feat = h
    layers.append(Linear(feat, num_classes))
    return Sequential(*layers)
