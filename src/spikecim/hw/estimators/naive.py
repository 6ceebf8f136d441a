"""The operation-count estimate papers usually report (after Horowitz, ISSCC 2014;
docs/references.md#naive-energy).

E = E_MAC · MACs for layers on real-valued input (the SNN's first layer, every ANN layer,
every step) + E_AC · (accumulates actually triggered by non-zero spike inputs, summed over
steps). No memory, membrane, neuron module or periphery; no latency or area.
"""

from __future__ import annotations

from pydantic import Field

from spikecim.hw.estimators import Estimator, EstimatorParams, register_estimator


class NaiveParams(EstimatorParams):
    e_mac_pj: float = Field(gt=0, description="one multiply-accumulate")
    e_ac_pj: float = Field(gt=0, description="one accumulate")


@register_estimator
class Naive(Estimator):
    name = "naive"
    Params = NaiveParams
    description = "operation counts × energy per MAC / AC (what papers usually report)"
    activity_components = ("accumulate",)

    def layer_energy_pj(self, layer, workload, p, dense):
        steps = workload.steps_run(layer)
        if workload.spiking and layer.spiking_input:
            run = (workload.running(t) * layer.acs_per_step[t] for t in range(layer.timesteps))
            acs = layer.macs * steps if dense else sum(run)
            return {"accumulate": p.e_ac_pj * acs}
        return {"mac": p.e_mac_pj * layer.macs * steps}

    def layer_latency_ns(self, layer, workload, p, dense):
        return 0.0  # not modelled

    def layer_area_um2(self, layer, workload, p):
        return {}  # not modelled

    def notes(self, workload, p, dense):
        return [
            (
                "naive: operation counts only; memory, membrane, neurons and periphery ignored; "
                "no latency or area"
            )
        ]
