"""TReX's search (Moitra et al.): how many encoders reuse attention, and which, for a latency target.

``trex_search(cfg, ...)`` on a run config whose model is a transformer (``vit-tiny``,
``spikformer-tiny``):

1. **Latency of every candidate.** For ``k = 0 .. depth-1`` reuse encoders and every
   reuse pattern that holds ``k`` (:func:`spikecim.models.trex.candidates`), the variant's
   model with those encoders replaced is traced on ``trace_samples`` test samples and costed
   on the architecture ``arch`` (:func:`spikecim.hw.estimate`): its ``latency_ns``.
   Untrained models are traced: a crossbar's latency follows the layer shapes (and, for a
   spiking model, the untrained activity).
2. **The number of reuse encoders** is the smallest ``k`` with a candidate whose latency
   meets the target (``latency_target_ns``, or ``latency_ratio`` × the baseline's latency).
3. **Brief training.** Each candidate of that ``k`` is trained ``brief_epochs`` epochs (a
   run named ``<name>-trex-candidates``, stages train and evaluate); the most accurate wins.
4. **Full training.** The run itself with two variants: the baseline and ``trex`` (the
   winner), through the run's stages (train, evaluate, trace, analog, hardware, report).

The result, also written to ``<run>/trex.json``: the target, every candidate's latency and
brief accuracy, the choice, and per variant the EDAP (pJ·ns·mm²), TOPS/mm² (ops per ns / 1e3
per mm² of area, :class:`~spikecim.hw.CostReport`), the digital accuracy and the analog one
(mean over programming seeds).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from pydantic import BaseModel, Field

from spikecim.errors import SpikecimError
from spikecim.report import charts
from spikecim.report.fmt import pct
from spikecim.report.sections import embed_chart, html_table, register_section

__all__ = ["TrexCandidate", "TrexResult", "TrexVariant", "trex_search"]


class TrexCandidate(BaseModel):
    pattern: str
    reuse: list[int]
    latency_ns: float
    brief_accuracy: float | None = None


class TrexVariant(BaseModel):
    """One variant of the final run: cost on the search's architecture and accuracy."""

    reuse: list[int]
    latency_ns: float
    energy_pj: float
    area_um2: float
    edap_pj_ns_mm2: float | None
    tops_per_mm2: float | None
    accuracy: float | None
    analog_accuracy: float | None = None


class TrexResult(BaseModel):
    arch: str
    variant: str
    latency_target_ns: float
    baseline_latency_ns: float
    reuse_count: int
    candidates: list[TrexCandidate]
    chosen: TrexCandidate
    variants: dict[str, TrexVariant] = Field(default_factory=dict)

    def save(self, path: Path) -> Path:
        from spikecim.pipeline import folder

        return folder.write_file(path, json.dumps(self.model_dump(mode="json"), indent=2).encode())


def trex_search(
    cfg,
    *,
    variant: str = "ann",
    arch: str = "imc-rram-65nm",
    latency_target_ns: float | None = None,
    latency_ratio: float | None = None,
    brief_epochs: int = 2,
    trace_samples: int = 64,
    console=None,
) -> TrexResult:
    """Search, train and cost TReX for ``cfg`` (see the module docstring)."""
    from spikecim.data import dataset_from_config
    from spikecim.hw.estimate import estimate
    from spikecim.models.trex import candidates, encoders_of
    from spikecim.pipeline.run import run

    if (latency_target_ns is None) == (latency_ratio is None):
        raise SpikecimError("trex: give one of latency_target_ns (> 0) or latency_ratio (in (0, 1])")
    if latency_target_ns is not None and not (math.isfinite(latency_target_ns) and latency_target_ns > 0):
        raise SpikecimError(f"trex.latency_target_ns: must be a finite number > 0, got {latency_target_ns}")
    if latency_ratio is not None and not 0 < latency_ratio <= 1:
        raise SpikecimError(f"trex.latency_ratio: must be in (0, 1], got {latency_ratio}")
    if brief_epochs < 1:
        raise SpikecimError(f"trex.brief_epochs: must be >= 1, got {brief_epochs}")
    base = cfg.variant(variant)
    data = dataset_from_config(cfg.data)

    def latency(reuse: list[int]) -> float:
        return estimate(_traced(cfg, base, reuse, data, trace_samples), arch).latency_ns

    depth = len(encoders_of(_model(cfg, base, [], data)))
    baseline_ns = latency([])
    if not baseline_ns > 0:  # an estimator without a latency model reports 0 ns for every candidate
        raise SpikecimError(
            f"trex.arch: {arch} does not model latency (the baseline costs {baseline_ns:g} ns), "
            "and the reuse count is chosen by latency; allowed: an architecture that models it"
        )
    target = latency_target_ns if latency_target_ns is not None else latency_ratio * baseline_ns
    found: list[TrexCandidate] = []
    count = None
    for k in range(depth):
        here = [
            TrexCandidate(pattern=p, reuse=r, latency_ns=latency(r) if r else baseline_ns)
            for p, r in candidates(depth, k)
        ]
        found += here
        if any(c.latency_ns <= target for c in here):
            count = k
            break
    if count is None:
        fastest = min(c.latency_ns for c in found)
        raise SpikecimError(
            f"trex.latency_target_ns: {target:.4g} ns is below the fastest candidate's {fastest:.4g} ns on {arch}"
        )
    feasible = [c for c in found if c.latency_ns <= target and len(c.reuse) == count]
    if len(feasible) > 1:
        brief = _with_variants(
            cfg,
            [_trex_variant(base, f"trex-{c.pattern}", c.reuse) for c in feasible],
            baseline=f"trex-{feasible[0].pattern}",
            name=f"{cfg.name}-trex-candidates",
            stages=["train", "evaluate"],
            epochs=brief_epochs,
        )
        metrics = run(brief, console=console).metrics["evaluate"]
        for c in feasible:
            c.brief_accuracy = _accuracy(metrics, f"trex-{c.pattern}")
        chosen = max(feasible, key=lambda c: (c.brief_accuracy or 0.0, -c.latency_ns))
    else:
        chosen = feasible[0]
    variants = [base.model_dump(mode="json")]
    if chosen.reuse:
        variants.append(_trex_variant(base, "trex", chosen.reuse))
    final = _with_variants(cfg, variants, baseline=base.name)
    ctx = run(final, console=console)
    result = TrexResult(
        arch=arch,
        variant=base.name,
        latency_target_ns=target,
        baseline_latency_ns=baseline_ns,
        reuse_count=count,
        candidates=found,
        chosen=chosen,
    )
    for v in final.variants:
        wl = ctx.workloads.get(v.name)
        if wl is None:
            continue
        r = estimate(wl, arch)
        result.variants[v.name] = TrexVariant(
            reuse=[] if v.name == base.name else chosen.reuse,
            latency_ns=r.latency_ns,
            energy_pj=r.energy_pj,
            area_um2=r.area_um2,
            edap_pj_ns_mm2=r.edap_pj_ns_mm2,
            tops_per_mm2=r.tops_per_mm2,
            accuracy=_accuracy(ctx.metrics.get("evaluate"), v.name),
            analog_accuracy=_analog(ctx.metrics.get("analog"), v.name),
        )
    result.save(final.run_dir / "trex.json")
    if "report" in final.stages:  # the report was written before trex.json: again, with its section
        from spikecim.report.render import write_markdown, write_report

        write_report(final.run_dir)
        write_markdown(final.run_dir)
    return result


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def trex_tables(r: TrexResult) -> list[tuple[list[str], list[list[str]]]]:
    """``[(headers, rows)]`` of the candidates and of the variants, as text: the report's
    tables and ``spikecim trex``'s."""
    candidates = [
        [
            f"{c.pattern}{' (chosen)' if c == r.chosen else ''}",
            str(c.reuse),
            _num(c.latency_ns),
            pct(c.brief_accuracy),
        ]
        for c in r.candidates
    ]
    variants = [
        [
            name,
            str(v.reuse),
            _num(v.latency_ns),
            _num(v.edap_pj_ns_mm2),
            _num(v.tops_per_mm2),
            pct(v.accuracy),
            pct(v.analog_accuracy),
        ]
        for name, v in r.variants.items()
    ]
    return [
        (["pattern", "reuse encoders", "latency (ns)", "brief accuracy"], candidates),
        (
            ["variant", "reuse", "latency (ns)", "EDAP (pJ·ns·mm²)", "TOPS/mm²", "accuracy", "analog"],
            variants,
        ),
    ]


@register_section("trex", "TReX attention reuse", order=65)
def trex_section(metrics: dict, run_dir: Path) -> str:
    """The search's ``trex.json``: candidates, choice, and the variants' EDAP, TOPS/mm²,
    accuracy, with a chart of each variant's cost against the baseline's."""
    path = Path(run_dir) / "trex.json"
    if not path.is_file():
        return ""
    r = TrexResult.model_validate_json(path.read_text())
    (cand_head, candidates), (var_head, variants) = trex_tables(r)
    parts = [
        (
            f"<p>Encoders reusing attention chosen for a latency target of {_num(r.latency_target_ns)} ns on "
            f"{html.escape(r.arch)} (baseline '{html.escape(r.variant)}': {_num(r.baseline_latency_ns)} ns): "
            f"{r.reuse_count} reuse encoder(s).</p>"
        ),
        html_table(cand_head, candidates),
        html_table(var_head, variants),
    ]
    base = r.variants.get(r.variant)
    if base is not None and len(r.variants) > 1:
        ratios = {name: {r.arch: _ratios(v, base)} for name, v in r.variants.items() if name != r.variant}
        title = f"Cost on {r.arch} against the baseline (EDAP: lower is better; TOPS/mm²: higher is better)"
        parts.append(
            embed_chart(
                charts.ratio_bars(ratios, r.variant, title), None, "TReX against the baseline", "trex"
            )
        )
    return "\n".join(parts)


def _ratios(v: TrexVariant, base: TrexVariant) -> dict[str, float | None]:
    """A variant's latency, energy, EDAP and TOPS/mm² as multiples of the baseline's."""
    from spikecim.pipeline.compare import ratio_to

    return {
        "latency": ratio_to(v.latency_ns, base.latency_ns),
        "energy": ratio_to(v.energy_pj, base.energy_pj),
        "EDAP": ratio_to(v.edap_pj_ns_mm2, base.edap_pj_ns_mm2),
        "TOPS/mm²": ratio_to(v.tops_per_mm2, base.tops_per_mm2),
    }


def _model(cfg, variant, reuse: list[int], data):
    from spikecim.methods import apply_methods
    from spikecim.models import create_model
    from spikecim.train.seeding import seeded
    from spikecim.variants import MethodConfig

    neuron = cfg.neuron_for(variant)
    with seeded(cfg.seed):
        model = create_model(
            cfg.model.name,
            spiking=variant.spiking,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            input_size=data.input_size,
            neuron=neuron.kind,
            neuron_kw=neuron.module_kwargs(),
            **cfg.model.kwargs,
        )
        methods = list(variant.methods) + ([MethodConfig(name="trex", reuse=reuse)] if reuse else [])
        return apply_methods(model, methods)


def _traced(cfg, variant, reuse: list[int], data, samples: int):
    import torch

    from spikecim.pipeline.run import variant_input
    from spikecim.trace import trace
    from spikecim.train.batches import iterate_batches

    model = _model(cfg, variant, reuse, data)
    inputs = variant_input(cfg, variant.name, data)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = data.x_test[:samples], data.y_test[:samples]
    batches = (inputs.encode(xb, gen) for xb, _ in iterate_batches(x, y, cfg.data.batch_size))
    return trace(model, batches, model_name=cfg.model.name, dataset=cfg.data.name)


def _trex_variant(base, name: str, reuse: list[int]) -> dict:
    v = base.model_dump(mode="json")
    return {**v, "name": name, "methods": [*v["methods"], {"name": "trex", "reuse": list(reuse)}]}


def _with_variants(
    cfg, variants: list[dict], baseline: str, name: str | None = None, stages=None, epochs=None
):
    from pydantic import ValidationError

    from spikecim.config import RunConfig
    from spikecim.errors import one_line_validation_error

    data = cfg.model_dump(mode="json")
    data.update(variants=variants, baseline=baseline)
    if name is not None:
        data["name"] = name
    if stages is not None:
        data["stages"] = stages
    if epochs is not None:
        data["train"] = {**data["train"], "epochs": epochs}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix="config.")) from None


def _accuracy(evaluate, name: str) -> float | None:
    if evaluate is None:
        return None
    per = getattr(evaluate, "root", evaluate)
    r = per.get(name) if isinstance(per, dict) else None
    return getattr(r, "accuracy", None) if r is not None else None


def _analog(analog, name: str) -> float | None:
    r = getattr(analog, "variants", {}).get(name) if analog is not None else None
    return r.analog.mean if r is not None and r.analog is not None else None
