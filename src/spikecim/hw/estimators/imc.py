"""spikecim's crossbar accelerator model: activity-aware, every layer, every component.

Hierarchy: crossbars (rows R × cols C, ``bits_per_cell``) grouped into PEs and tiles,
ADCs shared by ``cols_per_adc`` columns through a multiplexer, shift-and-add, a neuron
module with membrane storage, input/output buffers, an H-tree, and a global buffer.

Mapping of one layer (im2col, tiles allocated per layer, never shared):
  w = min(weight_bits, max_weight_bits), slices = ⌈w / bits_per_cell⌉ columns per weight,
  rows = in_ch/groups·k_h·k_w, cols = out_ch/groups·slices,
  crossbars = groups·⌈rows/R⌉·⌈cols/C⌉, PEs = ⌈crossbars/xbars_per_pe⌉, tiles = ⌈PEs/pes_per_tile⌉.
Input cycles: b = 1 for spikes, min(input_bits, max_input_bits) for real-valued inputs
(bit-serial, one crossbar read per input bit).

Per step t with input activity a_t (fraction of non-zero inputs; 1 in dense mode) and
M = out_h·out_w matrix-vector products:
  crossbar     = M·b·a_t·rows·cols·groups·e_cell_read            (cells on active rows)
  conversions  = M·b·groups·cols·Σ_row-blocks (1 − (1 − a_t)^rows_in_block)
                 (a column block is read, and its ADCs fire, when any of its rows is active)
  adc, mux, shift_add = conversions·(e_adc(adc_bits), e_mux, e_shift_add)
  neuron       = out_size·e_neuron_update (spiking) or out_size·e_activation (ANN)
  membrane     = out_size·s·m·2·e_sram_bit (read + write, every step, every layer), m = the recorded
                 membrane bits, at most the table's membrane_bits, s = the state variables
                 per neuron (neuron_states: 2 for the synaptic neuron's current and membrane)
  write        = rows·cols·groups·e_cell_write (a dynamic operand, e.g. the b of a matmul of
                 activations, is written to its crossbars at every step)
  input_buffer = in_size·b·e_sram_bit; output_buffer = out_size·b_out·e_sram_bit
  interconnect = (in_size·b + out_size·b_out)·e_htree_bit;  mem_fetch = in_size·b·e_fetch_bit
Every step's terms are weighted by the fraction of samples still running, r_t.
Membrane storage area = stored neurons·s·m·a_sram_bit, once per sharing group (stored neurons:
out_size, or out_size/G when G channel groups share one membrane).
ADC, after NeuroSim's SAR model: E = (s·bits + o + c) µW · (bits + 1)·t_adc_bit; area from its
transistor counts (adc_nmos_count + adc_nmos_count_per_bit·(bits−1)) NMOS, likewise PMOS
(NeuroSim: 269 + 109·(bits−1) and 209 + 73·(bits−1)).
Endurance of the written cells: each is written once per step, so ``writes_per_cell_per_inference``
= Σ_t r_t and the lifetime at ``inference_rate_hz`` is endurance_cycles / (that × rate).
Latency: Σ_t r_t·[M·(1 − (1 − a_t)^rows)·b·(t_read + cols_per_adc·(adc_bits + 1)·t_adc_bit)
+ min(rows, xbar_rows)·t_write_row for a dynamic operand (rows written one by one, every
crossbar at once)]; layers in sequence (the CostReport also gives the pipelined rate).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from spikecim.errors import SpikecimError
from spikecim.hw.estimators import Estimator, EstimatorParams, register_estimator
from spikecim.hw.estimators._common import (
    activity,
    crossbar_grid,
    fan_in,
    membrane_bits,
    n_mvm,
    p_any_active,
    stored_states,
    stores_membrane,
)

PJ_PER_UW_NS = 1e-3  # unit conversion: 1 µW for 1 ns is 1e-3 pJ
NS_PER_US = 1e3  # a clock in MHz has a period of 1e3/f ns
READ_AND_WRITE = 2  # a membrane is read and written back at every step


class ImcParams(EstimatorParams):
    device: Literal["rram", "sram"]
    xbar_rows: int = Field(gt=0)
    xbar_cols: int = Field(gt=0)
    bits_per_cell: int = Field(gt=0, le=8)
    max_weight_bits: int = Field(gt=0, le=32)
    max_input_bits: int = Field(gt=0, le=32)
    adc_bits: int = Field(gt=0, le=16)
    cols_per_adc: int = Field(gt=0)
    xbars_per_pe: int = Field(gt=0)
    pes_per_tile: int = Field(gt=0)
    membrane_bits: int = Field(gt=0)
    clock_mhz: float = Field(gt=0)
    t_adc_bit_ns: float = Field(ge=0)
    e_cell_read_pj: float = Field(ge=0)
    adc_power_per_bit_uw: float = Field(ge=0)
    adc_power_offset_uw: float = Field(ge=0)
    adc_column_power_uw: float = Field(ge=0)
    e_mux_pj: float = Field(ge=0)
    e_shift_add_pj: float = Field(ge=0)
    e_neuron_update_pj: float = Field(ge=0)
    e_activation_pj: float = Field(ge=0)
    e_sram_bit_pj: float = Field(ge=0)
    e_htree_bit_pj: float = Field(ge=0)
    e_fetch_bit_pj: float = Field(ge=0)
    e_cell_write_pj: float | None = Field(
        None, ge=0, description="one cell written (needed by dynamic operands)"
    )
    t_write_row_ns: float | None = Field(
        None, ge=0, description="one crossbar row written (dynamic operands)"
    )
    endurance_cycles: float | None = Field(
        None, gt=0, description="writes a cell survives (None: unlimited, as SRAM)"
    )
    inference_rate_hz: float = Field(
        1000.0, gt=0, description="inference rate at which the lifetime of written cells is given"
    )
    adc_nmos_count: int = Field(ge=0, description="NMOS transistors of a 1-bit SAR ADC")
    adc_nmos_count_per_bit: int = Field(ge=0, description="NMOS transistors per extra ADC bit")
    adc_pmos_count: int = Field(ge=0, description="PMOS transistors of a 1-bit SAR ADC")
    adc_pmos_count_per_bit: int = Field(ge=0, description="PMOS transistors per extra ADC bit")
    a_cell_um2: float = Field(ge=0)
    a_adc_nmos_um2: float = Field(ge=0)
    a_adc_pmos_um2: float = Field(ge=0)
    a_mux_um2: float = Field(ge=0)
    a_shift_add_um2: float = Field(ge=0)
    a_neuron_module_um2: float = Field(ge=0, description="per tile that holds a spiking layer")
    a_tile_buffer_um2: float = Field(ge=0)
    a_htree_um2: float = Field(ge=0, description="per tile")
    a_sram_bit_um2: float = Field(ge=0)


def adc_energy_pj(p: ImcParams) -> float:
    """Energy of one conversion (NeuroSim SarADC): power (µW) × (bits + 1)·t_adc_bit (ns)."""
    power_uw = p.adc_power_per_bit_uw * p.adc_bits + p.adc_power_offset_uw + p.adc_column_power_uw
    return power_uw * (p.adc_bits + 1) * p.t_adc_bit_ns * PJ_PER_UW_NS


def adc_area_um2(p: ImcParams) -> float:
    """Area of one SAR ADC from NeuroSim's transistor counts."""
    nmos = p.adc_nmos_count + p.adc_nmos_count_per_bit * (p.adc_bits - 1)
    pmos = p.adc_pmos_count + p.adc_pmos_count_per_bit * (p.adc_bits - 1)
    return nmos * p.a_adc_nmos_um2 + pmos * p.a_adc_pmos_um2


def mapping(layer, p: ImcParams) -> dict[str, int]:
    """How a layer lands on crossbars (per group; ``crossbars`` counts all groups)."""
    slices = math.ceil(min(layer.weight_bits, p.max_weight_bits) / p.bits_per_cell)
    rows = fan_in(layer)
    cols = (layer.out_ch // layer.groups) * slices
    rb, cb = crossbar_grid(rows, cols, p.xbar_rows, p.xbar_cols)
    xbars = layer.groups * rb * cb
    pes = math.ceil(xbars / p.xbars_per_pe)
    return {
        "rows": rows,
        "cols": cols,
        "row_blocks": rb,
        "col_blocks": cb,
        "crossbars": xbars,
        "pes": pes,
        "tiles": math.ceil(pes / p.pes_per_tile),
        "slices": slices,
    }


def endurance(layers, workload, p: ImcParams) -> dict[str, float]:
    """Wear of the cells written at run time: ``writes_per_cell_per_inference`` (each cell of a
    dynamic operand is written once per step a sample runs, Σ_t running(t); the most worn
    layer), ``cell_writes_per_inference`` (cells written, all layers, bit slices counted) and,
    with a finite ``endurance_cycles``, ``lifetime_s`` = endurance / (writes per cell per
    inference × ``inference_rate_hz``). Empty without dynamic operands."""
    dynamic = [layer for layer in layers if layer.dynamic]
    if not dynamic:
        return {}
    per_cell = max(workload.steps_run(layer) for layer in dynamic)
    cells = sum(
        workload.steps_run(layer) * layer.cell_writes_per_step * mapping(layer, p)["slices"]
        for layer in dynamic
    )
    out = {"writes_per_cell_per_inference": per_cell, "cell_writes_per_inference": cells}
    if p.endurance_cycles is not None and per_cell > 0:
        out["lifetime_s"] = p.endurance_cycles / (per_cell * p.inference_rate_hz)
    return out


def _needs_write_costs(layer, p: ImcParams) -> ImcParams:
    if p.e_cell_write_pj is None or p.t_write_row_ns is None:
        raise SpikecimError(
            f"layer '{layer.name}' ({layer.kind}) writes crossbars at run time; the table needs "
            "params.e_cell_write_pj and params.t_write_row_ns"
        )
    return p


def _input_bits(layer, p) -> int:
    return 1 if layer.spiking_input else min(layer.input_bits, p.max_input_bits)


def _spiking_neuron(layer, workload) -> bool:
    return workload.spiking and layer.has_neuron


@register_estimator
class Imc(Estimator):
    name = "imc"
    Params = ImcParams
    description = "activity-aware IMC crossbar accelerator (SpikeSim hierarchy, quirks fixed)"
    activity_components = ("crossbar", "adc", "mux", "shift_add")

    def layer_energy_pj(self, layer, workload, p, dense):
        m = mapping(layer, p)
        b = _input_bits(layer, p)
        b_out = 1 if workload.spiking else min(layer.input_bits, p.max_input_bits)
        M = n_mvm(layer)
        last_rows = m["rows"] - (m["row_blocks"] - 1) * p.xbar_rows
        e_adc = adc_energy_pj(p)
        cells = conversions = 0.0
        for t in range(layer.timesteps):
            a, r = activity(layer, t, dense), workload.running(t)
            cells += r * M * b * a * m["rows"] * m["cols"] * layer.groups
            blocks = (m["row_blocks"] - 1) * p_any_active(a, p.xbar_rows) + p_any_active(a, last_rows)
            conversions += r * M * b * layer.groups * m["cols"] * blocks
        T = workload.steps_run(layer)
        in_bits = layer.in_size * b * T
        out_bits = layer.out_size * b_out * T
        e = {
            "crossbar": cells * p.e_cell_read_pj,
            "adc": conversions * e_adc,
            "mux": conversions * p.e_mux_pj,
            "shift_add": conversions * p.e_shift_add_pj,
        }
        if _spiking_neuron(layer, workload):
            e["neuron"] = layer.out_size * T * p.e_neuron_update_pj
            e["membrane"] = (
                layer.out_size
                * layer.neuron_states
                * T
                * membrane_bits(layer, p.membrane_bits)
                * READ_AND_WRITE
                * p.e_sram_bit_pj
            )
        elif layer.has_neuron:
            e["neuron"] = layer.out_size * T * p.e_activation_pj
        e["input_buffer"] = in_bits * p.e_sram_bit_pj
        e["output_buffer"] = out_bits * p.e_sram_bit_pj
        e["interconnect"] = (in_bits + out_bits) * p.e_htree_bit_pj
        e["mem_fetch"] = in_bits * p.e_fetch_bit_pj
        if layer.dynamic:
            _needs_write_costs(layer, p)
            e["write"] = T * m["rows"] * m["cols"] * layer.groups * p.e_cell_write_pj
        return e

    def layer_latency_ns(self, layer, workload, p, dense):
        m = mapping(layer, p)
        b = _input_bits(layer, p)
        cycle_ns = NS_PER_US / p.clock_mhz + p.cols_per_adc * (p.adc_bits + 1) * p.t_adc_bit_ns
        M = n_mvm(layer)
        write_ns = (
            min(m["rows"], p.xbar_rows) * _needs_write_costs(layer, p).t_write_row_ns
            if layer.dynamic
            else 0.0
        )
        return sum(
            workload.running(t)
            * (M * p_any_active(activity(layer, t, dense), m["rows"]) * b * cycle_ns + write_ns)
            for t in range(layer.timesteps)
        )

    def layer_area_um2(self, layer, workload, p):
        m = mapping(layer, p)
        tiles = m["tiles"]
        xbars = tiles * p.pes_per_tile * p.xbars_per_pe  # allocated, including unused slots
        adcs = xbars * p.xbar_cols / p.cols_per_adc
        a = {
            "crossbar": xbars * p.xbar_rows * p.xbar_cols * p.a_cell_um2,
            "adc": adcs * adc_area_um2(p),
            "mux": adcs * p.a_mux_um2,
            "shift_add": tiles * (p.xbar_cols / p.cols_per_adc) * p.a_shift_add_um2,
            "tile_buffer": tiles * p.a_tile_buffer_um2,
            "interconnect": tiles * p.a_htree_um2,
        }
        if _spiking_neuron(layer, workload):
            a["neuron"] = tiles * p.a_neuron_module_um2
            if stores_membrane(layer, workload):
                a["membrane"] = (
                    stored_states(layer) * membrane_bits(layer, p.membrane_bits) * p.a_sram_bit_um2
                )
        a["input_buffer"] = layer.in_size * _input_bits(layer, p) * p.a_sram_bit_um2
        return a

    def extras(self, layers, workload, p):
        maps = [mapping(layer, p) for layer in layers]
        return {
            "tiles": float(sum(m["tiles"] for m in maps)),
            "crossbars": float(sum(m["crossbars"] for m in maps)),
            "adc_energy_pj": adc_energy_pj(p),
            "adc_area_um2": adc_area_um2(p),
            **endurance(layers, workload, p),
        }

    def notes(self, workload, p, dense):
        mode = "dense upper bound" if dense else "activity-aware (traced spikes per layer per step)"
        return [
            (
                f"imc: {p.device} {p.xbar_rows}x{p.xbar_cols} crossbars, {p.adc_bits}-bit ADCs, {mode}; "
                "tiles allocated per layer; layers run in sequence"
            )
        ]
