"""Stage registry and the context stages share.

Registering a stage names its function, the stages it needs, its config section (a
:class:`~spikecim.schema.Schema` that becomes the section of the same name in the run
config) and its typed result (a pydantic model with ``summary_rows()``, see
:mod:`spikecim.pipeline.results`). The function may be given as ``"module:function"``: it
is imported only when the stage runs, so the stage names and config sections are known
without importing torch. The stages spikecim ships are listed in
:mod:`spikecim.pipeline.builtin_stages`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from spikecim.errors import SpikecimError, one_line_validation_error

__all__ = [
    "RunContext",
    "Stage",
    "get_stage",
    "list_stages",
    "read_result",
    "read_results",
    "register_stage",
    "stage_sections",
]


@dataclass
class RunContext:
    """What the stages of one run share.

    ``models`` maps a variant (``"snn"``, ``"ann"``) to its trained torch module,
    ``workloads`` maps the same variants to traced :class:`~spikecim.trace.Workload` objects
    (a rebuilt run reads each from its file when first asked for),
    ``metrics`` holds each finished stage's typed result under the stage's name (and the
    run loop's ``timing_s``).
    """

    config: Any  # spikecim.config.RunConfig
    run_dir: Path
    data: Any = None  # spikecim.data.Dataset
    models: dict[str, Any] = field(default_factory=dict)
    workloads: MutableMapping[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    console: Any = None  # rich.console.Console

    @property
    def plots_dir(self) -> Path:
        p = self.run_dir / "plots"
        p.mkdir(parents=True, exist_ok=True)
        return p


StageFn = Callable[[RunContext], Any]


_GENERIC_RESULT = "spikecim.pipeline.results:StageResult"


def _resolve(target: Any) -> Any:
    """``target`` itself, or the object a ``"module:name"`` path names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


@dataclass(frozen=True)
class Stage:
    """A registered stage. ``run`` is the function or its ``"module:function"`` path;
    ``config`` its section of the run config (None: it has none); ``result`` its result type
    or its ``"module:Class"`` path (:class:`~spikecim.pipeline.results.StageResult` when the
    stage declares none: its dict is kept as it is)."""

    name: str
    run: StageFn | str
    requires: tuple[str, ...] = ()
    description: str = ""
    config: type[BaseModel] | None = None
    result: type[BaseModel] | str = _GENERIC_RESULT

    @property
    def fn(self) -> StageFn:
        """The stage's function (its module is imported on first use)."""
        return _resolve(self.run)

    @property
    def result_type(self) -> type[BaseModel]:
        """The stage's result type (its module is imported on first use)."""
        return _resolve(self.result)


_STAGES: dict[str, Stage] = {}


def register_stage(
    name: str,
    run: StageFn | str | None = None,
    *,
    requires: tuple[str, ...] = (),
    description: str = "",
    config: type[BaseModel] | None = None,
    result: type[BaseModel] | str = _GENERIC_RESULT,
) -> Callable:
    """Register the stage ``name``: ``fn(ctx) -> result``.

    As a decorator (``@register_stage("mine", config=MyConfig, result=MyResult)``) or as a
    call with ``run="package.module:function"``. ``requires`` names earlier stages;
    ``config`` becomes the run config's section ``name``; ``result`` is the stage's result
    type or its ``"module:Class"`` path (its ``model_dump(mode="json")`` goes into
    ``metrics.json``). Returns the function.
    """
    if config is not None and name in _RESERVED:
        raise SpikecimError(f"register_stage: '{name}' is a field of the run config, not a free section name")

    def deco(fn: StageFn | str) -> StageFn | str:
        doc = "" if isinstance(fn, str) else (fn.__doc__ or "").strip().split("\n")[0]
        _STAGES[name] = Stage(name, fn, tuple(requires), description or doc, config, result)
        return fn

    return deco if run is None else deco(run)


# Top-level fields of the run config that a stage's section may not take.
_RESERVED = frozenset(
    {"name", "seed", "output_dir", "stages", "data", "model", "train", "variants", "baseline"}
)


def _load_builtin() -> None:
    import spikecim.pipeline.builtin_stages  # noqa: F401  (registers the stages spikecim ships)


def get_stage(name: str) -> Stage:
    _load_builtin()
    if name not in _STAGES:
        raise SpikecimError(f"stages: unknown stage '{name}', allowed: {', '.join(_STAGES)}")
    return _STAGES[name]


def list_stages() -> list[str]:
    _load_builtin()
    return list(_STAGES)


def stage_sections() -> dict[str, type[BaseModel]]:
    """The config section of every registered stage that has one, by stage name."""
    _load_builtin()
    return {s.name: s.config for s in _STAGES.values() if s.config is not None}


def read_result(name: str, value: Any) -> BaseModel | None:
    """One stage's entry of ``metrics.json`` as its typed result (an object of the type is
    returned as it is); None for an entry that does not fit the type."""
    _load_builtin()
    kind = _resolve(_STAGES[name].result if name in _STAGES else _GENERIC_RESULT)
    if isinstance(value, BaseModel):
        return value
    try:
        return kind.model_validate(value)
    except ValidationError:
        return None


def read_results(metrics: dict, source: str | None = None) -> dict[str, BaseModel]:
    """The stage entries of ``metrics.json`` (not ``timing_s``) as typed results, in order.
    Entries that do not fit their type are left out, or, given the file's name as
    ``source``, refused naming the stage and the first problem."""
    out = {}
    for name, value in metrics.items():
        if name == "timing_s":
            continue
        r = read_result(name, value)
        if r is None and source is not None:
            if not isinstance(value, dict):
                raise SpikecimError(
                    f"{source}: {name}: must be a mapping of results (a JSON object), got {json.dumps(value)[:40]}"
                )
            _load_builtin()
            kind = _resolve(_STAGES[name].result if name in _STAGES else _GENERIC_RESULT)
            try:
                kind.model_validate(value)
            except ValidationError as e:
                raise SpikecimError(one_line_validation_error(e, prefix=f"{source}: {name}.")) from None
        if r is not None:
            out[name] = r
    return out
