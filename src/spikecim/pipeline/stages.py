"""Stage registry and the context stages share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikecim.errors import SpikecimError

__all__ = ["RunContext", "Stage", "get_stage", "list_stages", "register_stage"]


@dataclass
class RunContext:
    """What the stages of one run share.

    ``models`` maps a variant (``"snn"``, ``"ann"``) to its trained torch module,
    ``workloads`` maps the same variants to traced :class:`~spikecim.trace.Workload` objects,
    ``metrics`` holds each finished stage's result under the stage's name.
    """

    config: Any  # spikecim.config.RunConfig
    run_dir: Path
    data: Any = None  # spikecim.data.Dataset
    models: dict[str, Any] = field(default_factory=dict)
    workloads: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    console: Any = None  # rich.console.Console

    @property
    def plots_dir(self) -> Path:
        p = self.run_dir / "plots"
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[RunContext], dict]
    requires: tuple[str, ...] = ()
    description: str = ""


_STAGES: dict[str, Stage] = {}


def register_stage(name: str, requires: tuple[str, ...] = (), description: str = "") -> Callable:
    """Register ``fn(ctx) -> dict`` as the stage ``name``; ``requires`` names earlier stages."""

    def deco(fn: Callable[[RunContext], dict]) -> Callable[[RunContext], dict]:
        _STAGES[name] = Stage(
            name, fn, tuple(requires), description or (fn.__doc__ or "").strip().split("\n")[0]
        )
        return fn

    return deco


def _load_builtin() -> None:
    # Importing these modules registers their stages.
    import spikecim.pipeline.core_stages  # noqa: F401

    for mod in ("spikecim.analog.stage", "spikecim.hw.stage", "spikecim.pipeline.dt_stage", "spikecim.report.stage"):
        try:
            __import__(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def get_stage(name: str) -> Stage:
    _load_builtin()
    if name not in _STAGES:
        raise SpikecimError(f"stages: unknown stage '{name}', allowed: {', '.join(_STAGES)}")
    return _STAGES[name]


def list_stages() -> list[str]:
    _load_builtin()
    return list(_STAGES)
