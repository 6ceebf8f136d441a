"""VGG-9 as used in SNN work on CIFAR (Lee et al. 2020; the SpikeSim and DT-SNN papers): seven
convolutions and two fully connected layers.

    [64, 64, P, 128, 128, P, 256, 256, 256, P] -> fc 1024 -> fc classes

On 32x32 input the convolutions see 32, 32, 16, 16, 8, 8, 8 pixels a side and the
classifier 256 x 4 x 4 features (the layer list of REFERENCE §4's SpikeSim example).

Conv3x3 -> BatchNorm -> act throughout, AvgPool2d(2) at P (see :mod:`spikecim.models._vgg`).
"""

from __future__ import annotations

from spikecim.models._registry import make_activation, register_model
from spikecim.models._vgg import build_vgg
from spikecim.nn import Sequential

CFG = (64, 64, "P", 128, 128, "P", 256, 256, 256, "P")
HIDDEN = (1024,)


@register_model("vgg9")
def vgg9(
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
    return build_vgg("vgg9", CFG, hidden, act, num_classes, in_channels, input_size, width)
