"""The operation-count estimate papers usually report (after Horowitz, ISSCC 2014;
docs/references.md#naive-energy).

E = E_MAC · MACs for layers on real-valued input (the SNN's first layer, every ANN layer,
every step) + E_AC · (accumulates actually triggered by non-zero spike inputs, summed over
steps). No memory, membrane, neuron module or periphery; no latency or area.

With ``skip_zero_weights`` the counts are over the non-zero weights only (the synaptic
operations pruning papers report): accumulates Σ_t r_t·acs_nz[t], acs_nz[t] those whose
spike and weight are both non-zero (the Workload's ``acs_nonzero_weights_per_step``,
``acs[t]·(1 − weight_sparsity)`` where it is not recorded), and MACs·(1 − weight_sparsity)
(dense mode too). r_t is the fraction of samples still running at step t.
"""

from __future__ import annotations

from pydantic import Field

from spikecim.hw.estimators import Estimator, EstimatorParams, register_estimator


class NaiveParams(EstimatorParams):
    e_mac_pj: float = Field(gt=0, description="one multiply-accumulate")
    e_ac_pj: float = Field(gt=0, description="one accumulate")
    skip_zero_weights: bool = Field(
        False, description="count only the operations on non-zero weights (pruned weights skipped)"
    )


@register_estimator
class Naive(Estimator):
    name = "naive"
    Params = NaiveParams
    description = "operation counts × energy per MAC / AC (what papers usually report)"
    activity_components = ("accumulate",)

    def layer_energy_pj(self, layer, workload, p, dense):
        steps = workload.steps_run(layer)
        kept = 1.0 - layer.weight_sparsity if p.skip_zero_weights else 1.0
        if workload.spiking and layer.spiking_input:
            run = (workload.running(t) * _accumulates(layer, t, p) for t in range(layer.timesteps))
            acs = layer.macs * steps * kept if dense else sum(run)
            return {"accumulate": p.e_ac_pj * acs}
        return {"mac": p.e_mac_pj * layer.macs * steps * kept}

    def layer_latency_ns(self, layer, workload, p, dense):
        return 0.0  # not modelled

    def layer_area_um2(self, layer, workload, p):
        return {}  # not modelled

    def notes(self, workload, p, dense):
        return [
            (
                "naive: operation counts only; memory, membrane, neurons and periphery ignored; "
                "no latency or area" + ("; operations on zero weights skipped" if p.skip_zero_weights else "")
            )
        ]


def _accumulates(layer, t: int, p: NaiveParams) -> float:
    """Accumulates counted at step ``t``: all triggered ones, or those on non-zero weights."""
    return layer.acs_on_nonzero_weights(t) if p.skip_zero_weights else layer.acs_per_step[t]
