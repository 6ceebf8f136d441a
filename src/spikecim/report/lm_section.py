"""The report section of a language-modelling run (``task: lm``): per variant the validation
bits per character, perplexity, cross-entropy and next-byte accuracy (docs/lm.md)."""

from __future__ import annotations

from pathlib import Path

from spikecim.pipeline.results import EvaluateResult
from spikecim.report.fmt import pct
from spikecim.report.sections import html_table, register_section

__all__ = ["language_model_section"]


@register_section("language-model", "Language model", order=21, stage="evaluate")
def language_model_section(result: EvaluateResult | None, run_dir: Path) -> str:
    """Empty unless the evaluation holds ``bits_per_char`` (a language model)."""
    rows = []
    for v, m in (result.variants if result is not None else {}).items():
        bpc = getattr(m, "bits_per_char", None)
        if bpc is not None:
            rows.append(
                [v.upper(), f"{bpc:.3f}", f"{m.perplexity:.2f}", f"{m.cross_entropy:.4f}", pct(m.accuracy), m.tokens]
            )
    if not rows:
        return ""
    headers = ["model", "bits per character", "perplexity", "cross-entropy (nats)", "next-byte accuracy", "tokens"]
    return "<p>Validation split, every byte predicted from the bytes before it in its window.</p>" + html_table(
        headers, rows
    )
