"""Report building blocks: number formats, HTML tables, Markdown conversion, plot files."""

from __future__ import annotations

import base64

import pytest

from spikecim.report import embed_png, html_table, html_to_markdown, plots
from spikecim.report.fmt import count, pct, rate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_number_formats_match_the_documented_examples():
    assert pct(0.97331) == "97.33%"
    assert pct(1.0) == "100.00%"
    assert count(12345.4) == "12,345"
    assert rate(0.08123) == "0.0812"
    assert pct(None) == count(None) == rate(None) == "—"


def test_html_table_escapes_cells():
    table = html_table(["a<b", "x"], [["<script>", 3]])
    assert "<th>a&lt;b</th>" in table and "<td>&lt;script&gt;</td><td>3</td>" in table
    assert "<script>" not in table


def test_markdown_conversion_of_headings_paragraphs_tables_lists_and_code():
    fragment = (
        "<h3>Tiles</h3><p>two  tiles\nused</p>"
        "<table><thead><tr><th>tile</th><th>ADC | bits</th></tr></thead>"
        "<tbody><tr><td>t0</td><td>6</td></tr><tr><td>t1</td><td>8</td></tr></tbody></table>"
        "<ul><li>first</li><li>second</li></ul><pre>a: 1\n  b: 2\n</pre>"
        "<details><summary>more</summary><p>hidden &amp; shown</p></details>"
    )
    assert html_to_markdown(fragment) == (
        "### Tiles\n\ntwo tiles used\n\n"
        "| tile | ADC \\| bits |\n|---|---|\n| t0 | 6 |\n| t1 | 8 |\n\n"
        "- first\n\n- second\n\n```\na: 1\n  b: 2\n```\n\n**more**\n\nhidden & shown"
    )


def test_each_plot_function_writes_a_png_that_embeds_inline(tmp_path):
    history = [
        {"epoch": e, "loss": 1.0 / e, "train_acc": 0.5 + e / 10, "test_acc": 0.4 + e / 10} for e in (1, 2, 3)
    ]
    paths = [
        plots.training_curves({"snn": history, "ann": history[:2]}, tmp_path / "plots" / "t.png"),
        # layers only one variant has still get a bar group
        plots.spike_rates(
            {"snn": {"0": 0.1, "3": 0.2}, "ann": {"3": 0.5, "8": 0.4}}, tmp_path / "plots" / "s.png"
        ),
        plots.layer_ops(
            {"SNN dense MACs": {"0": 4608.0}, "SNN effective ACs": {"0": 0.0}}, tmp_path / "plots" / "o.png"
        ),
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG_MAGIC)
        tag = embed_png(path, alt='a "quoted" alt')
        assert f'data-file="plots/{path.name}"' in tag and 'alt="a &quot;quoted&quot; alt"' in tag
        data = tag.split('src="data:image/png;base64,')[1].split('"')[0]
        assert base64.b64decode(data) == path.read_bytes()


def test_estimate_sentence_says_when_the_counted_saving_reverses_on_a_hardware_model():
    from spikecim.pipeline.results import HardwareResult
    from spikecim.report.summary import estimate_sentence

    def cost(estimator: str, energy: float) -> dict:
        return {"estimator": estimator, "energy_pj": energy}

    hw = HardwareResult.model_validate(
        {
            "baseline": "ann",
            "variants": {
                "snn": {"naive-45nm": cost("naive", 1.0), "imc-rram-65nm": cost("imc", 6.0), "sys": cost("systolic", 2.0)},
                "ann": {"naive-45nm": cost("naive", 5.0), "imc-rram-65nm": cost("imc", 4.0), "sys": cost("systolic", 4.0)},
            },
            # ratios as the stage writes them: snn / ann per architecture, by hand
            "ratios": {"snn_over_ann": {"naive-45nm": {"energy_pj": 0.2}, "imc-rram-65nm": {"energy_pj": 1.5},
                                        "sys": {"energy_pj": 0.5}}},
        }
    )  # fmt: skip
    assert estimate_sentence(hw) == (
        "Counting operations (naive-45nm), SNN takes 0.2× the energy of ANN; on the hardware models it "
        "takes 1.5× (imc-rram-65nm) and 0.5× (sys), so the saving the estimate predicts reverses on imc-rram-65nm."
    )
    assert estimate_sentence(HardwareResult(enabled=False)) == ""


def test_training_curves_show_the_penalised_spike_rate_when_the_history_has_it(tmp_path):
    from spikecim.report import charts

    rates = [0.31, 0.22, 0.18]
    history = [
        {"epoch": e, "loss": 1.0 / e, "train_acc": 0.5, "test_acc": 0.4, "train_spike_rate": r}
        for e, r in zip((1, 2, 3), rates, strict=True)
    ]
    plain = [{k: v for k, v in h.items() if k != "train_spike_rate"} for h in history]
    fig = charts.training_curves({"snn": history, "ann": plain})
    traces = {t.name: t for t in fig.data}
    assert list(traces["SNN spike rate"].y) == pytest.approx([100 * r for r in rates])
    assert "ANN spike rate" not in traces
    assert [a.text for a in fig.layout.annotations][-1] == "training spike rate (%)"
    assert len(charts.training_curves({"ann": plain}).layout.annotations) == 2  # no third panel without it
    path = plots.training_curves({"snn": history}, tmp_path / "t.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_training_curves_show_the_pruned_share_and_the_spike_rate_each_in_a_panel(tmp_path):
    from spikecim.report import charts

    history = [
        {"epoch": e, "loss": 1.0, "test_acc": 0.4, "train_spike_rate": 0.2, "weight_sparsity": s}
        for e, s in ((1, 0.0), (2, 0.7), (3, 0.8))
    ]
    pruned = [{k: v for k, v in h.items() if k != "train_spike_rate"} for h in history]
    fig = charts.training_curves({"snn": history, "snn-p": pruned})
    assert [a.text for a in fig.layout.annotations] == [
        "accuracy (%)", "training loss", "training spike rate (%)", "weights pruned (%)",
    ]  # fmt: skip
    traces = {t.name: t for t in fig.data}
    assert list(traces["SNN-P pruned"].y) == pytest.approx([0.0, 70.0, 80.0])
    assert traces["SNN-P pruned"].xaxis == "x4"  # the fourth panel
    assert "SNN-P spike rate" not in traces
    assert [a.text for a in charts.training_curves({"p": pruned}).layout.annotations][
        -1
    ] == "weights pruned (%)"
    path = plots.training_curves({"snn": history}, tmp_path / "t.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
