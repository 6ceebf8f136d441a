"""Run folders under bad input, failures, Ctrl-C and concurrent runs: nothing is lost.

Each refusal is exit code 2 (130 for Ctrl-C) with one line on stderr and no traceback; where
data could be lost, every file that was there before is compared byte for byte.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.pipeline import folder
from spikecim.pipeline.stages import _STAGES, register_stage
from spikecim.train.checkpoint import weights_path

REPO = Path(__file__).resolve().parents[1]
# A tiny trained run: the MLP, 200 training samples, one epoch, no ANN twin.
TINY = [
    "--set",
    "model.name=mlp",
    "--set",
    "train.ann_twin=false",
    "--set",
    "data.limit=200",
    "--epochs",
    "1",
]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, hidden ones included."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))
    }


def the_line(err: str, prefix: str = "error:") -> str:
    """The one message line of stderr (progress bars may precede it); no traceback."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, err
    return lines[0]


def run_args(out: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--set", f"output_dir={out}", "--name", name, *extra]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    assert main(run_args(out, "base", *TINY, "--stages", "train,evaluate")) == 0
    return out / "base"


@pytest.fixture
def copy_of_run(trained_run, tmp_path) -> Path:
    run = tmp_path / "runs" / "base"
    shutil.copytree(trained_run, run)
    return run


@pytest.fixture
def test_stages():
    """Stages registered in the real registry for these tests, removed afterwards."""

    def ok(ctx):
        return {"snn": {"value": 1.0}}

    def fail(ctx):
        raise SpikecimError("test_fail: the stage failed")

    def interrupt(ctx):
        raise KeyboardInterrupt

    added = {"test_ok": ok, "test_fail": fail, "test_interrupt": interrupt}
    for name, fn in added.items():
        register_stage(name)(fn)
    yield added
    for name in added:
        _STAGES.pop(name, None)


# --- 1. --fresh clears only folders spikecim created, inside output_dir -------------------


@pytest.mark.parametrize("name", [".", "..", "../elsewhere", "a/b", ".hidden"])
def test_a_run_name_that_is_not_one_folder_inside_output_dir_is_refused(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "important.txt").write_text("keep me")
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "x.csv").write_text("1,2\n")
    (tmp_path / "runs" / "sibling").mkdir(parents=True)
    (tmp_path / "runs" / "sibling" / "notes.txt").write_text("a sibling run")
    before = snapshot(tmp_path)
    assert main(["run", "--name", name, "--fresh", "--stages", "train", "--epochs", "1"]) == 2
    line = the_line(capsys.readouterr().err)
    assert "name" in line and repr(name) in line
    assert snapshot(tmp_path) == before


def test_fresh_refuses_a_folder_without_the_run_marker(tmp_path, capsys):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("the user's own file")
    before = snapshot(tmp_path)
    assert main(run_args(tmp_path, "keep", "--fresh", *TINY, "--stages", "train")) == 2
    line = the_line(capsys.readouterr().err)
    assert str(keep) in line and ".spikecim-run" in line
    assert snapshot(tmp_path) == before


def test_a_folder_made_by_hand_is_used_but_never_marked_so_fresh_cannot_clear_it(
    trained_run, tmp_path, capsys
):
    # a run folder set up by hand: the config and the weights, as docs/pipeline.md describes
    hand = tmp_path / "runs" / "base"
    (hand / "checkpoint").mkdir(parents=True)
    (hand / "config.yaml").write_bytes((trained_run / "config.yaml").read_bytes())
    (hand / "checkpoint" / "snn.safetensors").write_bytes(
        weights_path(trained_run / "checkpoint", "snn").read_bytes()
    )
    assert main(run_args(tmp_path / "runs", "base", *TINY, "--stages", "evaluate")) == 0
    assert not (hand / ".spikecim-run").exists()
    before = snapshot(hand)
    capsys.readouterr()
    assert main(run_args(tmp_path / "runs", "base", "--fresh", *TINY, "--stages", "train,evaluate")) == 2
    assert ".spikecim-run" in the_line(capsys.readouterr().err)
    assert snapshot(hand) == before


def test_a_run_into_a_folder_that_is_not_a_run_folder_is_refused(tmp_path, capsys):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("the user's own file")
    before = snapshot(tmp_path)
    assert main(run_args(tmp_path, "keep", *TINY, "--stages", "train")) == 2
    assert str(keep) in the_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("foreign", ["notes.txt", "checkpoint/mine.txt", "data/x.csv", "plots/figure.pdf"])
def test_fresh_refuses_a_run_folder_holding_a_file_spikecim_did_not_write(foreign, copy_of_run, capsys):
    path = copy_of_run / foreign
    path.parent.mkdir(exist_ok=True)
    path.write_text("the user's own file")
    before = snapshot(copy_of_run.parent)
    assert main(run_args(copy_of_run.parent, "base", "--fresh", *TINY, "--stages", "train")) == 2
    line = the_line(capsys.readouterr().err)
    assert foreign.split("/")[0] in line and str(copy_of_run) in line
    assert snapshot(copy_of_run.parent) == before


# --- 2. a failing --fresh run keeps the previous run --------------------------------------


CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.mark.parametrize(
    ("extra", "fresh", "code", "words"),
    [
        pytest.param(
            ["--set", "train.device=cuda", "--stages", "train"], True, 2, "train.device", marks=CUDA
        ),
        (["--set", "data.encoder=frames", "--stages", "train"], True, 2, "data.encoder"),
        (["--stages", "evaluate"], True, 2, "--fresh"),
        (["--stages", "test_fail"], True, 2, "test_fail"),
        (["--stages", "test_interrupt"], True, 130, "restored"),
        (["--stages", "test_fail", "--set", "analog.n_seeds=2"], False, 2, "test_fail"),
        (["--stages", "test_interrupt", "--set", "analog.n_seeds=2"], False, 130, "as it was"),
    ],
)
def test_a_run_that_fails_before_its_first_stage_finishes_leaves_the_folder_as_it_was(
    extra, fresh, code, words, copy_of_run, test_stages, capsys
):
    before = snapshot(copy_of_run.parent)
    args = run_args(copy_of_run.parent, "base", *TINY, *extra, *(["--fresh"] if fresh else []))
    assert main(args) == code
    line = the_line(capsys.readouterr().err, "error:" if code == 2 else "interrupted")
    assert words in line
    assert snapshot(copy_of_run.parent) == before
    # config.yaml still describes the trained run: the corrected command resumes it
    assert main(run_args(copy_of_run.parent, "base", *TINY, "--stages", "evaluate")) == 0


def test_a_fresh_run_replaces_the_old_one_once_its_first_stage_finished(copy_of_run, test_stages, capsys):
    # a file of the old run (written by spikecim, so recorded) that the new one does not write
    folder.write_file(copy_of_run / "workload.json", b"{}")
    assert main(run_args(copy_of_run.parent, "base", *TINY, "--fresh", "--stages", "test_ok,test_fail")) == 2
    assert "test_fail" in the_line(capsys.readouterr().err)
    assert sorted(p.name for p in copy_of_run.parent.iterdir()) == ["base"]  # nothing left aside
    assert sorted(p.name for p in copy_of_run.iterdir()) == [
        ".spikecim-lock",
        ".spikecim-run",
        "config.yaml",
        "metrics.json",
    ]
    assert set(json.loads((copy_of_run / "metrics.json").read_text())) == {"test_ok", "timing_s"}


def test_a_second_ctrl_c_while_a_fresh_run_puts_the_previous_one_back_does_not_cut_it_short(
    copy_of_run, capsys
):
    """Ctrl-C pressed twice: the second lands while the previous run's files are moved back.
    It used to stop the restore half done, the rest of the previous run left in a hidden
    folder beside it. The second Ctrl-C is sent just before the restore's first rename."""
    armed = []

    def interrupt(ctx):  # the first Ctrl-C, in a stage of the new run
        armed.append(True)
        raise KeyboardInterrupt

    def second_ctrl_c(frame, event, arg):
        if armed and event == "c_call" and getattr(arg, "__name__", "") == "rename":
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGINT)

    register_stage("test_interrupt_twice")(interrupt)
    before = snapshot(copy_of_run.parent)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.setprofile(second_ctrl_c)
    try:
        code = main(
            run_args(copy_of_run.parent, "base", *TINY, "--fresh", "--stages", "test_interrupt_twice")
        )
    finally:
        sys.setprofile(None)
        signal.signal(signal.SIGINT, previous)
        _STAGES.pop("test_interrupt_twice", None)
    assert armed and code == 130
    assert the_line(capsys.readouterr().err, "interrupted") == (
        f"interrupted before anything new was saved: the previous run in {copy_of_run} is restored"
    )
    assert snapshot(copy_of_run.parent) == before


def test_a_failing_first_run_leaves_no_folder_behind(tmp_path, test_stages, capsys):
    assert main(run_args(tmp_path, "new", *TINY, "--stages", "test_fail")) == 2
    assert "test_fail" in the_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("variants", "change"),
    [
        ("[{name: snn, neuron: {beta: 0.9}}]", "neuron.beta=0.5 (now 0.9)"),
        ("[{name: snn, methods: [squat]}]", "methods=[] (now [{'name': 'squat'}])"),
        ("[{name: snn, spiking: false}]", "spiking=True (now False)"),
    ],
)
def test_a_trained_variant_built_otherwise_is_refused_and_the_folder_left_as_it_was(
    variants, change, copy_of_run, capsys
):
    before = snapshot(copy_of_run.parent)
    args = run_args(copy_of_run.parent, "base", *TINY, "--stages", "train,evaluate")
    assert main([*args, "--set", f"variants={variants}"]) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: run: {copy_of_run} holds the snn trained with {change}; choose another --name or pass --fresh"
    )
    assert snapshot(copy_of_run.parent) == before
    # the same settings written out in full are the same variant
    assert main([*args, "--set", "variants=[{name: snn, neuron: {beta: 0.5}}]"]) == 0


# --- 5. metrics.json is strict JSON --------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "key"),
    [
        ({"snn": {"accuracy": float("nan")}}, "test_bad.snn.accuracy"),
        ({"snn": {"energy_pj": float("inf")}}, "test_bad.snn.energy_pj"),
        ({"curve": [0.5, float("-inf")]}, "test_bad.curve[1]"),
        ({"snn": {"loss": torch.tensor(float("nan"))}}, "test_bad.snn.loss"),
    ],
)
def test_a_stage_result_with_a_non_finite_number_is_an_error_naming_stage_and_key(
    result, key, tmp_path, test_stages, capsys
):
    register_stage("test_bad")(lambda ctx: result)
    try:
        assert main(run_args(tmp_path, "r", *TINY, "--stages", "test_ok")) == 0
        metrics = tmp_path / "r" / "metrics.json"
        before = metrics.read_bytes()
        capsys.readouterr()
        assert main(run_args(tmp_path, "r", *TINY, "--stages", "test_bad")) == 2
    finally:
        _STAGES.pop("test_bad", None)
    line = the_line(capsys.readouterr().err)
    assert key in line and "not a finite number" in line
    assert metrics.read_bytes() == before

    def no_constants(c):
        raise AssertionError(f"metrics.json holds {c}")

    assert set(json.loads(metrics.read_text(), parse_constant=no_constants)) == {"test_ok", "timing_s"}


@pytest.mark.parametrize(("written", "shown"), [("1e999", "inf"), ("NaN", "nan")])
@pytest.mark.parametrize("command", ["run", "report", "evaluate"])
def test_a_metrics_json_holding_a_non_finite_number_is_refused_naming_the_file_and_key(
    written, shown, command, copy_of_run, capsys
):
    metrics = copy_of_run / "metrics.json"
    doc = json.loads(metrics.read_text())
    doc["evaluate"]["snn"]["accuracy"] = "HERE"
    metrics.write_text(json.dumps(doc).replace('"HERE"', written))  # as a hand edit would leave it
    before = metrics.read_bytes()
    argv = {
        "run": run_args(copy_of_run.parent, "base", *TINY, "--stages", "report"),
        "report": ["report", str(copy_of_run)],
        "evaluate": ["evaluate", str(copy_of_run)],
    }[command]
    capsys.readouterr()
    assert main(argv) == 2
    line = the_line(capsys.readouterr().err)
    assert f"{metrics}: evaluate.snn.accuracy is {shown}, not a finite number" in line
    assert metrics.read_bytes() == before
    assert not (copy_of_run / "report.html").exists()


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:30]), "is not valid JSON"),
        (lambda p: p.write_text("[1, 2]"), "must hold a mapping"),
        (lambda p: p.write_text(""), "must hold a mapping"),
    ],
)
def test_a_run_refuses_to_replace_a_damaged_metrics_json_and_says_how_to_recover(
    damage, what, copy_of_run, capsys
):
    metrics = copy_of_run / "metrics.json"
    damage(metrics)
    before = metrics.read_bytes()
    capsys.readouterr()
    assert main(run_args(copy_of_run.parent, "base", *TINY, "--stages", "evaluate")) == 2
    line = the_line(capsys.readouterr().err)
    assert str(metrics) in line and what in line and "--fresh" in line
    assert metrics.read_bytes() == before


# --- 6. default run name; make clean ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "folder"),
    [
        ([], "digits-convnet"),
        (["--model", "mlp"], "digits-mlp"),
        (["--model", "vgg5", "--set", "name=mine"], "mine"),
    ],
)
def test_the_default_run_name_is_the_data_set_and_the_model(extra, folder, tmp_path, test_stages):
    assert main(["run", "--set", f"output_dir={tmp_path}", *extra, "--stages", "test_ok"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [folder]


def test_make_clean_leaves_the_runs_folder_alone():
    r = subprocess.run(
        ["make", "--no-print-directory", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert r.stdout.split() == ["rm", "-rf", ".venv", ".pytest_cache"]


# --- 7. --version; flags in --help ----------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"spikecim {version}\n"


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ([], ["--version"]),
        (["run"], ["--fresh"]),
        (["train"], ["--fresh"]),
        (["evaluate"], ["--json", "--allow-partial"]),
        (["trace"], ["--allow-partial"]),
        (["nir", "export"], ["--allow-partial"]),
        (["hw", "estimate"], ["--dense", "--json"]),
        (["hw", "spikesim"], ["--json"]),
        (["bench"], ["--quick", "--json"]),
    ],
)
def test_boolean_options_show_as_plain_flags_in_help(command, flags, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--no-" not in text
    for flag in flags:
        rows = [ln for ln in text.splitlines() if re.match(rf"│[ *]*{flag}\s", ln)]
        assert rows, flag
        assert "<bool>" not in rows[0] and "BOOLEAN" not in rows[0]


# --- 3, 4, 8. Ctrl-C, a second run, an interrupted run ------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("WORLD_SIZE", None)
    return env


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spikecim.cli.main",
        "train",
        "--set",
        f"output_dir={out}",
        "--set",
        "name=r",
        "--set",
        "train.ann_twin=false",
        "--set",
        "model.name=convnet",
        "--set",
        "data.limit=200",
        "--set",
        "train.epochs=4",
        *extra,
    ]


def _epoch(run: Path) -> int:
    state = run / "checkpoint" / "snn.state.json"
    try:
        return json.loads(state.read_text())["epoch"]
    except (OSError, ValueError):
        return 0


def _start_and_wait_for_first_epoch(cmd: list[str], run: Path) -> subprocess.Popen:
    # A suite started in the background of a non-interactive shell (`make test &`) has SIGINT
    # ignored, which a child inherits, and Python then installs no KeyboardInterrupt handler:
    # the run would never see the signal this test sends. A handled signal is reset to its
    # default action in the child, so the child starts with Ctrl-C's usual behaviour.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    while proc.poll() is None and _epoch(run) < 1:
        time.sleep(0.005)
    return proc


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A training run sent SIGINT after its first saved epoch: (run folder, exit code, stderr)."""
    out = tmp_path_factory.mktemp("interrupted")
    proc = _start_and_wait_for_first_epoch(_train_cmd(out), out / "r")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    if _epoch(out / "r") >= 4:
        pytest.skip("the run finished before it could be interrupted")
    return out / "r", proc.returncode, err


def test_ctrl_c_exits_130_with_one_line_saying_which_epochs_were_saved(interrupted):
    run, code, err = interrupted
    assert code == 130
    k = _epoch(run)
    epochs = "epoch 1" if k == 1 else f"epochs 1-{k}"
    assert the_line(err, "interrupted") == (
        f"interrupted: {epochs} of 4 of the snn saved in {run / 'checkpoint'}; run the same command to resume"
    )


def test_training_resumed_after_ctrl_c_ends_with_the_weights_of_an_uninterrupted_run(interrupted, tmp_path):
    run, _, _ = interrupted
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed / "r")
    subprocess.run(_train_cmd(resumed), check=True, env=_env(), capture_output=True)
    subprocess.run(_train_cmd(tmp_path / "full"), check=True, env=_env(), capture_output=True)
    a = load_file(weights_path(tmp_path / "full" / "r" / "checkpoint", "snn"))
    b = load_file(weights_path(resumed / "r" / "checkpoint", "snn"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("command", [["evaluate"], ["trace"], ["nir", "export"]])
def test_a_partly_trained_run_is_refused_unless_allow_partial(command, interrupted, tmp_path, capsys):
    run, _, _ = interrupted
    k = _epoch(run)
    out = ["-o", str(tmp_path / "m.nir")] if command[0] == "nir" else []
    work = tmp_path / "r"
    shutil.copytree(run, work)
    assert main([*command, str(work), *out]) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: run: {work}: the snn trained {k} of 4 epochs; "
        "run `spikecim run` again to finish, or pass --allow-partial"
    )
    assert main([*command, str(work), *out, "--allow-partial"]) == 0
    assert the_line(capsys.readouterr().err, f"warning: {work}").startswith(
        f"warning: {work}: the snn trained {k} of 4 epochs"
    )


def test_a_run_without_a_checkpoint_is_refused_even_with_allow_partial(interrupted, tmp_path, capsys):
    run, _, _ = interrupted
    work = tmp_path / "r"
    shutil.copytree(run, work)
    shutil.rmtree(work / "checkpoint")
    assert main(["evaluate", str(work), "--allow-partial"]) == 2
    assert "the snn trained 0 of 4 epochs (no checkpoint)" in the_line(capsys.readouterr().err)


def test_sigterm_during_a_fresh_run_puts_the_previous_run_back_unchanged(trained_run, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(trained_run, out / "r")
    before = {k: v for k, v in snapshot(out).items() if not k.endswith(".spikecim-lock")}
    proc = subprocess.Popen(
        _train_cmd(out, "--fresh"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # the previous run is set aside, and the new one has saved an epoch of its own
    while proc.poll() is None and not (list(out.glob(".r.previous-*")) and _epoch(out / "r") >= 1):
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be stopped")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode == 130
    assert the_line(err, "interrupted") == (
        f"interrupted before anything new was saved: the previous run in {out / 'r'} is restored"
    )
    assert {k: v for k, v in snapshot(out).items() if not k.endswith(".spikecim-lock")} == before


def test_a_folder_left_holding_only_the_lock_is_taken_as_a_new_run_folder(tmp_path, capsys):
    # what a run killed between creating its folder and marking it leaves
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".spikecim-lock").write_text("12345\n")
    assert main(run_args(tmp_path, "r", *TINY, "--stages", "train")) == 0
    assert (tmp_path / "r" / ".spikecim-run").is_file()  # spikecim's: --fresh may clear it
    assert main(run_args(tmp_path, "r", *TINY, "--stages", "train", "--fresh")) == 0


# A run whose last stage waits until it is killed: it holds the folder's lock meanwhile.
WAITING_RUN = """
import sys, time
from spikecim.cli.main import main
from spikecim.pipeline.stages import register_stage

def wait(ctx):
    while True:
        time.sleep(0.05)

register_stage("test_wait")(wait)
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_run_into_a_locked_folder_is_refused_and_a_killed_run_leaves_no_lock(tmp_path, capsys):
    args = run_args(tmp_path, "r", *TINY)
    run = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITING_RUN, *args, "--stages", "train,test_wait"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while proc.poll() is None and not (run / "metrics.json").exists():  # train done, now waiting
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read()
        before = snapshot(run)
        assert main([*args, "--stages", "train,evaluate"]) == 2
        assert the_line(capsys.readouterr().err) == (
            f"error: run: {run} is in use by another spikecim run (pid {proc.pid}); "
            "wait for it to finish or choose another --name"
        )
        assert snapshot(run) == before
        # trace rewrites the run's workloads: refused too (in a process that knows the stage)
        trace = subprocess.run(
            [sys.executable, "-c", WAITING_RUN, "trace", str(run)],
            check=False,
            env=_env(),
            capture_output=True,
            text=True,
        )
        assert trace.returncode == 2
        assert the_line(trace.stderr) == (
            f"error: trace: {run} is in use by another spikecim run (pid {proc.pid}); "
            "wait for it to finish and trace it then"
        )
        assert snapshot(run) == before
        assert proc.poll() is None  # the refused commands did not disturb the first run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert main([*args, "--stages", "train,evaluate"]) == 0
    history = json.loads((run / "checkpoint" / "snn.state.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1]  # resumed: the saved epoch, not trained again
    assert set(json.loads((run / "metrics.json").read_text())) == {"train", "evaluate", "timing_s"}


def test_the_same_analog_stage_in_two_processes_writes_identical_results(tmp_path):
    """torch seeds its global generator at random per process; the stage must not depend on it."""
    base = [
        sys.executable, "-m", "spikecim.cli.main", "run", "--set", f"output_dir={tmp_path}", "--name", "det",
        "--model", "mlp", "--epochs", "1", "--set", "data.limit=128", "--set", "analog.n_seeds=2",
        "--set", "analog.drift_times_s=[1.0]", "--set", "analog.adc_bits_sweep=[6]",
        "--set", "analog.hwa=false", "--set", "analog.bn_finetune=false",
    ]  # fmt: skip
    assert main([*base[3:], "--stages", "train"]) == 0  # trained here: the two analog runs are the processes
    results = []
    for _ in range(2):
        subprocess.run([*base, "--stages", "analog"], check=True, capture_output=True)
        results.append(json.loads((tmp_path / "det" / "metrics.json").read_text())["analog"]["variants"])
    assert results[0] == results[1]
