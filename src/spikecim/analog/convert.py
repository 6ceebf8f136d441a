"""Converters and the life of a programmed model: ``to_analog`` / ``to_digital`` (a pair),
``program`` (write once), ``drift`` (time since programming), ``calibrate_adc``.

``to_analog`` works on any module tree: registry models (spiking or ANN) and plain torch
models. Every operator the registry (:mod:`spikecim.ops`) recognises is replaced by the
analog twin its ``to_analog`` gives, holding the same weight: linear and conv2d layers and
their subclasses. A matmul of two activations (attention) becomes an
:class:`~spikecim.analog.dynamic.AnalogMatMul`, its second operand written into crossbars at
every call, when the config's ``dynamic`` section puts it on a ``crossbar`` or ``sram``
(``dynamic.unit``, or per module name in ``dynamic.operators``); it stays digital by
default. An operator without a twin stays digital (conv1d). Everything else (neurons,
BatchNorm, pooling, softmax, LayerNorm, GELU) stays digital. In a spiking
model the synaptic layers are called on ``[T*B, ...]``, so the crossbar is read at every
timestep while the membrane state stays digital.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from spikecim import ops
from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.dynamic import AnalogMatMul, dynamic_layers
from spikecim.analog.layers import AnalogLayer
from spikecim.analog.quant import level_count
from spikecim.analog.tiles import set_time
from spikecim.errors import SpikecimError
from spikecim.quant import PercentileObserver, observing
from spikecim.schema import MAX_INT

__all__ = [
    "analog_layers",
    "calibrate_adc",
    "calibrate_operands",
    "drift",
    "program",
    "to_analog",
    "to_digital",
]


def analog_layers(model: nn.Module) -> list[AnalogLayer]:
    return [m for m in model.modules() if isinstance(m, AnalogLayer)]


def _swap(module: nn.Module, fn: Callable[[str, nn.Module], nn.Module | None], prefix: str = "") -> None:
    """Replace each child by ``fn(dotted name, child)`` when it is not None, else recurse."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        new = fn(path, child)
        if new is not None:
            setattr(module, name, new)
        else:
            _swap(child, fn, f"{path}.")


def _dynamic_config(cfg: CrossbarConfig, name: str) -> CrossbarConfig:
    """``cfg`` with ``dynamic.unit`` set to the unit of the module called ``name``."""
    unit = cfg.dynamic.unit_of(name)
    if unit == cfg.dynamic.unit:
        return cfg
    return cfg.model_copy(update={"dynamic": cfg.dynamic.model_copy(update={"unit": unit})})


def _check_operator_names(model: nn.Module, cfg: CrossbarConfig) -> None:
    names = [n for n, m in model.named_modules() if isinstance(m, ops.MatMul)]
    for key in cfg.dynamic.operators:
        if not any(n == key or n.rsplit(".", 1)[-1] == key for n in names):
            found = ", ".join(names) if names else "none"
            raise SpikecimError(
                f"analog.dynamic.operators: '{key}' names no MatMul of the model (its MatMuls: {found})"
            )


def to_analog(
    model: nn.Module, config: CrossbarConfig | str | dict | None = None, seed: int | None = None
) -> nn.Module:
    """A copy of ``model`` whose linear and conv2d layers run on crossbars, programmed with
    ``seed`` (default ``config.seed``). The input model is not modified."""
    cfg = load_crossbar_config(config)
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise SpikecimError(f"weights: parameter '{name}' has non-finite values (NaN or inf)")
    if ops.find(model) is not None:
        model = nn.Sequential(model)
    out = copy.deepcopy(model)
    _check_operator_names(out, cfg)

    def convert(name: str, m: nn.Module) -> nn.Module | None:
        if isinstance(m, (AnalogLayer, AnalogMatMul)):
            raise SpikecimError("analog: model is already analog; call to_digital first")
        op = ops.find(m)
        return op.to_analog(m, _dynamic_config(cfg, name)) if op is not None else None

    _swap(out, convert)
    if not analog_layers(out):
        if dynamic_layers(out):
            return out  # only products written at run time: nothing to program
        raise SpikecimError("analog: the model has no layer to map (a linear or conv2d layer)")
    return program(out, cfg.seed if seed is None else seed)


def to_digital(model: nn.Module) -> nn.Module:
    """A copy of an analog model with plain Linear/Conv2d layers holding the digital weights
    (and plain MatMul modules for the products written at run time)."""
    out = copy.deepcopy(model)
    _swap(out, lambda _, m: m.to_digital() if isinstance(m, (AnalogLayer, AnalogMatMul)) else None)
    return out


def program(model: nn.Module, seed: int) -> nn.Module:
    """Program (write) every crossbar once: write noise, variation, faults and drift
    exponents drawn from ``seed`` (an integer, 0 <= seed < 2**63; each layer gets its own
    stream). Returns the model."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < MAX_INT:
        raise SpikecimError(f"program: seed must be an integer, 0 <= seed < 2**63, got {seed!r}")
    layers = analog_layers(model)
    if not layers and not dynamic_layers(model):
        raise SpikecimError("program: the model has no analog layers; call to_analog first")
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(layers))
    for layer, s in zip(layers, seeds):
        layer.program(int(s))
    return model


def drift(model: nn.Module, t_s: float) -> nn.Module:
    """Set the time since programming to ``t_s`` seconds (drift, read-noise level and drift
    compensation follow). Returns the model."""
    if isinstance(t_s, bool) or not isinstance(t_s, numbers.Real):
        raise SpikecimError(f"drift: t_s must be a number of seconds, finite and >= 0, got {t_s!r}")
    layers = analog_layers(model)
    if not layers and not dynamic_layers(model):
        raise SpikecimError("drift: the model has no analog layers; call to_analog first")
    for layer in layers:
        if layer.tiles is None:
            raise SpikecimError("drift: layer not programmed; call program(model, seed) first")
        layer.tiles = set_time(layer.tiles, layer.config, float(t_s), layer._scratch)
    return model


def calibrate_operands(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Set the written-operand range (:attr:`AnalogMatMul.operand_bound`) of every product
    whose config says ``dynamic.operand_range: calibrated`` to ``dynamic.operand_percentile``
    of |b| over ``batches`` (the products computed digitally meanwhile; 1.0 where b was 0)."""
    layers = [m for m in dynamic_layers(model) if m.config.dynamic.operand_range == "calibrated"]
    if not layers:
        return model

    def observer(layer: AnalogMatMul) -> PercentileObserver:
        return PercentileObserver(layer.config.dynamic.operand_percentile, absolute=True)

    with (
        observing(layers, observer, attach=lambda m, obs: m.attach_operand_observer(obs)) as obs_,
        torch.no_grad(),
    ):
        for x in batches:
            model(x)
    for layer, obs in zip(layers, obs_, strict=True):
        layer.operand_bound = _observed_bound(obs, "calibrate_operands", "written operands")
    return model


def calibrate_adc(
    model: nn.Module, batches: Iterable[torch.Tensor], percentile: float | None = None
) -> nn.Module:
    """Set each layer's ADC bound to a percentile of its |column outputs| on ``batches``
    (inputs as the model takes them). Only layers whose config says ``adc.range: calibrated``.

    Observe, then compute, then apply: a :class:`~spikecim.quant.PercentileObserver` is
    attached before each such layer's ADC (which converts nothing while observed, so every
    calibrated layer sees unclipped inputs), the batches run, the observers are detached
    and each bound is set from its observer (1.0 where every output was 0). Before that,
    :func:`calibrate_operands` fixes the range of the operands written at run time."""
    batches = list(batches)
    calibrate_operands(model, batches)
    layers = [
        layer
        for layer in [*analog_layers(model), *dynamic_layers(model)]
        if layer.config.adc.enabled and layer.config.adc.range == "calibrated"
    ]
    if not layers:
        return model

    def observer(layer: AnalogLayer | AnalogMatMul) -> PercentileObserver:
        n = level_count(layer.config.adc.bits)
        pct = percentile if percentile is not None else layer.config.adc.calibration_percentile
        return PercentileObserver(pct, -n, n, absolute=True)

    def attach(layer, obs):
        return layer.attach_adc_observer(obs)

    with observing(layers, observer, attach=attach) as observers, torch.no_grad():
        for x in batches:
            model(x)
    for layer, obs in zip(layers, observers, strict=True):
        layer.adc_bound = _observed_bound(obs, "calibrate_adc", "column outputs")
    return model


def _observed_bound(obs: PercentileObserver, where: str, what: str) -> float:
    """The upper end of ``obs``'s range (1.0 where everything observed was 0); refused when
    nothing was observed or the values were not finite, rather than a made-up range."""
    if obs.count == 0:
        raise SpikecimError(f"{where}: no calibration inputs (the batches are empty)")
    bound = float(obs.compute_range()[1])
    if not math.isfinite(bound):
        raise SpikecimError(
            f"{where}: the {what} on the calibration inputs are not finite (NaN or inf); "
            "check the calibration inputs"
        )
    return bound if bound > 0 else 1.0
