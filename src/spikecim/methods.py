"""Method transforms: what turns a variant's freshly built model into the method's version.

A method from the literature (quantisation, shared neurons, tensor-train layers, dynamic
timesteps, ...) is one function registered under a name::

    @register_method("my-method")
    def my_method(model: nn.Module, **options) -> nn.Module:
        ...  # return the transformed model (or the same one, changed in place)

and a variant lists it in the run config (``methods: [{name: my-method, bits: 4}]``). The
transforms run in the listed order when the run builds the variant's model, before training.
An option the function does not take is refused with one line naming the allowed ones, and
a required option left out with one line naming it.

A method may declare the training settings it needs (``register_method("dt-snn",
train={"loss": "per_step"})``): they apply to every variant that lists it, under the
variant's own ``train`` settings (:meth:`spikecim.config.RunConfig.train_for`).
A method whose trained network is deployed in another form declares how
(``register_method("prune", deploy=...)``: the channels pruned during training are removed
from the network that is evaluated, traced, costed and exported; :func:`deploy_model`).
A method declares what it changes (``changes={"membrane-quant"}``, from :data:`ASPECTS`):
two methods of one variant that change the same aspect are refused when the run config is
validated (:func:`check_combination`), unless one declares the other ``compatible``. The
shipped methods change: ``dt-snn`` the timesteps; ``mint`` the weight and membrane
quantisation; ``weight-qat`` the weight quantisation; ``squat`` the membrane quantisation;
``shared-lif`` the membrane sharing; ``tt`` the convolution structure; ``prune`` the weight
sparsity; ``trex`` the attention. So MINT combines with
DT-SNN, SharedLIF with SQUAT and weight QAT with SQUAT, while MINT with SQUAT (one membrane
quantised twice) or with weight QAT (weights quantised twice) is refused.

Modules that register the shipped methods are named in ``_BUILTIN_MODULES``
(``dt-snn``: :mod:`spikecim.nn.dynamic`; ``shared-lif``: :mod:`spikecim.nn.shared_transform`;
``tt``: :mod:`spikecim.nn.tt_method`; ``prune``: :mod:`spikecim.nn.prune`; ``mint``, ``weight-qat``, ``squat``:
:mod:`spikecim.quant.transforms`; ``trex``: :mod:`spikecim.models.trex`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any

from pydantic import ValidationError

from spikecim.errors import SpikecimError, one_line_validation_error

__all__ = [
    "ASPECTS",
    "apply_methods",
    "check_combination",
    "deploy_model",
    "get_method",
    "list_methods",
    "method_changes",
    "method_train_settings",
    "read_options",
    "register_method",
]

# What a method may change in the network; two methods changing one aspect do not combine.
ASPECTS = frozenset(
    {
        "membrane-quant",
        "weight-quant",
        "weight-sparsity",
        "timesteps",
        "membrane-sharing",
        "conv-structure",
        "attention",
    }
)

MethodFn = Callable[..., Any]  # (model, **options) -> model
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

_METHODS: dict[str, MethodFn] = {}
_TRAIN: dict[str, dict[str, Any]] = {}
_CHANGES: dict[str, frozenset[str]] = {}
_COMPATIBLE: dict[str, frozenset[str]] = {}
_DEPLOY: dict[str, Callable[[Any], Any] | None] = {}
_BUILTIN_MODULES: tuple[str, ...] = (
    "spikecim.nn.dynamic",
    "spikecim.nn.shared_transform",
    "spikecim.nn.tt_method",
    "spikecim.nn.prune",
    "spikecim.quant.transforms",
    "spikecim.models.trex",
)


def register_method(
    name: str,
    train: dict[str, Any] | None = None,
    changes: Iterable[str] = (),
    compatible: Iterable[str] = (),
    deploy: Callable[[Any], Any] | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn(model, **options) -> model`` as the method ``name``; ``train`` holds the
    training settings (fields of the run's ``train`` section) the method needs, ``changes``
    the :data:`ASPECTS` it changes, ``compatible`` the methods it combines with although they
    change an aspect it changes too, ``deploy`` the function from the trained model to the
    network as deployed (:func:`deploy_model`), when that is another."""
    changes = frozenset(changes)
    unknown = sorted(changes - ASPECTS)
    if unknown:
        raise SpikecimError(
            f"register_method({name!r}): unknown aspect '{unknown[0]}', allowed: {', '.join(sorted(ASPECTS))}"
        )

    def deco(fn: MethodFn) -> MethodFn:
        _METHODS[name] = fn
        _TRAIN[name] = dict(train or {})
        _CHANGES[name] = changes
        _COMPATIBLE[name] = frozenset(compatible)
        _DEPLOY[name] = deploy
        return fn

    return deco


def read_options(schema: type, name: str, options: dict[str, Any]) -> Any:
    """``options`` of the method ``name`` read by its pydantic ``schema``; a bad one is refused
    in one line naming ``methods.<name>.<option>``."""
    try:
        return schema.model_validate(options)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, f"methods.{name}.")) from None


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


def method_changes(name: str) -> frozenset[str]:
    """The aspects the method ``name`` changes."""
    get_method(name)
    return _CHANGES[name]


def check_combination(methods: Iterable[Any], variant: str = "") -> None:
    """Refuse two of ``methods`` (:class:`~spikecim.variants.MethodConfig` items or names)
    that change the same aspect, unless one declares the other compatible: one line naming
    the variant, both methods and the aspect."""
    names = [m if isinstance(m, str) else m.name for m in methods]
    where = f"variant '{variant}'" if variant else "methods"
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = method_changes(a) & method_changes(b)
            if not shared or b in _COMPATIBLE[a] or a in _COMPATIBLE[b]:
                continue
            listed = (
                f"lists '{a}' and '{b}', which both change" if a != b else f"lists '{a}' twice, which changes"
            )
            raise SpikecimError(f"{where}: {listed} the {min(shared)}; list only one of them")


def method_train_settings(methods: Iterable[Any]) -> dict[str, Any]:
    """The training settings ``methods`` (:class:`~spikecim.variants.MethodConfig` items)
    declare, a later method's over an earlier one's."""
    out: dict[str, Any] = {}
    for m in methods:
        get_method(m.name)
        out.update(_TRAIN.get(m.name, {}))
    return out


def apply_methods(model: Any, methods: Iterable[Any]) -> Any:
    """Apply ``methods`` (:class:`~spikecim.variants.MethodConfig` items) in order, after
    :func:`check_combination`."""
    methods = list(methods)
    check_combination(methods)
    for m in methods:
        fn = get_method(m.name)
        try:
            inspect.signature(fn).bind(model, **m.options)
        except TypeError:
            params = list(inspect.signature(fn).parameters.values())[1:]
            allowed = [p.name for p in params]
            unknown = sorted(set(m.options) - set(allowed))
            if unknown:
                raise SpikecimError(
                    f"methods.{m.name}: unknown option '{unknown[0]}', allowed: {', '.join(allowed) or 'none'}"
                ) from None
            required = [p.name for p in params if p.default is p.empty and p.kind in _NAMED]
            missing = [name for name in required if name not in m.options] or ["?"]
            raise SpikecimError(
                f"methods.{m.name}: option '{missing[0]}' is required; set it in the variant's methods entry"
            ) from None
        model = fn(model, **m.options)
    return model


def deploy_model(model: Any, methods: Iterable[Any]) -> Any:
    """The trained ``model`` as it is deployed: the ``deploy`` function of each of ``methods``
    (:class:`~spikecim.variants.MethodConfig` items or names) that has one, in order. The
    run evaluates, traces, costs, maps to crossbars and exports this network (``prune`` with
    granularity ``channel``: the network without its pruned channels, which computes the
    same); ``model`` itself keeps the training state of the checkpoint."""
    for m in methods:
        name = m if isinstance(m, str) else m.name
        get_method(name)
        if _DEPLOY[name] is not None:
            model = _DEPLOY[name](model)
    return model
