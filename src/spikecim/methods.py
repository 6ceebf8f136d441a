"""Method transforms: what turns a variant's freshly built model into the method's version.

A method from the literature (quantisation, shared neurons, tensor-train layers, dynamic
timesteps, ...) is one function registered under a name::

    @register_method("my-method")
    def my_method(model: nn.Module, **options) -> nn.Module:
        ...  # return the transformed model (or the same one, changed in place)

and a variant lists it in the run config (``methods: [{name: my-method, bits: 4}]``). The
transforms run in the listed order when the run builds the variant's model, before training.
Modules that register methods are named in ``_BUILTIN_MODULES`` (``mint``, ``weight-qat``, ``squat``:
:mod:`spikecim.quant.transforms`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any

from spikecim.errors import SpikecimError

__all__ = ["apply_methods", "get_method", "list_methods", "register_method"]

MethodFn = Callable[..., Any]  # (model, **options) -> model

_METHODS: dict[str, MethodFn] = {}
_BUILTIN_MODULES: tuple[str, ...] = ("spikecim.quant.transforms",)


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn(model, **options) -> model`` as the method ``name``."""

    def deco(fn: MethodFn) -> MethodFn:
        _METHODS[name] = fn
        return fn

    return deco


def _load_builtin() -> None:
    for mod in _BUILTIN_MODULES:
        import_module(mod)


def list_methods() -> list[str]:
    _load_builtin()
    return sorted(_METHODS)


def get_method(name: str) -> MethodFn:
    _load_builtin()
    if name not in _METHODS:
        allowed = ", ".join(sorted(_METHODS)) or "none registered"
        raise SpikecimError(f"methods: unknown method '{name}', allowed: {allowed}")
    return _METHODS[name]


def apply_methods(model: Any, methods: Iterable[Any]) -> Any:
    """Apply ``methods`` (:class:`~spikecim.variants.MethodConfig` items) in order."""
    for m in methods:
        model = get_method(m.name)(model, **m.options)
    return model
