"""Which files of a run folder are spikecim's is decided by the manifest in ``.spikecim-run``
(each file spikecim wrote, with its SHA-256), never by a file's name.

A user's file, or spikecim's changed since, is never cleared by ``--fresh`` nor replaced by
``report``, ``trace``, ``security`` or a resumed run: each refuses with exit code 2 and one
line naming the file, and every file that was there is compared byte for byte afterwards.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from spikecim.cli.main import main
from spikecim.train.checkpoint import save_checkpoint
from test_reliability_run import TINY, run_args, snapshot, the_line

STAGES = "train,evaluate,trace,hardware,report"
USER_BYTES = b"the user's own bytes\n"
OWN = (".spikecim-run", ".spikecim-lock")
# the reasons of a refusal, as the docs state them (docs/pipeline.md)
CHANGED = "changed since spikecim wrote it (hash differs)"
NOT_WRITTEN = "was not written by spikecim"


def files_in(run: Path) -> dict[str, bytes]:
    """Every plain file of ``run`` by its path relative to it, the marker and lock aside."""
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in OWN
    }


def recorded(run: Path) -> dict[str, tuple[str, int]]:
    """The manifest of ``run``: relative path -> (SHA-256, size)."""
    files = json.loads((run / ".spikecim-run").read_text())["files"]
    return {rel: (r["sha256"], r["size"]) for rel, r in files.items()}


def hashed(files: dict[str, bytes]) -> dict[str, tuple[str, int]]:
    return {rel: (hashlib.sha256(data).hexdigest(), len(data)) for rel, data in files.items()}


def fresh_args(run: Path) -> list[str]:
    return run_args(run.parent, run.name, *TINY, "--stages", "train", "--fresh")


def assert_refused(capsys, argv: list[str], run: Path, path: Path, why: str, command: str) -> None:
    """``argv`` exits 2 with the one line refusing to replace ``path`` for ``why``, and every
    file of ``run``'s parent folder is as it was."""
    before = snapshot(run.parent)
    assert main(argv) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: {command}: {path} {why}, so it is not replaced; move it away and run again"
    )
    assert snapshot(run.parent) == before


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """A run of the tiny MLP through train, evaluate, trace, hardware and report."""
    out = tmp_path_factory.mktemp("full")
    assert main(run_args(out, "base", *TINY, "--stages", STAGES)) == 0
    return out / "base"


@pytest.fixture
def run_dir(full_run, tmp_path) -> Path:
    run = tmp_path / "runs" / "base"
    shutil.copytree(full_run, run)
    return run


# --- what is recorded ------------------------------------------------------------------------


def test_every_file_a_run_writes_is_recorded_with_its_sha256_and_size(full_run):
    files = files_in(full_run)
    some = {"config.yaml", "metrics.json", "workload.json", "report.html", "report.md"}
    some |= {
        "plots/training.png",
        "plots/hw_layers.png",
        "hardware/snn_naive-45nm.json",
        "checkpoint/snn.state.json",
    }
    assert some <= set(files)
    assert recorded(full_run) == hashed(files)


def test_resuming_a_run_rewrites_its_files_and_keeps_the_manifest_matching_them(run_dir, capsys):
    assert main(run_args(run_dir.parent, "base", *TINY, "--stages", "evaluate,report")) == 0
    assert recorded(run_dir) == hashed(files_in(run_dir))
    assert main(fresh_args(run_dir)) == 0  # what the resumed run rewrote is still spikecim's


def test_a_checkpoint_save_records_its_files_drops_the_previous_epochs_and_keeps_a_users(tmp_path):
    from spikecim.pipeline import folder

    run = tmp_path / "r"
    run.mkdir()
    folder.mark(run)
    ckpt = run / "checkpoint"
    ckpt.mkdir()
    placed = ckpt / "snn.epoch1.0123456789ab.safetensors"  # named as a checkpoint, placed by hand
    placed.write_bytes(USER_BYTES)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = []
    for epoch in (1, 2):
        history.append(
            {"epoch": epoch, "loss": 1.0, "train_acc": 0.5, "test_acc": None, "lr": 0.1, "seconds": 0.0}
        )
        save_checkpoint(
            ckpt, "snn", model, opt, None, {"epoch": epoch, "history": history, "fingerprint": "f"}
        )
    state = json.loads((ckpt / "snn.state.json").read_text())
    written = {f"checkpoint/{state['files'][k]['name']}" for k in ("weights", "optimizer")}
    assert all(".epoch2." in name for name in written)
    assert set(files_in(run)) == written | {"checkpoint/snn.state.json", "checkpoint/" + placed.name}
    assert placed.read_bytes() == USER_BYTES
    assert recorded(run) == hashed(
        {rel: data for rel, data in files_in(run).items() if rel != "checkpoint/" + placed.name}
    )


# --- --fresh ----------------------------------------------------------------------------------


def test_fresh_clears_a_run_folder_spikecim_wrote_and_records_the_new_run(run_dir, capsys):
    assert main(fresh_args(run_dir)) == 0
    after = files_in(run_dir)
    assert {rel.split("/")[0] for rel in after} == {"config.yaml", "metrics.json", "checkpoint"}
    assert sorted(p.name for p in run_dir.iterdir()) == [
        *OWN[::-1],
        "checkpoint",
        "config.yaml",
        "metrics.json",
    ]
    assert list(run_dir.parent.iterdir()) == [run_dir]  # nothing left aside
    assert recorded(run_dir) == hashed(after)


def test_the_advice_for_a_damaged_checkpoint_leads_to_a_fresh_run(run_dir, capsys):
    """The error names the steps that work: --fresh alone keeps the damaged file (spikecim
    wrote other bytes there), and moved out first, --fresh starts the run over."""
    state = json.loads((run_dir / "checkpoint" / "snn.state.json").read_text())
    weights = run_dir / "checkpoint" / state["files"]["weights"]["name"]
    weights.write_bytes(weights.read_bytes()[:100])  # cut short
    resume = run_args(run_dir.parent, "base", *TINY, "--stages", "train,evaluate")
    assert main(resume) == 2
    line = the_line(capsys.readouterr().err)
    assert line.endswith(
        "start training again with --fresh (move out first any file changed since spikecim wrote it) "
        "or choose another --name"
    ), line
    assert main(fresh_args(run_dir)) == 2
    assert (
        f"holds checkpoint/{weights.name}, which changed since spikecim wrote it" in capsys.readouterr().err
    )
    weights.rename(run_dir.parent / weights.name)
    assert main(fresh_args(run_dir)) == 0
    assert recorded(run_dir) == hashed(files_in(run_dir))


def test_fresh_clears_the_temporary_file_a_stopped_write_of_a_recorded_file_left(run_dir, capsys):
    (run_dir / "plots" / "training.png.tmp").write_bytes(b"\x89PNG half")
    assert main(fresh_args(run_dir)) == 0
    assert not (run_dir / "plots").exists()


@pytest.mark.parametrize(
    "placed",
    [
        "plots/mine.png",
        "hardware/mine.json",
        "workload_mine.json",
        "checkpoint/snn.epoch1.0123456789ab.safetensors",
        "checkpoint/ann.safetensors",
    ],
)
def test_fresh_refuses_a_file_the_user_placed_under_a_name_spikecim_uses(placed, run_dir, capsys):
    (run_dir / placed).write_bytes(USER_BYTES)
    before = snapshot(run_dir.parent)
    assert main(fresh_args(run_dir)) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: --fresh: {run_dir} holds {placed}, which was not written by spikecim, so it is not cleared; "
        "move that out or choose another --name"
    )
    assert snapshot(run_dir.parent) == before


@pytest.mark.parametrize(
    "changed", ["plots/training.png", "workload.json", "report.md", "checkpoint/snn.state.json"]
)
def test_fresh_refuses_a_file_spikecim_wrote_that_the_user_changed_since(changed, run_dir, capsys):
    path = run_dir / changed
    path.write_bytes(path.read_bytes() + USER_BYTES)
    before = snapshot(run_dir.parent)
    assert main(fresh_args(run_dir)) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: --fresh: {run_dir} holds {changed}, which changed since spikecim wrote it (hash differs), "
        "so it is not cleared; move that out or choose another --name"
    )
    assert snapshot(run_dir.parent) == before


def test_fresh_refuses_a_folder_whose_marker_is_damaged(run_dir, capsys):
    marker = run_dir / ".spikecim-run"
    marker.write_text('{"spikecim": "0.1.0", "files": {"config.yaml": "no hash"}}')
    before = snapshot(run_dir.parent)
    assert main(fresh_args(run_dir)) == 2
    line = the_line(capsys.readouterr().err)
    assert line.startswith(f"error: run: {marker} is damaged") and "restore it" in line
    assert snapshot(run_dir.parent) == before


def test_a_folder_from_before_the_manifest_is_judged_by_name_then_recorded(run_dir, capsys):
    marker = run_dir / ".spikecim-run"
    marker.write_text(json.dumps({"spikecim": "0.1.0", "created": "2025-01-01T00:00:00+00:00"}) + "\n")
    notes = run_dir / "notes.txt"
    notes.write_bytes(USER_BYTES)
    before = snapshot(run_dir.parent)
    assert main(fresh_args(run_dir)) == 2  # a name spikecim never wrote: refused, as then
    assert "holds notes.txt" in the_line(capsys.readouterr().err)
    assert snapshot(run_dir.parent) == before
    notes.unlink()
    # resuming it records what the names of that time take for spikecim's, as they are now
    assert main(run_args(run_dir.parent, "base", *TINY, "--stages", "evaluate")) == 0
    assert recorded(run_dir) == hashed(files_in(run_dir))
    assert main(fresh_args(run_dir)) == 0
    assert recorded(run_dir) == hashed(files_in(run_dir))


# --- commands that replace files of a finished run --------------------------------------------


@pytest.mark.parametrize("changed", ["plots/training.png", "plots/workload_ops.png"])
def test_report_refuses_to_replace_a_users_plot_and_writes_nothing(changed, run_dir, capsys):
    path = run_dir / changed
    path.write_bytes(USER_BYTES)
    assert_refused(capsys, ["report", str(run_dir)], run_dir, path, CHANGED, "report")


def test_trace_refuses_to_replace_a_changed_workload_before_it_traces(run_dir, capsys):
    path = run_dir / "workload.json"
    path.write_bytes(path.read_bytes().replace(b'"samples"', b'"samples" ', 1))  # an edit
    assert_refused(capsys, ["trace", str(run_dir)], run_dir, path, CHANGED, "trace")


def test_a_resumed_run_refuses_to_replace_a_cost_report_the_user_changed(run_dir, capsys):
    path = run_dir / "hardware" / "snn_naive-45nm.json"
    path.write_bytes(USER_BYTES)
    assert main(run_args(run_dir.parent, "base", *TINY, "--stages", "hardware")) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: {path} changed since spikecim wrote it (hash differs), so it is not replaced; move it away and run again"
    )
    assert path.read_bytes() == USER_BYTES


def test_security_refuses_to_replace_a_users_results_json_before_it_runs(run_dir, capsys):
    path = run_dir / "security" / "results.json"
    path.parent.mkdir()
    path.write_bytes(USER_BYTES)
    assert_refused(capsys, ["security", str(run_dir), "--quick"], run_dir, path, NOT_WRITTEN, "security")


def test_security_refuses_a_changed_report_page_before_it_runs(run_dir, capsys):
    path = run_dir / "report.html"
    path.write_bytes(USER_BYTES)
    # no security/ folder after it: the analysis did not start
    assert_refused(capsys, ["security", str(run_dir), "--quick"], run_dir, path, CHANGED, "security")


def test_security_records_what_it_writes_so_fresh_clears_it(run_dir, capsys):
    assert main(["security", str(run_dir), "--quick"]) == 0
    files = files_in(run_dir)
    assert {"security/results.json", "security/traces_snn.npz", "plots/security_grid.png"} <= set(files)
    assert recorded(run_dir) == hashed(files)
    assert main(fresh_args(run_dir)) == 0
    assert not (run_dir / "security").exists()


# --- config.yaml changed since spikecim wrote it ----------------------------------------------


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        (["evaluate"], "run"),
        (["trace"], "run"),
        (["security", "--quick"], "run"),
        (["report"], "report"),
        (["run", "--stages", "evaluate"], "run"),
    ],
)
def test_a_truncated_config_is_refused_by_the_commands_that_read_it(command, prefix, run_dir, capsys):
    config = run_dir / "config.yaml"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(lines[: len(lines) // 2]))  # cut short at a line: still YAML
    before = snapshot(run_dir.parent)
    if command[0] == "run":
        argv = run_args(run_dir.parent, "base", *TINY, *command[1:])
    else:
        argv = [command[0], str(run_dir), *command[1:]]
    assert main(argv) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: {prefix}: {config} changed since spikecim wrote it (hash differs), so it may not describe "
        "the run's results; restore it, or move it out and start the run over with --fresh"
    )
    assert snapshot(run_dir.parent) == before
    assert main(fresh_args(run_dir)) == 2  # --fresh does not clear it either
    assert "holds config.yaml, which changed since spikecim wrote it" in the_line(capsys.readouterr().err)
