"""A digital SNN/ANN systolic accelerator in the style of SATA (Yin et al., IEEE TCAD 2023;
docs/references.md#sata).

A PE array of ``pe_rows × pe_cols`` with a weight-stationary dataflow: the array holds a
block of ``pe_rows`` inputs × ``pe_cols`` outputs of the unrolled weight matrix; inputs
stream through once per column fold, partial sums and membranes live in the output
buffer. Words are ``word_bits`` wide. Per step t (ops_t = triggered accumulates ``acs[t]``
in event mode, where zero inputs are skipped; ``macs`` in dense mode):

  compute   = ops_t·(e_acc + e_and) on spikes, ops_t·(e_mul + e_acc) on real-valued inputs,
              ops_t·(e_acc + e_mux) on real-valued inputs with ternary (≤ 2-bit) static weights
              (BitLinear: add or subtract the input, no multiplier; docs/lm.md)
  spad      = ops_t·e_spad                         (PE-local weight/psum register access)
  neuron    = out_size·(e_add + e_cmp + 2·e_mux + 3·e_reg + e_shift)   LIF update (spiking)
              out_size·(e_cmp + e_mux)                                 ReLU (ANN)
  input_sram  = ⌈in_size·b/word⌉·col_folds·e_sram,  col_folds = ⌈out_ch/pe_cols⌉
  output_sram = 2·out_size·row_folds·e_sram,        row_folds = ⌈fan_in/pe_rows⌉
                (read + write of the partial sum / membrane at every row fold)
  weight_sram = ⌈weights·w/word⌉·e_sram             (weights re-read every step)
  dram        = weight words once per inference if the layer fits the weight buffer,
                else every step; outputs (and membranes, spiking) spill to DRAM (write +
                read) every step when they exceed the output buffer; a membrane is stored
                with its recorded bits, at most membrane_bits, each of a neuron's
                neuron_states state variables (the synaptic neuron: current and membrane)
  weight_write = ⌈weights·w/word⌉·e_sram every step for a dynamic operand (the b of a
                matmul of activations is written to the weight buffer at run time)
Every step's terms are weighted by r_t, the fraction of samples still running.
Latency: Σ_t ⌈ops_t / (pe_rows·pe_cols)⌉ + ⌈out_size/pe_cols⌉ cycles at ``clock_mhz``.
Area (shared by all layers): PE array + weight, input and output buffers.
"""

from __future__ import annotations

import math

from pydantic import Field

from spikecim.hw.estimators import Estimator, EstimatorParams, register_estimator
from spikecim.hw.estimators._common import BITS_PER_KB, fan_in, membrane_bits, stored_states

NS_PER_US = 1e3  # a clock in MHz has a period of 1e3/f ns


class SystolicParams(EstimatorParams):
    pe_rows: int = Field(gt=0)
    pe_cols: int = Field(gt=0)
    clock_mhz: float = Field(gt=0)
    word_bits: int = Field(gt=0)
    membrane_bits: int = Field(gt=0)
    weight_buffer_kb: float = Field(ge=0)
    input_buffer_kb: float = Field(ge=0)
    output_buffer_kb: float = Field(ge=0)
    e_mul_pj: float = Field(ge=0)
    e_acc_pj: float = Field(ge=0)
    e_add_pj: float = Field(ge=0)
    e_and_pj: float = Field(ge=0)
    e_cmp_pj: float = Field(ge=0)
    e_mux_pj: float = Field(ge=0)
    e_reg_pj: float = Field(ge=0)
    e_shift_pj: float = Field(ge=0)
    e_dram_pj: float = Field(ge=0, description="per word access")
    e_sram_pj: float = Field(ge=0, description="per word access")
    e_spad_pj: float = Field(ge=0, description="per word access")
    a_pe_um2: float = Field(ge=0)
    a_sram_bit_um2: float = Field(ge=0)


def lif_update_pj(p: SystolicParams) -> float:
    """A LIF update = add + compare + 2 mux + 3 register + shift.

    SATA_Sim's LIF count (docs/references.md#sata-energies).
    """
    n = LIF_UPDATE_OPS
    return (
        n["add"] * p.e_add_pj + n["cmp"] * p.e_cmp_pj + n["mux"] * p.e_mux_pj
        + n["reg"] * p.e_reg_pj + n["shift"] * p.e_shift_pj
    )  # fmt: skip


LIF_UPDATE_OPS = {"add": 1, "cmp": 1, "mux": 2, "reg": 3, "shift": 1}  # SATA_Sim: one LIF update
READ_AND_WRITE = 2  # a partial sum / membrane is read and written back


def words(bits: float, p: SystolicParams) -> float:
    return math.ceil(bits / p.word_bits)


def layer_ops(layer, t: int, dense: bool) -> float:
    return float(layer.macs) if dense else layer.acs_per_step[t]


TERNARY_BITS = 2  # a weight of at most 2 bits is {−s, 0, s}: sign and zero, no multiplier


def op_pj(layer, workload, p) -> float:
    if workload.spiking and layer.spiking_input:
        return p.e_acc_pj + p.e_and_pj  # spike-driven MAC = accumulate + AND
    if not layer.dynamic and layer.weight_bits <= TERNARY_BITS:
        return p.e_acc_pj + p.e_mux_pj  # ternary weight: add or subtract the input (sign mux), or skip
    return p.e_mul_pj + p.e_acc_pj


def neuron_pj(layer, workload, p) -> float:
    if not layer.has_neuron:
        return 0.0
    return lif_update_pj(p) if workload.spiking else p.e_cmp_pj + p.e_mux_pj


def out_bits(layer, workload) -> int:
    return 1 if workload.spiking else layer.input_bits


@register_estimator
class Systolic(Estimator):
    name = "systolic"
    Params = SystolicParams
    description = "SATA-style digital systolic array, zero inputs skipped"
    activity_components = ("compute", "spad")

    def layer_energy_pj(self, layer, workload, p, dense):
        T = workload.steps_run(layer)
        ops = sum(workload.running(t) * layer_ops(layer, t, dense) for t in range(layer.timesteps))
        w_bits = min(layer.weight_bits, p.word_bits)
        col_folds = math.ceil(layer.out_ch / p.pe_cols)
        row_folds = math.ceil(fan_in(layer) / p.pe_rows)
        weight_words = words(layer.weights * w_bits, p)
        fits = layer.weights * w_bits <= p.weight_buffer_kb * BITS_PER_KB
        out_b = out_bits(layer, workload)
        dram_words = weight_words * (1 if fits else T)
        if layer.out_size * out_b > p.output_buffer_kb * BITS_PER_KB:
            dram_words += READ_AND_WRITE * words(layer.out_size * out_b, p) * T
        m_bits = membrane_bits(layer, p.membrane_bits)
        if (
            workload.spiking
            and layer.has_neuron
            and stored_states(layer) * m_bits > p.output_buffer_kb * BITS_PER_KB
        ):
            dram_words += READ_AND_WRITE * words(stored_states(layer) * m_bits, p) * T
        e = {
            "compute": ops * op_pj(layer, workload, p),
            "spad": ops * p.e_spad_pj,
            "neuron": layer.out_size * T * neuron_pj(layer, workload, p),
            "input_sram": words(layer.in_size * layer.input_bits, p) * col_folds * T * p.e_sram_pj,
            "output_sram": READ_AND_WRITE * layer.out_size * row_folds * T * p.e_sram_pj,
            "weight_sram": weight_words * T * p.e_sram_pj,
            "dram": dram_words * p.e_dram_pj,
        }
        if layer.dynamic:
            e["weight_write"] = weight_words * T * p.e_sram_pj
        return e

    def layer_latency_ns(self, layer, workload, p, dense):
        n_pe = p.pe_rows * p.pe_cols
        cycles = sum(
            workload.running(t)
            * (math.ceil(layer_ops(layer, t, dense) / n_pe) + math.ceil(layer.out_size / p.pe_cols))
            for t in range(layer.timesteps)
        )
        return cycles * NS_PER_US / p.clock_mhz

    def layer_area_um2(self, layer, workload, p):
        return {}  # the PE array and buffers are shared by every layer (shared_area_um2)

    def shared_area_um2(self, layers, workload, p):
        kb = {
            "weight_buffer": p.weight_buffer_kb,
            "input_buffer": p.input_buffer_kb,
            "output_buffer": p.output_buffer_kb,
        }
        area = {"pe_array": p.pe_rows * p.pe_cols * p.a_pe_um2}
        area.update({k: v * BITS_PER_KB * p.a_sram_bit_um2 for k, v in kb.items()})
        return area

    def notes(self, workload, p, dense):
        return [
            f"systolic: {p.pe_rows}x{p.pe_cols} PEs at {p.clock_mhz:g} MHz, weight-stationary, "
            + ("dense" if dense else "zero inputs skipped")
        ]
