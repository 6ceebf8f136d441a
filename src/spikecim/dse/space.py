"""The search space of ``spikecim dse``: one YAML file, validated before any trial runs.

A space names what the trials start from (a run config ``base``, or a traced ``workload``
for a hardware-only search), the architecture table they are costed on, the knobs, the
objectives and the constraints::

    name: digits-xbar
    base: {model: {name: mlp}, train: {epochs: 1}, data: {limit: 128}}   # or a YAML path
    arch: imc-rram-65nm
    knobs:
      - {path: data.timesteps, choices: [2, 4, 8]}
      - {name: xbar, path: [analog.overrides.tile_rows, arch.params.xbar_rows], choices: [64, 128]}
      - {path: arch.params.adc_bits, low: 3, high: 8}
      - {name: wbits, path: variants.0.methods, choices: {fp: [], q4: [{name: weight-qat, bits: 4}]}}
      - {path: analog.n_seeds, low: 1, high: 3, when: {wbits: q4}}   # conditional knob
    objectives: [{metric: analog_accuracy}, {metric: energy_uj}]
    constraints: [{metric: area_mm2, op: "<=", bound: 5}]
    sampler: {name: nsga2, population_size: 16, seed: 0}
    trials: 64

A knob sets one value at one or more dotted paths (a list index is a number:
``variants.0.methods``). Paths under ``arch.`` set the architecture: ``arch.name`` (a table),
``arch.technology_nm`` (scaled, :meth:`~spikecim.hw.arch.Architecture.scaled_to`) and
``arch.params.<constant>``; every other path is a field of the run config, as ``--set``
writes it. A knob is categorical (``choices``: a list of plain values, or a mapping of labels
to any YAML value), an integer range (``low``, ``high`` integers, optional ``step``) or a
float range (``log: true`` for a log scale). ``when: {knob: value or [values]}`` samples a
knob only when earlier knobs took one of those values.

Trials see one variant of the base config (``variant``, by default its first spiking one):
it becomes ``variants[0]`` and the run's only variant, so knob paths say ``variants.0``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_settings
from spikecim.schema import Schema

__all__ = [
    "Constraint",
    "Knob",
    "Objective",
    "SamplerConfig",
    "Space",
    "Trial",
    "load_space",
    "sample",
]

Plain = bool | int | float | str | None


class Knob(Schema):
    """One searched setting (see the module docstring)."""

    path: str | list[str] = Field(description="dotted path(s) the sampled value is written to")
    name: str | None = Field(None, description="the parameter's name in the study; default: the first path")
    choices: list[Plain] | dict[str, Any] | None = Field(
        None, description="categorical values (or label: value)"
    )
    low: float | None = Field(None, description="lower end of a numeric range (inclusive)")
    high: float | None = Field(None, description="upper end of a numeric range (inclusive)")
    step: float | None = Field(None, gt=0, description="grid step of a numeric range")
    log: bool = Field(False, description="sample the range on a log scale")
    type: Literal["int", "float"] | None = Field(
        None, description="default: int when low and high are integers"
    )
    when: dict[str, Any] = Field(default_factory=dict, description="knob: value(s) that switch this knob on")

    @model_validator(mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("name") is None and v.get("path"):
            p = v["path"]
            v = {**v, "name": p if isinstance(p, str) else (p[0] if p else None)}
        return v

    @model_validator(mode="after")
    def _range(self) -> Knob:
        if not self.paths or any(not p for p in self.paths):
            raise ValueError(f"knob '{self.name}': path is empty")
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError(f"knob '{self.name}': give choices or low/high, not both")
            if len(self.choices) == 0:
                raise ValueError(f"knob '{self.name}': choices is empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"knob '{self.name}': give choices, or low and high")
        if self.low > self.high:
            raise ValueError(f"knob '{self.name}': empty range, low {self.low:g} > high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"knob '{self.name}': a log range needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError(f"knob '{self.name}': a log range takes no step, got step {self.step:g}")
        if self.step is not None:
            n = (self.high - self.low) / self.step
            if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
                raise ValueError(
                    f"knob '{self.name}': step {self.step:g} does not divide the range "
                    f"{self.low:g} to {self.high:g}, allowed: a step that divides high - low"
                )
        if self.type is None:
            ints = all(float(x).is_integer() for x in (self.low, self.high, self.step or 1))
            object.__setattr__(self, "type", "int" if ints else "float")
        if self.type == "int" and not all(
            float(x).is_integer() for x in (self.low, self.high, self.step or 1)
        ):
            raise ValueError(f"knob '{self.name}': an int range needs integer low, high and step")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def labels(self) -> list[Plain]:
        """The values the study records: the choices, or the labels of a choice mapping."""
        if isinstance(self.choices, dict):
            return list(self.choices)
        return list(self.choices or [])

    def value(self, param: Any) -> Any:
        """The value written to the paths for the recorded parameter ``param``."""
        if isinstance(self.choices, dict):
            return copy.deepcopy(self.choices[param])
        return param

    def extremes(self) -> list[Any]:
        """Every choice, or both ends of the range: what is checked before any trial."""
        if self.choices is not None:
            return self.labels
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def grid(self) -> list[Any] | None:
        """Every value of a discrete knob (None for a continuous range)."""
        if self.choices is not None:
            return self.labels
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step is not None:
            n = math.floor((self.high - self.low) / self.step + 1e-9)
            return [self.low + i * self.step for i in range(n + 1)]
        return None

    def suggest(self, trial) -> Any:
        """Sample this knob on an Optuna trial."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.labels)
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def active(self, params: dict[str, Any]) -> bool:
        """Whether the ``when`` conditions hold for the knobs sampled so far."""
        for other, wanted in self.when.items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if other not in params or params[other] not in allowed:
                return False
        return True


class Objective(Schema):
    metric: str = Field(description="a metric (spikecim.dse.objectives.METRICS)")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="default: the metric's own")


class Constraint(Schema):
    metric: str
    op: Literal["<=", ">="]
    bound: float


class SamplerConfig(Schema):
    name: Literal["nsga2", "tpe", "gp", "random", "grid"] | None = Field(
        None, description="default: nsga2 for several objectives, tpe for one"
    )
    population_size: int = Field(
        20, ge=2, le=100000, description="NSGA-II population (trials per generation)"
    )
    seed: int = Field(0, ge=0, lt=2**32)


class Space(Schema):
    """A design space (see the module docstring)."""

    name: str = Field("dse", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="the study's name")
    base: str | dict[str, Any] | None = Field(
        None, description="the run config trials start from (path or mapping)"
    )
    workload: str | None = Field(None, description="a traced workload file: hardware-only, no training")
    variant: str | None = Field(
        None, description="the variant of base that is searched; default: its first spiking one"
    )
    arch: str = Field("imc-rram-65nm", description="architecture table (name or YAML path) the costs are on")
    dense: bool = Field(
        False, description="cost with every input active (upper bound) instead of traced activity"
    )
    knobs: list[Knob] = Field(min_length=1)
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    trials: int = Field(
        50, ge=1, le=10_000_000, description="trials of the study (default budget of --trials)"
    )
    baseline: dict[str, Any] | None = Field(
        None, description="knob: value of a hand-picked design, marked in the plots"
    )
    journal_fsync: bool = Field(
        True,
        description="fsync the journal after each write; false: safe against a killed process, not a crash",
    )
    folder: str = Field("", description="where relative paths are read from (set when the file is read)")

    @model_validator(mode="after")
    def _sampler_fits(self) -> Space:
        if self.sampler.name == "gp" and len(self.objectives) > 1:
            raise ValueError(
                f"sampler.name: gp takes one objective, got {len(self.objectives)}; use nsga2 for several"
            )
        return self

    @property
    def hardware_only(self) -> bool:
        return self.workload is not None

    def knob(self, name: str) -> Knob:
        for k in self.knobs:
            if k.name == name:
                return k
        raise SpikecimError(f"knob: unknown '{name}', allowed: {', '.join(k.name for k in self.knobs)}")

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() or not self.folder else Path(self.folder) / q


class Trial:
    """What one trial evaluates: the run config dict and the architecture (built by
    :func:`build`)."""

    def __init__(self, config: dict | None, arch, params: dict[str, Any]):
        self.config, self.arch, self.params = config, arch, params


def load_space(path: str | Path) -> Space:
    """Read and check a space file: schema, knob names and conditions, every objective and
    constraint metric, and every knob value on the base config (so a bad file fails with one
    line before any trial)."""
    data = read_settings(path, "space", "with knobs and objectives", "write its knobs and objectives in it")
    data.setdefault("folder", str(Path(path).parent))
    return check_space(data)


def check_space(data: dict | Space) -> Space:
    """A :class:`Space` from a mapping, checked as :func:`load_space` says."""
    from spikecim.dse.objectives import check_metric

    if isinstance(data, Space):
        space = data
    else:
        try:
            space = Space.model_validate(data)
        except ValidationError as e:
            raise SpikecimError(one_line_validation_error(e, prefix="space: ")) from None
    names = [k.name for k in space.knobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpikecimError(f"space: knobs: the name '{dup[0]}' is used twice")
    for i, k in enumerate(space.knobs):
        for other, wanted in k.when.items():
            if other not in names[:i]:
                raise SpikecimError(
                    f"space: knobs.{k.name}.when: '{other}' is not a knob listed before it, allowed: "
                    f"{', '.join(names[:i]) or 'none'}"
                )
            grid = space.knob(other).grid()
            if grid is None:
                raise SpikecimError(
                    f"space: knobs.{k.name}.when: '{other}' is a continuous range, which never takes one "
                    "value again; allowed: a knob with choices, an int range or a step"
                )
            for w in wanted if isinstance(wanted, list) else [wanted]:
                if w not in grid:
                    raise SpikecimError(
                        f"space: knobs.{k.name}.when: {other} never takes {w!r}, allowed: {', '.join(map(repr, grid))}"
                    )
        if space.hardware_only:
            for p in k.paths:
                if not p.startswith("arch."):
                    raise SpikecimError(
                        f"space: knobs.{k.name}: '{p}' is not an arch.* path; a hardware-only space "
                        "(workload) searches the architecture only"
                    )
    _check_shared_paths(space)
    if space.hardware_only and space.base is not None:
        raise SpikecimError("space: give base (trials train) or workload (hardware-only), not both")
    for o in space.objectives:
        check_metric(o.metric, "objectives", space.hardware_only)
    _check_objectives_differ(space)
    for i, c in enumerate(space.constraints):
        if check_metric(c.metric, "constraints", space.hardware_only).fraction and not 0 <= c.bound <= 1:
            raise SpikecimError(
                f"space: constraints.{i}.bound: {c.metric} is a fraction, allowed: 0 to 1 "
                f"(0.9 for 90 %), got {c.bound:g}"
            )
    _check_constraints_agree(space)
    if space.sampler.name == "grid" and any(k.grid() is None for k in space.knobs):
        raise SpikecimError("space: sampler.grid needs discrete knobs (choices, int ranges or a step)")
    if space.hardware_only:
        from spikecim.hw.layers import load_workload

        try:
            workload = load_workload(space.path(space.workload))
        except SpikecimError as e:
            msg = str(e) if str(e).startswith("workload") else f"workload: {e}"
            raise SpikecimError(f"space: {msg}") from None
    base = base_config(space)
    if space.baseline is not None:
        _check_baseline(space, base)
    if space.hardware_only:
        try:
            _check_modelled(space, build(space, {}, base).arch, workload)
        except SpikecimError as e:
            raise SpikecimError(f"space: {e}") from None
    for k in space.knobs:
        for v in k.extremes():
            try:
                trial = build(space, {k.name: v}, base)
                if trial.config is not None and any(not p.startswith(("arch.", "analog.")) for p in k.paths):
                    _check_model(trial.config)
                if space.hardware_only and "arch.name" in k.paths:
                    _check_modelled(space, trial.arch, workload)
            except SpikecimError as e:
                raise SpikecimError(f"space: knobs.{k.name} = {v!r}: {e}") from None
    return space


def _check_shared_paths(space: Space) -> None:
    """Two knobs may write one path only when they are never sampled together: both
    conditional on one earlier knob, on values that do not overlap. Otherwise the later knob
    overwrites the earlier one's value, and the study records a value no trial ran."""
    writers: dict[str, Knob] = {}
    for k in space.knobs:
        for p in k.paths:
            other = writers.setdefault(p, k)
            if other is not k and not _exclusive(other, k):
                raise SpikecimError(
                    f"space: knobs.{k.name}: the path '{p}' is also written by knobs.{other.name}; "
                    "allowed: one knob per path, or knobs whose when conditions never hold together"
                )


def _exclusive(a: Knob, b: Knob) -> bool:
    """Whether the ``when`` conditions of ``a`` and ``b`` exclude each other (one knob they
    both depend on, with no value in common)."""

    def values(w: Any) -> list:
        return w if isinstance(w, list) else [w]

    return any(
        n in b.when and not set(map(repr, values(w))) & set(map(repr, values(b.when[n])))
        for n, w in a.when.items()
    )


def _check_objectives_differ(space: Space) -> None:
    """Each objective measures another quantity (``energy_uj`` and ``energy_pj`` are one)."""
    from spikecim.dse.objectives import quantity

    seen: dict[str, int] = {}
    for i, o in enumerate(space.objectives):
        j = seen.setdefault(quantity(o.metric), i)
        if j != i:
            same = space.objectives[j].metric
            raise SpikecimError(
                f"space: objectives.{i}: {o.metric} measures what objectives.{j} ({same}) does; "
                "allowed: each quantity once"
            )


def _check_constraints_agree(space: Space) -> None:
    """No two constraints on one quantity that no value meets together (``area_mm2 <= 1``
    and ``area_mm2 >= 5``): every trial would be infeasible."""
    from spikecim.dse.objectives import in_base_unit, quantity

    for i, c in enumerate(space.constraints):
        for j, d in enumerate(space.constraints[:i]):
            if quantity(c.metric) != quantity(d.metric) or c.op == d.op:
                continue
            upper, lower = (c, d) if c.op == "<=" else (d, c)
            if in_base_unit(lower.metric, lower.bound) > in_base_unit(upper.metric, upper.bound):
                raise SpikecimError(
                    f"space: constraints.{i}: {c.metric} {c.op} {c.bound:g} contradicts constraints.{j} "
                    f"({d.metric} {d.op} {d.bound:g}): no design meets both"
                )


def _check_modelled(space: Space, arch, workload) -> None:
    """Every objective and constraint of a hardware-only space is a metric the architecture's
    estimator computes (``naive`` models no latency or area): otherwise every trial fails."""
    from spikecim.dse.objectives import hardware_metrics
    from spikecim.hw.estimate import estimate

    computed = hardware_metrics(estimate(workload, arch, dense=space.dense), workload)
    for field, items in (("objectives", space.objectives), ("constraints", space.constraints)):
        for i, item in enumerate(items):
            if item.metric not in computed:
                raise SpikecimError(
                    f"{field}.{i}: {arch.name} does not model {item.metric}, allowed: {', '.join(computed)}"
                )


def _check_baseline(space: Space, base: dict | None) -> None:
    """The baseline names knobs, takes a label of a choice mapping, and builds (its
    architecture and config validate); it is evaluated after the trials."""
    names = [k.name for k in space.knobs]
    for n, v in space.baseline.items():
        if n not in names:
            raise SpikecimError(f"space: baseline.{n}: unknown knob, allowed: {', '.join(names)}")
        k = space.knob(n)
        if isinstance(k.choices, dict) and v not in k.choices:
            raise SpikecimError(
                f"space: baseline.{n}: unknown label {v!r}, allowed: {', '.join(map(str, k.choices))}"
            )
    try:
        build(space, dict(space.baseline), base)
    except SpikecimError as e:
        raise SpikecimError(f"space: baseline: {e}") from None


def _check_model(config: dict) -> None:
    """Build the design's model with its methods (untrained): a method that does not fit the
    model fails here, not in a trial."""
    from spikecim.config import RunConfig
    from spikecim.data import dataset_from_config
    from spikecim.pipeline.run import build_models

    cfg = RunConfig.model_validate(config)
    build_models(cfg, dataset_from_config(cfg.data))


def base_config(space: Space) -> dict | None:
    """The base run config as a full dict, reduced to the searched variant (None for a
    hardware-only space)."""
    from spikecim.config import RunConfig, resolve_paths

    if space.hardware_only:
        return None
    if isinstance(space.base, str):
        path = space.path(space.base)
        base = read_settings(
            path, "space.base", "of sections", "write the run's settings in it, or {} for the defaults"
        )
        data = resolve_paths(base, path.parent)
    else:
        data = copy.deepcopy(space.base or {})
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix="space: base.")) from None
    names = [v.name for v in cfg.variants]
    name = space.variant or next((v.name for v in cfg.variants if v.spiking), names[0])
    if name not in names:
        raise SpikecimError(f"space: variant: unknown '{name}', allowed: {', '.join(names)}")
    out = cfg.model_dump(mode="json")
    out["variants"] = [v for v in out["variants"] if v["name"] == name]
    out["baseline"] = name
    out.pop("name", None)
    return out


def sample(space: Space, trial) -> dict[str, Any]:
    """The knobs' values for an Optuna trial, in the file's order (conditional knobs only
    when their conditions hold)."""
    params: dict[str, Any] = {}
    for k in space.knobs:
        if k.active(params):
            params[k.name] = k.suggest(trial)
    return params


def build(space: Space, params: dict[str, Any], base: dict | None = None) -> Trial:
    """The run config and architecture of one design: ``params`` written at their knobs'
    paths over the base config and the space's architecture, both validated."""
    from spikecim.config import RunConfig
    from spikecim.hw.arch import load_architecture

    config = copy.deepcopy(base if base is not None else base_config(space))
    arch_set: dict[str, Any] = {}
    for name, param in params.items():
        k = space.knob(name)
        for p in k.paths:
            if p.startswith("arch."):
                _set(arch_set, p.removeprefix("arch."), k.value(param))
            else:
                _set(config, p, k.value(param))
    arch_name = arch_set.pop("name", space.arch)
    if str(arch_name).endswith((".yaml", ".yml")):
        arch_name = str(space.path(str(arch_name)))
    node = arch_set.pop("technology_nm", None)
    params_set = arch_set.pop("params", {})
    if arch_set:
        raise SpikecimError(
            f"arch.{next(iter(arch_set))}: unknown, allowed: arch.name, arch.technology_nm, arch.params.*"
        )
    arch = load_architecture(arch_name, node_nm=node, **params_set)
    if config is not None:
        try:
            RunConfig.model_validate(config)
        except ValidationError as e:
            raise SpikecimError(one_line_validation_error(e, prefix="")) from None
    return Trial(config, arch, params)


def _set(data: dict, dotted: str, value: Any) -> None:
    """Write ``value`` at ``dotted`` (``a.b.0.c``), creating mappings on the way."""
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                where = ".".join(parts[:i]) or "the config"
                raise SpikecimError(f"{dotted}: {where} has {len(node)} entries, no index '{part}'")
            idx = int(part)
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise SpikecimError(f"{dotted}: '{'.'.join(parts[:i])}' is a value, not a section")
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})
