"""Countermeasures against the power side channel, each a trace transform with its cost.

- ``noise_injection``: a dummy column per input tile, ``R`` cells at conductance ``g_d``
  driven by random bits (p = 1/2, an LFSR) at every read, draws
  ``v_read²·t_read·g_d·Binomial(R, 1/2)``: σ = v_read²·t_read·g_d·√R/2, set to
  ``level`` × the tile's largest read energy (every row at full scale, each column
  converted: a property of the crossbar, the same whatever inputs are recorded). Cost:
  ⌈g_d/g_max⌉ extra columns of R cells, half of them read per read; no ADC (the column is
  not converted).
- ``shuffle``: the reads of a layer step (a convolution's sliding windows) run in a random
  order drawn per inference, each output written back to its own address: the outputs
  are unchanged (:func:`shuffled_conv_forward`). Cost: a permutation table of
  L·⌈log2 L⌉ SRAM bits per layer, one index read per read. Within a tile the rows are
  summed at once, so permuting rows alone would change no read's current.
- ``dummy_reads``: ``fraction`` × L extra reads of random inputs (uniform DAC levels;
  Bernoulli at the real spike rate for binary inputs) at random places among the real
  ones, outputs discarded. Cost: that fraction of the layer's crossbar, ADC, multiplexer
  and shift-and-add energy and of its latency.
- ``balance``: constant-weight-sum column balancing. Extra columns per tile bring every
  row's total conductance Σ_p Σ_j G_ij up to the tile's largest, so a read's current is
  ``g_max_row·Σ_i V_i``: the weights no longer shape the trace (the input's sum still
  does). Cost: ⌈max_i(g_top − g_i)/g_max⌉ columns of R cells per tile, read with the others.

Costs use the ``imc`` table (:mod:`spikecim.hw.estimators.imc`): ``e_cell_read_pj``,
``a_cell_um2``, ``e_sram_bit_pj``, ``a_sram_bit_um2`` and the layer's own imc energy and
latency from the run's workload.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from spikecim.analog.layers import AnalogConv2d
from spikecim.analog.tiles import crossbar_patches

__all__ = [
    "balance_rows",
    "inject_noise",
    "insert_dummy_reads",
    "overhead",
    "shuffle_reads",
    "shuffled_conv_forward",
]


def balance_rows(g_row_us: torch.Tensor, rows_real: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row conductances ``[n_in, R]`` after balancing, and the conductance each tile's
    balancing columns add to its most deficient row (µS, ``[n_in]``). Rows past
    ``rows_real`` in the last tile hold no device and stay 0."""
    n_in, R = g_row_us.shape
    real = (torch.arange(n_in * R) < rows_real).view(n_in, R)
    top = torch.where(real, g_row_us, torch.zeros_like(g_row_us)).amax(dim=1, keepdim=True)
    balanced = torch.where(real, top.expand_as(g_row_us), torch.zeros_like(g_row_us))
    deficit = torch.where(real, top - g_row_us, torch.zeros_like(g_row_us)).amax(dim=1)
    return balanced, deficit


def shuffle_reads(reads: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """``reads[N, T, L, ...]`` with the L reads of every sample in a random order, one order
    per inference (sample) for all its T steps, as one permutation table holds it."""
    n, t, L = reads.shape[:3]
    order = np.argsort(gen.random((n, 1, L)), axis=2)
    order = np.broadcast_to(order, (n, t, L)).reshape(n, t, L, *([1] * (reads.ndim - 3)))
    return np.take_along_axis(reads, order, axis=2)


def insert_dummy_reads(reads: np.ndarray, dummy: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """``reads[N, T, L, ...]`` and ``dummy[N, T, D, ...]`` merged into ``[N, T, L + D, ...]``:
    the dummy reads at random places (drawn per sample and step), the real ones in order."""
    n, t, L = reads.shape[:3]
    d = dummy.shape[2]
    is_real = np.argsort(gen.random((n, t, L + d)), axis=2) < L  # L random places per row
    out = np.empty((n, t, L + d, *reads.shape[3:]), dtype=reads.dtype)
    out[is_real] = reads.reshape(n * t * L, *reads.shape[3:])  # row-major: real reads keep order
    out[~is_real] = dummy.reshape(n * t * d, *reads.shape[3:])
    return out


def inject_noise(
    reads: np.ndarray,
    level: float,
    top_pj: np.ndarray,
    rows: np.ndarray,
    unit_pj_per_us: float,
    gen: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Dummy-column current added to ``reads[N, T, L, B, n_in]`` (pJ); ``top_pj[n_in]`` each
    tile's largest read energy, ``rows[n_in]`` its real rows, ``unit_pj_per_us`` =
    v_read²·t_read·1e-3 (the energy of one full-scale row on 1 µS). Returns the new reads and
    each tile's dummy conductance g_d (µS)."""
    sigma = level * np.asarray(top_pj, dtype=np.float64)
    g_d = sigma / (unit_pj_per_us * np.sqrt(rows) / 2)
    on = gen.binomial(rows.astype(np.int64), 0.5, size=reads.shape)
    return reads + on * unit_pj_per_us * g_d, g_d


def shuffled_conv_forward(layer: AnalogConv2d, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The layer's output with its sliding-window reads in a random order: the patches are
    read permuted and every output is written back to its own place."""
    n = x.shape[0]
    cols = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    perm = torch.randperm(cols.shape[2], generator=gen)
    layer._ready(x)
    y_perm = crossbar_patches(cols[:, :, perm].contiguous(), layer.tiles, layer.config, layer.adc())
    y = torch.empty_like(y_perm)
    y[:, :, perm] = y_perm
    if layer.bias is not None:
        y = y + layer.bias[:, None]
    h, w = (
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, p, d, k, s in zip(
            x.shape[2:], layer.padding, layer.dilation, layer.kernel_size, layer.stride, strict=True
        )
    )
    return y.reshape(n, layer.out_channels, h, w)


def overhead(name: str, layers: list[dict], p, cm) -> dict[str, float]:
    """Extra energy (pJ per inference), latency (ns) and area (µm²) of countermeasure
    ``name`` on the ``imc`` table ``p``. ``layers``: per analog layer, ``reads`` (per step),
    ``steps``, ``rows`` (real rows of a full tile), ``imc_energy_pj``
    (its crossbar, ADC, multiplexer and shift-and-add energy), ``imc_latency_ns``,
    ``row_activity`` (the share of rows driven per read, of every bit-serial read),
    ``bit_reads`` (B, the bit-serial reads of one read: 1 for spikes and amplitude inputs),
    ``g_extra_us`` (noise injection: g_d, balance: the largest deficit, per tile) and
    ``g_max_us``; ``cm`` the countermeasure settings."""
    energy = latency = area = 0.0
    for layer in layers:
        reads, steps, rows = layer["reads"], layer["steps"], layer["rows"]
        if name in ("noise_injection", "balance"):
            cols = [math.ceil(g / layer["g_max_us"]) if g > 0 else 0 for g in layer["g_extra_us"]]
            cells = rows * sum(cols)
            active = 0.5 if name == "noise_injection" else layer["row_activity"]
            energy += reads * steps * layer.get("bit_reads", 1) * cells * active * p.e_cell_read_pj
            area += cells * p.a_cell_um2
        elif name == "shuffle":
            bits = reads * max(math.ceil(math.log2(reads)), 1) if reads > 1 else 0
            energy += steps * bits * p.e_sram_bit_pj
            area += bits * p.a_sram_bit_um2
        elif name == "dummy_reads":
            energy += cm.dummy_read_fraction * layer["imc_energy_pj"]
            latency += cm.dummy_read_fraction * layer["imc_latency_ns"]
    return {"energy_pj": energy, "latency_ns": latency, "area_um2": area}
