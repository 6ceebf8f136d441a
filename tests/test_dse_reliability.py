"""spikecim dse when things go wrong: bad storage URLs, damaged and torn journals, commands
that fail at the door, resumed and parallel studies that must not replay designs, too many
workers, unreachable Ray clusters, --status that must create nothing. Every study here is a
hardware-only space on the shipped workload file: a trial takes milliseconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from spikecim.cli.main import main
from spikecim.dse.space import load_space
from spikecim.dse.workers import run_worker
from spikecim.errors import SpikecimError

WORKLOAD = Path(__file__).resolve().parents[1] / "examples" / "dse" / "digits-convnet-workload.json"
ADC = {"path": "arch.params.adc_bits", "low": 3, "high": 8}
CLOCK = {"name": "clock", "path": "arch.params.clock_mhz", "low": 100.0, "high": 1000.0, "type": "float"}


def _space(tmp_path: Path, file: str = "s.yaml", **over) -> Path:
    shutil.copy(WORKLOAD, tmp_path / "wl.json")
    space = {
        "name": "t",
        "workload": "wl.json",
        "knobs": [ADC],
        "objectives": [{"metric": "energy_uj"}],
        "sampler": {"name": "tpe", "seed": 0},
        "trials": 3,
        **over,
    }
    path = tmp_path / file
    path.write_text(yaml.safe_dump(space))
    return path


def _dse(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["dse", *map(str, args)])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    """The one ``error:`` line of stderr (no traceback)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _trials(out: Path, name: str = "t") -> list[optuna.trial.FrozenTrial]:
    """The study's trials as Optuna's own journal reader sees them."""
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


# ---- 1. --storage URLs that cannot be opened ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "foo://bar",  # no such dialect
        "sqlite:////nonexistent-folder/x.db",  # the folder does not exist
        "sqlite:///{tmp}/wl.json",  # a file that is not a database
        "postgresql://user:secret@localhost/db",  # no driver installed
        "not a url",
    ],
)
def test_a_storage_url_that_cannot_be_opened_is_one_line_and_writes_nothing(url, tmp_path, capsys):
    pytest.importorskip("sqlalchemy")
    if url.startswith("postgresql"):
        for driver in ("psycopg2", "psycopg"):
            try:
                __import__(driver)
                pytest.skip(f"{driver} is installed: the URL would reach for a server")
            except ImportError:
                pass
    space = _space(tmp_path)
    before = (tmp_path / "wl.json").read_bytes()
    out = tmp_path / "o"
    code, err = _dse(capsys, space, "--out", out, "--storage", url.format(tmp=tmp_path))
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith("error: --storage: cannot open "), line
    assert "secret" not in line  # the password is not printed
    assert not out.exists()
    assert (tmp_path / "wl.json").read_bytes() == before  # the non-database file is untouched


# ---- 2. a damaged journal --------------------------------------------------------------------

DAMAGE = {
    "a line of text": b"garbage\n",
    "bytes that are not UTF-8": b"\x8b\xff\x00\x9c\n",
    "an operation Optuna does not know": b'{"op_code": 99}\n',
    "a bad line in the middle": None,  # line 3 replaced, below
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_journal_is_one_line_and_left_as_it_is(damage, tmp_path, capsys):
    space = _space(tmp_path)
    out = tmp_path / "o"
    assert _dse(capsys, space, "--out", out)[0] == 0
    journal = out / "study.journal"
    if DAMAGE[damage] is None:
        lines = journal.read_bytes().splitlines(keepends=True)
        lines[2] = b"[1, 2]\n"
        journal.write_bytes(b"".join(lines))
    else:
        with open(journal, "ab") as f:
            f.write(DAMAGE[damage])
    damaged = journal.read_bytes()
    for args in (
        ["--status", "--out", out],
        ["--resume", "--out", out, "--trials", 5],
        [space, "--out", out],
    ):
        code, err = _dse(capsys, *args)
        assert code == 2, args
        line = _one_error_line(err)
        assert f"dse: {journal} is damaged (" in line, line
        assert journal.read_bytes() == damaged  # never modified
    if DAMAGE[damage] is None:
        assert "line 3 is not a JSON record" in line


# ---- 3. a torn last line ------------------------------------------------------------------------


def _cut_inside_last_completion(journal: Path) -> int:
    """Cut the journal in the middle of its last line that finishes a trial (op 6, state
    COMPLETE), as a crash in that write leaves it; returns that trial's id."""
    data = journal.read_bytes()
    lines = data.splitlines(keepends=True)
    last = max(
        i
        for i, ln in enumerate(lines)
        if json.loads(ln)["op_code"] == 6 and json.loads(ln).get("state") == TrialState.COMPLETE.value
    )
    keep = sum(len(ln) for ln in lines[:last]) + len(lines[last]) // 2
    journal.write_bytes(data[:keep])
    return json.loads(lines[last])["trial_id"]


@pytest.mark.parametrize("cut", ["20 bytes", "inside a trial's completion"])
def test_a_torn_last_line_is_cut_before_appending_and_no_finished_trial_is_lost(cut, tmp_path, capsys):
    space = _space(tmp_path, knobs=[CLOCK])
    out = tmp_path / "o"
    assert _dse(capsys, space, "--out", out)[0] == 0
    journal = out / "study.journal"
    if cut == "20 bytes":  # truncate -s -20
        journal.write_bytes(journal.read_bytes()[:-20])
    else:
        _cut_inside_last_completion(journal)
    assert not journal.read_bytes().endswith(b"\n")
    finished = {t.number: (t.params, t.values) for t in _trials(out) if t.state == TrialState.COMPLETE}
    assert len(finished) == (3 if cut == "20 bytes" else 2)

    code, err = _dse(capsys, space, "--out", out, "--trials", 5)
    assert code == 0, err
    assert "cut " in err and "after its last complete line" in err

    # every line is a JSON record again, and Optuna's own reader sees every finished trial
    for line in journal.read_bytes().splitlines():
        assert isinstance(json.loads(line), dict)
    trials = _trials(out)
    for number, (params, values) in finished.items():
        assert trials[number].state == TrialState.COMPLETE
        assert (trials[number].params, trials[number].values) == (params, values)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    code, err = _dse(capsys, "--status", "--out", out)
    assert code == 0, err


@pytest.mark.parametrize("at", ["symlink", "open", "write", "fsync", "rename", "unlink"])
def test_an_interrupt_inside_a_journal_write_waits_until_the_lock_is_released(at, tmp_path):
    """SIGTERM (as Ctrl-C) that lands between two steps of Optuna's lock left the lock file
    behind (every later command waited for it), or surfaced as ``FileNotFoundError`` from
    the lock's cleanup in place of the interrupt. The signal is sent just before the named
    system call of the append; it must come out as the interrupt, after a whole line and
    with no lock file left."""
    from spikecim.dse.study import Journal

    journal = Journal(str(tmp_path / "study.journal"))

    def interrupt_before(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == at:
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGTERM)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            sys.setprofile(interrupt_before)
            try:
                journal.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}])
            finally:
                sys.setprofile(None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.journal"]  # no lock, no rename file
    assert [json.loads(ln)["study_name"] for ln in (tmp_path / "study.journal").read_text().splitlines()] == [
        "s"
    ]


# ---- 4. a command that fails at the door writes nothing --------------------------------------

FAILS = {
    "workload typo": ({"workload": "wl_typo.json"}, [], "error: space: workload: file not found"),
    "baseline outside the table's range": (
        {"baseline": {"arch.params.adc_bits": 99}},
        [],
        "error: space: baseline: ",
    ),
    "gp with two objectives": (
        {"sampler": {"name": "gp"}, "objectives": [{"metric": "energy_uj"}, {"metric": "area_mm2"}]},
        [],
        "error: space: sampler.name: gp takes one objective",
    ),
    "a constraint the architecture does not model": (
        {"arch": "naive-45nm", "knobs": [{"path": "arch.params.e_mac_pj", "choices": [1.0, 2.0]}]}
        | {"constraints": [{"metric": "latency_us", "op": "<=", "bound": 5}]},
        [],
        "error: space: constraints.0: naive-45nm does not model latency_us, allowed: energy_pj, ",
    ),
    "bad --storage": ({}, ["--storage", "sqlite:////nonexistent-folder/x.db"], "error: --storage: "),
    "bad --ray-address": ({}, ["--ray-address", "127.0.0.1:1"], "error: --ray-address: "),
}


@pytest.mark.parametrize("case", list(FAILS))
def test_a_command_that_fails_at_the_door_leaves_no_folder_and_the_corrected_one_runs(case, tmp_path, capsys):
    over, flags, message = FAILS[case]
    out = tmp_path / "o"
    code, err = _dse(capsys, _space(tmp_path, "bad.yaml", **over), "--out", out, *flags)
    assert code == 2
    assert _one_error_line(err).startswith(message), err
    assert not out.exists()
    code, err = _dse(capsys, _space(tmp_path), "--out", out)
    assert code == 0, err
    assert len(_trials(out)) == 3


class _Broken:
    def __init__(self, *a, **k):
        raise SpikecimError("workload: the file went away")


def test_a_failure_before_the_first_trial_removes_only_the_files_the_command_created(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr("spikecim.dse.evaluate.Evaluator", _Broken)
    code, err = _dse(capsys, _space(tmp_path), "--out", out)
    assert code == 2 and "the file went away" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    code, err = _dse(capsys, _space(tmp_path), "--out", out)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"


def test_a_failure_once_trials_exist_removes_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    assert _dse(capsys, _space(tmp_path), "--out", out)[0] == 0
    names = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr("spikecim.dse.evaluate.Evaluator", _Broken)
    code, _ = _dse(capsys, _space(tmp_path), "--out", out, "--trials", 5)
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == names
    assert sum(t.state == TrialState.COMPLETE for t in _trials(out)) == 3


# ---- 5. resuming and parallel workers do not replay designs ------------------------------------


def _clocks(out: Path) -> list[float]:
    return [t.params["clock"] for t in _trials(out, "c")]


def test_a_resumed_study_draws_new_designs_and_the_same_ones_when_repeated(tmp_path, capsys):
    space = _space(tmp_path, name="c", knobs=[CLOCK])
    runs = []
    for folder in ("a", "b"):
        out = tmp_path / folder
        assert _dse(capsys, space, "--out", out, "--trials", 3)[0] == 0
        assert _dse(capsys, space, "--out", out, "--trials", 6)[0] == 0
        runs.append(_clocks(out))
    assert len(runs[0]) == 6
    assert len(set(runs[0])) == 6  # six distinct designs, counted by hand
    assert runs[0] == runs[1]  # the same history continued the same way: the same designs
    # a new study's first command is seeded with sampler.seed itself: Optuna's TPE, seed 0
    ref = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True))
    assert runs[0][:3] == [ref.ask().suggest_float("clock", 100.0, 1000.0) for _ in range(3)]


def test_a_larger_budget_in_the_space_file_continues_the_study_and_a_new_knob_range_is_refused(
    tmp_path, capsys
):
    out = tmp_path / "c"
    assert _dse(capsys, _space(tmp_path, name="c", knobs=[CLOCK], trials=3), "--out", out)[0] == 0
    code, err = _dse(capsys, _space(tmp_path, name="c", knobs=[CLOCK], trials=5), "--out", out)
    assert code == 0, err
    assert len(_clocks(out)) == 5  # 3 kept + 2 new, counted by Optuna's own reader
    assert yaml.safe_load((out / "space.yaml").read_text())["trials"] == 5  # --resume takes the new budget
    assert _dse(capsys, "--resume", "--out", out)[0] == 0
    assert len(_clocks(out)) == 5
    wider = _space(tmp_path, name="c", knobs=[{**CLOCK, "high": 2000.0}], trials=5)
    assert _one_error_line(_dse(capsys, wider, "--out", out)[1]) == (
        f"error: dse: {out} holds a study of another space; choose another --out"
    )


def test_a_second_worker_never_replays_the_first_workers_draws(tmp_path):
    # the workers of one command, one after the other so the order is fixed: both see the
    # study as the command found it (history 0); TPE's first ten trials are random draws
    space = load_space(_space(tmp_path, name="c", knobs=[CLOCK], trials=8))
    out = tmp_path / "w"
    assert run_worker(space, str(out), 4, worker=0, history=0) == 4
    assert run_worker(space, str(out), 8, worker=1, history=0) == 4
    clocks = _clocks(out)
    assert len(clocks) == 8
    assert len(set(clocks)) == 8  # counted by hand: no design drawn twice
    assert not any("reused_from" in t.user_attrs for t in _trials(out, "c"))


def test_two_workers_draw_distinct_designs(tmp_path, capsys):
    space = _space(
        tmp_path,
        name="c",
        knobs=[CLOCK],
        objectives=[{"metric": "energy_uj"}, {"metric": "latency_us"}],
        sampler={"name": "nsga2", "population_size": 4, "seed": 0},
        trials=8,
    )
    out = tmp_path / "w"
    code, err = _dse(capsys, space, "--out", out, "--workers", 2)
    assert code == 0, err
    clocks = _clocks(out)
    assert len(clocks) == 8
    assert len(set(clocks)) == 8


def test_a_grid_larger_than_the_budget_lists_only_the_trials_that_ran(tmp_path, capsys):
    space = _space(tmp_path, sampler={"name": "grid", "seed": 0})  # 6 designs: ADC bits 3 to 8
    out = tmp_path / "g"
    assert main(["dse", str(space), "--out", str(out), "--trials", "4"]) == 0
    assert capsys.readouterr().out.startswith("4 trials, 4 feasible, ")
    doc = json.loads((out / "dse.json").read_text())
    assert [t["state"] for t in doc["trials"]] == ["COMPLETE"] * 4
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 4
    assert "Sampler grid (each design once); 4 trials, 4 complete," in (out / "summary.md").read_text()
    assert doc["sampler"] == "grid (each design once)"
    assert main(["dse", "--status", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"study t in {out}: 4 trials (4 complete), 2 designs waiting, ")


def test_status_gives_the_hypervolume_of_dse_json_with_a_random_baseline(tmp_path, capsys):
    """The hypervolume's reference point spans both studies (docs/dse.md); --status took it
    from the search alone and printed another number than dse.json for the same study."""
    space = _space(tmp_path, name="c", knobs=[CLOCK, ADC], objectives=[{"metric": "energy_uj"}, {"metric": "latency_us"}],
                   trials=40)  # fmt: skip
    out = tmp_path / "r"
    assert main(["dse", str(space), "--out", str(out), "--random-baseline"]) == 0
    # docs/dse.md's definition, from the journal: both objectives minimised, the reference
    # point 10 % of the range beyond the worst value over both studies, Optuna's hypervolume
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    values = {name: np.array([t.values for t in _trials(out, name) if t.state == TrialState.COMPLETE])
              for name in ("c", "c-random")}  # fmt: skip
    both = np.vstack(list(values.values()))
    ref = both.max(0) + 0.1 * (both.max(0) - both.min(0))
    expected = compute_hypervolume(values["c"], ref)
    assert json.loads((out / "dse.json").read_text())["hypervolume"][-1]["search"] == pytest.approx(expected)
    capsys.readouterr()
    assert main(["dse", "--status", "--out", str(out)]) == 0
    printed = float(capsys.readouterr().out.rsplit("hypervolume ", 1)[1])
    assert printed == pytest.approx(expected, rel=1e-5)  # 6 significant digits printed


def test_the_outputs_the_out_check_guards_are_every_file_a_finished_study_writes(tmp_path, capsys):
    """The --out check refuses a folder holding a file named like an output (layout.OUTPUTS);
    a study that writes a file the list lacks would overwrite it unguarded."""
    from spikecim.dse.layout import JOURNAL, LOCK, OUTPUTS, RESULTS, SPACE

    space = _space(tmp_path, name="c", knobs=[CLOCK, ADC], objectives=[{"metric": "energy_uj"}, {"metric": "latency_us"}],
                   trials=12)  # fmt: skip
    out = tmp_path / "all"
    assert main(["dse", str(space), "--out", str(out), "--random-baseline"]) == 0
    from spikecim.report.study import write_study_page

    write_study_page(out)  # study.html, as spikecim compare writes it
    written = {p.name for p in out.iterdir() if p.is_file()}
    assert written - {JOURNAL, LOCK, RESULTS, SPACE} == set(OUTPUTS)


def test_an_out_folder_of_someone_elses_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    """The study's outputs (summary.md, pareto.png, trials.csv) overwrote a folder's own files
    of those names; such a folder without a study of spikecim dse is refused in one line (a
    folder with other files of its own takes the study beside them: the test above)."""
    space = _space(tmp_path, name="c", knobs=[CLOCK], trials=3)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.md").write_text("my notes\n")
    code, err = _dse(capsys, space, "--out", out)
    assert code == 2
    assert _one_error_line(err) == (
        f"error: --out: {out} holds summary.md, which spikecim dse did not write (no study.journal) and would "
        "overwrite; move it out or choose another folder"
    )
    assert sorted(p.name for p in out.iterdir()) == ["summary.md"]
    assert (out / "summary.md").read_text() == "my notes\n"


# ---- 6. --workers -------------------------------------------------------------------------------


def _no_process_pool(monkeypatch) -> list:
    """The calls of ``multiprocessing.get_context`` in the dse workers (a pool is started
    through it), recorded and answered with an error."""
    pools = []

    def no_pool(*a, **k):
        pools.append(a)
        raise AssertionError("a process pool was started")

    monkeypatch.setattr("spikecim.dse.workers.multiprocessing.get_context", no_pool)
    return pools


def test_more_workers_than_the_cap_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    pools = _no_process_pool(monkeypatch)
    out = tmp_path / "o"
    code, err = _dse(capsys, _space(tmp_path), "--out", out, "--workers", 100000, "--trials", 1)
    assert code == 2
    line = _one_error_line(err)
    assert line.startswith("error: --workers: at most ") and "got 100000" in line, line
    assert pools == []  # refused before any worker was started
    assert not out.exists()


def test_workers_beyond_the_budget_are_not_started(tmp_path, capsys, monkeypatch):
    pools = _no_process_pool(monkeypatch)
    out = tmp_path / "o"
    code, err = _dse(capsys, _space(tmp_path), "--out", out, "--workers", 2, "--trials", 1)
    assert code == 0, err
    assert pools == []  # a one-trial budget runs in this process
    assert len(_trials(out)) == 1


# ---- 7. --ray-address ---------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["bogus.invalid:1", "127.0.0.1:1", "no-port"])
def test_an_unreachable_ray_address_fails_fast_in_one_line(address, tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")

    inits = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: inits.append(a))  # it retries for minutes
    out = tmp_path / "o"
    code, err = _dse(capsys, _space(tmp_path), "--out", out, "--ray-address", address)
    assert code == 2
    assert _one_error_line(err).startswith("error: --ray-address: "), err
    assert inits == []  # refused before Ray was asked to connect
    assert not out.exists()


def test_a_ray_init_error_is_one_line(tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")

    def refuse(*a, **k):
        raise ConnectionError("Could not find any running Ray instance.\nmore text")

    monkeypatch.setattr(ray, "init", refuse)
    code, err = _dse(capsys, _space(tmp_path), "--out", tmp_path / "o", "--ray-address", "auto")
    assert code == 2
    assert _one_error_line(err) == (
        "error: --ray-address: cannot connect to auto: Could not find any running Ray instance."
    )


# ---- 9. --status creates nothing ----------------------------------------------------------------


def test_status_on_a_database_that_does_not_exist_creates_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    assert _dse(capsys, _space(tmp_path), "--out", out)[0] == 0
    journal = (out / "study.journal").read_bytes()
    db = tmp_path / "new.db"
    code, err = _dse(capsys, "--status", "--out", out, "--storage", f"sqlite:///{db}")
    assert code == 2
    assert _one_error_line(err).startswith("error: dse: no study in "), err
    assert not db.exists()
    # a database without this study: no study, and no table or study written into it
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    code, err = _dse(capsys, "--status", "--out", out, "--storage", f"sqlite:///{other}")
    assert code == 2 and "no study" in _one_error_line(err)
    with sqlite3.connect(other) as con:
        assert con.execute("select name from sqlite_master").fetchall() == []
    # and on the journal --status reads without appending
    code, err = _dse(capsys, "--status", "--out", out)
    assert code == 0, err
    assert (out / "study.journal").read_bytes() == journal


def test_status_of_a_space_in_a_new_folder_creates_no_folder(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert _dse(capsys, _space(tmp_path), "--out", tmp_path / "o", "--storage", url)[0] == 0
    other = _space(tmp_path, "s2.yaml", name="u")
    code, err = _dse(capsys, other, "--status", "--out", tmp_path / "new", "--storage", url)
    assert code == 2
    assert "no study 'u'" in _one_error_line(err)
    assert not (tmp_path / "new").exists()


def test_workers_holding_the_budget_lock_never_overshoot_the_budget(tmp_path, monkeypatch):
    """Two workers on one journal, each waiting 50 ms between counting the trials and asking
    for one (the window in which both can see one trial left): with the lock the workers of
    a command share, the study ends at the budget exactly. (The same two workers without the
    lock end with 6 trials of 5: they count and ask in step.)"""
    import threading
    import time

    from spikecim.dse.evaluate import Evaluator
    from spikecim.dse.study import open_study, run_trials

    space_path = _space(tmp_path, name="c", knobs=[CLOCK], trials=5)
    space, out = load_space(space_path), tmp_path / "w"
    out.mkdir()
    ask = optuna.Study.ask

    def slow_ask(self, *a, **k):
        time.sleep(0.05)
        return ask(self, *a, **k)

    monkeypatch.setattr(optuna.Study, "ask", slow_ask)
    lock = threading.Lock()
    studies = [open_study(space, str(out), None, False, worker=i, history=0) for i in range(2)]
    threads = [
        threading.Thread(
            target=run_trials, args=(s, space, Evaluator(space, str(out)), 5), kwargs={"lock": lock}
        )
        for s in studies
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_trials(out, "c")) == 5


def test_sigterm_between_trials_stops_as_ctrl_c_does_and_says_what_is_kept(tmp_path):
    """A hardware-only study spends its time outside any training: SIGTERM there ended the
    process at once, without a word; it stops as Ctrl-C does (exit 130, the finished trials
    counted)."""
    space = _space(tmp_path, name="c", knobs=[CLOCK], trials=100_000)  # never done before the signal
    out = tmp_path / "t"
    cmd = [sys.executable, "-m", "spikecim", "dse", str(space), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            if (out / "study.journal").exists() and b'"state":1' in (out / "study.journal").read_bytes():
                proc.send_signal(signal.SIGTERM)  # a trial has finished (COMPLETE is state 1)
                break
            time.sleep(0.05)
    finally:
        err = proc.communicate()[1]
    assert proc.returncode == 130, err
    kept = sum(t.state == TrialState.COMPLETE for t in _trials(out, "c"))
    assert err.strip().splitlines()[-1] == (
        f"dse: interrupted; {kept} finished trials are kept in {out / 'study.journal'} (a trial that was "
        "running runs again first): run the same command again to continue"
    )


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_sigkill_of_a_command_with_workers_stops_its_workers_and_the_rerun_finishes_the_study(tmp_path):
    """SIGKILL gives the command no chance to stop its pool: its workers went on with the
    study (re-parented to init), and the rerun, taking a trial they had just finished as
    lost, ended in a traceback ("Cannot tell a COMPLETE trial"). The workers now stop with
    the command, and the rerun completes the budget."""
    budget = 150
    space = _space(tmp_path, name="c", knobs=[CLOCK], trials=budget)
    out = tmp_path / "w"
    cmd = [sys.executable, "-m", "spikecim", "dse", str(space), "--out", str(out), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        while proc.poll() is None:
            journal = out / "study.journal"
            if journal.exists() and b'"state":1' in journal.read_bytes():  # a trial has finished
                workers = _children(proc.pid)
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL and len(workers) >= 2
    while any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers):
        time.sleep(0.05)  # the workers stop on their own (a hung test here means they do not)
    assert sum(t.state == TrialState.COMPLETE for t in _trials(out, "c")) < budget  # stopped, not finished
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert sum(t.state == TrialState.COMPLETE for t in _trials(out, "c")) == budget


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_second_ctrl_c_while_dse_stops_still_says_what_is_kept(tmp_path, capsys):
    """Ctrl-C pressed twice: the second lands while the command counts the finished trials it
    keeps (reading the journal). It used to end the command with a bare "interrupted", the
    count lost. The first Ctrl-C is sent as the second trial is told, from a trace function
    (its exception switches tracing off, not profiling); the second from a profile function,
    at the next file opened."""
    space = _space(tmp_path, name="c", knobs=[CLOCK], trials=100)
    out = tmp_path / "t"
    told, armed = [], []

    def first_ctrl_c(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_tell":
            told.append(1)
            if len(told) == 2:
                armed.append(1)
                sys.settrace(None)
                os.kill(os.getpid(), signal.SIGINT)

    def second_ctrl_c(frame, event, arg):
        if armed and event == "c_call" and getattr(arg, "__name__", "") == "open":
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.settrace(first_ctrl_c)
    sys.setprofile(second_ctrl_c)
    try:
        code, err = _dse(capsys, space, "--out", out)
    finally:
        sys.settrace(None)
        sys.setprofile(None)
        signal.signal(signal.SIGINT, previous)
    assert armed and code == 130
    kept = sum(t.state == TrialState.COMPLETE for t in _trials(out, "c"))
    assert kept >= 1
    assert err.strip().splitlines()[-1] == (
        f"dse: interrupted; {kept} finished trials are kept in {out / 'study.journal'} (a trial that was "
        "running runs again first): run the same command again to continue"
    )
