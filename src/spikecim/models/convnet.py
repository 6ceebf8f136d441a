"""A small convolutional network sized for 8x8 digits (the embedded default).

Max pooling keeps the spikes binary, so every layer after the first reads 1-bit inputs.

conv3x3(C->32)-BN-act -> conv3x3(32->64)-BN-act -> maxpool2 -> flatten ->
linear(64*(S/2)^2 -> 128)-act -> linear(128 -> classes)
"""

from __future__ import annotations

from torch import nn

from spikecim.models._registry import make_activation, register_model
from spikecim.nn import Sequential


@register_model("convnet")
def convnet(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 8,
    width: int = 32,
    hidden: int = 128,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Sequential:
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    s = input_size // 2
    return Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        act(),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * s * s, hidden),
        act(),
        nn.Linear(hidden, num_classes),
    )
