"""A multi-layer perceptron: Flatten -> [Linear(h * width) -> act] for h in ``hidden`` -> Linear(classes)."""

from __future__ import annotations

from torch import nn

from spikecim.models._layers import check_hidden, check_width, scaled
from spikecim.models._registry import make_activation, register_model
from spikecim.nn import Sequential
from spikecim.nn.linear import Linear


@register_model("mlp")
def mlp(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 8,
    width: float = 1.0,
    hidden: tuple[int, ...] = (128, 128),
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Sequential:
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    width = check_width("mlp", width)
    hidden = check_hidden("mlp", hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    feat = in_channels * input_size * input_size
    for h in hidden:
        h = scaled(h, width)
        layers += [Linear(feat, h), act()]
        feat = h
    layers.append(Linear(feat, num_classes))
    return Sequential(*layers)
