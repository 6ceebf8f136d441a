"""``trace(model, inputs) -> Workload``: run a model on data and record what hardware sees.

Forward hooks on every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` record, per step and
per sample, the non-zero inputs and the accumulates they trigger; a hook on the neuron
that follows each synaptic layer (the next LIF/IF/ReLU in module order, before the next
synaptic layer) records its output spikes, and a pooling layer right after it gives the
pooled output size.

Accumulates triggered by non-zero inputs, exactly (borders and strides included):

- linear: ``nnz(x) * out_features``
- conv:   ``(out_ch / groups) * sum(conv(mask(x), ones[1, in_ch, kh, kw]))`` — each output
  position counts the non-zero inputs under its kernel window, once per output channel
  of the group.

Layers may be called on time-folded input ``[T*B, ...]`` (spikecim models), on ``[T, B,
...]``, or once per step on ``[B, ...]``; the step of each call is recovered from the
number of elements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.trace.workload import LayerWorkload, Workload

__all__ = ["SYNAPTIC", "accumulates", "trace"]

SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d)
_POOLS = (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d, nn.AvgPool1d, nn.MaxPool1d)


def _is_neuron(m: nn.Module) -> bool:
    from spikecim.nn import TemporalModule

    return isinstance(m, nn.ReLU) or (isinstance(m, TemporalModule) and hasattr(m, "forward_with_mem"))


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1] if len(v) > 1 else 1))


def accumulates(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Accumulates triggered by the non-zero entries of ``x[N, ...]``, per sample ``[N]``."""
    mask = (x != 0).to(torch.float32)
    if isinstance(layer, nn.Linear):
        return mask.flatten(1).sum(1) * layer.out_features
    ones = torch.ones(1, layer.in_channels, *layer.kernel_size, dtype=mask.dtype, device=mask.device)
    conv = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
    window = conv(mask, ones, None, layer.stride, layer.padding, layer.dilation)
    return window.flatten(1).sum(1) * (layer.out_channels // layer.groups)


@dataclass
class _LayerRecord:
    name: str
    module: nn.Module
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    calls: int = 0
    nonzero: list[float] = field(default_factory=list)
    acs: list[float] = field(default_factory=list)
    binary: bool = True
    neuron: str | None = None
    out_spikes: list[float] | None = None
    neuron_calls: int = 0
    pooled_hw: tuple[int, int] | None = None


class _Recorder:
    def __init__(self, steps: int, batch: int) -> None:
        self.steps, self.batch = steps, batch

    def split(self, t: torch.Tensor, call_index: int) -> tuple[torch.Tensor, list[int]]:
        """View ``t`` as ``[n_steps, B, ...]`` and name the steps it covers."""
        per = t.numel() // (self.steps * self.batch) if t.numel() % (self.steps * self.batch) == 0 else None
        if per is not None and t.shape[0] in (self.steps * self.batch, self.steps):
            return t.reshape(self.steps, self.batch, -1), list(range(self.steps))
        return t.reshape(1, self.batch, -1), [call_index % self.steps]


def _sample_shape(layer: nn.Module, t: torch.Tensor) -> tuple[int, ...]:
    dims = 3 if isinstance(layer, nn.Conv2d) else 2 if isinstance(layer, nn.Conv1d) else 1
    return tuple(t.shape[-dims:])


@torch.no_grad()
def trace(
    model: nn.Module,
    inputs: Iterable[torch.Tensor],
    *,
    model_name: str | None = None,
    dataset: str | None = None,
    weight_bits: int = 32,
    input_bits: int = 8,
    spiking: bool | None = None,
) -> Workload:
    """Run ``model`` on each time-major batch ``x[T, B, ...]`` of ``inputs``; return its Workload.

    ``weight_bits`` is the stored weight precision; ``input_bits`` the precision assumed
    for a layer whose recorded inputs are not all 0/1 (binary inputs are 1-bit spikes).
    """
    spiking = bool(getattr(model, "spiking", True)) if spiking is None else spiking
    modules = list(model.named_modules())
    records: list[_LayerRecord] = []
    current: _LayerRecord | None = None
    neuron_of: dict[int, _LayerRecord] = {}
    pool_of: dict[int, _LayerRecord] = {}
    for name, m in modules:
        if isinstance(m, SYNAPTIC):
            current = _LayerRecord(name, m)
            records.append(current)
        elif current is not None and _is_neuron(m) and current.neuron is None:
            current.neuron = type(m).__name__
            neuron_of[id(m)] = current
        elif (
            current is not None
            and isinstance(m, _POOLS)
            and current.neuron is not None
            and current.pooled_hw is None
        ):
            pool_of[id(m)] = current
            current.pooled_hw = (0, 0)
    was_training = model.training
    model.eval()
    state = {"rec": None}
    hooks = []

    def on_layer(mod, args, out, rec: _LayerRecord):
        x = args[0]
        rec_ = state["rec"]
        steps_x, idx = rec_.split(x, rec.calls)
        rec.calls += 1
        if not rec.in_shape:
            rec.in_shape = _sample_shape(mod, x)
            rec.out_shape = _sample_shape(mod, out)
        per_sample_shape = (rec_.batch * len(idx), *rec.in_shape)
        xs = steps_x.reshape(per_sample_shape)
        acs = accumulates(mod, xs).reshape(len(idx), rec_.batch).sum(1)
        nnz = (steps_x != 0).flatten(1).sum(1).to(torch.float64)
        if rec.binary and not bool(((x == 0) | (x == 1)).all()):
            rec.binary = False
        for j, t in enumerate(idx):
            rec.nonzero[t] += float(nnz[j])
            rec.acs[t] += float(acs[j])

    def on_neuron(mod, args, out, rec: _LayerRecord):
        rec_ = state["rec"]
        if rec.out_spikes is None:
            return
        steps_o, idx = rec_.split(out, rec.neuron_calls)
        rec.neuron_calls += 1
        counts = (steps_o != 0).flatten(1).sum(1).to(torch.float64)
        for j, t in enumerate(idx):
            rec.out_spikes[t] += float(counts[j])

    def on_pool(mod, args, out, rec: _LayerRecord):
        rec.pooled_hw = _pair(tuple(out.shape[-2:]) if out.dim() >= 3 else (out.shape[-1], 1))

    for rec in records:
        hooks.append(rec.module.register_forward_hook(lambda m, a, o, r=rec: on_layer(m, a, o, r)))
    for _, m in modules:
        neuron_rec, pool_rec = neuron_of.get(id(m)), pool_of.get(id(m))
        if neuron_rec is not None:
            hooks.append(m.register_forward_hook(lambda mm, a, o, r=neuron_rec: on_neuron(mm, a, o, r)))
        if pool_rec is not None:
            hooks.append(m.register_forward_hook(lambda mm, a, o, r=pool_rec: on_pool(mm, a, o, r)))

    samples, steps, sample_shape = 0, None, None
    try:
        for x in inputs:
            if steps is None:
                steps, sample_shape = x.shape[0], list(x.shape[2:])
                for rec in records:
                    rec.nonzero = [0.0] * steps
                    rec.acs = [0.0] * steps
                    rec.out_spikes = [0.0] * steps if rec.neuron and spiking else None
            state["rec"] = _Recorder(x.shape[0], x.shape[1])
            for rec in records:
                rec.calls = rec.neuron_calls = 0
            model(x)
            samples += x.shape[1]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if steps is None:
        raise ValueError("trace: no input batches were given")
    layers = [
        _to_layer(rec, steps, samples, weight_bits, input_bits)
        for rec in records
        if rec.calls or rec.in_shape
    ]
    return Workload(
        model=model_name or getattr(model, "model_name", type(model).__name__),
        spiking=spiking,
        timesteps=steps,
        samples=samples,
        dataset=dataset,
        input_shape=sample_shape or [],
        layers=layers,
    )


def _to_layer(
    rec: _LayerRecord, steps: int, samples: int, weight_bits: int, input_bits: int
) -> LayerWorkload:
    m = rec.module
    w = m.weight
    params = w.numel() + (m.bias.numel() if m.bias is not None else 0)
    if isinstance(m, nn.Linear):
        kind, in_ch, out_ch = "linear", m.in_features, m.out_features
        kernel, stride, padding, groups = (1, 1), (1, 1), (0, 0), 1
        in_hw = out_hw = (1, 1)
        macs = m.in_features * m.out_features
        # a Linear applied to [.., S, F] acts on every position: count them
        positions = 1
        for d in rec.in_shape[:-1]:
            positions *= d
        macs *= positions
    else:
        kind = "conv2d" if isinstance(m, nn.Conv2d) else "conv1d"
        in_ch, out_ch, groups = m.in_channels, m.out_channels, m.groups
        kernel, stride = _pair(m.kernel_size), _pair(m.stride)
        padding = _pair(m.padding) if not isinstance(m.padding, str) else (0, 0)
        in_hw = _pair(tuple(rec.in_shape[1:])) if kind == "conv2d" else (rec.in_shape[-1], 1)
        out_hw = _pair(tuple(rec.out_shape[1:])) if kind == "conv2d" else (rec.out_shape[-1], 1)
        macs = out_ch * out_hw[0] * out_hw[1] * (in_ch // groups) * kernel[0] * kernel[1]
    n = max(1, samples)
    return LayerWorkload(
        name=rec.name,
        kind=kind,
        in_ch=in_ch,
        out_ch=out_ch,
        kernel=kernel,
        stride=stride,
        padding=padding,
        groups=groups,
        in_hw=in_hw,
        out_hw=out_hw,
        pooled_out_hw=rec.pooled_hw if rec.pooled_hw and rec.pooled_hw != (0, 0) else None,
        params=int(params),
        has_bias=m.bias is not None,
        weight_bits=weight_bits,
        input_bits=1 if rec.binary else input_bits,
        timesteps=steps,
        spiking_input=rec.binary,
        has_neuron=rec.neuron is not None,
        neuron_kind=rec.neuron,
        weight_sparsity=float((w == 0).float().mean()),
        macs=int(macs),
        in_nonzero_per_step=[v / n for v in rec.nonzero],
        acs_per_step=[v / n for v in rec.acs],
        out_spikes_per_step=[v / n for v in rec.out_spikes] if rec.out_spikes is not None else None,
    )
