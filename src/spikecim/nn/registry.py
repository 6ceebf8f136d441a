"""The neuron registry: one name per neuron class, one factory.

A neuron is one class decorated with ``@register_neuron("name")``; models, the run config
(``model.neuron.kind``) and ``spikecim list neurons`` all read this registry, so a new
neuron needs no other edit (timm's ``timm/models/_registry.py`` and ``_factory.py``).
:func:`create_neuron` drops keyword arguments that are ``None`` so the class's defaults hold.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from spikecim.errors import SpikecimError

__all__ = ["create_neuron", "get_neuron", "list_neurons", "neuron_arguments", "register_neuron"]

_NEURONS: dict[str, type[nn.Module]] = {}


def register_neuron(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a neuron module under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _NEURONS:
            raise ValueError(f"neuron '{name}' registered twice")
        _NEURONS[name] = cls
        return cls

    return deco


def list_neurons() -> list[str]:
    return sorted(_NEURONS)


def get_neuron(kind: str) -> type[nn.Module]:
    """The class registered as ``kind``, or a one-line error listing the allowed kinds."""
    if kind not in _NEURONS:
        raise SpikecimError(f"neuron: unknown '{kind}', allowed: {', '.join(list_neurons())}")
    return _NEURONS[kind]


def neuron_arguments(kind: str) -> list[str]:
    """The constructor arguments that the class registered as ``kind`` declares."""
    return list(inspect.signature(get_neuron(kind)).parameters)


def create_neuron(kind: str, **kw: Any) -> nn.Module:
    """Build the neuron ``kind``; ``None`` values keep the class's defaults.

    An argument the class does not declare is a one-line error that lists those it does.
    """
    cls = get_neuron(kind)
    kw = {k: v for k, v in kw.items() if v is not None}
    allowed = neuron_arguments(kind)
    unknown = [k for k in kw if k not in allowed]
    if unknown:
        raise SpikecimError(
            f"neuron: unknown argument '{', '.join(unknown)}' for '{kind}', allowed: {', '.join(allowed)}"
        )
    return cls(**kw)
