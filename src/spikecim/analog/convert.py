"""Converters and the life of a programmed model: ``to_analog`` / ``to_digital`` (a pair),
``program`` (write once), ``drift`` (time since programming), ``calibrate_adc``.

``to_analog`` works on any module tree: registry models (spiking or ANN) and plain torch
models. Every operator the registry (:mod:`spikecim.ops`) recognises is replaced by the
analog twin its ``to_analog`` gives, holding the same weight: linear and conv2d layers and
their subclasses. An operator without a twin stays digital: a matmul of two activations
(its operands are computed at run time, nothing is programmed; crossbars written at run
time are not modelled yet) and conv1d. Everything else (neurons, BatchNorm, pooling) stays
digital. In a spiking
model the synaptic layers are called on ``[T*B, ...]``, so the crossbar is read at every
timestep while the membrane state stays digital.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from spikecim import ops
from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.layers import AnalogLayer
from spikecim.analog.tiles import set_time
from spikecim.errors import SpikecimError

__all__ = ["analog_layers", "calibrate_adc", "drift", "program", "to_analog", "to_digital"]


def analog_layers(model: nn.Module) -> list[AnalogLayer]:
    return [m for m in model.modules() if isinstance(m, AnalogLayer)]


def _swap(module: nn.Module, fn: Callable[[nn.Module], nn.Module | None]) -> None:
    for name, child in module.named_children():
        new = fn(child)
        if new is not None:
            setattr(module, name, new)
        else:
            _swap(child, fn)


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

    def convert(m: nn.Module) -> nn.Module | None:
        if isinstance(m, AnalogLayer):
            raise SpikecimError("analog: model is already analog; call to_digital first")
        op = ops.find(m)
        return op.to_analog(m, cfg) if op is not None else None

    _swap(out, convert)
    if not analog_layers(out):
        raise SpikecimError("analog: the model has no layer to map (a linear or conv2d layer)")
    return program(out, cfg.seed if seed is None else seed)


def to_digital(model: nn.Module) -> nn.Module:
    """A copy of an analog model with plain Linear/Conv2d layers holding the digital weights."""
    out = copy.deepcopy(model)
    _swap(out, lambda m: m.to_digital() if isinstance(m, AnalogLayer) else None)
    return out


def program(model: nn.Module, seed: int) -> nn.Module:
    """Program (write) every crossbar once: write noise, variation, faults and drift
    exponents drawn from ``seed`` (each layer gets its own stream). Returns the model."""
    layers = analog_layers(model)
    if not layers:
        raise SpikecimError("program: the model has no analog layers; call to_analog first")
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(layers))
    for layer, s in zip(layers, seeds):
        layer.program(int(s))
    return model


def drift(model: nn.Module, t_s: float) -> nn.Module:
    """Set the time since programming to ``t_s`` seconds (drift, read-noise level and drift
    compensation follow). Returns the model."""
    for layer in analog_layers(model):
        if layer.tiles is None:
            raise SpikecimError("drift: layer not programmed; call program(model, seed) first")
        layer.tiles = set_time(layer.tiles, layer.config, float(t_s), layer._scratch)
    return model


def calibrate_adc(
    model: nn.Module, batches: Iterable[torch.Tensor], percentile: float | None = None
) -> nn.Module:
    """Set each layer's ADC bound to a percentile of its |column outputs| on ``batches``
    (inputs as the model takes them). Only layers whose config says ``adc.range: calibrated``."""
    layers = [
        layer
        for layer in analog_layers(model)
        if layer.config.adc.enabled and layer.config.adc.range == "calibrated"
    ]
    if not layers:
        return model
    configs = {id(layer): layer.config for layer in layers}
    for layer in layers:
        # Record the unclipped outputs: every calibrated ADC is bypassed during the pass.
        layer.adc_record, layer.config = [], layer.config.with_updates(adc={"enabled": False})
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
        for layer in layers:
            records = layer.adc_record
            vals = (records[0] if len(records) == 1 else torch.cat(records)).float().numpy()
            pct = percentile if percentile is not None else configs[id(layer)].adc.calibration_percentile
            bound = _percentile(vals, pct)
            layer.adc_bound = bound if bound > 0 else 1.0
    finally:
        for layer in layers:
            layer.adc_record, layer.config = None, configs[id(layer)]
    return model


def _percentile(vals: np.ndarray, pct: float) -> float:
    """``np.percentile(vals, pct)`` (linear interpolation), by partial selection in place:
    the same value without sorting or copying the (often tens of millions of) outputs."""
    pos = pct / 100.0 * (vals.size - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    vals.partition([lo, hi] if hi != lo else [lo])
    a, b = float(vals[lo]), float(vals[hi])
    return a + (b - a) * (pos - lo)
