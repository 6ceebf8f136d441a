"""The ``analog`` stage of ``spikecim run`` and its report section.

For each trained variant (``snn``, ``ann``): digital accuracy; analog accuracy (mean ± std
over ``n_seeds`` programming seeds) at ``t_inference_s``; accuracy vs time since
programming (1 s to 1 year) and vs ADC bits; and after mitigation (hardware-aware
training of a copy; BN fine-tuning on the programmed crossbar).

"Accuracy" is the run task's metric (:attr:`spikecim.tasks.Task.metric`): every model is
scored by the task (:meth:`~spikecim.tasks.Task.scores`), so a language-model run
(``task: lm``) reports validation perplexity everywhere (lower is better), and per seed
every scalar metric of the task beside it (bits per byte, cross-entropy, next-byte
accuracy). A model with products of two activations (attention's ``MatMul``) also gets the write-noise sweep when
``analog.write_noise_gammas`` is set: accuracy against γ of the K/V written into crossbars,
ClipFormer off and on, before and after hardware-aware training
(:mod:`spikecim.analog.write_sweep`). Plots go to ``plots/analog_drift.png``,
``plots/analog_adc_bits.png`` and ``plots/analog_write_noise_<variant>.png``.
"""

from __future__ import annotations

import html
import statistics
import time
from pathlib import Path

import torch

from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.convert import calibrate_adc, drift, program, to_analog
from spikecim.analog.evaluate import evaluate_analog, monte_carlo_scores
from spikecim.analog.mitigation import WeightModifier, bn_finetune, bn_parameters, bn_running_stats, hwa_train
from spikecim.analog.parallel import worker_pool
from spikecim.analog.stage_config import check_calibration
from spikecim.analog.write_sweep import has_dynamic_products, plot_write_noise_sweep, write_noise_sweep
from spikecim.errors import SpikecimError
from spikecim.pipeline.results import AnalogResult, BnFinetuneResult, HwaResult, SeedAccuracy
from spikecim.pipeline.run import variant_input
from spikecim.pipeline.stages import RunContext
from spikecim.progress import progress_bar
from spikecim.report.fmt import MISSING, metric_axis, metric_label, metric_text
from spikecim.report.sections import embed_chart, embed_png, html_table, register_section
from spikecim.tasks import Task, get_task
from spikecim.train.evaluate import ModelInput
from spikecim.train.seeding import seeded

__all__ = ["analog_section", "analog_stage", "crossbar_config_for_run", "evaluate_run_analog"]


def crossbar_config_for_run(stage_cfg) -> CrossbarConfig:
    """The stage's preset (name or YAML file) with its ``overrides`` applied."""
    base = load_crossbar_config(stage_cfg.preset)
    return base.with_updates(**stage_cfg.overrides) if stage_cfg.overrides else base


def evaluate_run_analog(
    ctx: RunContext,
    config: CrossbarConfig | str | dict | None = "pcm-aihwkit",
    n_seeds: int = 5,
    t_inference_s: float | None = None,
    max_samples: int | None = None,
) -> dict[str, dict]:
    """:func:`evaluate_analog` for every variant of a loaded run (``ctx.models``,
    ``ctx.data``, ``ctx.config``), scored by the run's task (a language model: perplexity);
    ``t_inference_s`` None takes the run's ``analog.t_inference_s``."""
    cfg = load_crossbar_config(config)
    if t_inference_s is None:
        t_inference_s = float(getattr(getattr(ctx.config, "analog", None), "t_inference_s", 0.0))

    out = {}
    for name, model in ctx.models.items():
        out[name] = evaluate_analog(
            model,
            ctx.data,
            cfg,
            None,
            n_seeds,
            t_inference_s,
            variant_input(ctx.config, name, ctx.data),
            max_samples,
            seed=ctx.config.seed,
            input_seed=ctx.config.seed,
            task=ctx.config.task,
        )
    return out


def _summary(accs: list[float]) -> dict:
    return {
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "accuracies": accs,
    }


def _variant(
    model,
    data,
    cfg: CrossbarConfig,
    sc,
    inputs: ModelInput,
    input_seed: int,
    tick: _Ticker,
    task: Task | None = None,
) -> dict:
    """One variant's figures, scored by ``task`` (None: classification)."""
    x, y = data.x_test, data.y_test
    if sc.max_samples is not None:
        x, y = x[: sc.max_samples], y[: sc.max_samples]
    calib_x = data.x_train[: sc.calibration_samples] if sc.calibration_samples else None
    calib_y = data.y_train[: sc.calibration_samples] if sc.calibration_samples else None
    seeds = [sc.seed + k for k in range(sc.n_seeds)]
    model.eval()
    hwa_on = sc.hwa and sc.hwa_epochs > 0
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    bn_on = sc.bn_finetune and sc.bn_epochs > 0 and has_bn and calib_x is not None
    sweep_gammas = sc.write_noise_gammas if has_dynamic_products(model) else []
    passes = 1 + len(sc.drift_times_s) + len(sc.adc_bits_sweep) + hwa_on + bn_on + bool(sweep_gammas)
    tick.start(len(seeds) * passes + hwa_on)

    task = task or get_task("classification")
    metric = task.metric

    def acc(m):
        return task.scores(m, x, y, inputs, seed=input_seed)[metric]

    def seed_scores(am, t_s: float, what: str) -> list[dict[str, float]]:
        return monte_carlo_scores(
            am,
            x,
            y,
            seeds,
            t_s,
            None,
            inputs,
            calib_x,
            input_seed=input_seed,
            workers=sc.workers,
            ray_address=sc.ray_address,
            on_seed=lambda s, _: tick(f"{what}, seed {s}"),
            task=task.name,
        )

    def per_seed(am, t_s: float, what: str) -> dict:
        return _summary([s[metric] for s in seed_scores(am, t_s, what)])

    digital = task.scores(model, x, y, inputs, seed=input_seed)
    scores = seed_scores(to_analog(model, cfg), sc.t_inference_s, "analog")
    out: dict = {
        "timesteps": inputs.timesteps,
        "ideal": digital[metric],
        "analog": _summary([s[metric] for s in scores]),
        "metrics": {
            k: {**_summary([s[k] for s in scores]), "ideal": digital[k]} for k in task.scalar_metrics
        },
    }
    am = to_analog(model, cfg)
    sweep = [per_seed(am, t, f"drift {t:g} s") for t in sc.drift_times_s]
    out["drift"] = {
        "t_s": list(sc.drift_times_s),
        "mean": [s["mean"] for s in sweep],
        "std": [s["std"] for s in sweep],
    }
    sweep = [
        per_seed(
            to_analog(model, cfg.with_updates(adc={"enabled": True, "bits": b})),
            sc.t_inference_s,
            f"ADC {b} bits",
        )
        for b in sc.adc_bits_sweep
    ]
    out["adc_bits"] = {
        "bits": list(sc.adc_bits_sweep),
        "mean": [s["mean"] for s in sweep],
        "std": [s["std"] for s in sweep],
    }
    trained = None
    if hwa_on:
        mod = WeightModifier(kind=sc.hwa_modifier, std=sc.hwa_noise_std)
        start = time.perf_counter()
        trained = hwa_train(
            model,
            data.x_train,
            data.y_train,
            mod,
            sc.hwa_epochs,
            sc.hwa_lr,
            None,
            inputs,
            seed=sc.seed,
            converters=sc.hwa_converters(),
        )
        seconds = time.perf_counter() - start
        tick("hardware-aware training")
        out["hwa"] = {
            "ideal": acc(trained),
            **per_seed(to_analog(trained, cfg), sc.t_inference_s, "after HWA training"),
            "trained_params": sum(p.numel() for p in model.parameters()),
            "train_samples": len(data.x_train),
            "epochs": sc.hwa_epochs,
            "seconds": seconds,
        }
    if bn_on:
        accs, seconds = [], []
        for s in seeds:
            am = program(to_analog(model, cfg), s)
            calibrate_adc(am, [inputs.encode(calib_x, torch.Generator().manual_seed(input_seed))])
            drift(am, sc.t_inference_s)
            with seeded(s):
                start = time.perf_counter()
                bn_finetune(am, calib_x, calib_y, sc.bn_epochs, sc.bn_lr, None, inputs, seed=s)
                seconds.append(time.perf_counter() - start)
                accs.append(acc(am))
            tick(f"BN fine-tuning, seed {s}")
        out["bn_finetune"] = {
            **_summary(accs),
            "trained_params": sum(p.numel() for p in bn_parameters(am)),
            "running_stats": bn_running_stats(am),
            "calibration_samples": len(calib_x),
            "epochs": sc.bn_epochs,
            "seconds": statistics.fmean(seconds),
        }
    if sweep_gammas:
        models = {"plain": model} if trained is None else {"plain": model, "hwa": trained}
        out["write_noise"] = write_noise_sweep(
            models, x, y, cfg, sweep_gammas, seeds, inputs, calib_x, sc.t_inference_s, input_seed, task.name
        )
        tick.progress.update(tick.task, advance=len(seeds), info="write-noise sweep")
    return out


class _Ticker:
    """One bar per variant on the run's console, advanced after every Monte-Carlo evaluation
    (a seed of one pass) with what was just done; nothing is drawn without a console."""

    def __init__(self, progress, variant: str) -> None:
        self.progress, self.variant = progress, variant
        self.task = progress.add_task(f"analog {variant}", total=None, info="")

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def __call__(self, done: str) -> None:
        self.progress.update(self.task, advance=1, info=done)


def analog_stage(ctx: RunContext) -> AnalogResult:
    """Analog accuracy (the task's metric) of every trained variant; see the module docstring."""
    sc = ctx.config.analog
    task = get_task(ctx.config.task)
    if not sc.enabled:
        return AnalogResult(enabled=False)
    cfg = crossbar_config_for_run(sc)
    try:
        check_calibration(cfg, sc)
    except SpikecimError as e:
        raise SpikecimError(f"analog.{e}") from None
    start = time.perf_counter()
    result: dict = {
        "enabled": True,
        "metric": task.metric,
        "preset": sc.preset,
        "crossbar": cfg.model_dump(mode="json"),
        "n_seeds": sc.n_seeds,
        "t_inference_s": sc.t_inference_s,
        "variants": {},
    }
    # one set of worker processes for every Monte-Carlo pass of the stage (analog/parallel.py)
    with progress_bar(ctx.console) as progress, worker_pool(sc.workers if sc.ray_address is None else 1):
        for name, model in ctx.models.items():
            inputs = variant_input(ctx.config, name, ctx.data)
            tick = _Ticker(progress, name)
            result["variants"][name] = _variant(model, ctx.data, cfg, sc, inputs, ctx.config.seed, tick, task)
    result["plots"] = _plots(result, ctx.plots_dir) + _write_noise_plots(result, ctx.plots_dir)
    result["seconds"] = time.perf_counter() - start
    return AnalogResult.model_validate(result)


def _plots(result: dict, plots_dir: Path) -> list[str]:
    from spikecim.report.plots import plt, save_figure

    scale, _, ylabel = metric_axis(result.get("metric", "accuracy"))
    names = []
    for key, fname, xlabel, xlog in (
        ("drift", "analog_drift.png", "time since programming (s)", True),
        ("adc_bits", "analog_adc_bits.png", "ADC bits", False),
    ):
        if not any(m[key]["mean"] for m in result["variants"].values()):
            continue  # the sweep was switched off (an empty list of times or bits)
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for i, (variant, m) in enumerate(result["variants"].items()):
            xs = m[key]["t_s" if key == "drift" else "bits"]
            ax.errorbar(
                xs,
                [v * scale for v in m[key]["mean"]],
                yerr=[v * scale for v in m[key]["std"]],
                marker="o",
                ms=3,
                capsize=3,
                color=f"C{i}",
                label=f"{variant.upper()} analog",
            )
            ax.axhline(m["ideal"] * scale, ls="--", color=f"C{i}", lw=1, label=f"{variant.upper()} digital")
        if xlog:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{result['preset']}: mean ± std over {result['n_seeds']} seeds", fontsize=9)
        ax.legend(fontsize=7)
        save_figure(fig, plots_dir / fname, dpi=100)
        names.append(fname)
    return names


def _write_noise_plots(result: dict, plots_dir: Path) -> list[str]:
    names = []
    for variant, m in result["variants"].items():
        if "write_noise" not in m:
            continue
        ideal = {"plain": m["ideal"]}
        if "hwa" in m:
            ideal["hwa"] = m["hwa"]["ideal"]
        name = f"analog_write_noise_{variant}.png"
        title = (
            f"{variant.upper()}, {result['preset']}: written K/V, mean ± std over {result['n_seeds']} seeds"
        )
        plot_write_noise_sweep(
            m["write_noise"], ideal, plots_dir / name, title, result.get("metric", "accuracy")
        )
        names.append(name)
    return names


def _write_noise_table(a: AnalogResult) -> str:
    """γ × (variant, training, ClipFormer): the write-noise sweep as one table."""
    rows = []
    for v, m in a.variants.items():
        if m.write_noise is None:
            continue
        for c in m.write_noise.curves:
            cells = "".join(f"<td>{metric_text(a.metric, x)}</td>" for x in c.mean)
            rows.append(
                f"<tr><td>{html.escape(v.upper())}</td><td>{html.escape(c.training)}</td>"
                f"<td>{'on' if c.clipformer else 'off'}</td>{cells}</tr>"
            )
        gammas = "".join(f"<th>γ = {g:g}</th>" for g in m.write_noise.gamma)
    if not rows:
        return ""
    return (
        "<p>Attention's dynamic products with K and V written into crossbars at every inference: "
        f"{html.escape(a.metric)} against the write-noise factor γ (G' = G + γ·sqrt((G − G_min)(G_max − G_min))·N(0, σ²)), "
        "ClipFormer shift-and-clip off and on, without and with hardware-aware training.</p>"
        f"<table><tr><th>variant</th><th>training</th><th>ClipFormer</th>{gammas}</tr>{''.join(rows)}</table>"
    )


def _pm(m: SeedAccuracy | None, n_seeds: int | None, metric: str) -> str:
    return m.text(n_seeds, metric) if m else MISSING


def _cost(m: HwaResult | BnFinetuneResult | None) -> str:
    return html.escape(m.cost()) if m else MISSING


@register_section("analog", "Analog crossbar accuracy", order=60, stage="analog")
def analog_section(a: AnalogResult | None, run_dir: Path) -> str:
    """Digital vs analog score (the task's metric) per variant, before and after mitigation,
    the sweeps, and for a task with several metrics (a language model) each of them."""
    if a is None or not a.enabled:
        return ""
    n, k = a.n_seeds or 1, a.metric
    rows = []
    for v, m in a.variants.items():
        rows.append(
            f"<tr><td>{html.escape(v.upper())}</td><td>{metric_text(k, m.ideal)}</td><td>{_pm(m.analog, n, k)}</td>"
            f"<td>{_pm(m.bn_finetune, n, k)}</td><td>{_cost(m.bn_finetune)}</td>"
            f"<td>{_pm(m.hwa, n, k)}</td><td>{_cost(m.hwa)}</td></tr>"
        )
    parts = [
        (
            f"<p>Crossbar preset <code>{html.escape(str(a.preset))}</code>, read {a.t_inference_s:g} s after "
            f"programming; analog figures are the mean{' ± standard deviation' if n > 1 else ''} over "
            f"{n} programming seed{'s' if n != 1 else ''}; every figure is the "
            f"{html.escape(metric_label(k))}.</p>"
        ),
        (
            f"<table><tr><th>variant</th><th>digital {html.escape(k)}</th><th>analog {html.escape(k)}</th>"
            "<th>after BN fine-tuning</th>"
            "<th>BN fine-tuning cost</th><th>after HWA training</th><th>HWA training cost</th></tr>"
            + "".join(rows)
            + "</table>"
        ),
        _metrics_table(a),
        (
            "<p>BN fine-tuning trains only the BatchNorm affine parameters (γ, β) of each programmed "
            "crossbar on the calibration samples, re-estimating the running mean and variance on the "
            "way; its time is per crossbar (mean over seeds). Hardware-aware training retrains every "
            "parameter of a copy with weight noise, once for all seeds; its samples are per epoch.</p>"
        ),
    ]
    parts.append(_write_noise_table(a))
    parts += _charts(a, Path(run_dir))
    for name in a.plots:
        p = Path(run_dir) / "plots" / name
        if name.startswith("analog_write_noise") and p.exists():
            parts.append(embed_png(p, alt=name))
    return "\n".join(parts)


def _metrics_table(a: AnalogResult) -> str:
    """Every scalar metric of a task that has more than one (a language model): digital and
    on the crossbar, per variant; empty for classification (its one metric is the table above)."""
    names = [k for k in next((m.metrics for m in a.variants.values() if m.metrics), {})]
    if len(names) < 2:
        return ""
    n = a.n_seeds or 1
    headers = ["variant"]
    for k in names:
        headers += [f"{metric_label(k, False)}, digital", f"{metric_label(k, False)}, analog"]
    rows = []
    for v, m in a.variants.items():
        row = [v.upper()]
        for k in names:
            row += (
                [metric_text(k, m.metrics[k].ideal), _pm(m.metrics[k], n, k)]
                if k in m.metrics
                else [MISSING] * 2
            )
        rows.append(row)
    return (
        "<p>Every metric of the task on the same programmed crossbars: "
        f"{html.escape(', '.join(metric_label(k) for k in names))}. For a language model: the "
        "validation split, every byte predicted from the bytes before it in its window "
        "(bits per byte = cross-entropy / ln 2, perplexity = exp(cross-entropy)).</p>"
        + html_table(headers, rows)
    )


def _charts(a: AnalogResult, run_dir: Path) -> list[str]:
    """Accuracy per variant with every seed beside the mean ± std, and the drift and ADC
    sweeps (each with its PNG for report.md, when it was written)."""
    from spikecim.report import charts

    title = f"{a.preset}, read {a.t_inference_s:g} s after programming"
    seeds = {
        v: {"digital": m.ideal, "mean": m.analog.mean, "std": m.analog.std, "seeds": m.analog.accuracies}
        for v, m in a.variants.items()
        if m.analog is not None and m.analog.mean is not None
    }
    out = []
    if seeds:
        fig = charts.accuracy_seeds(
            seeds, f"Analog {a.metric} over {a.n_seeds} programming seeds ({title})", a.metric
        )
        out.append(embed_chart(fig, None, f"analog {a.metric} per seed", name="analog-seeds"))
    for key, fname, x_key, x_title, log_x in (
        ("drift", "analog_drift.png", "t_s", "time since programming (s)", True),
        ("adc_bits", "analog_adc_bits.png", "bits", "ADC resolution (bits)", False),
    ):
        curves = {}
        for v, m in a.variants.items():
            sweep = getattr(m, key, None)
            if sweep is not None and sweep.mean:
                curves[v] = {
                    "x": getattr(sweep, x_key),
                    "mean": sweep.mean,
                    "std": sweep.std,
                    "digital": m.ideal,
                }
        if curves:
            png = run_dir / "plots" / fname
            fig = charts.sweep(
                curves, f"{a.preset}: mean ± std over {a.n_seeds} seeds", x_title, log_x, a.metric
            )
            out.append(
                embed_chart(fig, png if png.exists() else None, fname, name=f"analog-{key.replace('_', '-')}")
            )
    return out
