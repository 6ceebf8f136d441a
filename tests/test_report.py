"""report.html from a run folder written by hand: numbers, layer names, inline PNGs, sections."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from spikecim.errors import SpikecimError
from spikecim.pipeline.results import result_json
from spikecim.pipeline.stage_report import report_stage
from spikecim.pipeline.stages import RunContext
from spikecim.report import register_section, render, sections, write_markdown, write_report
from spikecim.trace.workload import LayerWorkload, Workload

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(accs: list[tuple[float, float]]) -> list[dict]:
    return [
        {"epoch": i + 1, "loss": 1.0 / (i + 1), "train_acc": tr, "test_acc": te, "seconds": 1.5}
        for i, (tr, te) in enumerate(accs)
    ]


METRICS = {
    "timing_s": {"train": 12.34, "evaluate": 0.5, "trace": 1.06},
    "train": {
        "snn": {
            "history": _history([(0.70, 0.80), (0.90, 0.95), (0.96, 0.9733)]),
            "test_acc": 0.9733,
            "epochs": 3,
        },
        "ann": {
            "history": _history([(0.75, 0.85), (0.95, 0.97), (0.99, 0.9811)]),
            "test_acc": 0.9811,
            "epochs": 3,
        },
    },
    "evaluate": {
        "snn": {"accuracy": 0.9644, "spike_rates": {"conv_a": 0.1234, "fc_out": 0.0567}, "samples": 450},
        "ann": {"accuracy": 0.9822, "spike_rates": {"conv_a": 0.4321, "fc_out": 0.25}, "samples": 450},
    },
    "trace": {
        "snn": {
            "dense_macs": 123456.0,
            "effective_acs": 7890.0,
            "activation_sparsity": 0.8125,
            "params": 3000.0,
            "weight_bytes": 12000.0,
            "membrane_bytes": 2048.0,
            "footprint_bytes": 14048.0,
            "neurons": 512.0,
        },
        "ann": {
            "dense_macs": 30864.0,
            "effective_acs": 20000.0,
            "activation_sparsity": 0.5,
            "params": 3000.0,
            "weight_bytes": 12000.0,
            "membrane_bytes": 0.0,
            "footprint_bytes": 12000.0,
            "neurons": 0.0,
        },
    },
}


def _workload(spiking: bool, timesteps: int, nonzero: list[float], acs: list[float]) -> Workload:
    conv = LayerWorkload(
        name="conv_a",
        kind="conv2d",
        in_ch=1,
        out_ch=8,
        kernel=(3, 3),
        padding=(1, 1),
        in_hw=(8, 8),
        out_hw=(8, 8),
        params=72,
        weight_sparsity=0.25,
        macs=8 * 9 * 64,
        timesteps=timesteps,
        in_nonzero_per_step=nonzero,
        acs_per_step=acs,
        spiking_input=spiking,
        neuron_kind="LIF" if spiking else "ReLU",
    )
    fc = LayerWorkload(
        name="fc_out",
        kind="linear",
        in_ch=512,
        out_ch=10,
        params=5130,
        has_bias=True,
        macs=5120,
        timesteps=timesteps,
        in_nonzero_per_step=[64.0] * timesteps,
        acs_per_step=[640.0] * timesteps,
        spiking_input=spiking,
        has_neuron=False,
    )
    return Workload(model="convnet", spiking=spiking, timesteps=timesteps, samples=450, layers=[conv, fc])


def _write_run(run_dir: Path, metrics: dict, workloads: bool = True, config: dict | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if config is not None:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if workloads:
        # conv_a input: 64 elements; SNN T=2 with 16 and 32 non-zero -> 48 / 128 = 37.50 %
        _workload(True, 2, [16.0, 32.0], [1000.0, 2345.0]).save(run_dir / "workload.json")
        # ANN T=1 with 48 non-zero -> 75.00 %
        _workload(False, 1, [48.0], [3456.0]).save(run_dir / "workload_ann.json")
    return run_dir


@pytest.fixture(scope="module", autouse=True)
def _core_sections_only():
    """Render without importing spikecim.pipeline.stage_analog / stage_hardware (tested separately below).

    The core sections register before any test copies the registry: a test that patches
    ``_SECTIONS`` and renders first must not swallow their registration."""
    import spikecim.report.core_sections  # noqa: F401

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "_SECTION_MODULES", ())
        yield


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, str]:
    config = {
        "name": "hand-run",
        "seed": 7,
        "data": {"name": "digits", "timesteps": 2},
        "train": {"epochs": 3},
    }
    run_dir = _write_run(tmp_path_factory.mktemp("run"), METRICS, config=config)
    path = write_report(run_dir)
    return run_dir, path.read_text(encoding="utf-8")


def _section_ids(page: str) -> list[str]:
    """The sections below the summary (which every run with a result has first)."""
    return [i for i in re.findall(r'<section id="([^"]+)">', page) if i != "summary"]


def test_report_is_written_as_report_html_in_the_run_folder(full_run):
    run_dir, page = full_run
    assert (run_dir / "report.html").read_text(encoding="utf-8") == page
    assert page.startswith("<!DOCTYPE html>")


def test_report_shows_run_name_and_config_summary(full_run):
    _, page = full_run
    assert "<title>spikecim report: hand-run</title>" in page
    assert "<td>data.timesteps</td><td>2</td>" in page
    assert "<td>seed</td><td>7</td>" in page


def test_accuracies_are_percentages_with_two_decimals(full_run):
    _, page = full_run
    for text in ("97.33%", "98.11%", "96.44%", "98.22%"):
        assert text in page
    # best test accuracy of the SNN over the epochs is the last one; training time 3 x 1.5 s
    assert "<td>SNN</td><td>3</td><td>97.33%</td><td>97.33%</td><td>4.5</td>" in page


def test_spike_rates_per_layer_are_listed(full_run):
    _, page = full_run
    assert "<td>conv_a</td><td>0.1234</td><td>0.4321</td>" in page
    assert "<td>fc_out</td><td>0.0567</td><td>0.2500</td>" in page


def test_workload_table_shows_layers_with_activity_and_acs_counted_by_hand(full_run):
    _, page = full_run
    # SNN conv_a: 8*9*64 = 4,608 MACs/step, activity 48/128 = 37.50 %, ACs 1000 + 2345 = 3,345
    assert (
        "<td>conv_a</td><td>conv2d</td><td>1→8</td><td>3×3</td><td>8×8→8×8</td><td>72</td><td>25.00%</td>"
        "<td>4,608</td><td>37.50%</td><td>3,345</td>"
    ) in page
    # ANN conv_a: 48/64 = 75.00 %, ACs 3,456
    assert "<td>75.00%</td><td>3,456</td>" in page
    # linear layer: no kernel nor spatial size; fc_out input 64/512 = 12.50 %, ACs 2 x 640
    assert (
        "<td>fc_out</td><td>linear</td><td>512→10</td><td>—</td><td>—</td><td>5,130</td><td>0.00%</td><td>5,120</td><td>12.50%</td><td>1,280</td>"
        in page
    )


def test_workload_totals_come_from_the_trace_metrics(full_run):
    _, page = full_run
    assert "<td>dense MACs / sample</td><td>123,456</td><td>30,864</td>" in page
    assert "<td>activation sparsity</td><td>81.25%</td><td>50.00%</td>" in page
    assert "<td>memory footprint (bytes)</td><td>14,048</td><td>12,000</td>" in page


def test_sections_appear_in_order_after_the_summary_and_the_config(full_run):
    _, page = full_run
    assert re.findall(r'<section id="([^"]+)">', page)[0] == "summary"
    ids = _section_ids(page)
    assert ids[:4] == ["config", "training", "evaluation", "workload"]
    assert ids[-1] == "timing"


def test_run_time_lists_each_stage_and_the_total(full_run):
    _, page = full_run
    assert "<td>train</td><td>12.3</td>" in page
    assert "<td>total</td><td>13.9</td>" in page  # 12.34 + 0.5 + 1.06


def test_every_figure_is_an_inline_chart_with_its_png_saved_for_markdown(full_run):
    run_dir, page = full_run
    figures = re.findall(
        r'<figure class="chart"[^>]*data-file="([^"]+)"[^>]*>.*?'
        r'<script type="application/json" class="chart-spec">(.*?)</script></figure>',
        page,
    )
    # training curves, spike rates, operations per layer
    assert sorted(f for f, _ in figures) == [
        "plots/spike_rates.png",
        "plots/training.png",
        "plots/workload_ops.png",
    ]
    for file, spec in figures:
        assert (run_dir / file).read_bytes().startswith(PNG_MAGIC)
        assert json.loads(spec)["data"], file
    assert "<img " not in page  # every figure of the core sections is a chart


def test_report_references_no_external_resource(full_run):
    _, page = full_run
    # The inlined plotly.js names URLs in strings (never fetched); the rest of the page names none.
    page_without_js = re.sub(r'<script id="plotly-js"[^>]*>.*?</script>', "", page, flags=re.DOTALL)
    assert page.count('<script id="plotly-js"') == 1
    assert "http://" not in page_without_js and "https://" not in page_without_js
    for ref in re.findall(r'(?:src|href)="([^"]*)"', page_without_js):
        assert ref.startswith(("data:image/png;base64,", "#")), ref
    assert "<link" not in page and "<script src" not in page


def test_missing_stage_leaves_its_section_out(tmp_path):
    metrics = {"train": METRICS["train"]}
    page = write_report(_write_run(tmp_path, metrics, workloads=False)).read_text(encoding="utf-8")
    assert _section_ids(page) == ["training"]
    assert "Evaluation" not in page and "Workload" not in page and "96.44%" not in page
    assert "Configuration" not in page  # no config.yaml in this run folder


def test_stages_of_the_config_without_a_result_are_named_as_unfinished(tmp_path):
    # an interrupted run: config.yaml lists five stages, metrics.json holds the first two
    config = {"stages": ["train", "evaluate", "trace", "hardware", "report"]}
    metrics = {"train": METRICS["train"], "evaluate": METRICS["evaluate"]}
    run = _write_run(tmp_path / "interrupted", metrics, workloads=False, config=config)
    page = write_report(run).read_text(encoding="utf-8")
    assert re.findall(r'<p class="error" id="unfinished">([^<]*)</p>', page) == [
        (
            "No result in metrics.json for the stages trace, hardware of config.yaml: the run stopped "
            "before them (interrupted or failed) or is still running, so their sections are left out."
        )
    ]
    assert "No result in metrics.json for the stages trace, hardware" in write_markdown(run).read_text(
        encoding="utf-8"
    )
    # a run of only some stages, every one finished: no note
    config = {"stages": ["train", "evaluate", "report"]}
    run = _write_run(tmp_path / "partial", metrics, workloads=False, config=config)
    assert 'id="unfinished"' not in write_report(run).read_text(encoding="utf-8")


def test_run_name_falls_back_to_the_folder_name(tmp_path):
    page = write_report(_write_run(tmp_path / "folder-name", {}, workloads=False)).read_text(encoding="utf-8")
    assert "<title>spikecim report: folder-name</title>" in page
    assert _section_ids(page) == []


def test_section_registered_elsewhere_appears_in_its_order(tmp_path, monkeypatch):
    monkeypatch.setattr(sections, "_SECTIONS", dict(sections._SECTIONS))

    @register_section("crossbar-test", "Crossbar test section", order=25, stage="analog")
    def _crossbar(result, run_dir: Path) -> str:
        return (
            "" if result is None else f"<p>analog preset {result.preset}, {len(result.variants)} variant</p>"
        )

    @register_section("empty-test", "Never shown", order=26)
    def _empty(metrics: dict, run_dir: Path) -> str:
        return ""

    metrics = {
        "evaluate": {"snn": {"accuracy": 0.5}},
        "trace": METRICS["trace"],
        "analog": {"enabled": False, "preset": "ideal", "variants": {"snn": {"ideal": 0.912}}},
    }
    page = write_report(_write_run(tmp_path, metrics, workloads=False)).read_text(encoding="utf-8")
    assert _section_ids(page) == ["evaluation", "crossbar-test", "workload"]
    assert "<h2>Crossbar test section</h2></summary><p>analog preset ideal, 1 variant</p>" in page.replace(
        "\n", ""
    )
    assert "Never shown" not in page


def test_failing_section_shows_its_error_and_the_others_still_render(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sections, "_SECTIONS", dict(sections._SECTIONS))

    @register_section("broken-test", "Broken", order=5)
    def _broken(metrics: dict, run_dir: Path) -> str:
        raise KeyError("energy_pj")

    path = write_report(_write_run(tmp_path, {"evaluate": {"snn": {"accuracy": 0.5}}}, workloads=False))
    assert capsys.readouterr().err.splitlines() == [
        (
            "warning: report: section 'broken-test' is missing from the report (its place shows the error): "
            "KeyError: 'energy_pj'"
        )
    ]
    page = path.read_text(encoding="utf-8")
    assert "could not be rendered: KeyError: &#x27;energy_pj&#x27;" in page
    assert _section_ids(page) == ["broken-test", "evaluation"]
    assert "50.00%" in page


def test_missing_metrics_file_is_a_one_line_error(tmp_path):
    with pytest.raises(SpikecimError, match="metrics.json not found"):
        write_report(tmp_path)


@pytest.mark.parametrize(
    "entry,problem",
    [
        ({"snn": {"accuracy": -5}}, "evaluate.snn.accuracy: Input should be greater than or equal to 0"),
        ({"snn": {"accuracy": 1.5}}, "evaluate.snn.accuracy: Input should be less than or equal to 1"),
        ({"snn": {"accuracy": "high"}}, "evaluate.snn.accuracy: Input should be a valid number"),
        (None, "evaluate: must be a mapping of results (a JSON object), got null"),
        ([0.5], "evaluate: must be a mapping of results (a JSON object), got [0.5]"),
    ],
)
def test_a_stage_result_out_of_range_or_of_the_wrong_type_is_refused_not_left_out(tmp_path, entry, problem):
    from spikecim.report.compare import load_run_summary

    run = _write_run(tmp_path, {"evaluate": entry}, workloads=False)
    for read in (write_report, load_run_summary):
        with pytest.raises(SpikecimError) as e:
            read(run)
        assert str(e.value).startswith(f"{run / 'metrics.json'}: {problem}")
    assert not (run / "report.html").exists()


@pytest.mark.parametrize("page", ["compare.html", "index.html"])
def test_compare_never_overwrites_a_page_that_spikecim_did_not_write(page, tmp_path, capsys):
    from spikecim.cli.main import main

    runs = tmp_path / "runs"
    for name in ("a", "b"):
        _write_run(runs / name, {"evaluate": {"snn": {"accuracy": 0.5}}}, workloads=False)
    args = [str(runs / "a"), str(runs / "b")] if page == "compare.html" else [str(runs)]
    out = tmp_path / "out"
    out.mkdir()
    (out / page).write_bytes(b"<html>the user's own page</html>\n")
    assert main(["compare", *args, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: compare: {out / page} exists and was not written by spikecim, so it is not replaced; "
        "choose another --out"
    )
    assert (out / page).read_bytes() == b"<html>the user's own page</html>\n"
    # a page spikecim wrote is replaced by the next one
    mine = tmp_path / "mine"
    for _ in range(2):
        assert main(["compare", *args, "--out", str(mine)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(mine / page)] * 2


def test_index_lists_a_run_folder_it_cannot_read_and_still_shows_the_others(tmp_path, capsys):
    from spikecim.cli.main import main

    runs = tmp_path / "runs"
    _write_run(runs / "good", {"evaluate": {"snn": {"accuracy": 0.625}}}, workloads=False)
    (runs / "broken").mkdir()
    (runs / "broken" / "metrics.json").write_text('{"evaluate": {"snn": {"accuracy": NaN}}}')
    assert main(["compare", str(runs)]) == 0
    assert capsys.readouterr().out.strip() == str(runs / "index.html")
    page = (runs / "index.html").read_text(encoding="utf-8")
    table = re.findall(r'<table id="variants">.*?</table>', page, re.DOTALL)[0]
    assert re.findall(r"<tr><td>([^<]*)</td><td>snn</td><td>([^<]*)</td>", table) == [("good", "62.50%")]
    unreadable = re.findall(r'<section id="unreadable">.*?</section>', page, re.DOTALL)[0]
    assert re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", unreadable) == [
        (
            "broken",
            f"compare: {runs / 'broken' / 'metrics.json'}: evaluate.snn.accuracy is nan, not a finite number",
        )
    ]


def test_compare_keeps_runs_that_share_a_name_apart_in_its_table_and_charts(tmp_path):
    from spikecim.report.compare import write_compare_page

    layers = {"a": {"fc1": 3000.0, "fc2": 1000.0}, "b": {"fc1": 500.0, "fc2": 7000.0}}  # pJ
    for folder, accuracy in (("a", 0.5), ("b", 0.75)):
        cost = {"energy_pj": sum(layers[folder].values()), "latency_ns": 10.0,
                "energy_by_layer_pj": layers[folder]}  # fmt: skip
        metrics = {
            "evaluate": {"snn": {"accuracy": accuracy}},
            "hardware": {"baseline": "snn", "variants": {"snn": {"imc": cost}}},
        }
        _write_run(tmp_path / folder / "run", metrics, workloads=False, config={"name": "Same"})
    runs = [tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "a" / "run"]  # a given twice
    page = write_compare_page(runs, tmp_path).read_text(encoding="utf-8")
    table = re.findall(r'<table id="variants">.*?</table>', page, re.DOTALL)[0]
    assert re.findall(r"<tr><td>([^<]*)</td><td>snn</td><td>([^<]*)</td>", table) == [
        ("Same (a/run)", "50.00%"),
        ("Same (b/run)", "75.00%"),
    ]
    specs = {
        name: json.loads(spec)
        for name, spec in re.findall(r'data-chart="([^"]+)"[^>]*>.*?class="chart-spec">(.*?)</script>', page)
    }
    # energy per layer, in nJ (the largest layer: 7000 pJ): each run's own bars
    bars = {t["name"]: dict(zip(t["x"], t["y"], strict=True)) for t in specs["compare-layers"]["data"]}
    assert bars == {
        "Same (a/run) / SNN": {"fc1": 3.0, "fc2": 1.0},  # the run as the table names it
        "Same (b/run) / SNN": {"fc1": 0.5, "fc2": 7.0},
    }
    points = specs["compare-accuracy-energy"]["data"]
    assert [(t["name"], t["y"]) for t in points] == [("Same (a/run)", [50.0]), ("Same (b/run)", [75.0])]


@pytest.mark.parametrize("name", ["report.html", "report.md"])
def test_report_never_overwrites_a_file_that_spikecim_did_not_write(name, tmp_path, capsys):
    from spikecim.cli.main import main

    run = _write_run(tmp_path / "run", {"evaluate": {"snn": {"accuracy": 0.5}}}, workloads=False)
    write = write_report if name == "report.html" else write_markdown
    (run / name).write_bytes(b"the user's own notes\n")
    with pytest.raises(SpikecimError) as e:
        write(run)
    assert str(e.value) == (
        f"report: {run / name} exists and was not written by spikecim, so it is not replaced; move it away"
    )
    assert (run / name).read_bytes() == b"the user's own notes\n"
    if name == "report.html":  # `spikecim report` says so in one line, exit 2
        assert main(["report", str(run)]) == 2
        assert capsys.readouterr().err.strip() == f"error: {e.value}"
        (run / name).unlink()
        (run / name).mkdir()
        assert main(["report", str(run)]) == 2
        assert capsys.readouterr().err.strip() == f"error: report: {run / name} is a folder; move it away"
        (run / name).rmdir()
    # a report spikecim wrote is replaced by the next one
    (run / name).unlink(missing_ok=True)
    write(run)
    (run / "metrics.json").write_text(json.dumps({"evaluate": {"snn": {"accuracy": 0.25}}}))
    assert "25.00%" in write(run).read_text(encoding="utf-8")


def test_markdown_report_holds_the_same_tables_and_links_the_plots(full_run):
    run_dir, _ = full_run
    text = write_markdown(run_dir).read_text(encoding="utf-8")
    assert text.startswith("# spikecim report")
    assert (
        "| model | test accuracy | samples |\n|---|---|---|\n| SNN | 96.44% | 450 |\n| ANN | 98.22% | 450 |"
        in text
    )
    assert "| conv_a | conv2d | 1→8 | 3×3 | 8×8→8×8 | 72 | 25.00% | 4,608 | 37.50% | 3,345 |" in text
    assert "![accuracy and loss per epoch](plots/training.png)" in text
    assert "base64" not in text
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Summary",
        "## Configuration",
        "## Training",
        "## Evaluation",
        "## Workload",
        "## Run time",
    ]


def test_report_stage_writes_both_reports_and_lists_its_plots(tmp_path):
    run_dir = _write_run(tmp_path, METRICS)
    result = result_json(report_stage(RunContext(config=None, run_dir=run_dir)))
    assert result == {
        "html": "report.html",
        "markdown": "report.md",
        "plots": ["spike_rates.png", "training.png", "workload_ops.png"],
    }
    assert (run_dir / "report.html").exists() and (run_dir / "report.md").exists()


def test_report_stage_writes_nothing_when_disabled_in_the_config(tmp_path):
    config = SimpleNamespace(report=SimpleNamespace(enabled=False))
    result = result_json(report_stage(RunContext(config=config, run_dir=_write_run(tmp_path, METRICS))))
    assert result == {"html": None, "markdown": None, "plots": []}
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "plots").exists()


def test_section_modules_of_other_packages_are_imported_and_may_be_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(sections, "_SECTIONS", dict(sections._SECTIONS))
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / "probe_report_sections.py").write_text(
        "from spikecim.report import register_section\n"
        "@register_section('probe', 'Probe section', order=60)\n"
        "def probe(metrics, run_dir):\n"
        "    return '<p>probe ran</p>'\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(render, "_SECTION_MODULES", ("probe_report_sections", "probe_not_installed_module"))
    page = write_report(_write_run(tmp_path / "run", {}, workloads=False)).read_text(encoding="utf-8")
    assert _section_ids(page) == ["probe"] and "<p>probe ran</p>" in page


def test_broken_import_inside_a_section_module_is_not_hidden(tmp_path, monkeypatch):
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / "probe_broken_sections.py").write_text("import probe_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(render, "_SECTION_MODULES", ("probe_broken_sections",))
    with pytest.raises(ModuleNotFoundError, match="probe_dependency_that_is_missing"):
        write_report(_write_run(tmp_path / "run", {}, workloads=False))


def test_a_cost_ratio_reads_the_same_in_the_console_the_report_and_the_compare_page(tmp_path):
    from spikecim.pipeline.results import HardwareResult
    from spikecim.pipeline.stage_hardware import hardware_section
    from spikecim.report.compare import write_compare_page
    from spikecim.report.summary import estimate_sentence

    energy_pj = {
        "snn": {"naive-45nm": 1.15e6, "imc": 632_200.0},
        "ann": {"naive-45nm": 6.12e6, "imc": 626_800.0},
    }
    estimators = {"naive-45nm": "naive", "imc": "imc"}
    # snn / ann by hand: 1.15 / 6.12 = 0.18791 and 0.6322 / 0.6268 = 1.008615, at 4 significant digits
    hardware = {
        "baseline": "ann",
        "variants": {
            v: {a: {"estimator": estimators[a], "energy_pj": e, "latency_ns": 1000.0} for a, e in per.items()}
            for v, per in energy_pj.items()
        },
        "ratios": {
            "snn_over_ann": {a: {"energy_pj": energy_pj["snn"][a] / energy_pj["ann"][a]} for a in estimators}
        },
    }
    hw = HardwareResult.model_validate(hardware)
    assert hw.summary_rows()[-1] == ("snn/ann", "naive-45nm: 0.1879× energy, imc: 1.009× energy")
    assert (
        "SNN takes 0.1879× the energy of ANN; on the hardware models it takes 1.009× (imc)"
        in estimate_sentence(hw)
    )
    section = hardware_section(hw, tmp_path)
    assert "<td>snn</td><td>imc</td><td>1.009×</td>" in section  # the ratio table under the costs
    run = _write_run(
        tmp_path / "run", {"evaluate": {"snn": {"accuracy": 0.5}}, "hardware": hardware}, workloads=False
    )
    page = write_compare_page([run], tmp_path / "out").read_text(encoding="utf-8")
    table = re.findall(r'<table id="variants">.*?</table>', page, re.DOTALL)[0]
    assert re.findall(r"<td>(\d[^<]*×)</td>", table) == ["0.1879×", "1.009×"]


def test_index_shows_a_study_but_not_the_networks_it_trained_for_its_designs(tmp_path, capsys):
    from spikecim.cli.main import main

    runs = tmp_path / "runs"
    _write_run(runs / "digits", {"evaluate": {"snn": {"accuracy": 0.625}}}, workloads=False)
    # a study's folder as `spikecim dse` leaves it: its journal, results and the trained networks' cache
    for study, marker in (("done", "dse.json"), ("interrupted", "study.journal")):
        (runs / study).mkdir()
        (runs / study / marker).write_text("{}")
        _write_run(
            runs / study / "cache" / "0f3a", {"evaluate": {"snn": {"accuracy": 0.25}}}, workloads=False
        )
    # a run of the user's own that happens to lie in a study's folder is still a run
    _write_run(runs / "done" / "mine", {"evaluate": {"snn": {"accuracy": 0.75}}}, workloads=False)
    assert main(["compare", str(runs)]) == 0
    assert capsys.readouterr().out.strip() == str(runs / "index.html")
    page = (runs / "index.html").read_text(encoding="utf-8")
    table = re.findall(r'<table id="variants">.*?</table>', page, re.DOTALL)[0]
    assert re.findall(r"<tr><td>([^<]*)</td><td>snn</td><td>([^<]*)</td>", table) == [
        ("digits", "62.50%"),
        ("mine", "75.00%"),
    ]
    # the studies table: the finished study (no study.html here, so its name without a link)
    assert re.findall(r"<tr><td>([^<]*)</td><td>([^<]*dse\.json)</td></tr>", page) == [
        ("done", "done/dse.json")
    ]
