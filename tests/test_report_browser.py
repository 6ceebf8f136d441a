"""report.html, `spikecim compare` and the study page opened in a real browser.

Headless Debian Chromium (``/usr/bin/chromium``, or ``$SPIKECIM_CHROMIUM``) driven by
Playwright's Python package, no browser download. Every expected number is computed here from
``metrics.json``, the CostReport files or the hand-written ``dse.json``, never taken from the
page's own code. Tests needing the browser skip with the reason where it or Playwright is
missing; ``.ci/run`` installs Chromium on a fresh Debian machine.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.hw.cost import CostReport
from spikecim.report.study import write_study_page

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--model", "mlp", "--epochs", "1",
    "--set", "data.limit=128",
    "--set", "analog.n_seeds=2",
    "--set", "analog.drift_times_s=[1.0,86400.0]",
    "--set", "analog.adc_bits_sweep=[6]",
    "--set", "analog.max_samples=64",
    "--set", "analog.hwa_epochs=0",
    "--set", "analog.bn_epochs=0",
]  # fmt: skip


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("SPIKECIM_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs (mlp, 1 epoch, 128 samples): ``tiny`` with the analog and hardware
    stages, ``tiny2`` (another seed) without analog; and a study folder beside them."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["run", "--set", f"output_dir={root}", "--name", "tiny", *TINY]) == 0
    assert main(["run", "--set", f"output_dir={root}", "--name", "tiny2", *TINY, "--set", "seed=1",
                 "--set", "stages=[train,evaluate,trace,hardware,report]"]) == 0  # fmt: skip
    (root / "study").mkdir()
    (root / "study" / "dse.json").write_text(json.dumps(DSE))
    return root


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright's Python package is not installed"
    )
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "no Chromium: install Debian's chromium (apt-get install -y chromium) or set SPIKECIM_CHROMIUM"
        )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


class Opened:
    """A page opened with every request outside ``file:``/``data:`` refused and recorded."""

    def __init__(self, browser, path: Path, offline: bool = False, color_scheme: str = "light"):
        self.context = browser.new_context(
            offline=offline, viewport={"width": 1200, "height": 900}, color_scheme=color_scheme
        )
        self.errors: list[str] = []
        self.external: list[str] = []
        self.dialogs: list[str] = []  # alert() and kin: a script that should not have run
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def marks(self) -> dict[str, int]:
        """Drawn marks (bars, markers) per chart, read from the SVG plotly drew."""
        return self.page.evaluate(
            """() => Object.fromEntries(Array.from(document.querySelectorAll('figure.chart')).map(
                 f => [f.dataset.chart, f.querySelectorAll('.cartesianlayer .point').length]))"""
        )

    def chart_data(self, name: str) -> list[dict]:
        return self.page.evaluate(
            f"""() => document.querySelector('figure[data-chart="{name}"] .chart-plot').data.map(
                 t => ({{name: t.name, x: Array.from(t.x), y: Array.from(t.y)}}))"""
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def report(runs, browser):
    opened = Opened(browser, runs / "tiny" / "report.html")
    yield opened
    opened.close()


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _expected_marks(run: Path) -> dict[str, int]:
    """One mark per data point of each chart, counted from metrics.json and the workloads."""
    m = _metrics(run)
    out = {}
    out["training"] = sum(
        sum(h.get(k) is not None for h in v["history"] for k in ("train_acc", "test_acc", "loss"))
        for v in m["train"].values()
    )
    out["spike-rates"] = sum(len(v["spike_rates"]) for v in m["evaluate"].values())
    layers = [
        len(json.loads(p.read_text())["layers"]) for p in (run / "workload.json", run / "workload_ann.json")
    ]
    out["workload-ops"] = 2 * sum(layers)  # dense MACs and effective ACs per layer
    if "analog" in m:
        a = m["analog"]["variants"]
        # per variant: the digital accuracy, the mean ± std, and each seed
        out["analog-seeds"] = sum(2 + len(v["analog"]["accuracies"]) for v in a.values())
        out["analog-drift"] = sum(len(v["drift"]["t_s"]) for v in a.values())
        out["analog-adc-bits"] = sum(len(v["adc_bits"]["bits"]) for v in a.values())
    hw = m["hardware"]
    out["hw-components"] = sum(
        len(c["energy_by_component_pj"]) for per in hw["variants"].values() for c in per.values()
    )
    out["hw-layers"] = sum(
        len(c["energy_by_layer_pj"])
        for per in hw["variants"].values()
        for c in per.values()
        if c["latency_ns"] > 0
    )
    out["hw-ratios"] = sum(
        sum(r[k] is not None for k in ("energy_pj", "latency_ns", "edp_pj_ns"))
        for per in hw["ratios"].values()
        for r in per.values()
    )
    return out


def _num(text: str) -> float:
    return float(text.replace(",", ""))


# ---- the run's report ------------------------------------------------------------------------
def test_report_opens_without_console_errors_or_any_network_request(report, tmp_path):
    assert report.errors == [] and report.dialogs == []
    assert report.external == []
    shot = tmp_path / "report.png"
    report.page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 20_000


def test_every_chart_draws_one_mark_per_data_point(runs, report):
    assert report.marks() == _expected_marks(runs / "tiny")


def test_summary_numbers_equal_metrics_json(runs, report):
    m = _metrics(runs / "tiny")
    rows = report.page.evaluate(
        "() => Array.from(document.querySelectorAll('#headline tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))"
    )
    seen = {(stage, variant) for stage, variant, _ in rows}
    for stage in ("train", "evaluate"):
        for v, r in m[stage].items():
            acc = r["test_acc"] if stage == "train" else r["accuracy"]
            (text,) = [t for s, vv, t in rows if (s, vv) == (stage, v)]
            assert _num(re.fullmatch(r"accuracy ([\d.]+)%", text).group(1)) == pytest.approx(
                acc * 100, abs=0.005
            )
    for v, r in m["analog"]["variants"].items():
        (text,) = [t for s, vv, t in rows if (s, vv) == ("analog", v)]
        ideal, mean, std = (
            _num(x) for x in re.search(r"ideal ([\d.]+)%, analog ([\d.]+)% ± ([\d.]+)%", text).groups()
        )
        assert (ideal, mean, std) == pytest.approx(
            (r["ideal"] * 100, r["analog"]["mean"] * 100, r["analog"]["std"] * 100), abs=0.005
        )
    hw = m["hardware"]["variants"]
    for v, per_arch in hw.items():
        (text,) = [t for s, vv, t in rows if (s, vv) == ("hardware", v)]
        shown = {a: _num(e) for a, e in re.findall(r"([\w.-]+): ([\d.e+-]+) µJ", text)}
        assert shown == pytest.approx({a: c["energy_pj"] / 1e6 for a, c in per_arch.items()}, rel=5e-4)
    (text,) = [t for s, vv, t in rows if (s, vv) == ("hardware", "snn/ann")]
    shown = {a: _num(r) for a, r in re.findall(r"([\w.-]+): ([\d.]+)× energy", text)}
    assert shown == pytest.approx(
        {a: hw["snn"][a]["energy_pj"] / hw["ann"][a]["energy_pj"] for a in hw["snn"]}, rel=1e-3
    )
    assert {("train", "snn"), ("evaluate", "ann"), ("trace", "snn"), ("analog", "ann")} <= seen
    # the sentence: "... (naive-45nm), SNN takes 1.27× ...; on the hardware models it takes 1.58× (imc-rram-65nm) ..."
    sentence = report.page.inner_text("#estimate-sentence")
    said = {a: _num(r) for r, a in re.findall(r"([\d.]+)× \(([\w.-]+)\)", sentence)}
    said[re.search(r"\(([\w.-]+)\), SNN takes", sentence).group(1)] = _num(
        re.search(r"SNN takes ([\d.]+)× the energy of ANN", sentence).group(1)
    )
    assert said == pytest.approx(
        {a: hw["snn"][a]["energy_pj"] / hw["ann"][a]["energy_pj"] for a in hw["snn"]}, rel=5e-3
    )


def test_component_shares_sum_to_100_percent_and_equal_the_cost_reports(runs, report):
    bars: dict[str, dict[str, float]] = {}
    for trace in report.chart_data("hw-components"):
        for x, y in zip(trace["x"], trace["y"], strict=True):
            bars.setdefault(x, {})[trace["name"]] = y
    expected = {}
    for path in sorted((runs / "tiny" / "hardware").glob("*.json")):
        variant, arch = path.stem.split("_", 1)
        cost = CostReport.load(path)
        expected[f"{arch} / {variant.upper()}"] = {
            c: e / cost.energy_pj * 100 for c, e in cost.energy_by_component_pj.items()
        }
    assert bars.keys() == expected.keys()
    for label, shares in bars.items():
        assert sum(shares.values()) == pytest.approx(100.0, abs=1e-9), label
        assert shares == pytest.approx(expected[label], abs=1e-9), label
    # Drawn as shares: every stacked bar reaches the same height (100 %) on the page.
    spans = report.page.evaluate(
        """() => { const top = {}, bottom = {};
             document.querySelectorAll('figure[data-chart="hw-components"] .barlayer .point path').forEach(p => {
               const b = p.getBBox(); const k = Math.round(b.x + b.width / 2);
               top[k] = Math.min(top[k] ?? Infinity, b.y);
               bottom[k] = Math.max(bottom[k] ?? -Infinity, b.y + b.height); });
             return Object.keys(top).map(k => bottom[k] - top[k]); }"""
    )
    assert len(spans) == len(expected)
    assert max(spans) - min(spans) < 1.0  # pixels


def test_report_is_under_5_mb_with_plotly_js_inlined_once(runs):
    page = (runs / "tiny" / "report.html").read_text(encoding="utf-8")
    assert (runs / "tiny" / "report.html").stat().st_size < 5_000_000
    assert page.count("plotly.js (cartesian - minified) v") == 1
    assert "<script src" not in page and "<link" not in page


def test_copied_run_folder_renders_fully_with_the_network_blocked(runs, browser, tmp_path):
    copy = shutil.copytree(runs / "tiny", tmp_path / "mailed")
    opened = Opened(browser, copy / "report.html", offline=True)
    try:
        assert opened.errors == [] and opened.external == []
        assert opened.marks() == _expected_marks(runs / "tiny")
    finally:
        opened.close()


def test_table_header_click_sorts_rows_by_value(report):
    table = "#headline"
    report.page.click(f"{table} th:nth-child(3)")  # the result column, text
    report.page.click(f"{table} th:nth-child(2)")  # variant, ascending
    variants = report.page.evaluate(
        f"() => Array.from(document.querySelectorAll('{table} tbody tr')).map(r => r.cells[1].textContent)"
    )
    assert variants == sorted(variants)


def test_static_component_png_draws_shares_on_a_linear_axis_with_totals(runs):
    from spikecim.report.plots_hardware import component_figure

    reports = {p.stem: CostReport.load(p) for p in sorted((runs / "tiny" / "hardware").glob("*.json"))}
    fig = component_figure(reports)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    stacks: dict[int, list[float]] = {}
    for patch in ax.patches:
        stacks.setdefault(round(patch.get_x() + patch.get_width() / 2), []).append(patch.get_height())
    for i, r in enumerate(reports.values()):
        shares = [e / r.energy_pj * 100 for e in r.energy_by_component_pj.values()]
        assert sum(stacks[i]) == pytest.approx(100.0)
        assert sorted(h for h in stacks[i] if h) == pytest.approx(sorted(x for x in shares if x))
    totals = [t.get_text() for t in ax.texts]
    assert totals == [f"{r.energy_pj / 1e6:.4g} µJ" for r in reports.values()]


def test_dark_system_theme_darkens_the_page(runs, browser):
    opened = Opened(browser, runs / "tiny" / "report.html", color_scheme="dark")
    try:
        background = opened.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 23, 26)"  # --bg of the dark theme, #16171a
        assert opened.errors == []
    finally:
        opened.close()


def test_user_strings_in_charts_stay_text_in_the_browser(browser, tmp_path):
    hostile = "<img src=x onerror=alert(1)>"
    cost = {"estimator": hostile, "energy_pj": 2.0, "latency_ns": 1.0, "energy_by_component_pj": {hostile: 1.0, "adc": 1.0},
            "energy_by_layer_pj": {hostile: 2.0}}  # fmt: skip
    metrics = {
        "evaluate": {"snn": {"accuracy": 0.5, "samples": 2, "spike_rates": {hostile: 0.1}}},
        "hardware": {
            "enabled": True,
            "mode": hostile,
            "archs": [hostile],
            "variants": {"snn": {hostile: cost}},
        },
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    from spikecim.report import write_report

    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert hostile not in page
    opened = Opened(browser, tmp_path / "report.html")
    try:
        assert opened.errors == [] and opened.external == [] and opened.dialogs == []
        assert opened.page.evaluate("() => document.querySelectorAll('img').length") == 0
        # spike rate 1 bar; components 2 shares; per layer 1 bar
        assert opened.marks() == {"spike-rates": 1, "hw-components": 2, "hw-layers": 1}
    finally:
        opened.close()


def test_hover_labels_print_numbers_as_the_tables_do_without_trailing_zeros(browser, tmp_path):
    """plotly's ``.4g`` keeps trailing zeros (1.000) where Python's, which the tables and the
    bars' own labels use, drops them (1): a ratio of exactly 1 reads 1× in its hover too."""
    cost = {"estimator": "imc", "energy_pj": 2.0, "latency_ns": 1.0, "energy_by_component_pj": {"adc": 2.0},
            "energy_by_layer_pj": {"fc1": 2.0}}  # fmt: skip
    ratios = {"energy_pj": 0.5, "latency_ns": 1.0, "edp_pj_ns": 2.0}
    metrics = {
        "hardware": {
            "enabled": True,
            "baseline": "ann",
            "archs": ["imc"],
            "variants": {"snn": {"imc": cost}, "ann": {"imc": cost}},
            "ratios": {"snn_over_ann": {"imc": ratios}},
        },
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    from spikecim.report import write_report

    write_report(tmp_path)
    opened = Opened(browser, tmp_path / "report.html")
    try:
        gd = "document.querySelector('figure[data-chart=\"hw-ratios\"] .chart-plot')"
        hovers = []
        for i in range(opened.page.evaluate(f"() => {gd}.data.length")):
            opened.page.wait_for_timeout(100)  # plotly ignores a hover within 50 ms of the last
            hovers.append(
                opened.page.evaluate(
                    f"""() => {{ Plotly.Fx.hover({gd}, [{{curveNumber: {i}, pointNumber: 0}}]);
                               return {gd}.querySelector('.hoverlayer .hovertext').textContent; }}"""
                )
            )
        assert opened.errors == []
        # one bar per ratio, in the order the chart lists energy, latency, EDP
        assert [h.split(":")[1].split(" the")[0].strip() for h in hovers] == [
            f"{name} {v:.4g}×" for name, v in zip(("energy", "latency", "EDP"), ratios.values(), strict=True)
        ]
    finally:
        opened.close()


# ---- compare and index pages -----------------------------------------------------------------
def test_compare_page_of_two_runs_shows_both_runs_figures_equal_to_metrics_json(runs, browser, tmp_path):
    assert main(["compare", str(runs / "tiny"), str(runs / "tiny2"), "--out", str(tmp_path)]) == 0
    opened = Opened(browser, tmp_path / "compare.html")
    try:
        assert opened.errors == [] and opened.external == []
        rows = opened.page.evaluate(
            "() => Array.from(document.querySelectorAll('#variants tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))"
        )
        points = []
        for trace in opened.chart_data("compare-accuracy-energy"):
            points += list(zip(trace["x"], trace["y"], strict=True))
        expected_points = []
        for run in ("tiny", "tiny2"):
            m = _metrics(runs / run)
            for v, r in m["evaluate"].items():
                (row,) = [row for row in rows if row[:2] == [run, v]]
                assert _num(row[2].rstrip("%")) == pytest.approx(r["accuracy"] * 100, abs=0.005)
                for c in m["hardware"]["variants"][v].values():
                    expected_points.append((c["energy_pj"] / 1e6, r["accuracy"] * 100))  # µJ, %
        flat = [v for p in sorted(points) for v in p]
        assert flat == pytest.approx([v for p in sorted(expected_points) for v in p], rel=1e-9)
        assert opened.marks()["compare-accuracy-energy"] == len(expected_points)
        links = opened.page.evaluate(
            "() => Array.from(document.querySelectorAll('#runs a')).map(a => a.href)"
        )
        assert links == [(runs / r / "report.html").resolve().as_uri() for r in ("tiny", "tiny2")]
    finally:
        opened.close()


def test_index_page_lists_every_run_and_study_under_the_folder(runs, capsys):
    write_study_page(runs / "study")
    assert main(["compare", str(runs)]) == 0
    page = (runs / "index.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'<a href="([^"#]+)"', page)
    assert hrefs == ["tiny/report.html", "tiny2/report.html", "study/study.html"]


def test_compare_refuses_bad_input_with_one_line(runs, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert main(["compare", str(runs / "tiny"), str(runs / "tiny2"), "--index"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: compare") for line in err), err


# ---- the study page --------------------------------------------------------------------------
DSE = {
    "objectives": [
        {"name": "accuracy", "direction": "maximize", "unit": "%"},
        {"name": "energy_pj", "direction": "minimize", "unit": "pJ"},
    ],
    "constraints": [{"metric": "accuracy", "op": ">=", "bound": 50}],
    "baseline": {"params": {"timesteps": 4}, "values": {"accuracy": 80.0, "energy_pj": 2000.0}},
    "trials": [
        {"number": 0, "state": "COMPLETE", "params": {"timesteps": 2, "bits": 4},
         "values": {"accuracy": 70.0, "energy_pj": 1000.0}, "feasible": True, "pareto": True},
        {"number": 1, "state": "COMPLETE", "params": {"timesteps": 8, "bits": 8},
         "values": {"accuracy": 90.0, "energy_pj": 3000.0}, "feasible": True, "pareto": True},
        {"number": 2, "state": "COMPLETE", "params": {"timesteps": 6, "bits": 8},
         "values": {"accuracy": 75.0, "energy_pj": 3500.0}, "feasible": True, "pareto": False},
        {"number": 3, "state": "COMPLETE", "params": {"timesteps": 1, "bits": 2},
         "values": {"accuracy": 30.0, "energy_pj": 200.0}, "feasible": False, "pareto": False},
        {"number": 4, "state": "FAIL", "params": {"timesteps": 3, "bits": 2}, "values": {},
         "feasible": False, "pareto": False},
    ],
    "hypervolume": [{"trial": 0, "search": 1.0, "random": 0.5}, {"trial": 1, "search": 2.0, "random": None},
                    {"trial": 2, "search": 2.5, "random": 1.0}],
    "importance": {"timesteps": 0.7, "bits": 0.3},
}  # fmt: skip


def _specs(page: str) -> dict[str, dict]:
    return {
        name: json.loads(spec)
        for name, spec in re.findall(
            r'<figure class="chart"[^>]*data-chart="([^"]+)"[^>]*>.*?class="chart-spec">(.*?)</script>', page
        )
    }


def test_study_page_shows_every_trial_the_baseline_hypervolume_and_importance(runs):
    page = write_study_page(runs / "study").read_text(encoding="utf-8")
    specs = _specs(page)
    front = {t["name"]: t for t in specs["pareto-accuracy-energy_pj"]["data"]}
    # every complete trial with both values is one hoverable marker, in its group
    groups = {"dominated": [2], "infeasible": [3], "Pareto-optimal": [0, 1]}
    for name, numbers in groups.items():
        trials = [DSE["trials"][n] for n in numbers]
        assert front[name]["x"] == [t["values"]["accuracy"] for t in trials]
        assert front[name]["y"] == [t["values"]["energy_pj"] for t in trials]
        for text, t in zip(front[name]["text"], trials, strict=True):
            assert (
                text.startswith(f"trial {t['number']}") and f"timesteps = {t['params']['timesteps']}" in text
            )
    assert (front["baseline"]["x"], front["baseline"]["y"]) == ([80.0], [2000.0])
    hv = {t["name"]: t for t in specs["hypervolume"]["data"]}
    assert hv["search"]["y"] == [1.0, 2.0, 2.5]
    # entry k of dse.json's hypervolume is after k + 1 finished trials (the axis counts them)
    assert (hv["random sampling"]["x"], hv["random sampling"]["y"]) == ([1, 3], [0.5, 1.0])
    (imp,) = specs["importance"]["data"]
    assert dict(zip(imp["y"], imp["x"], strict=True)) == DSE["importance"]
    assert "5 trials, 4 complete, 3 feasible, 2 Pareto-optimal" in page


def test_study_page_draws_every_trial_in_the_browser(runs, browser):
    write_study_page(runs / "study")
    opened = Opened(browser, runs / "study" / "study.html")
    try:
        assert opened.errors == [] and opened.external == []
        # 4 complete trials + the baseline; 3 hypervolume points + 2 random; 2 parameters
        assert opened.marks() == {"pareto-accuracy-energy_pj": 5, "hypervolume": 5, "importance": 2}
    finally:
        opened.close()


def test_study_page_never_overwrites_a_file_that_spikecim_did_not_write(tmp_path):
    (tmp_path / "dse.json").write_text(json.dumps(DSE))
    (tmp_path / "study.html").write_bytes(b"<html>the user's own notes</html>")
    with pytest.raises(SpikecimError) as e:
        write_study_page(tmp_path)
    assert str(e.value) == (
        f"study: {tmp_path / 'study.html'} exists and was not written by spikecim, so it is not replaced; "
        "move it away"
    )
    assert (tmp_path / "study.html").read_bytes() == b"<html>the user's own notes</html>"
    (tmp_path / "study.html").unlink()
    first = write_study_page(tmp_path).read_text(encoding="utf-8")
    assert write_study_page(tmp_path).read_text(encoding="utf-8") == first  # its own page is replaced


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("objectives"), "objectives: Field required"),
        (lambda d: d["objectives"][0].update(direction="up"), "objectives.0.direction"),
        (lambda d: d["trials"][0]["values"].update(accuracy=math.nan), "trials.0.values.accuracy"),
    ],
)
def test_study_page_refuses_a_broken_dse_json_naming_the_field(tmp_path, change, message):
    data = json.loads(json.dumps(DSE))
    change(data)
    (tmp_path / "dse.json").write_text(json.dumps(data))
    with pytest.raises(SpikecimError, match=re.escape(message)):
        write_study_page(tmp_path)
