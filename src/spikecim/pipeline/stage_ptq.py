"""The ``ptq`` stage of ``spikecim run`` and its report section: weight-only post-training
quantisation of every trained variant (:func:`spikecim.quant.tesseraq.post_training_quantize`)
at each bit width of ``ptq.bits`` with each method of ``ptq.methods``, every quantised copy
scored on the test split and, with ``ptq.analog``, on the analog stage's crossbar in the
same metric (a language model's perplexity on the crossbar, mean ± std over the seeds).

The calibration samples are the first ``ptq.calibration_samples`` of the training split,
encoded as the variant takes them (seeded with the run seed). Scoring goes through
:func:`task_evaluator`, the one place that knows the task: the run's task's
:meth:`~spikecim.tasks.Task.evaluate` on the test split (the numbers the ``evaluate`` stage
reports), compared in the task's ``metric``: accuracy for classification,
perplexity for a language model (bits per character and cross-entropy beside it).

A layer that quantises its own weight (BitLinear) is not quantised again
(:func:`~spikecim.quant.groupwise.quantizable_layers`); a model left with no weight layer
(``matmulfree-tiny``, whose every projection is a ternary BitLinear) is refused in one line
when the run config is read, before training (``has_float_weights`` of the model registry).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.pipeline.results import PtqResult, PtqRun, PtqVariant, SeedAccuracy, metric_text
from spikecim.pipeline.run import variant_input
from spikecim.pipeline.stages import RunContext
from spikecim.progress import progress_bar
from spikecim.report.fmt import MISSING
from spikecim.report.sections import embed_chart, html_table, register_section

__all__ = ["ptq_section", "ptq_stage", "task_evaluator"]


def task_evaluator(ctx: RunContext, variant: str) -> tuple[str, Callable[[nn.Module], dict[str, float]]]:
    """The task's quantisation metric and a function scoring a model of ``variant`` on the
    test split with the task's own evaluation: :meth:`spikecim.tasks.Task.scores`."""
    from spikecim.tasks import get_task

    task = get_task(ctx.config.task)
    inputs = variant_input(ctx.config, variant, ctx.data)
    data, seed = ctx.data, ctx.config.seed
    return task.metric, lambda model: task.scores(model, data.x_test, data.y_test, inputs, seed=seed)


def ptq_stage(ctx: RunContext) -> PtqResult:
    """Quantise every variant's weights post-training (RTN, AdaRound-style, TesseraQ) and score them."""
    from spikecim.analog.parallel import worker_pool
    from spikecim.quant.groupwise import WeightQuantSpec, quantizable_layers
    from spikecim.quant.tesseraq import PAPER_THRESHOLDS, ReconstructionConfig, post_training_quantize

    cfg, sc = ctx.config, ctx.config.ptq
    if not sc.enabled:
        return PtqResult(enabled=False)
    names = [v.name for v in cfg.variants]
    for v in sc.variants or []:
        if v not in names:
            raise SpikecimError(f"ptq.variants: unknown variant '{v}', allowed: {', '.join(names)}")
    analog = _analog_scorer(ctx) if sc.analog else None
    thresholds = tuple(sc.thresholds) if sc.thresholds is not None else PAPER_THRESHOLDS
    start = time.perf_counter()
    metric, variants = "accuracy", {}
    ac = ctx.config.analog  # the crossbar scores' worker processes, kept for the whole stage
    workers = ac.workers if analog is not None and ac.ray_address is None else 1
    with progress_bar(ctx.console) as progress, worker_pool(workers):
        for v in sc.variants or names:
            model = ctx.models[v]
            if not quantizable_layers(model):
                raise SpikecimError(
                    f"ptq.variants: variant '{v}' has no weight layer to quantise post-training "
                    "(BitLinear layers, all of matmulfree-tiny's, are ternary already); leave it out"
                )
            inputs = variant_input(cfg, v, ctx.data)
            calib = inputs.encode(
                ctx.data.x_train[: sc.calibration_samples], torch.Generator().manual_seed(cfg.seed)
            )
            batch_dim = inputs.batch_dim
            metric, score = task_evaluator(ctx, v)
            runs = []
            task = progress.add_task(f"ptq {v}", total=len(sc.bits) * len(sc.methods), info="")
            for bits in sc.bits:
                spec = WeightQuantSpec(bits, sc.group_size, sc.symmetric)
                for method in sc.methods:
                    rc = ReconstructionConfig(
                        method="tesseraq" if method == "rtn" else method,
                        thresholds=thresholds,
                        steps=sc.steps,
                        lr=sc.lr,
                        learn_scale=sc.learn_scale,
                        batch_size=sc.batch_size,
                        seed=cfg.seed,
                    )
                    q = post_training_quantize(model, spec, method, calib, rc, batch_dim)
                    runs.append(
                        PtqRun(
                            method=method,
                            bits=bits,
                            metrics=score(q.model),
                            block_mse=[b.final_mse for b in q.blocks],
                            block_rtn_mse=[b.rtn_mse for b in q.blocks],
                            seconds=q.seconds,
                            analog=analog(q.model, v) if analog is not None else None,
                        )
                    )
                    progress.update(task, advance=1, info=f"W{bits} {method}")
            variants[v] = PtqVariant(
                full_precision=score(model),
                analog_full_precision=analog(model, v) if analog is not None else None,
                runs=runs,
            )
    return PtqResult(
        metric=metric,
        methods=list(sc.methods),
        bits=list(sc.bits),
        group_size=sc.group_size,
        symmetric=sc.symmetric,
        calibration_samples=sc.calibration_samples,
        batch_size=sc.batch_size,
        steps=sc.steps,
        thresholds=list(thresholds),
        n_seeds=cfg.analog.n_seeds if analog is not None else None,
        variants=variants,
        seconds=time.perf_counter() - start,
    )


def _analog_scorer(ctx: RunContext) -> Callable[[nn.Module, str], SeedAccuracy]:
    """The task's metric (accuracy, or a language model's perplexity) on the analog stage's
    crossbar (its preset, overrides, seeds and read time), mean ± std over the programming
    seeds; refused when the analog stage is switched off."""
    import statistics

    from spikecim.analog.convert import to_analog
    from spikecim.analog.evaluate import monte_carlo_scores
    from spikecim.pipeline.stage_analog import crossbar_config_for_run
    from spikecim.tasks import get_task

    ac = ctx.config.analog
    if not ac.enabled:
        raise SpikecimError("ptq.analog: needs the analog section enabled (analog.enabled: true)")
    crossbar = crossbar_config_for_run(ac)
    seeds = [ac.seed + k for k in range(ac.n_seeds)]
    x, y = ctx.data.x_test, ctx.data.y_test
    if ac.max_samples is not None:
        x, y = x[: ac.max_samples], y[: ac.max_samples]
    calib_x = ctx.data.x_train[: ac.calibration_samples] if ac.calibration_samples else None

    task = get_task(ctx.config.task)

    def score(model: nn.Module, variant: str) -> SeedAccuracy:
        inputs = variant_input(ctx.config, variant, ctx.data)
        scores = monte_carlo_scores(
            to_analog(model, crossbar), x, y, seeds, ac.t_inference_s, None, inputs, calib_x,
            input_seed=ctx.config.seed, workers=ac.workers, ray_address=ac.ray_address, task=task.name,
        )  # fmt: skip
        accs = [s[task.metric] for s in scores]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        return SeedAccuracy(mean=statistics.fmean(accs), std=std, accuracies=accs)

    return score


@register_section("ptq", "Post-training quantisation", order=55, stage="ptq")
def ptq_section(result: PtqResult | None, run_dir: Path) -> str:
    """Per variant and bit width the task metric of each method, its time, and its
    block-output error relative to round-to-nearest."""
    if result is None or not result.enabled or not result.variants:
        return ""
    m = result.metric
    analog = any(r.analog_full_precision is not None for r in result.variants.values())
    headers = [
        "variant",
        "weights",
        f"full precision {m}",
        *([f"full precision analog {m}"] if analog else []),
    ]
    for method in result.methods:
        headers += [f"{method} {m}", *([f"{method} analog {m}"] if analog else []), f"{method} time (s)"]
        if method != "rtn":
            headers.append(f"{method} error / RTN")
    rows = []
    for v, r in result.variants.items():
        fp = [metric_text(m, r.full_precision.get(m))]
        if analog:
            fp.append(_spread(r.analog_full_precision, result.n_seeds, m))
        for bits in result.bits:
            line = [v, f"W{bits}", *fp]
            for method in result.methods:
                run = r.run(method, bits)
                if run is None:
                    line += [MISSING] * (2 + analog + (method != "rtn"))
                    continue
                line.append(metric_text(m, run.metrics.get(m)))
                if analog:
                    line.append(_spread(run.analog, result.n_seeds, m))
                line.append(MISSING if run.seconds is None else f"{run.seconds:.3g}")
                if method != "rtn":
                    line.append(_error_ratio(run))
            rows.append(line)
    group = (
        "one group per output channel"
        if result.group_size is None
        else f"groups of {result.group_size} inputs"
    )
    batch = "all of them" if result.batch_size is None else f"{result.batch_size}"
    schedule = f"{len(result.thresholds)} stages of {result.steps} Adam steps"
    intro = (
        f"<p>Weight-only post-training quantisation of every synaptic layer ({'symmetric' if result.symmetric else 'asymmetric'}, "
        f"{html.escape(group)}) on {result.calibration_samples} calibration samples of the training split "
        f"({html.escape(batch)} per step): "
        f"round to nearest (rtn), block reconstruction without the progressive schedule (adaround, "
        f"{len(result.thresholds) * (result.steps or 0)} steps) and TesseraQ ({html.escape(schedule)}). "
        f"{html.escape(m)} on the test split; error / RTN: the mean over blocks of the block-output "
        "mean squared error after the final hard rounding, divided by RTN's.</p>"
    )
    return (
        intro
        + html_table(headers, rows)
        + embed_chart(_ptq_chart(result), None, "PTQ methods against bits", "ptq")
    )


def _ptq_chart(result: PtqResult):
    """The task metric against the weight bits, one line per variant and method, the full
    precision model as a dashed line."""
    from spikecim.report import charts
    from spikecim.report.fmt import metric_axis

    scale, unit, axis = metric_axis(result.metric)
    curves = {}
    for v, r in result.variants.items():
        for method in result.methods:
            pts = [
                (b, run.metrics.get(result.metric))
                for b in result.bits
                if (run := r.run(method, b)) is not None
            ]
            pts = [(b, y) for b, y in pts if y is not None]
            if pts:
                curves[f"{v} {method}"] = {
                    "x": [b for b, _ in pts],
                    "y": [y * scale for _, y in pts],
                }
        full = r.full_precision.get(result.metric)
        if full is not None and result.bits:
            xs = [min(result.bits), max(result.bits)]
            curves[f"{v} full precision"] = {"x": xs, "y": [full * scale] * 2, "dash": True}
    title = "Post-training quantisation: the task metric against the weight bits"
    return charts.lines(curves, title, "weight bits", axis, unit.strip())


def _spread(s: SeedAccuracy | None, n_seeds: int | None, metric: str) -> str:
    return s.text(n_seeds, metric) if s is not None else MISSING


def _error_ratio(run: PtqRun) -> str:
    pairs = [(e, r) for e, r in zip(run.block_mse, run.block_rtn_mse, strict=False) if r > 0]
    if not pairs:
        return MISSING
    return f"{sum(e / r for e, r in pairs) / len(pairs):.3g}"
