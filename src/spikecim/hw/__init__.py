"""The cost side of spikecim: architectures as data, estimators as plug-ins.

    from spikecim.hw import estimate, load_architecture
    report = estimate(workload, load_architecture("imc-rram-65nm"))
    report.energy_pj, report.latency_ns, report.area_um2, report.energy_by_component_pj

Estimators (``list_estimators()``): ``naive`` (operation counts), ``spikesim`` (the public
SpikeSim script, quirks kept), ``imc`` (activity-aware crossbar accelerator), ``systolic``
(SATA-style digital array) and ``dual_sparse`` (LoAS-style, weight and spike sparsity).
Shipped tables: ``list_architectures()``. The hw side never imports torch models; it reads
a :class:`~spikecim.trace.Workload`. The layer-list readers (``load_workload``,
``workload_from_layers``, ``spikesim_from_spec``) are imported on first use, so the run
config's ``hardware`` section (``spikecim.hw.stage_config``) reads quickly.
"""

from spikecim.hw.arch import Architecture, list_architectures, load_architecture
from spikecim.hw.cost import CostReport, LayerCost
from spikecim.hw.estimate import estimate
from spikecim.hw.estimators import (
    Estimator,
    EstimatorParams,
    get_estimator,
    list_estimators,
    register_estimator,
)

__all__ = [
    "Architecture",
    "CostReport",
    "Estimator",
    "EstimatorParams",
    "LayerCost",
    "estimate",
    "get_estimator",
    "list_architectures",
    "list_estimators",
    "load_architecture",
    "load_workload",
    "register_estimator",
    "spikesim_from_spec",
    "workload_from_layers",
]


_LAYERS = ("load_workload", "spikesim_from_spec", "workload_from_layers")


def __getattr__(name: str):
    if name not in _LAYERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from spikecim.hw import layers

    value = getattr(layers, name)
    globals()[name] = value
    return value
