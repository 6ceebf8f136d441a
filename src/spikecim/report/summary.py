"""The summary at the top of a run's report: the headline table ``spikecim run`` prints
(every stage's ``summary_rows()``) and one sentence, generated from the hardware stage's
numbers, on how the operation-count estimate compares with the hardware models.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from spikecim.pipeline.results import HardwareResult
from spikecim.report.fmt import ratio
from spikecim.report.sections import html_table

__all__ = ["estimate_sentence", "headline_rows", "summary_html"]


def headline_rows(results: Mapping[str, object]) -> list[list[str]]:
    """``[stage, variant, text]`` per row, as the console summary prints them."""
    rows = []
    for stage, result in results.items():
        summary_rows = getattr(result, "summary_rows", None)
        if summary_rows is None:
            continue
        rows += [[stage, str(variant), text] for variant, text in summary_rows()]
    return rows


def estimate_sentence(hw: HardwareResult | None) -> str:
    """One sentence per non-baseline variant: its energy ratio to the baseline by operation
    count (the ``naive`` estimator) against the ratios on the hardware models, e.g.
    "Counting operations (naive-45nm), SNN takes 1.27× the energy of ANN; on the hardware
    models it takes 1.58× (imc-rram-65nm) and 1.13× (systolic-sata)." ``""`` without ratios."""
    if hw is None or not hw.enabled or not hw.ratios or hw.baseline is None:
        return ""
    base = hw.baseline.upper()
    sentences = []
    for key, per_arch in hw.ratios.items():
        variant = key.split("_over_")[0]
        estimators = {
            a: (hw.variants.get(variant, {}).get(a).estimator if a in hw.variants.get(variant, {}) else None)
            for a in per_arch
        }
        naive = [a for a in per_arch if estimators[a] == "naive" and per_arch[a].energy_pj is not None]
        models = [a for a in per_arch if a not in naive and per_arch[a].energy_pj is not None]
        hw_text = _join([f"{ratio(per_arch[a].energy_pj)} ({a})" for a in models])
        v = variant.upper()
        if naive and models:
            est = per_arch[naive[0]].energy_pj
            text = (
                f"Counting operations ({naive[0]}), {v} takes {ratio(est)} the energy of {base}; "
                f"on the hardware models it takes {hw_text}"
            )
            flipped = [a for a in models if (per_arch[a].energy_pj < 1) != (est < 1)]
            if flipped:
                text += f", so the {'saving' if est < 1 else 'cost'} the estimate predicts reverses on {_join(flipped)}"
            sentences.append(text + ".")
        elif models:
            sentences.append(f"On the hardware models, {v} takes {hw_text} the energy of {base}.")
        elif naive:
            sentences.append(
                f"Counting operations ({naive[0]}), {v} takes {ratio(per_arch[naive[0]].energy_pj)} the energy of {base}."
            )
    return " ".join(sentences)


def summary_html(results: Mapping[str, object]) -> str:
    """The estimate sentence (when the hardware stage ran) and the headline table."""
    out = ""
    sentence = estimate_sentence(results.get("hardware"))  # type: ignore[arg-type]
    if sentence:
        out += f'<p class="headline" id="estimate-sentence">{html.escape(sentence)}</p>'
    rows = headline_rows(results)
    if rows:
        out += html_table(["stage", "variant", "result"], rows).replace("<table>", '<table id="headline">', 1)
    return out


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
