"""SpikeSim compatibility: the public energy/latency/area script, reproduced exactly.

Formulas (Moitra et al., IEEE TCAD 2023; docs/references.md#spikesim), with X = crossbar size,
k² crossbars per PE, T timesteps:

- PE energy = k²·E_xbar + (X/8)·(E_ADC + E_MUX)
- PE-cycle energy = E_Htree + E_fetch + E_neuron + (X/8)·PE + (X/8)·16·E_sub + (X/8)·E_temp + E_tilebuf
- layer energy = ⌈out_ch/X⌉·⌈in_ch/X⌉·out_dim²·PE-cycle energy·T
- PEs = Σ ⌈in_ch/X⌉·⌈out_ch/X⌉, tiles = ⌈PEs / PEs per tile⌉ (shared by all layers)
- area = tiles·tile area + Σ in_ch·in_dim²·A_cell·22 + Σ_{first five} out_ch·out_dim²·A_cell·22
- latency = 26 clocks per PE cycle; out_ch_L·out_dim_L²·T for the last layer plus
  ⌊0.75·out_ch_l·out_dim_l²⌋·T for each earlier one (layers overlap after 75 %)

``out_dim`` is the size after pooling (``pooled_out_hw`` when present). The script's quirks
are kept on purpose: dense (activity ignored), fully connected layers not costed,
membrane storage of five layers only, SRAM read energy equal to its area constant, tiles
shared across layers. The ``imc`` estimator is the corrected model.
"""

from __future__ import annotations

import math

from pydantic import Field

from spikecim.hw.estimators import Estimator, EstimatorParams, register_estimator

NS_PER_US = 1e3  # a clock in MHz has a period of 1e3/f ns


class SpikeSimParams(EstimatorParams):
    xbar_size: int = Field(gt=0, description="X: crossbar rows = columns")
    pes_per_tile: int = Field(gt=0)
    clock_mhz: float = Field(gt=0)
    pe_cycle_clocks: int = Field(gt=0)
    layer_overlap_frac: float = Field(ge=0, le=1, description="next layer starts after this share")
    cols_per_adc: int = Field(gt=0, description="the script's X/8: columns sharing one ADC")
    sub_ops_per_adc: int = Field(ge=0, description="the script's 16 shift-subtracts per ADC")
    membrane_layers: int = Field(ge=0, description="layers whose membrane storage is counted")
    storage_bits: int = Field(ge=0, description="the script's factor 22 on storage cells")
    e_xbar_read_pj: float = Field(ge=0)
    e_adc_pj: float = Field(ge=0)
    e_mux_pj: float = Field(ge=0)
    e_shift_sub_pj: float = Field(ge=0)
    e_temp_buffer_pj: float = Field(ge=0)
    e_tile_buffer_pj: float = Field(ge=0)
    e_htree_pj: float = Field(ge=0)
    e_mem_fetch_pj: float = Field(ge=0)
    e_neuron_pj: float = Field(ge=0)
    a_xbar_um2: float = Field(ge=0)
    a_adc_um2: float = Field(ge=0)
    a_mux_um2: float = Field(ge=0)
    a_shift_sub_um2: float = Field(ge=0)
    a_temp_buffer_um2: float = Field(ge=0)
    a_tile_buffer_um2: float = Field(ge=0)
    a_htree_um2: float = Field(ge=0)
    a_storage_cell_um2: float = Field(ge=0)


def _dims(layer) -> tuple[int, int]:
    out_hw = layer.pooled_out_hw or layer.out_hw
    return layer.in_hw[0], out_hw[0]


def _pes(layer, p) -> int:
    return math.ceil(layer.in_ch / p.xbar_size) * math.ceil(layer.out_ch / p.xbar_size)


@register_estimator
class SpikeSim(Estimator):
    name = "spikesim"
    Params = SpikeSimParams
    description = "the public SpikeSim script, quirks included (dense, conv layers only)"

    def costs_layer(self, layer, workload, p):
        return layer.kind in ("conv1d", "conv2d")

    def layer_energy_pj(self, layer, workload, p, dense):
        k2 = layer.kernel[0] * layer.kernel[1]
        adcs = p.xbar_size / p.cols_per_adc  # the script's X/8
        _, out_dim = _dims(layer)
        cycles = _pes(layer, p) * out_dim**2 * workload.steps_run(layer)  # PE cycles of the layer
        per_cycle = {
            "htree": p.e_htree_pj,
            "mem_fetch": p.e_mem_fetch_pj,
            "neuron": p.e_neuron_pj,
            "crossbar": adcs * k2 * p.e_xbar_read_pj,
            "adc": adcs * adcs * p.e_adc_pj,
            "mux": adcs * adcs * p.e_mux_pj,
            "shift_sub": adcs * p.sub_ops_per_adc * p.e_shift_sub_pj,
            "temp_buffer": adcs * p.e_temp_buffer_pj,
            "tile_buffer": p.e_tile_buffer_pj,
        }
        return {k: v * cycles for k, v in per_cycle.items()}

    def latencies_ns(self, layers, workload, p, dense):
        ns_per_pe_cycle = p.pe_cycle_clocks * NS_PER_US / p.clock_mhz
        out = []
        for i, layer in enumerate(layers):
            _, out_dim = _dims(layer)
            work = layer.out_ch * out_dim**2
            if i < len(layers) - 1:
                work = math.floor(p.layer_overlap_frac * work)
            out.append(work * workload.steps_run(layer) * ns_per_pe_cycle)
        return out

    def layer_latency_ns(self, layer, workload, p, dense):
        return self.latencies_ns([layer], workload, p, dense)[0]

    def layer_area_um2(self, layer, workload, p):
        return self.layer_areas_um2([layer], workload, p)[0]

    def layer_areas_um2(self, layers, workload, p):
        # storage cells per layer; the membrane only for the first ``membrane_layers`` (quirk)
        out = []
        for i, layer in enumerate(layers):
            in_dim, out_dim = _dims(layer)
            area = {"input_storage": layer.in_ch * in_dim**2 * p.a_storage_cell_um2 * p.storage_bits}
            if i < p.membrane_layers:
                area["membrane_storage"] = layer.out_ch * out_dim**2 * p.a_storage_cell_um2 * p.storage_bits
            out.append(area)
        return out

    def shared_area_um2(self, layers, workload, p):
        tiles = self._tiles(layers, p)
        k2 = layers[0].kernel[0] * layers[0].kernel[1] if layers else 1
        adcs = p.xbar_size / p.cols_per_adc
        per_tile = {
            "crossbar": p.pes_per_tile * k2 * p.a_xbar_um2,
            "adc": p.pes_per_tile * adcs * p.a_adc_um2,
            "mux": p.pes_per_tile * adcs * p.a_mux_um2,
            "shift_sub": adcs * p.a_shift_sub_um2,
            "temp_buffer": p.a_temp_buffer_um2,
            "tile_buffer": p.a_tile_buffer_um2,
            "htree": p.a_htree_um2,
        }
        return {k: v * tiles for k, v in per_tile.items()}

    def extras(self, layers, workload, p):
        return {"pes": float(sum(_pes(layer, p) for layer in layers)), "tiles": float(self._tiles(layers, p))}

    def _tiles(self, layers, p) -> int:
        return math.ceil(sum(_pes(layer, p) for layer in layers) / p.pes_per_tile)

    def notes(self, workload, p, dense):
        notes = [
            (
                "spikesim: reproduces the public script: dense (spike activity ignored), tiles shared "
                "across layers, membrane storage of the first layers only"
            )
        ]
        if any(layer.kind == "linear" for layer in workload.layers):
            notes.append("spikesim: fully connected layers are not costed (as in the script)")
        if any(layer.kind == "matmul" for layer in workload.layers):
            notes.append("spikesim: matmuls of two activations are not costed (the script has none)")
        return notes
