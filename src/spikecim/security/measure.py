"""Record the power traces of a model on its crossbars (:mod:`spikecim.security.traces`).

A forward pre-hook on every analog layer sees the inputs it reads, batch by batch, while
the analog model runs its ordinary forward (a spiking model's layers read ``[T·B, ...]``,
one read sequence per timestep; a linear layer on tokens reads each token at each step).
Countermeasures that act on the reads (``balance``, ``shuffle``, ``dummy_reads``,
``noise_injection``; :mod:`spikecim.security.countermeasures`) are applied here, as the
hardware would apply them during inference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikecim.analog.config import CrossbarConfig
from spikecim.analog.convert import analog_layers
from spikecim.analog.layers import AnalogConv2d
from spikecim.analog.quant import level_count
from spikecim.security import countermeasures as cms
from spikecim.security.config import CountermeasureConfig, TraceConfig
from spikecim.security.traces import (
    PJ_PER_V_UA_NS,
    LayerTrace,
    Periphery,
    Traces,
    input_levels,
    layer_vectors,
    neuron_layers,
    row_conductance_us,
)
from spikecim.train.seeding import seeded

__all__ = ["record_traces"]


@torch.no_grad()
def record_traces(
    analog_model: nn.Module,
    x: torch.Tensor,
    model_input,
    cfg: CrossbarConfig,
    trace: TraceConfig,
    periphery: Periphery,
    countermeasures: CountermeasureConfig | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> Traces:
    """Clean traces (no probe noise) of every analog layer of ``analog_model`` on ``x``
    (encoded by ``model_input``, a :class:`~spikecim.train.evaluate.ModelInput`). ``seed``
    seeds the encoder, the countermeasures' draws and the crossbars' read noise (drawn in a
    forked global state, left as it was found), so the same seed gives the same traces."""
    cm = countermeasures or CountermeasureConfig()
    gen = np.random.default_rng(seed)
    t_read_ns = trace.t_read_ns if trace.t_read_ns is not None else periphery.t_clock_ns
    unit = cfg.v_read_v**2 * t_read_ns * PJ_PER_V_UA_NS  # one full-scale row on 1 µS, pJ
    names = {m: n for n, m in analog_model.named_modules()}
    with_neuron = neuron_layers(analog_model)
    layers = analog_layers(analog_model)
    state: dict[str, dict] = {}
    for layer in layers:
        g_row = row_conductance_us(layer.tiles, cfg)
        deficit = None
        if "balance" in cm.names:
            g_row, deficit = cms.balance_rows(g_row, layer.tiles.in_features)
        state[names[layer]] = {
            "g_row": g_row,
            "deficit": deficit,
            "calls": [],
            "batches": [],
            "map": None,
            "active": [],
        }

    def hook(layer, args):
        st = state[names[layer]]
        reads, active, st["map"] = _layer_reads(
            layer, args[0], st, cfg, trace, periphery, names[layer] in with_neuron, unit, cm, gen
        )
        st["calls"].append(reads)
        st["active"].append(active)

    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    enc_gen = torch.Generator().manual_seed(seed)
    try:
        with seeded(seed):  # the crossbars' read noise comes from the global generator
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size]
                encoded = model_input.encode(xb, enc_gen)
                steps = encoded.shape[0] if model_input.batch_dim == 1 else 1
                analog_model(encoded)
                for st in state.values():
                    calls = np.concatenate(st["calls"]) if st["calls"] else np.zeros((0,))
                    st["calls"] = []
                    st["batches"].append(_per_sample(calls, steps, xb.shape[0]))
    finally:
        for h in handles:
            h.remove()
    out = []
    for layer in layers:
        st = state[names[layer]]
        reads = np.concatenate(st["batches"])  # [N, T, L, B, n_in]
        info = _layer_info(layer, reads, cfg, st)
        if "shuffle" in cm.names:
            reads = cms.shuffle_reads(reads, gen)
        if "noise_injection" in cm.names:
            rows = np.array(info["rows_per_tile"], dtype=np.float64)
            top = _largest_reads(layer, st["g_row"], periphery, unit, names[layer] in with_neuron)
            reads, g_d = cms.inject_noise(reads, cm.noise_injection_level, top, rows, unit, gen)
            info["g_extra_us"] = [float(g) for g in g_d]
        shuffled = "shuffle" in cm.names or "dummy_reads" in cm.names
        out.append(LayerTrace(names[layer], reads, None if shuffled else st["map"], info))
    meta = {
        "encoding": trace.encoding,
        "t_read_ns": t_read_ns,
        "v_read_v": cfg.v_read_v,
        "periphery": periphery.__dict__,
        "countermeasures": cm.model_dump(),
        "samples": int(x.shape[0]),
    }
    return Traces(out, meta)


def _per_sample(calls: np.ndarray, steps: int, n: int) -> np.ndarray:
    """A batch's reads ``[T·N·S, L, B, n_in]`` (time-major, then sample, then token) as
    ``[N, T, S·L, B, n_in]``: the S tokens a linear layer reads at a step (a transformer's
    ``[T, N, S, in]``) are S reads of that step, in token order; S = 1 without tokens."""
    tokens = calls.shape[0] // (steps * n)
    return calls.reshape(steps, n, tokens * calls.shape[1], *calls.shape[2:]).swapaxes(0, 1)


def _layer_reads(layer, x, st, cfg, trace, periphery, has_neuron, unit, cm, gen):
    """Energies ``[M, L(+D), B, n_in]`` of the reads of one call of a layer on ``x`` (M
    inputs), the share of its rows driven per read, and the (H, W) of its reads."""
    rows = layer.tiles.grid[2]
    if isinstance(layer, AnalogConv2d) and _levels_are_inputs(x, cfg, trace.encoding):
        reads, driven, map_shape = _conv_energies(layer, x, st["g_row"], periphery, unit)
        levels_shape, rate = (x.shape[0], 1, st["g_row"].numel(), reads.shape[1]), driven
        binary = bool(((x == 0) | (x == 1)).all())  # or analog levels with the DAC off
    else:
        vectors, map_shape = layer_vectors(layer, x)
        levels = input_levels(vectors, rows, cfg, trace.encoding)  # [M, B, in, L]
        reads = _tile_energies(levels, st["g_row"], rows, layer, periphery, unit)
        binary = bool(((levels == 0) | (levels == 1)).all())
        driven = rate = float((levels != 0).float().mean())
        levels_shape = levels.shape
    if has_neuron:  # every output of a read updates its neuron once, shared over the tiles
        reads[:, :, 0, :] += _neuron_updates_pj(layer, periphery) / reads.shape[3]
    if "dummy_reads" in cm.names:
        m, b, _, n_reads = levels_shape
        d = max(round(cm.dummy_read_fraction * n_reads), 1)
        dummy = _dummy_levels((m, b, layer.tiles.in_features, d), binary, rate, cfg, gen)
        dummy_reads = _tile_energies(dummy, st["g_row"], rows, layer, periphery, unit)
        reads = cms.insert_dummy_reads(reads[:, None], dummy_reads[:, None], gen)[:, 0]
    return reads, driven, map_shape


def _levels_are_inputs(x: torch.Tensor, cfg, encoding: str) -> bool:
    """Whether the word-line levels equal ``|x|`` (DAC off) or ``x`` (binary spikes)."""
    if encoding == "amplitude" and not cfg.dac.enabled:
        return True
    return bool(((x == 0) | (x == 1)).all())


def _conv_energies(layer, x, g_row, periphery, unit):
    """:func:`_tile_energies` of a convolution whose levels are its inputs, as one ``conv2d``
    per tile with the row conductances as kernel (no unfolding)."""
    n_in, R = g_row.shape
    c, (kh, kw) = layer.in_channels, layer.kernel_size
    flat = torch.zeros(n_in, n_in * R)
    for i in range(n_in):
        flat[i, i * R : (i + 1) * R] = g_row[i]
    kernel = flat[:, : c * kh * kw].reshape(n_in, c, kh, kw)
    conv = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
    xa = x.detach().float().abs()
    e = F.conv2d(xa, kernel, **conv)  # [M, n_in, H, W]
    mask = torch.zeros(n_in, n_in * R)
    for i in range(n_in):
        mask[i, i * R : (i + 1) * R] = 1
    active = F.conv2d((xa != 0).float(), mask[:, : c * kh * kw].reshape(n_in, c, kh, kw), **conv) > 0
    n_cols = layer.weight.shape[0] * layer.tiles.grid[4]
    map_shape = tuple(e.shape[2:])
    e = e * unit + active * (n_cols * periphery.e_conversion_pj)
    reads = e.flatten(2).transpose(1, 2).unsqueeze(2)  # [M, L, 1, n_in]
    return reads.double().numpy(), float((xa != 0).float().mean()), map_shape


def _tile_energies(levels, g_row, rows, layer, periphery, unit) -> np.ndarray:
    """``levels[M, B, in, L]`` -> energies ``[M, L, B, n_in]``: Σ_i V_i·g_i per tile times the
    read's energy unit, plus one conversion per column of every tile read with a non-zero input."""
    n_in = g_row.shape[0]
    n_cols = layer.weight.shape[0] * layer.tiles.grid[4]  # outputs × slices of each input tile
    parts = []
    for i in range(n_in):
        li = levels[:, :, i * rows : (i + 1) * rows]
        e = torch.einsum("mbrl,r->mlb", li, g_row[i, : li.shape[2]]) * unit
        active = (li != 0).any(dim=2).transpose(1, 2)  # [M, L, B]
        parts.append(e + active * (n_cols * periphery.e_conversion_pj))
    return torch.stack(parts, dim=-1).double().numpy()


def _largest_reads(layer, g_row, periphery, unit, has_neuron: bool) -> np.ndarray:
    """Each tile's largest read energy ``[n_in]`` (pJ): every real row at full scale, every
    column converted, and the neuron updates where :func:`_layer_reads` adds them."""
    ones = torch.ones(1, 1, layer.tiles.in_features, 1)
    top = _tile_energies(ones, g_row, layer.tiles.grid[2], layer, periphery, unit)[0, 0, 0]
    if has_neuron:
        top[0] += _neuron_updates_pj(layer, periphery)
    return top


def _neuron_updates_pj(layer, periphery) -> float:
    """One read's neuron updates: every output of the layer updates its neuron once (charged
    to the first tile, shared over a read's bit-serial reads)."""
    return layer.weight.shape[0] * periphery.e_neuron_pj


def _dummy_levels(shape, binary: bool, rate: float, cfg, gen) -> torch.Tensor:
    """Random read inputs ``shape = [M, B, in, d]``: Bernoulli bits at the real inputs' rate
    when the inputs are binary (spikes, bit planes), uniform DAC levels otherwise."""
    if binary:
        return torch.from_numpy((gen.random(shape) < rate).astype(np.float32))
    n = level_count(cfg.dac.bits) if cfg.dac.enabled else 2**16
    return torch.from_numpy((gen.integers(0, n + 1, size=shape) / n).astype(np.float32))


def _layer_info(layer, reads: np.ndarray, cfg: CrossbarConfig, st: dict) -> dict:
    """What the cost of a countermeasure needs to know about a layer."""
    _, n_in, R = layer.tiles.grid[:3]
    in_f = layer.tiles.in_features
    rows = [min(R, in_f - i * R) for i in range(n_in)]
    deficit = st["deficit"]
    return {
        "reads": int(reads.shape[2]),
        "steps": int(reads.shape[1]),
        "tiles": int(n_in),
        "rows": int(R),
        "rows_per_tile": rows,
        "bit_reads": int(reads.shape[3]),
        "g_max_us": float(cfg.g_max_us),
        "g_extra_us": [] if deficit is None else [float(g) for g in deficit],
        "mean_pj": float(reads.sum((2, 3, 4)).mean()),
        "row_activity": float(np.mean(st["active"])) if st["active"] else 0.0,
    }
