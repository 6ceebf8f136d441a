"""A dual-sparse digital accelerator in the style of LoAS (Yin et al., MICRO 2024;
docs/references.md#loas).

Same PE array and per-operation energies as ``systolic``, with two changes:
- weight sparsity: only non-zero weights are stored (bitmap + values) and multiplied:
  ops = Σ_t r_t·acs_nz[t], acs_nz[t] the accumulates whose spike and weight are both non-zero
  (the Workload's ``acs_nonzero_weights_per_step``; ``acs[t]·(1 − weight_sparsity)`` where it
  is not recorded), r_t the fraction of samples still running
  (macs·Σ_t r_t·(1 − weight_sparsity) in dense mode);
- timesteps in parallel: each PE processes all T steps of one neuron together, so weights
  and the T-bit input spike trains are read once per inference and the membrane stays in
  the PE (one output-buffer write of the T output spikes per neuron, no membrane traffic).
  compute  = ops·(e_acc + e_and);  spad = ops·e_spad;  neuron = out_size·T·LIF update
  input_sram  = ⌈in_size·T/word⌉·col_folds·e_sram (spike trains packed T bits per input)
  output_sram = ⌈out_size·T/word⌉·e_sram
  weight_sram = ⌈(weights + nonzero·w)/word⌉·e_sram;  dram = the same words, once
Latency: ⌈ops / (pe_rows·pe_cols)⌉ + ⌈out_size·T/pe_cols⌉ cycles.
Real-valued inputs (an SNN's first layer, ANN layers) are costed as in ``systolic``.
"""

from __future__ import annotations

import math

from spikecim.hw.estimators import register_estimator
from spikecim.hw.estimators.systolic import (
    NS_PER_US,
    Systolic,
    SystolicParams,
    layer_ops,
    lif_update_pj,
    words,
)


def _dual(layer, workload) -> bool:
    return workload.spiking and layer.spiking_input


@register_estimator
class DualSparse(Systolic):
    name = "dual_sparse"
    Params = SystolicParams
    description = "LoAS-style dual-sparse array: zero weights and zero spikes skipped, timesteps in parallel"

    def _ops(self, layer, workload, dense):
        steps = range(layer.timesteps)
        if dense:
            ops = sum(workload.running(t) * layer_ops(layer, t, dense) for t in steps)
            return ops * (1 - layer.weight_sparsity)
        return sum(workload.running(t) * layer.acs_on_nonzero_weights(t) for t in steps)

    def layer_energy_pj(self, layer, workload, p, dense):
        if not _dual(layer, workload):
            return super().layer_energy_pj(layer, workload, p, dense)
        T = workload.steps_run(layer)
        ops = self._ops(layer, workload, dense)
        w_bits = min(layer.weight_bits, p.word_bits)
        nonzero = layer.weights * (1 - layer.weight_sparsity)
        weight_words = words(layer.weights + nonzero * w_bits, p)
        col_folds = math.ceil(layer.out_ch / p.pe_cols)
        neuron = layer.out_size * T * lif_update_pj(p) if layer.has_neuron else 0.0
        e = {
            "compute": ops * (p.e_acc_pj + p.e_and_pj),
            "spad": ops * p.e_spad_pj,
            "neuron": neuron,
            "input_sram": words(layer.in_size * T, p) * col_folds * p.e_sram_pj,
            "output_sram": words(layer.out_size * T, p) * p.e_sram_pj,
            "weight_sram": weight_words * p.e_sram_pj,
            "dram": weight_words * p.e_dram_pj,
        }
        if layer.dynamic:  # written to the weight buffer at every step, never fetched from DRAM
            e["weight_write"] = weight_words * T * p.e_sram_pj
            e["dram"] = 0.0
        return e

    def layer_latency_ns(self, layer, workload, p, dense):
        if not _dual(layer, workload):
            return super().layer_latency_ns(layer, workload, p, dense)
        cycles = math.ceil(self._ops(layer, workload, dense) / (p.pe_rows * p.pe_cols))
        cycles += math.ceil(layer.out_size * workload.steps_run(layer) / p.pe_cols)
        return cycles * NS_PER_US / p.clock_mhz

    def notes(self, workload, p, dense):
        return [
            (
                f"dual_sparse: {p.pe_rows}x{p.pe_cols} PEs, zero weights and zero spikes skipped, "
                "timesteps processed in parallel"
            )
        ]
