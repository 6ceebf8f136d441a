"""ResNet-19 of the SNN literature (Zheng et al. 2021, tdBN, Table for CIFAR-10):

    conv3x3 128 -> 3 basic blocks of 128 -> 3 blocks of 256 (stride 2)
    -> 2 blocks of 512 (stride 2) -> global average pool -> fc 256 -> fc classes

17 convolutions of 3x3 and 2 fully connected layers make the 19 (the two 1x1 projection
shortcuts are not counted). Blocks: :class:`spikecim.models._resnet.BasicBlock`.
Global average pooling lets the same network run on 8x8 digits and 32x32 CIFAR.
"""

from __future__ import annotations

from spikecim.models._registry import make_activation, register_model
from spikecim.models._resnet import build_resnet
from spikecim.nn import Sequential

STEM = 128
STAGES = ((128, 3, 1), (256, 3, 2), (512, 2, 2))
HIDDEN = (256,)


@register_model("resnet19")
def resnet19(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
    hidden: tuple[int, ...] = HIDDEN,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Sequential:
    del input_size  # global average pooling makes the network size-agnostic
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    return build_resnet("resnet19", STEM, STAGES, hidden, act, num_classes, in_channels, width)
