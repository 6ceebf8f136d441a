"""VGG-5: three convolutions and two fully connected layers.

    [64, P, 128, 128, P] -> fc 1024 -> fc classes

Conv3x3 -> BatchNorm -> act throughout, AvgPool2d(2) at P (see :mod:`spikecim.models._vgg`).
"""

from __future__ import annotations

from spikecim.models._registry import make_activation, register_model
from spikecim.models._vgg import build_vgg
from spikecim.nn import Sequential

CFG = (64, "P", 128, 128, "P")
HIDDEN = (1024,)


@register_model("vgg5")
def vgg5(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
    hidden: tuple[int, ...] = HIDDEN,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Sequential:
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    return build_vgg("vgg5", CFG, hidden, act, num_classes, in_channels, input_size, width)
