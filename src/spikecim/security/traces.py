"""Power traces of analog crossbars: what a probe on the accelerator's supply measures.

One read of one tile (rows i driven at V_i, columns j held at virtual ground, devices p of
a differential pair) draws from the drivers' rail

    I_read = Σ_p Σ_j Σ_i |V_i|·G_pij = Σ_i |V_i|·g_i,    g_i = Σ_p Σ_j G_pij  (µA from V, µS)
    E_read = v_read·I_read·t_read                                           (pJ: V·µA·ns·1e-3)

so a read's energy is the input weighted by each row's total conductance: non-negative
weights, which is why the first layer's sliding-window trace looks like a blurred input
(docs/references.md#power-side-channel). With IR drop the column currents are ``V @ G_eff``
(:mod:`spikecim.analog.circuit`), so ``g_i`` sums the effective conductances. Conductances
are those at the tiles' inference time without a read-noise draw.

Inputs as the analog layers encode them (:mod:`spikecim.analog.tiles`): ``amplitude``, one
read per input vector and input tile at ``V_i = v_read·k_i/n`` (k the DAC level of the
vector's abs-max scaling, n = 2^(bits−1) − 1; ``|x|`` when the DAC is off); ``bit_serial``,
one read per bit of k (rows at 0 or v_read; binary spikes take one read).

The periphery adds its activity-dependent energy from the hardware table (imc estimator):
each read of a tile whose input vector is not all zero converts every column of the tile
(ADC + multiplexer + shift-and-add per conversion), and every output of a layer followed by
a neuron updates that neuron once per step. Static power is left out: it carries nothing
about the input.

Sampling: one sample per read (all tiles of the layer together, ``read``), per read and
tile (``tile``) or per layer step (``layer``); a spiking model gives one row of samples per
timestep. :func:`measure_noise` adds the probe's Gaussian noise (σ as a fraction of the
largest sample) and its quantisation.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikecim.analog.config import CrossbarConfig
from spikecim.analog.layers import AnalogConv2d, AnalogLayer
from spikecim.analog.quant import abs_max_scale, level_count
from spikecim.analog.tiles import TileState
from spikecim.errors import SpikecimError
from spikecim.ops.conv import output_size

__all__ = [
    "LayerTrace",
    "Periphery",
    "Traces",
    "input_levels",
    "load_traces",
    "measure_noise",
    "periphery_from_arch",
    "read_current_ua",
    "read_energy_pj",
    "row_conductance_us",
    "sample",
]

PJ_PER_V_UA_NS = 1e-3  # 1 V · 1 µA · 1 ns = 1 fJ = 1e-3 pJ


def read_current_ua(v_v: torch.Tensor, g_us: torch.Tensor) -> torch.Tensor:
    """Supply current of one read, µA: ``Σ_p Σ_j Σ_i |V_i|·G_pij`` for inputs ``v_v[..., R]``
    (volts) on conductances ``g_us[P, R, C]`` (µS; P = 2 for a differential pair)."""
    return v_v.abs() @ g_us.sum(dim=(0, 2))


def read_energy_pj(current_ua: torch.Tensor, v_supply_v: float, t_read_ns: float) -> torch.Tensor:
    """Energy drawn from the rail at ``v_supply_v`` by ``current_ua`` during ``t_read_ns``."""
    return current_ua * (v_supply_v * t_read_ns * PJ_PER_V_UA_NS)


def row_conductance_us(tiles: TileState, cfg: CrossbarConfig) -> torch.Tensor:
    """``g_i = Σ_p Σ_j G_pij`` of every row of every input tile, ``[n_in, R]`` in µS: the
    programmed cells at the tiles' time (IR-drop effective conductances when enabled); the
    padding cells of a tile hold no device and count 0."""
    g = tiles.ir_eff_k if tiles.ir_eff_k is not None else tiles.g_drift_k
    if g is None:
        raise SpikecimError("security: layer not programmed; call spikecim.analog.program(model, seed)")
    g_us = g.detach().double().cpu() * (cfg.g_max_us - cfg.g_min_us) * tiles.mask.cpu()
    return g_us.sum(dim=(0, 3, 4, 5)).float()


def input_levels(x: torch.Tensor, rows: int, cfg: CrossbarConfig, encoding: str) -> torch.Tensor:
    """Word-line voltages in units of v_read, ``[N, B, in, L]`` for input vectors ``x[N, in, L]``
    split into tiles of ``rows``: B = 1 read per vector (amplitude) or one per bit of the DAC
    level (bit-serial; binary inputs take one). The DAC scales each vector's tile by its
    abs-max, as :func:`spikecim.analog.tiles._tile_products` does."""
    x = x.detach().float()
    if encoding == "amplitude" and not cfg.dac.enabled:
        return x.abs().unsqueeze(1)
    if encoding == "bit_serial" and bool(((x == 0) | (x == 1)).all()):
        return x.unsqueeze(1)
    n = level_count(cfg.dac.bits)
    parts = []
    for start in range(0, x.shape[1], rows):
        xi = x[:, start : start + rows]
        parts.append(torch.round(xi / abs_max_scale(xi, dim=1) * n).abs().clamp_(max=n))
    k = torch.cat(parts, dim=1)
    if encoding == "amplitude":
        return (k / n).unsqueeze(1)
    bits = torch.arange(max(n.bit_length(), 1), dtype=torch.int64)
    return ((k.to(torch.int64).unsqueeze(1) >> bits.view(1, -1, 1, 1)) & 1).float()


@dataclass(frozen=True)
class Periphery:
    """Activity-dependent periphery energies of the hardware table, pJ: one column
    conversion (ADC + multiplexer + shift-and-add) and one neuron update."""

    e_conversion_pj: float
    e_neuron_pj: float
    t_clock_ns: float
    table: str


def periphery_from_arch(name: str, spiking: bool) -> Periphery:
    """The periphery of an ``imc`` table (``spikecim hw`` tables): its ADC energy (NeuroSim
    SAR model, :func:`spikecim.hw.estimators.imc.adc_energy_pj`), ``e_mux_pj``,
    ``e_shift_add_pj``, ``e_neuron_update_pj`` (spiking) or ``e_activation_pj`` (ANN)."""
    from spikecim.hw.arch import load_architecture
    from spikecim.hw.estimators.imc import NS_PER_US, adc_energy_pj

    arch = load_architecture(name)
    if arch.estimator != "imc":
        raise SpikecimError(f"security.trace.arch: needs an imc table, '{name}' uses {arch.estimator}")
    p = arch.p
    return Periphery(
        e_conversion_pj=adc_energy_pj(p) + p.e_mux_pj + p.e_shift_add_pj,
        e_neuron_pj=p.e_neuron_update_pj if spiking else p.e_activation_pj,
        t_clock_ns=NS_PER_US / p.clock_mhz,
        table=name,
    )


@dataclass
class LayerTrace:
    """One layer's clean energies per read and tile, ``reads_pj[N, T, L, B, n_in]`` (L reads
    in time order, B bit-serial reads per vector, n_in input tiles read in parallel), and
    the layout of its reads: ``map_shape`` (H, W) of a convolution's output (None: a linear
    layer or reads not in raster order)."""

    name: str
    reads_pj: np.ndarray
    map_shape: tuple[int, int] | None
    info: dict = field(default_factory=dict)


@dataclass
class Traces:
    """The traces of every analog layer of one model on ``N`` inputs and their metadata."""

    layers: list[LayerTrace]
    meta: dict

    def sampled(self, sampling: str) -> dict[str, np.ndarray]:
        """Samples ``[N, T, S]`` per layer under ``sampling`` (``read``, ``tile``, ``layer``)."""
        return {lt.name: sample(lt.reads_pj, sampling) for lt in self.layers}

    def save(self, path: str | Path, sampling: str) -> Path:
        """Write ``<path>.npz`` (samples per layer, pJ) and ``<path>.json`` (metadata), each
        through :func:`spikecim.pipeline.folder.write_file`."""
        from spikecim.pipeline import folder

        path = Path(path)
        arrays = {lt.name: sample(lt.reads_pj, sampling).astype(np.float32) for lt in self.layers}
        npz = io.BytesIO()
        np.savez_compressed(npz, **arrays)
        folder.write_file(path.with_suffix(".npz"), npz.getvalue())
        meta = {
            **self.meta,
            "sampling": sampling,
            "unit": "pJ per sample",
            "layers": [{"name": lt.name, "map_shape": lt.map_shape, **lt.info} for lt in self.layers],
        }
        folder.write_file(path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
        return path.with_suffix(".npz")


def load_traces(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The samples and metadata that :meth:`Traces.save` wrote."""
    path = Path(path)
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(path.with_suffix(".json").read_text())


def sample(reads_pj: np.ndarray, sampling: str) -> np.ndarray:
    """``[N, T, L, B, n_in]`` -> ``[N, T, S]``: S = L·B (read), L·B·n_in (tile) or 1 (layer)."""
    n, t = reads_pj.shape[:2]
    if sampling == "tile":
        return reads_pj.reshape(n, t, -1)
    if sampling == "read":
        return reads_pj.sum(-1).reshape(n, t, -1)
    if sampling == "layer":
        return reads_pj.sum((2, 3, 4)).reshape(n, t, 1)
    raise SpikecimError(f"security.trace.sampling: unknown '{sampling}', allowed: read, tile, layer")


def measure_noise(
    samples: np.ndarray,
    level: float,
    gen: np.random.Generator,
    probe_bits: int | None = None,
    full_scale: float | None = None,
) -> np.ndarray:
    """What the probe records: ``samples + σ·N(0, 1)`` with σ = ``level``·``full_scale``
    (default: the largest sample), then, with ``probe_bits``, rounded to 2^bits − 1 steps
    over [0, full_scale] and clipped to it."""
    if not (math.isfinite(level) and level >= 0):
        raise SpikecimError(f"security.noise: must be a finite fraction >= 0, got {level}")
    full = float(np.max(samples)) if full_scale is None else float(full_scale)
    out = samples + level * full * gen.standard_normal(samples.shape) if level > 0 else samples.copy()
    if probe_bits is not None and full > 0:
        steps = 2**probe_bits - 1
        out = np.clip(np.round(out / full * steps), 0, steps) * (full / steps)
    return out


def layer_vectors(layer: AnalogLayer, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The input vectors a layer reads, ``[N, in, L]`` in read order, and the (H, W) of a
    convolution's reads (L = H·W, raster order; None for a linear layer, L = 1)."""
    if isinstance(layer, AnalogConv2d):
        cols = torch.nn.functional.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        h, w = output_size(x.shape[2:], layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        return cols, (h, w)
    return x.reshape(-1, x.shape[-1]).unsqueeze(-1), None


def neuron_layers(model: nn.Module) -> set[str]:
    """Names of the analog layers whose outputs reach a neuron (spiking or ReLU) before the
    next analog layer, in module order."""
    from spikecim.train.evaluate import activity_modules

    neurons = set(activity_modules(model))
    out, last = set(), None
    for name, m in model.named_modules():
        if isinstance(m, AnalogLayer):
            last = name
        elif name in neurons and last is not None:
            out.add(last)
            last = None
    return out
