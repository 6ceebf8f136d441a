"""The report section of a language-modelling run (``task: lm``): per variant the validation
bits per character, perplexity, cross-entropy and next-byte accuracy (docs/lm.md), and,
when the analog stage ran, the perplexity on the crossbar beside the digital one."""

from __future__ import annotations

import html
from pathlib import Path

from spikecim.pipeline.results import AnalogResult, EvaluateResult
from spikecim.report.fmt import MISSING, metric_label, metric_spread, metric_text, pct
from spikecim.report.sections import html_table, register_section

__all__ = ["language_model_section"]


@register_section("language-model", "Language model", order=21)
def language_model_section(metrics: dict, run_dir: Path) -> str:
    """Empty unless the evaluation holds ``bits_per_char`` (a language model)."""
    result: EvaluateResult | None = metrics.get("evaluate")
    analog: AnalogResult | None = metrics.get("analog")
    crossbar = (
        analog.variants if analog is not None and analog.enabled and analog.metric == "perplexity" else {}
    )
    rows = []
    for v, m in (result.variants if result is not None else {}).items():
        bpc = getattr(m, "bits_per_char", None)
        if bpc is None:
            continue
        row = [
            v.upper(),
            f"{bpc:.3f}",
            f"{m.perplexity:.2f}",
            f"{m.cross_entropy:.4f}",
            pct(m.accuracy),
            m.tokens,
        ]
        if crossbar:
            a = crossbar.get(v)
            seeds = a.analog if a is not None else None
            bits = a.metrics.get("bits_per_char") if a is not None else None
            row += [
                f"{metric_text('perplexity', a.ideal)} → {metric_spread('perplexity', seeds.mean, seeds.std, analog.n_seeds)}"
                if seeds
                else MISSING,
                f"{metric_text('bits_per_char', bits.ideal)} → {metric_text('bits_per_char', bits.mean)}"
                if bits
                else MISSING,
            ]
        rows.append(row)
    if not rows:
        return ""
    headers = [
        "model",
        metric_label("bits_per_char", False),
        "perplexity",
        "cross-entropy (nats)",
        "next-byte accuracy",
        "tokens",
    ]
    intro = "<p>Validation split, every byte predicted from the bytes before it in its window."
    if crossbar:
        headers += [
            "perplexity, digital → crossbar",
            f"{metric_label('bits_per_char', False)}, digital → crossbar",
        ]
        intro += (
            f" Crossbar: preset <code>{html.escape(str(analog.preset))}</code> read "
            f"{analog.t_inference_s:g} s after programming, mean ± std over {analog.n_seeds} programming "
            "seeds, beside the digital model on the same windows (all of the split, or the first "
            "<code>analog.max_samples</code>; the analog section has every metric). Lower is better for "
            "all but the accuracy."
        )
    return intro + "</p>" + html_table(headers, rows)
