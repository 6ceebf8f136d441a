"""The page of a design-space study: ``write_study_page(dse_dir)`` -> ``dse_dir/study.html``.

It reads the study's ``dse.json`` (written by ``spikecim dse``)::

    {"objectives": [{"name", "direction": "minimize" | "maximize", "unit"}],
     "constraints": [{"metric", "op", "bound"}],
     "baseline": {"params", "values"} | null,
     "trials": [{"number", "state", "params", "values": {metric: float}, "feasible", "pareto"}],
     "hypervolume": [{"trial", "search", "random" | null}],
     "importance": {param: float}}

and shows, in the style of a run's report (:mod:`spikecim.report.page`): the objectives and
constraints, the Pareto front of every pair of the first objective with another (every trial a
hoverable marker with its parameters and values, the Pareto-optimal trials joined in order,
infeasible trials crossed, the baseline a star), the hypervolume after each trial against the
random-search baseline, the parameters' importance, and a sortable table of every trial.
Keys beyond these are ignored; a missing key or a non-finite number is a one-line error.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spikecim.dse.layout import RESULTS
from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_mapping
from spikecim.report.page import page_html, replaceable, section_html, toc
from spikecim.report.sections import embed_chart, html_table

__all__ = ["Study", "load_study", "write_study_page"]


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Objective(_Read):
    name: str
    direction: Literal["minimize", "maximize"]
    unit: str = ""


class Constraint(_Read):
    metric: str
    op: str
    bound: float


class Baseline(_Read):
    params: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, float] = Field(default_factory=dict)


class Trial(_Read):
    number: int
    state: str
    params: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, float | None] = Field(default_factory=dict)
    feasible: bool = True
    pareto: bool = False
    error: str | None = None  # why a failed trial failed


class HypervolumePoint(_Read):
    trial: int
    search: float
    random: float | None = None


class Study(_Read):
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    baseline: Baseline | None = None
    trials: list[Trial]
    hypervolume: list[HypervolumePoint] = Field(default_factory=list)
    importance: dict[str, float] = Field(default_factory=dict)

    @field_validator("importance")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not math.isfinite(x):
                raise ValueError(f"importance of '{k}' must be a finite number, got {x}")
        return v


def load_study(dse_dir: str | Path) -> Study:
    """``dse_dir/dse.json`` read and checked (one-line error naming the field)."""
    path = Path(dse_dir) / RESULTS
    if not path.is_file():
        raise SpikecimError(f"study: {dse_dir} holds no {RESULTS}")
    raw = read_mapping(path, "study", "of study results")
    try:
        return Study.model_validate(raw)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix=f"study: {path.name}: ")) from None


def write_study_page(dse_dir: str | Path) -> Path:
    """Write ``dse_dir/study.html`` from ``dse_dir/dse.json`` and return its path."""
    dse_dir = Path(dse_dir)
    study = load_study(dse_dir)
    sections = [("objectives", "Objectives and constraints", _objectives(study))]
    fronts = _fronts(study)
    if fronts:
        sections.append(("pareto", "Pareto front", fronts))
    if study.hypervolume:
        sections.append(("hypervolume", "Hypervolume over trials", _hypervolume(study)))
    if study.importance:
        sections.append(("importance", "Parameter importance", _importance(study)))
    sections.append(("trials", "Every trial", _trials_table(study)))
    complete = [t for t in study.trials if t.state.upper() == "COMPLETE"]
    meta = (
        f"{len(study.trials)} trials, {len(complete)} complete, "
        f"{sum(t.feasible for t in complete)} feasible, {sum(t.pareto for t in study.trials)} Pareto-optimal"
    )
    body = [toc([(a, t) for a, t, _ in sections])] + [section_html(a, t, f) for a, t, f in sections]
    path = replaceable(dse_dir / "study.html", "study")
    title = f"spikecim study: {dse_dir.resolve().name}"
    path.write_text(page_html(title, title, body, meta=html.escape(meta)), encoding="utf-8")
    return path


# ---- parts -----------------------------------------------------------------------------------
def _label(o: Objective) -> str:
    unit = f" ({o.unit})" if o.unit else ""
    return f"{o.name}{unit}, {'lower' if o.direction == 'minimize' else 'higher'} is better"


def _objectives(study: Study) -> str:
    out = html_table(
        ["objective", "direction", "unit"], [[o.name, o.direction, o.unit or "—"] for o in study.objectives]
    )
    if study.constraints:
        out += html_table(
            ["constraint", "must be"], [[c.metric, f"{c.op} {c.bound:g}"] for c in study.constraints]
        )
    if study.baseline is not None:
        values = ", ".join(f"{k} = {v:.4g}" for k, v in study.baseline.values.items())
        out += f"<p>Baseline: {html.escape(_params_text(study.baseline.params))}: {html.escape(values)}.</p>"
    return out


def _hover(t: Trial) -> str:
    values = "<br>".join(f"{k} = {v:.4g}" for k, v in t.values.items() if v is not None)
    params = "<br>".join(f"{k} = {v}" for k, v in t.params.items())
    flags = ", ".join(f for f, on in (("Pareto-optimal", t.pareto), ("infeasible", not t.feasible)) if on)
    return f"trial {t.number}{' (' + flags + ')' if flags else ''}<br>{values}<br>{params}"


def _fronts(study: Study) -> str:
    """One chart per pair (first objective, another); a single objective against the trial number."""
    objs = study.objectives
    trials = [t for t in study.trials if t.state.upper() == "COMPLETE"]
    out = ""
    pairs = [(objs[0], o) for o in objs[1:]] or [(None, objs[0])]
    for x_obj, y_obj in pairs:
        out += embed_chart(
            _front(trials, study.baseline, x_obj, y_obj),
            None,
            "Pareto front",
            name=f"pareto-{x_obj.name if x_obj else 'trial'}-{y_obj.name}",
        )
    return out


def _front(trials: list[Trial], baseline: Baseline | None, x_obj: Objective | None, y_obj: Objective):
    from spikecim.report.charts import base_figure

    def xy(t: Trial) -> tuple[float, float] | None:
        x = float(t.number) if x_obj is None else t.values.get(x_obj.name)
        y = t.values.get(y_obj.name)
        return None if x is None or y is None else (x, y)

    fig = base_figure(
        title=f"{y_obj.name} against {x_obj.name if x_obj else 'trial'}: every trial (hover for its parameters)"
    )
    groups = (
        (
            "dominated",
            [t for t in trials if t.feasible and not t.pareto],
            {"size": 8, "color": "#1f77b4", "opacity": 0.6},
        ),
        ("infeasible", [t for t in trials if not t.feasible], {"size": 8, "color": "#7f7f7f", "symbol": "x"}),
        ("Pareto-optimal", [t for t in trials if t.pareto and t.feasible], {"size": 11, "color": "#d62728"}),
    )
    for name, group, marker in groups:
        pts = [(p, t) for t in group if (p := xy(t)) is not None]
        if name == "Pareto-optimal":
            pts.sort(key=lambda pt: pt[0][0])
        if not pts:
            continue
        fig.add_scatter(
            x=[p[0] for p, _ in pts],
            y=[p[1] for p, _ in pts],
            mode="lines+markers" if name == "Pareto-optimal" and x_obj is not None else "markers",
            line={"width": 1},
            name=name,
            marker=marker,
            text=[_hover(t) for _, t in pts],
            hovertemplate="%{text}<extra></extra>",
        )
    if baseline is not None and x_obj is not None:
        bx, by = baseline.values.get(x_obj.name), baseline.values.get(y_obj.name)
        if bx is not None and by is not None:
            fig.add_scatter(
                x=[bx],
                y=[by],
                mode="markers",
                name="baseline",
                marker={"size": 16, "symbol": "star", "color": "#ff7f0e"},
                text=[f"baseline<br>{_params_text(baseline.params)}"],
                hovertemplate="%{text}<br>%{x:.4~g}, %{y:.4~g}<extra></extra>",
            )
    fig.update_xaxes(title_text=_label(x_obj) if x_obj is not None else "trial number")
    fig.update_yaxes(title_text=_label(y_obj))
    return fig


def _hypervolume(study: Study) -> str:
    from spikecim.report.charts import base_figure

    # entry k: after the first k + 1 finished trials (a failed one adds none), not trial number k
    pts = sorted(study.hypervolume, key=lambda p: p.trial)
    fig = base_figure(title="Hypervolume of the Pareto front as trials finish (higher is better)")
    fig.add_scatter(
        x=[p.trial + 1 for p in pts],
        y=[p.search for p in pts],
        mode="lines+markers",
        name="search",
        hovertemplate="after %{x} finished trials: %{y:.4~g}<extra>search</extra>",
    )
    rnd = [p for p in pts if p.random is not None]
    if rnd:
        fig.add_scatter(
            x=[p.trial + 1 for p in rnd],
            y=[p.random for p in rnd],
            mode="lines+markers",
            name="random sampling",
            line={"dash": "dash"},
            hovertemplate="after %{x} finished trials: %{y:.4~g}<extra>random sampling</extra>",
        )
    fig.update_xaxes(title_text="finished trials")
    units = " × ".join(o.unit for o in study.objectives if o.unit)
    fig.update_yaxes(
        title_text=f"hypervolume ({units})" if units else "hypervolume (objective units multiplied)"
    )
    return embed_chart(fig, None, "hypervolume over trials", name="hypervolume")


def _importance(study: Study) -> str:
    from spikecim.report.charts import base_figure

    items = sorted(study.importance.items(), key=lambda kv: kv[1])
    fig = base_figure(title="Parameter importance (share of the objective's variance explained)")
    fig.add_bar(
        x=[v for _, v in items],
        y=[k for k, _ in items],
        orientation="h",
        name="importance",
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    )
    fig.update_xaxes(title_text="importance (fraction, sums to 1)")
    fig.update_yaxes(title_text="parameter", type="category")
    return embed_chart(fig, None, "parameter importance", name="importance")


def _trials_table(study: Study) -> str:
    params: list[str] = []
    for t in study.trials:
        params += [p for p in t.params if p not in params]
    names = [o.name for o in study.objectives]
    for t in study.trials:
        names += [m for m in t.values if m not in names]
    failed = any(t.error for t in study.trials)
    headers = ["trial", "state", "feasible", "Pareto-optimal", *params, *names] + (
        ["why it failed"] if failed else []
    )
    rows = [
        [
            t.number,
            t.state,
            "yes" if t.feasible else "no",
            "yes" if t.pareto else "no",
            *(_param(t.params.get(p)) for p in params),
            *("—" if t.values.get(m) is None else f"{t.values[m]:.4g}" for m in names),
        ]
        + ([t.error or ""] if failed else [])
        for t in study.trials
    ]
    return html_table(headers, rows)


def _param(v: Any) -> str:
    return "—" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else str(v))


def _params_text(params: dict) -> str:
    return ", ".join(f"{k} = {_param(v)}" for k, v in params.items()) or "default settings"
