"""spikecim dse on spaces that train: cheap before dear (a hardware constraint that fails on
the lower bound never trains), the training cache, and resuming after SIGKILL."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from spikecim.dse.layout import JOURNAL
from spikecim.dse.space import load_space
from spikecim.dse.workers import explore
from spikecim.hw import estimate, list_architectures, load_architecture
from spikecim.hw.layers import load_workload

BASE = {"model": {"name": "mlp"}, "train": {"epochs": 1}, "data": {"limit": 128}}
HIDDEN = {"narrow": [16], "wide": [512, 512]}
AREA_MM2 = 5.0  # the narrow MLP's crossbars fit (about 1.7 mm²), the wide one's do not (about 10 mm²)


def _space(tmp_path, name="tr", **over) -> str:
    space = {
        "name": name,
        "base": BASE,
        "arch": "imc-rram-65nm",
        "knobs": [
            {"name": "hidden", "path": "model.kwargs.hidden", "choices": HIDDEN},
            {"name": "adc", "path": "arch.params.adc_bits", "choices": [4, 6, 8]},
        ],
        "objectives": [{"metric": "accuracy"}, {"metric": "energy_uj"}],
        "constraints": [{"metric": "area_mm2", "op": "<=", "bound": AREA_MM2}],
        "sampler": {"name": "grid", "seed": 0},
        "trials": 6,
        **over,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def _trainings(out: Path) -> list[dict]:
    """The configs of the networks trained in the output folder, one per finished training
    (a training writes checkpoint/<variant>.state.json)."""
    return [
        yaml.safe_load((state.parent.parent / "config.yaml").read_text())
        for state in sorted(out.glob("cache/*/checkpoint/*.state.json"))
    ]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "out"
    doc = explore(load_space(_space(tmp)), out, write=False)
    return out, doc


def test_a_hardware_constraint_failure_never_trains(study_dir):
    out, doc = study_dir
    assert len(doc["trials"]) == 6  # the grid: 2 widths × 3 ADCs
    wide = [t for t in doc["trials"] if t["params"]["hidden"] == "wide"]
    assert len(wide) == 3 and all(t["state"] == "PRUNED" and not t["feasible"] for t in wide)
    trained = _trainings(out)
    assert [c["model"]["kwargs"]["hidden"] for c in trained] == [HIDDEN["narrow"]]  # one training, narrow


def test_knobs_that_do_not_change_training_reuse_one_trained_network(study_dir):
    _, doc = study_dir
    narrow = [t for t in doc["trials"] if t["params"]["hidden"] == "narrow"]
    assert len(narrow) == 3 and all(t["state"] == "COMPLETE" and t["feasible"] for t in narrow)
    assert len({t["values"]["accuracy"] for t in narrow}) == 1  # the same network, three ADCs
    assert len({t["values"]["energy_uj"] for t in narrow}) == 3


def test_the_lower_bound_is_below_the_trained_networks_cost_on_every_architecture(study_dir):
    out, _ = study_dir
    from spikecim.config import RunConfig
    from spikecim.data import dataset_from_config
    from spikecim.dse.evaluate import structural_workload

    run_dir = next(p.parent.parent for p in out.glob("cache/*/checkpoint/*.state.json"))
    cfg = RunConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    bound = structural_workload(cfg, dataset_from_config(cfg.data))
    trained = load_workload(run_dir)
    assert trained.layers[0].in_nonzero_per_step[0] > 0  # real activity
    for name in list_architectures():
        lo, hi = estimate(bound, load_architecture(name)), estimate(trained, load_architecture(name))
        for metric in ("energy_pj", "latency_ns", "area_um2"):
            assert getattr(lo, metric) <= getattr(hi, metric) * (1 + 1e-12), (name, metric)


def _journal_trials(out: Path, name: str) -> list:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where train.device=cuda fails")
def test_a_baseline_that_fails_is_recorded_and_the_study_files_are_written(tmp_path, capsys):
    from spikecim.cli.main import main

    space = _space(
        tmp_path,
        name="base",
        knobs=[{"name": "device", "path": "train.device", "choices": ["cpu", "cuda"]}],
        constraints=[],
        trials=2,
        baseline={"device": "cuda"},
    )
    out = tmp_path / "out"
    assert main(["dse", space, "--out", str(out)]) == 0
    doc = json.loads((out / "dse.json").read_text())
    failed = "train.device: 'cuda' requested but no CUDA device is available"
    assert doc["baseline"]["params"] == {"device": "cuda"} and doc["baseline"]["values"] == {}
    assert doc["baseline"]["error"].startswith(failed)
    assert sorted(t["state"] for t in doc["trials"]) == ["COMPLETE", "FAIL"]  # the cpu and cuda designs
    assert f"dse: the baseline was not evaluated: {failed}" in capsys.readouterr().err
    for name in ("summary.md", "pareto.csv", "trials.csv", "study.html"):
        assert (out / name).is_file(), name


def test_a_training_that_raises_a_library_error_fails_its_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    """A design whose training raises what torch raises (CUDA out of memory) is one failed
    trial with its reason, not a stopped command whose rerun would run it first and stop again."""
    import spikecim.pipeline.run as pipeline_run

    train = pipeline_run.run

    def run(cfg):
        if cfg.seed == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
        return train(cfg)

    monkeypatch.setattr(pipeline_run, "run", run)
    space = _space(
        tmp_path,
        name="oom",
        knobs=[{"name": "seed", "path": "seed", "choices": [0, 1, 2]}],
        constraints=[],
        trials=3,
        baseline={"seed": 1},
    )
    out = tmp_path / "out"
    doc = explore(load_space(space), out)
    oom = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    trials = _journal_trials(out, "oom")  # as Optuna's own reader sees the journal
    assert sorted((t.params["seed"], t.state) for t in trials) == [
        (0, TrialState.COMPLETE),
        (1, TrialState.FAIL),
        (2, TrialState.COMPLETE),
    ]
    assert [t.user_attrs.get("error") for t in trials if t.params["seed"] == 1] == [oom]
    assert doc["baseline"] == {"params": {"seed": 1}, "values": {}, "error": oom}
    with (out / "trials.csv").open(newline="") as f:  # the reason in the table files too
        assert {r["seed"]: r["error"] for r in csv.DictReader(f)} == {"0": "", "1": oom, "2": ""}
    assert f"<td>{html.escape(oom)}</td>" in (out / "study.html").read_text(encoding="utf-8")


def _stop_in_a_trial(tmp_path, sig: int):
    """Start a study whose every design trains (the seed changes training, so a trial takes
    long enough to be stopped in), and send ``sig`` once a trial has finished and the next one
    runs. Returns the command, its environment, output folder, the stopped trial, and the
    exit code and stderr of the stopped command."""
    space = _space(
        tmp_path,
        name="kill",
        knobs=[{"name": "seed", "path": "seed", "choices": list(range(8))}],
        constraints=[],
        trials=3,
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spikecim.cli.main", "dse", space, "--out", str(out), "--trials", "3"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # A suite started in the background of a non-interactive shell has SIGINT ignored, which a
    # child inherits: the study would never see the Ctrl-C this test sends. A handled signal
    # is reset to its default action in the child, so the child starts with Ctrl-C's usual one.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    killed, err = None, ""
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / JOURNAL).exists():
                try:
                    trials = _journal_trials(out, "kill")
                except (KeyError, ValueError):  # the study is being created
                    trials = []
                done = [t for t in trials if t.state == TrialState.COMPLETE]
                running = [t for t in trials if t.state == TrialState.RUNNING]
                if len(done) >= 1 and running and running[0].params:
                    killed = running[0]
                    proc.send_signal(sig)
                    break
            time.sleep(0.05)
    finally:
        err = proc.communicate()[1]
    assert killed is not None, "the study finished before a trial could be stopped"
    return cmd, env, out, killed, (proc.returncode, err)


def test_ctrl_c_in_a_trial_says_how_many_finished_trials_are_kept(tmp_path):
    _, _, out, _, (code, err) = _stop_in_a_trial(tmp_path, signal.SIGINT)
    assert code == 130, err
    kept = sum(t.state == TrialState.COMPLETE for t in _journal_trials(out, "kill"))
    assert kept >= 1
    last = err.strip().splitlines()[-1]
    assert last == (
        f"dse: interrupted; {kept} finished trials are kept in {out / JOURNAL} (a trial that was "
        "running runs again first): run the same command again to continue"
    ), err
    assert "Traceback" not in err


def test_resume_after_sigkill_keeps_finished_trials_and_reruns_the_killed_one(tmp_path):
    cmd, env, out, killed, _ = _stop_in_a_trial(tmp_path, signal.SIGKILL)
    before = {t.number: t.params for t in _journal_trials(out, "kill") if t.state == TrialState.COMPLETE}
    assert len(before) >= 1

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    after = _journal_trials(out, "kill")
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    # the finished trials are kept as they were
    assert {t.number: t.params for t in complete if t.number in before} == before
    # the killed one is marked failed and its design rerun
    assert after[killed.number].state == TrialState.FAIL
    reruns = [t for t in complete if t.user_attrs.get("rerun_of") == killed.number]
    assert len(reruns) == 1 and reruns[0].params == killed.params
    # the budget is met by finished trials, and no finished design was evaluated twice
    assert len(complete) == 3
    designs = [t.params["seed"] for t in complete if "reused_from" not in t.user_attrs]
    assert len(designs) == len(set(designs)) == 3
    doc = json.loads((out / "dse.json").read_text())
    assert sorted(t["number"] for t in doc["trials"] if t["state"] == "COMPLETE") == sorted(
        t.number for t in complete
    )


def test_a_design_whose_training_diverges_is_a_failed_trial_without_the_command_lines_advice(tmp_path):
    """A design that diverges fails as a trial. Its recorded reason is the finding only: the
    advice of `spikecim run` (train again with --fresh or another --name) does not apply to a
    trial, whose training is the study's to run."""
    space = _space(
        tmp_path,
        name="div",
        base={
            **BASE,
            "train": {"epochs": 1, "lr": 10, "optimizer": "sgd"},
            "data": {"limit": 128, "batch_size": 4},
        },
        # 32 steps of x(1 - 1e13) pass float32's range; 0 trains
        knobs=[{"name": "decay", "path": "train.weight_decay", "choices": [0.0, 1e12]}],
        objectives=[{"metric": "accuracy"}],
        constraints=[],
        trials=2,
    )
    out = tmp_path / "out"
    explore(load_space(space), out)
    trials = {t.params["decay"]: t for t in _journal_trials(out, "div")}
    assert trials[0.0].state == TrialState.COMPLETE
    assert trials[1e12].state == TrialState.FAIL
    error = trials[1e12].user_attrs["error"]
    assert re.fullmatch(r"train: the snn diverged in epoch 1 of 1 \(.+\); no epoch of it is saved", error), (
        error
    )
    summary = (out / "summary.md").read_text()
    number = trials[1e12].number
    assert f"| {number} | decay=1e+12 | {error} |" in summary.split("## Failed trials")[1], summary
