"""Estimator plug-ins: one class per file, registered by name.

An estimator turns one layer of a :class:`~spikecim.trace.Workload` into energy per
component (pJ), latency (ns) and area per component (µm²), using the constants of an
architecture table validated by its ``Params`` model. A new estimator is one file with
one ``@register_estimator`` class::

    @register_estimator
    class MyEstimator(Estimator):
        name = "mine"
        Params = MyParams               # pydantic model of the table's ``params``
        def layer_energy_pj(self, layer, workload, p, dense): ...
        def layer_latency_ns(self, layer, workload, p, dense): ...
        def layer_area_um2(self, layer, workload, p): ...
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ConfigDict

from spikecim.errors import SpikecimError
from spikecim.schema import Schema

__all__ = ["Estimator", "EstimatorParams", "get_estimator", "list_estimators", "register_estimator"]


class EstimatorParams(Schema):
    """Base of every estimator's parameter schema: unknown keys, nan/inf and numbers beyond
    1e12 in magnitude are refused (:mod:`spikecim.schema`)."""

    model_config = ConfigDict(frozen=True)


class Estimator:
    """Base class: per-layer costs, and area no layer owns. Override the ``layer_*`` methods."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[EstimatorParams]] = EstimatorParams
    description: ClassVar[str] = ""

    def costs_layer(self, layer, workload, p) -> bool:
        """False for a layer kind this estimator does not model (reported as not costed)."""
        return True

    def layer_energy_pj(self, layer, workload, p, dense: bool) -> dict[str, float]:
        return {}

    def layer_latency_ns(self, layer, workload, p, dense: bool) -> float:
        return 0.0

    def latencies_ns(self, layers, workload, p, dense: bool) -> list[float]:
        """Latency share of each costed layer; the default runs layers one after another."""
        return [self.layer_latency_ns(layer, workload, p, dense) for layer in layers]

    def layer_area_um2(self, layer, workload, p) -> dict[str, float]:
        return {}

    def layer_areas_um2(self, layers, workload, p) -> list[dict[str, float]]:
        """Area of each costed layer; the default asks each layer on its own."""
        return [self.layer_area_um2(layer, workload, p) for layer in layers]

    def shared_area_um2(self, layers, workload, p) -> dict[str, float]:
        return {}

    def extras(self, layers, workload, p) -> dict[str, float]:
        """Estimator-specific counts for the report (e.g. tiles, PEs)."""
        return {}

    def notes(self, workload, p, dense: bool) -> list[str]:
        return []


_ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a name")
    _ESTIMATORS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    from spikecim.hw.estimators import dual_sparse, imc, naive, spikesim, systolic  # noqa: F401


def get_estimator(name: str) -> Estimator:
    _load_builtin()
    if name not in _ESTIMATORS:
        raise SpikecimError(
            f"estimator: unknown estimator '{name}', allowed: {', '.join(sorted(_ESTIMATORS))}"
        )
    return _ESTIMATORS[name]()


def list_estimators() -> list[str]:
    _load_builtin()
    return sorted(_ESTIMATORS)
