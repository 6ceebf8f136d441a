"""A small convolutional network sized for 8x8 digits (the embedded default).

conv3x3(C -> 32w)-BN-act -> conv3x3(32w -> 64w)-BN-act -> maxpool2 -> flatten ->
linear(64w * (S/2)^2 -> 128w)-act -> linear(128w -> classes),   w = ``width``
(the pooling is skipped on a 1x1 input). Max pooling keeps spikes binary, so every layer
after the first reads 1-bit inputs on a crossbar (no input DAC).
"""

from __future__ import annotations

from torch import nn

from spikecim.errors import SpikecimError
from spikecim.models._layers import check_width, conv_bn, scaled
from spikecim.models._registry import make_activation, register_model
from spikecim.nn import MaxPool2d, Sequential
from spikecim.nn.linear import Linear


@register_model("convnet")
def convnet(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 8,
    width: float = 1.0,
    hidden: int = 128,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Sequential:
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    width = check_width("convnet", width)
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise SpikecimError(f"model.convnet.hidden: must be a positive integer, got {hidden!r}")
    c1, c2, h = scaled(32, width), scaled(64, width), scaled(hidden, width)
    pool = input_size >= 2
    s = input_size // 2 if pool else input_size
    return Sequential(
        *conv_bn(in_channels, c1),
        act(inplace=True),
        *conv_bn(c1, c2),
        act(inplace=True),
        *([MaxPool2d(2)] if pool else []),
        nn.Flatten(),
        Linear(c2 * s * s, h),
        act(inplace=True),
        Linear(h, num_classes),
    )
