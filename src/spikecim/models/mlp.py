"""A multi-layer perceptron: Flatten -> [Linear -> act] * depth -> Linear."""

from __future__ import annotations

from torch import nn

from spikecim.models._registry import make_activation, register_model
from spikecim.nn import Sequential


@register_model("mlp")
def mlp(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 8,
    hidden: tuple[int, ...] = (128, 128),
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Sequential:
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * input_size * input_size
    for h in hidden:
        layers += [nn.Linear(width, h), act()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return Sequential(*layers)
