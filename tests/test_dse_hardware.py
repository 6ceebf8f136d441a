"""spikecim dse on hardware-only spaces: the search against brute force, constraints,
parallel workers, the journal read back, Ray tasks."""

from __future__ import annotations

import itertools
import json

import optuna
import pytest
import yaml

from spikecim.dse.outputs import summarise
from spikecim.dse.space import load_space
from spikecim.dse.study import open_study
from spikecim.dse.workers import explore
from spikecim.hw import estimate, load_architecture
from spikecim.hw.layers import load_workload

LAYERS = {
    "model": "small",
    "timesteps": 4,
    "spiking": True,
    "weight_bits": 8,
    "activity": 0.2,
    "in_hw": 8,
    "layers": [
        {"kind": "conv2d", "in_ch": 1, "out_ch": 16, "kernel": 3, "padding": 1},
        {"kind": "conv2d", "in_ch": 16, "out_ch": 32, "kernel": 3, "padding": 1, "pool": 2},
        {"kind": "linear", "in_ch": 512, "out_ch": 10, "has_neuron": False},
    ],
}
XBAR = [64, 128, 256]
ADC = [3, 5, 7]
COLS = [4, 8, 16]
OBJECTIVES = ["energy_pj", "latency_ns", "area_um2"]


def _space(tmp_path, **over) -> str:
    (tmp_path / "layers.yaml").write_text(yaml.safe_dump(LAYERS))
    space = {
        "name": "hw",
        "workload": "layers.yaml",
        "arch": "imc-rram-65nm",
        "knobs": [
            {"name": "xbar", "path": ["arch.params.xbar_rows", "arch.params.xbar_cols"], "choices": XBAR},
            {"name": "adc", "path": "arch.params.adc_bits", "choices": ADC},
            {"name": "cols", "path": "arch.params.cols_per_adc", "choices": COLS},
        ],
        "objectives": [{"metric": m} for m in OBJECTIVES],
        "sampler": {"name": "nsga2", "population_size": 8, "seed": 0},
        "trials": 160,
        "journal_fsync": False,
        **over,
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def _brute_force(tmp_path, area_max_um2=None):
    """Every design's (energy, latency, area) and the non-dominated feasible ones, by hand."""
    (tmp_path / "layers.yaml").write_text(yaml.safe_dump(LAYERS))
    wl = load_workload(tmp_path / "layers.yaml")
    designs = {}
    for x, a, c in itertools.product(XBAR, ADC, COLS):
        arch = load_architecture("imc-rram-65nm", xbar_rows=x, xbar_cols=x, adc_bits=a, cols_per_adc=c)
        r = estimate(wl, arch)
        designs[(x, a, c)] = (r.energy_pj, r.latency_ns, r.area_um2)
    ok = {k: v for k, v in designs.items() if area_max_um2 is None or v[2] <= area_max_um2}

    def dominates(u, v):
        return all(p <= q for p, q in zip(u, v)) and any(p < q for p, q in zip(u, v))

    front = {k for k, v in ok.items() if not any(dominates(w, v) for w in ok.values())}
    return designs, front


def _front(doc) -> set[tuple]:
    return {
        (t["params"]["xbar"], t["params"]["adc"], t["params"]["cols"]) for t in doc["trials"] if t["pareto"]
    }


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """The NSGA-II study of the 27-design space, 160 trials, and the folder it ran in."""
    tmp_path = tmp_path_factory.mktemp("searched")
    return tmp_path, explore(load_space(_space(tmp_path)), tmp_path / "out", write=False)


def test_search_finds_the_brute_force_pareto_front(searched):
    tmp_path, doc = searched
    designs, front = _brute_force(tmp_path)
    assert 2 < len(front) < len(designs)  # a real trade-off, not one best design
    assert _front(doc) == front
    for t in doc["trials"]:
        key = (t["params"]["xbar"], t["params"]["adc"], t["params"]["cols"])
        assert [t["values"][m] for m in OBJECTIVES] == pytest.approx(designs[key], rel=1e-12)


def test_study_page_plots_the_brute_force_front_among_every_trial(searched, tmp_path):
    """study.html (written with the output folder) draws every trial, and its Pareto marks are
    the brute-force front."""
    import json
    import re

    from spikecim.dse.outputs import write_outputs

    _, doc = searched
    designs, front = _brute_force(tmp_path)
    write_outputs(doc, tmp_path / "out")
    page = (tmp_path / "out" / "study.html").read_text()
    specs = [
        json.loads(m)
        for m in re.findall(r'<script type="application/json" class="chart-spec">(.*?)</script>', page)
    ]
    first = specs[0]["data"]  # energy against latency
    assert sum(len(trace["x"]) for trace in first) == len(doc["trials"])  # every trial drawn
    pareto = next(trace for trace in first if trace["name"] == "Pareto-optimal")
    drawn = {(round(x, 3), round(y, 3)) for x, y in zip(pareto["x"], pareto["y"], strict=True)}
    assert drawn == {(round(designs[k][0], 3), round(designs[k][1], 3)) for k in front}


def test_no_design_is_evaluated_twice(searched):
    _, doc = searched
    evaluated = [tuple(sorted(t["params"].items())) for t in doc["trials"] if "reused_from" not in t]
    assert len(doc["trials"]) == 160
    assert len(evaluated) == len(set(evaluated)) <= 27


def test_constraint_keeps_infeasible_designs_off_the_front(tmp_path):
    designs, _ = _brute_force(tmp_path)
    areas = sorted(v[2] for v in designs.values())
    bound = areas[len(areas) // 2]  # half the designs are too large
    _, front = _brute_force(tmp_path, area_max_um2=bound)
    space = _space(
        tmp_path,
        constraints=[{"metric": "area_um2", "op": "<=", "bound": bound}],
        baseline={"xbar": 128, "adc": 5, "cols": 8},
    )
    out = tmp_path / "out"
    doc = explore(load_space(space), out)
    assert _front(doc) == front
    assert all(t["values"]["area_um2"] <= bound for t in doc["trials"] if t["pareto"])
    assert any(not t["feasible"] for t in doc["trials"])
    # Optuna's own feasible front (study.best_trials) holds the same designs
    study = open_study(load_space(space), out)
    best = {(t.params["xbar"], t.params["adc"], t.params["cols"]) for t in study.best_trials}
    assert best == front
    # dse.json as the web page reads it
    saved = json.loads((out / "dse.json").read_text())
    assert saved["objectives"] == [
        {"name": "energy_pj", "direction": "minimize", "unit": "pJ"},
        {"name": "latency_ns", "direction": "minimize", "unit": "ns"},
        {"name": "area_um2", "direction": "minimize", "unit": "µm²"},
    ]
    assert saved["constraints"] == [{"metric": "area_um2", "op": "<=", "bound": bound}]
    assert saved["baseline"]["params"] == {"xbar": 128, "adc": 5, "cols": 8}
    assert [saved["baseline"]["values"][m] for m in OBJECTIVES] == pytest.approx(
        designs[(128, 5, 8)], rel=1e-12
    )
    assert len(saved["hypervolume"]) == len(saved["trials"])
    assert all(h["random"] is None for h in saved["hypervolume"])
    assert [h["search"] for h in saved["hypervolume"]] == sorted(h["search"] for h in saved["hypervolume"])
    assert set(saved["importance"]) == {"xbar", "adc", "cols"}
    for name in (
        "dse.json",
        "pareto.csv",
        "pareto.json",
        "trials.csv",
        "pareto.png",
        "hypervolume.png",
        "summary.md",
    ):
        assert (out / name).stat().st_size > 0


def test_two_workers_finish_the_same_designs_as_serial_and_the_journal_reads_back(tmp_path):
    grid = {"name": "grid", "seed": 3}
    serial = explore(load_space(_space(tmp_path, sampler=grid)), tmp_path / "serial", write=False)
    parallel = explore(load_space(_space(tmp_path, sampler=grid)), tmp_path / "par", workers=2, write=False)

    def finished(doc):
        return {
            (tuple(sorted(t["params"].items())), tuple(t["values"][m] for m in OBJECTIVES))
            for t in doc["trials"]
            if t["state"] == "COMPLETE"
        }

    assert finished(serial) == finished(parallel)
    assert len(finished(serial)) == 27  # the whole grid
    # a fresh reader of the journal file sees every trial, each finished
    again = summarise(
        open_study(load_space(_space(tmp_path, sampler=grid)), tmp_path / "par"),
        load_space(_space(tmp_path, sampler=grid)),
        importance=False,
    )
    assert finished(again) == finished(serial)
    assert all(t["state"] == "COMPLETE" for t in again["trials"])


def test_ray_tasks_run_the_study(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install spikecim[distributed])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        doc = explore(
            load_space(_space(tmp_path, trials=12)),
            tmp_path / "ray",
            workers=2,
            ray_address="local",
            write=False,
        )
    finally:
        ray.shutdown()
    assert len(doc["trials"]) >= 12
    designs, _ = _brute_force(tmp_path)
    for t in doc["trials"]:
        key = (t["params"]["xbar"], t["params"]["adc"], t["params"]["cols"])
        assert [t["values"][m] for m in OBJECTIVES] == pytest.approx(designs[key], rel=1e-12)


def test_an_rdb_storage_with_heartbeats_records_the_whole_grid(tmp_path):
    designs, _ = _brute_force(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = load_space(_space(tmp_path, sampler={"name": "grid", "seed": 1}))
    explore(space, tmp_path / "rdb", url=url, write=False)
    study = optuna.load_study(study_name="hw", storage=url)
    done = {(t.params["xbar"], t.params["adc"], t.params["cols"]): t.values for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert set(done) == set(designs)
    for key, values in done.items():
        assert values == pytest.approx(designs[key], rel=1e-12)


def test_a_trial_whose_worker_died_during_the_run_is_failed_and_retried_before_the_next_trial(
    tmp_path, monkeypatch
):
    """With RDB storage a dead worker's trial stops beating; study.optimize fails it before
    every trial, and its retry runs. The check ran only when a command started, so a worker
    that died after that left its trial RUNNING until the next command."""
    import time

    from spikecim.dse import study as study_module
    from spikecim.dse.evaluate import Evaluator
    from spikecim.dse.study import run_trials

    monkeypatch.setattr(study_module, "HEARTBEAT_S", 0.5)  # stale after 1.5 s without a beat
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = load_space(_space(tmp_path, trials=6))
    study = open_study(space, str(tmp_path / "rdb"), url)
    dead = study.ask()
    dead.suggest_categorical("xbar", XBAR)
    study._storage.record_heartbeat(dead._trial_id)  # its worker beat once, then died
    evaluate, calls = Evaluator(space, str(tmp_path / "rdb")), []

    def slow_first(params):  # the run's first trial outlasts the dead one's grace period
        calls.append(params)
        if len(calls) == 1:
            time.sleep(2.0)
        return evaluate(params)

    run_trials(study, space, slow_first, 6)
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
