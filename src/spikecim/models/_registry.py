"""Model registry and factory (timm-style).

A model file defines a builder ``fn(spiking, num_classes, in_channels, input_size,
neuron, **kw) -> nn.Module`` and decorates it with ``@register_model("name")``.
:func:`create_model` drops keyword arguments that are ``None`` so the builder's defaults
hold. Every model takes time-major ``[T, B, C, H, W]`` (or ``[T, B, F]``) and returns
logits per step ``[T, B, classes]``; the ANN twin (``spiking=False``) has the identical
topology with ReLU in place of each neuron and is run with T = 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from spikecim.errors import SpikecimError, allocation_failed
from spikecim.nn import create_neuron, list_neurons
from spikecim.nn.registry import neuron_arguments

__all__ = [
    "create_model",
    "has_float_weights",
    "has_spiking_form",
    "list_models",
    "make_activation",
    "model_task",
    "register_model",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_ANN_ONLY: set[str] = set()
_TASKS: dict[str, str] = {}
_QUANTISED: set[str] = set()


def register_model(
    name: str, spiking_form: bool = True, task: str = "classification", float_weights: bool = True
) -> Callable:
    """Register a builder for ``task`` (:mod:`spikecim.tasks`); ``spiking_form=False`` for a
    model that exists only as an ANN (its builder refuses ``spiking=True``; a run's default
    variants are then just ``ann``); ``float_weights=False`` for a model whose every weight
    layer quantises its own weight (BitLinear), so post-training quantisation has nothing to
    quantise (the run config refuses its ``ptq`` stage before training)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        _MODELS[name] = fn
        _TASKS[name] = task
        if not spiking_form:
            _ANN_ONLY.add(name)
        if not float_weights:
            _QUANTISED.add(name)
        return fn

    return deco


def has_spiking_form(name: str) -> bool:
    """Whether model ``name`` can be built with ``spiking=True`` (unknown names: True)."""
    return name not in _ANN_ONLY


def has_float_weights(name: str) -> bool:
    """Whether model ``name`` has a weight layer that post-training quantisation can quantise
    (False for ``matmulfree-tiny``, all ternary BitLinear; unknown names: True)."""
    return name not in _QUANTISED


def model_task(name: str) -> str | None:
    """The task model ``name`` is built for, or None for an unknown name."""
    return _TASKS.get(name)


def list_models(task: str | None = None) -> list[str]:
    """Registered model names (of one task when ``task`` is given)."""
    return sorted(n for n in _MODELS if task is None or _TASKS[n] == task)


def make_activation(spiking: bool, neuron: str = "lif", **neuron_kw: Any) -> Callable[..., nn.Module]:
    """A factory for the model's nonlinearity: a neuron from the registry of
    :mod:`spikecim.nn.registry` when spiking, ReLU for the ANN twin.

    The factory takes ``inplace``: a model passes True where nothing reads the activation's
    input again (a BatchNorm, Linear or sum output); a neuron that declares ``inplace`` (LIF,
    IF) then writes its spikes over that input, unless ``neuron_kw`` sets ``inplace`` itself.
    The ANN twin's ReLU stays out of place."""
    if not spiking:
        return lambda inplace=False: nn.ReLU()
    if neuron not in list_neurons():
        raise SpikecimError(f"model.neuron: unknown '{neuron}', allowed: {', '.join(list_neurons())}")
    try:
        create_neuron(neuron, **neuron_kw)  # validate once, at the door
    except SpikecimError as e:
        msg = str(e)  # "neuron: unknown argument ..." or "<field>: ..."
        field = (
            "model.neuron_kw: " + msg.removeprefix("neuron: ")
            if msg.startswith("neuron: ")
            else f"model.neuron_kw.{msg}"
        )
        raise SpikecimError(field) from None
    takes_inplace = "inplace" in neuron_arguments(neuron) and neuron_kw.get("inplace") is None

    def factory(inplace: bool = False) -> nn.Module:
        kw = {**neuron_kw, "inplace": True} if inplace and takes_inplace else neuron_kw
        return create_neuron(neuron, **kw)

    return factory


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
    """Build a registered model. ``None`` arguments keep the builder's defaults; an argument
    the builder does not take is refused in one line, even as ``None``."""
    if name not in _MODELS:
        raise SpikecimError(f"model.name: unknown '{name}', allowed: {', '.join(list_models())}")
    if spiking and name in _ANN_ONLY:
        raise SpikecimError(
            f"variants: model {name} has no spiking form; give it variants with spiking: false "
            "(in Python: create_model(..., spiking=False))"
        )
    _check_arguments(name, kw)
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
    except (MemoryError, RuntimeError) as e:
        size = allocation_failed(e)
        if size is None:
            raise
        raise SpikecimError(
            f"model.kwargs: {name} with {kw or 'these arguments'} needs more memory than is available{size}; "
            "make it smaller (width, depth, hidden sizes)"
        ) from None
    model.spiking = spiking  # what was built, for tools that read a model (trace, NIR export)
    model.model_name = name
    model.input_shape = _input_shape(_MODELS[name], args)
    return model


# Builder arguments a run sets itself, and from where: not model.kwargs' to give.
SET_BY_THE_RUN = {
    "num_classes": "the data set",
    "in_channels": "the data set",
    "input_size": "the data set",
    "spiking": "the variant (variants[].spiking)",
    "neuron": "model.neuron.kind",
    "neuron_kw": "model.neuron",
}


def _check_arguments(name: str, kw: dict[str, Any]) -> None:
    """Refuse an extra argument the builder does not take, before ``None`` values are dropped:
    a misspelt key whose value is ``None`` (YAML's ``{d_model:8}``, without the space, is the
    key ``"d_model:8"`` set to null) would otherwise vanish and the defaults hold silently."""
    params = inspect.signature(_MODELS[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in kw:
        if key not in params:
            allowed = ", ".join(k for k in params if k not in SET_BY_THE_RUN)
            raise SpikecimError(f"model.kwargs: unknown argument {key!r} of {name}, allowed: {allowed}")


def _input_shape(builder: Callable[..., nn.Module], args: dict[str, Any]) -> tuple[int, int, int] | None:
    """One sample's shape ``(C, H, W)`` as built (the arguments given, else the builder's defaults)."""
    defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()}
    c, s = (
        args.get("in_channels", defaults.get("in_channels")),
        args.get("input_size", defaults.get("input_size")),
    )
    return (c, s, s) if isinstance(c, int) and isinstance(s, int) else None
