"""VGG-5, VGG-9 and VGG-11, each registered from its layer list (see :mod:`spikecim.models._vgg`).

- ``vgg5``:  [64, P, 128, 128, P] -> fc 1024 -> fc classes
- ``vgg9``:  [64, 64, P, 128, 128, P, 256, 256, 256, P] -> fc 1024 -> fc classes, as used in
  SNN work on CIFAR (Lee et al. 2020; the SpikeSim and DT-SNN papers). On 32x32 input the
  convolutions see 32, 32, 16, 16, 8, 8, 8 pixels a side and the classifier 256 x 4 x 4
  features: the layer list of SpikeSim's VGG9 example.
- ``vgg11``: configuration A of Simonyan & Zisserman 2015,
  [64, P, 128, P, 256, 256, P, 512, 512, P, 512, 512, P] -> fc 1024 -> fc 1024 -> fc classes

Conv3x3 -> BatchNorm -> act throughout, AvgPool2d(2) at P.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spikecim.models._registry import make_activation, register_model
from spikecim.models._vgg import build_vgg
from spikecim.nn import Sequential

VGG_CONFIGS: dict[str, tuple[tuple[int | str, ...], tuple[int, ...]]] = {
    "vgg5": ((64, "P", 128, 128, "P"), (1024,)),
    "vgg9": ((64, 64, "P", 128, 128, "P", 256, 256, 256, "P"), (1024,)),
    "vgg11": ((64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"), (1024, 1024)),
}


def _builder(
    name: str, cfg: Sequence[int | str], default_hidden: tuple[int, ...]
) -> Callable[..., Sequential]:
    def build(
        spiking: bool = True,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        width: float = 1.0,
        hidden: tuple[int, ...] = default_hidden,
        neuron: str = "lif",
        neuron_kw: dict | None = None,
    ) -> Sequential:
        act = make_activation(spiking, neuron, **(neuron_kw or {}))
        return build_vgg(name, cfg, hidden, act, num_classes, in_channels, input_size, width)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name}: {list(cfg)} -> fc {list(default_hidden)} -> fc classes."
    return build


for _name, (_cfg, _hidden) in VGG_CONFIGS.items():
    register_model(_name)(_builder(_name, _cfg, _hidden))
