"""Model registry and factory (timm-style).

A model file defines a builder ``fn(spiking, num_classes, in_channels, input_size,
neuron, **kw) -> nn.Module`` and decorates it with ``@register_model("name")``.
:func:`create_model` drops keyword arguments that are ``None`` so the builder's defaults
hold. Every model takes time-major ``[T, B, C, H, W]`` (or ``[T, B, F]``) and returns
logits per step ``[T, B, classes]``; the ANN twin (``spiking=False``) has the identical
topology with ReLU in place of each neuron and is run with T = 1.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn import IF, LIF, SynapticLIF

__all__ = ["register_model", "create_model", "list_models", "make_activation", "NEURONS"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}

NEURONS: dict[str, type[nn.Module]] = {"lif": LIF, "if": IF, "synaptic": SynapticLIF}


def register_model(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def make_activation(spiking: bool, neuron: str = "lif", **neuron_kw: Any) -> Callable[[], nn.Module]:
    """A factory for the model's nonlinearity: a neuron when spiking, ReLU for the ANN twin."""
    if not spiking:
        return nn.ReLU
    if neuron not in NEURONS:
        raise SpikecimError(f"model.neuron: unknown '{neuron}', allowed: {', '.join(NEURONS)}")
    cls = NEURONS[neuron]
    cls(**neuron_kw)  # validate once, at the door
    return lambda: cls(**neuron_kw)


def create_model(
    name: str,
    spiking: bool = True,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    neuron: str | None = None,
    neuron_kw: dict[str, Any] | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a registered model. ``None`` arguments keep the builder's defaults."""
    if name not in _MODELS:
        raise SpikecimError(f"model.name: unknown '{name}', allowed: {', '.join(list_models())}")
    args = dict(num_classes=num_classes, in_channels=in_channels, input_size=input_size, neuron=neuron, **kw)
    args = {k: v for k, v in args.items() if v is not None}
    for field in ("num_classes", "in_channels", "input_size"):
        v = args.get(field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SpikecimError(f"model.{field}: must be a positive integer, got {v!r}")
    try:
        model = _MODELS[name](spiking=spiking, neuron_kw=dict(neuron_kw or {}), **args)
    except TypeError as e:
        raise SpikecimError(f"model.{name}: {e}") from None
    model.spiking = spiking
    model.model_name = name
    return model
