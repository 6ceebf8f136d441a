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
        def notes(self, workload, p, dense): ...

The four hooks are abstract: a class that misses one is refused when it is registered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import ConfigDict

from spikecim.errors import SpikecimError
from spikecim.schema import Schema

__all__ = ["Estimator", "EstimatorParams", "get_estimator", "list_estimators", "register_estimator"]


class EstimatorParams(Schema):
    """Base of every estimator's parameter schema: unknown keys, nan/inf and numbers beyond
    1e12 in magnitude are refused (:mod:`spikecim.schema`)."""

    model_config = ConfigDict(frozen=True)


class Estimator(ABC):
    """An estimator plug-in: per-layer costs and area no layer owns.

    The four ``@abstractmethod`` hooks must be written (a hook that does not apply returns
    its zero explicitly); :func:`register_estimator` refuses a class that misses one, so a
    misspelt hook can never cost 0 pJ silently. Per-step work is weighted by the fraction
    of samples still running (``workload.running(t)``, early exit).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[EstimatorParams]] = EstimatorParams
    description: ClassVar[str] = ""
    activity_components: ClassVar[tuple[str, ...]] = ()
    """Energy components proportional to input activity (zero when no input is non-zero)."""

    def costs_layer(self, layer, workload, p) -> bool:
        """False for a layer kind this estimator does not model (reported as not costed)."""
        return True

    @abstractmethod
    def layer_energy_pj(self, layer, workload, p, dense: bool) -> dict[str, float]:
        """Energy of one layer over all steps, per component (pJ)."""

    @abstractmethod
    def layer_latency_ns(self, layer, workload, p, dense: bool) -> float:
        """Latency of one layer over all steps (ns); 0.0 where latency is not modelled."""

    @abstractmethod
    def layer_area_um2(self, layer, workload, p) -> dict[str, float]:
        """Area one layer owns, per component (µm²); {} where area is shared or not modelled."""

    @abstractmethod
    def notes(self, workload, p, dense: bool) -> list[str]:
        """One line per modelling choice the report should state."""

    def latencies_ns(self, layers, workload, p, dense: bool) -> list[float]:
        """Latency share of each costed layer; the default runs layers one after another."""
        return [self.layer_latency_ns(layer, workload, p, dense) for layer in layers]

    def layer_areas_um2(self, layers, workload, p) -> list[dict[str, float]]:
        """Area of each costed layer; the default asks each layer on its own."""
        return [self.layer_area_um2(layer, workload, p) for layer in layers]

    def shared_area_um2(self, layers, workload, p) -> dict[str, float]:
        return {}

    def extras(self, layers, workload, p) -> dict[str, float]:
        """Estimator-specific counts for the report (e.g. tiles, PEs)."""
        return {}

    def energy_per_step_pj(self, workload, p, dense: bool = False) -> list[float]:
        """Energy of each step over all costed layers (pJ), without the once-per-inference
        part (weights loaded once): step t's share of ``layer_energy_pj``. Every estimator
        weights step work linearly by ``running(t)``, so step t's energy is the cost with
        only step t running minus the cost with none running."""
        layers = [layer for layer in workload.layers if self.costs_layer(layer, workload, p)]

        def total(running: list[float]) -> float:
            w = workload.model_copy(update={"running_per_step": running})
            return sum(sum(self.layer_energy_pj(layer, w, p, dense).values()) for layer in layers)

        T = workload.timesteps
        static = total([0.0] * T)
        return [total([1.0 if s == t else 0.0 for s in range(T)]) - static for t in range(T)]


_ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator]) -> type[Estimator]:
    """Register an estimator class (decorator); refuses one without a name or with a hook
    left abstract."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a name")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"estimator {cls.__name__}: hooks not implemented: {', '.join(missing)}")
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
