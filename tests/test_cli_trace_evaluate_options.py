"""``spikecim trace`` / ``evaluate`` options: what applies to a run folder, what to a .nir
file, and where ``--output`` may write. Refusals are exit code 2 with one line, and every file
that was there before is compared byte for byte."""

from pathlib import Path

import pytest

from conftest import SHARED_DATA
from spikecim.cli.main import main
from spikecim.trace import Workload
from test_reliability_run import TINY, run_args, snapshot, the_line

CNN = SHARED_DATA / "nir-paper" / "cnn_sinabs.nir"


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traced")
    assert main(run_args(out, "base", *TINY, "--stages", "train,evaluate,trace")) == 0
    return out / "base"


@pytest.mark.parametrize("name", ["config.yaml", "metrics.json"])
def test_trace_output_never_overwrites_a_file_that_is_not_a_workload(traced_run, name, capsys):
    before = snapshot(traced_run)
    assert main(["trace", str(traced_run), "-o", str(traced_run / name)]) == 2
    line = the_line(capsys.readouterr().err)
    assert "--output" in line and "not a workload JSON" in line
    assert snapshot(traced_run) == before


def test_trace_output_never_overwrites_a_users_file(traced_run, tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes\n")
    assert main(["trace", str(traced_run), "-o", str(mine)]) == 2
    assert "--output" in the_line(capsys.readouterr().err)
    assert mine.read_text() == "my notes\n"


def test_trace_output_replaces_an_earlier_workload_json(traced_run, tmp_path):
    out = tmp_path / "w.json"
    out.write_text("{}")  # not a workload: refused below
    assert main(["trace", str(traced_run), "-o", str(out)]) == 2
    out.unlink()
    assert main(["trace", str(traced_run), "-o", str(out)]) == 0
    assert main(["trace", str(traced_run), "-o", str(out)]) == 0  # its own file: replaced
    assert Workload.load(out).model == "mlp"


@pytest.mark.parametrize(
    "cmd,extra,flag",
    [
        ("evaluate", ["--dataset", "nope"], "--dataset"),
        ("evaluate", ["--root", "/nonexistent"], "--root"),
        ("evaluate", ["--limit", "5"], "--limit"),
        ("evaluate", ["--timesteps", "3"], "--timesteps"),
        ("trace", ["--input-rate", "5"], "--input-rate"),
        ("trace", ["--samples", "8"], "--samples"),
        ("trace", ["--dataset", "nope"], "--dataset"),
    ],
)
def test_options_for_a_nir_model_are_refused_for_a_run_folder(traced_run, cmd, extra, flag, capsys):
    assert main([cmd, str(traced_run), *extra]) == 2
    line = the_line(capsys.readouterr().err)
    assert f"{flag}: applies to a .nir model only" in line


def test_trace_refuses_an_unknown_variant_before_rewriting_the_workloads(traced_run, tmp_path, capsys):
    before = snapshot(traced_run)
    assert main(["trace", str(traced_run), "--variant", "nope", "-o", str(tmp_path / "w.json")]) == 2
    assert "--variant: unknown variant 'nope', allowed: snn" in the_line(capsys.readouterr().err)
    assert snapshot(traced_run) == before and not (tmp_path / "w.json").exists()


def test_trace_variant_without_output_is_refused_not_ignored(traced_run, capsys):
    assert main(["trace", str(traced_run), "--variant", "snn"]) == 2
    assert "--variant" in the_line(capsys.readouterr().err)


def test_evaluate_seeds_without_analog_is_refused_not_ignored(traced_run, capsys):
    assert main(["evaluate", str(traced_run), "--seeds", "3"]) == 2
    assert the_line(capsys.readouterr().err) == (
        "error: --seeds: applies to the crossbar evaluation; give --analog too"
    )


def test_evaluate_seeds_beyond_the_run_configs_limit_is_refused(traced_run, capsys):
    # the analog stage's n_seeds takes 1 to 1000: the option takes the same
    assert main(["evaluate", str(traced_run), "--analog", "ideal", "--seeds", "1001"]) == 2
    assert "1000" in the_line(capsys.readouterr().err)


def test_trace_of_a_nir_file_refuses_an_input_rate_beside_a_dataset(tmp_path, capsys):
    nir = tmp_path / CNN.name
    nir.write_bytes(CNN.read_bytes())
    assert main(["trace", str(nir), "--dataset", "digits", "--input-rate", "0.5"]) == 2
    assert "--input-rate: applies without --dataset" in the_line(capsys.readouterr().err)
    assert not nir.with_suffix(".workload.json").exists()


@pytest.mark.parametrize("cmd", ["evaluate", "trace"])
def test_timesteps_of_a_nir_model_beyond_a_runs_limit_are_refused_in_one_line(cmd, capsys):
    """data.timesteps of a run takes 1 to 10000; --timesteps of a .nir model took any number,
    and 10^11 steps ended in an allocation traceback."""
    extra = ["--dataset", "nmnist"] if cmd == "evaluate" else []
    assert main([cmd, str(CNN), *extra, "--timesteps", "100000000000"]) == 2
    err = capsys.readouterr().err
    assert "--timesteps" in err and "10000" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd", ["evaluate", "trace"])
def test_an_emptied_config_of_a_run_folder_is_refused_not_read_as_the_defaults(
    traced_run, tmp_path, cmd, capsys
):
    """spikecim writes a run's whole config; an empty config.yaml (a damaged copy) was read as
    the default config, and the command went on with another run's settings."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(traced_run, run)
    (run / "config.yaml").write_text("")
    assert main([cmd, str(run)]) == 2
    assert the_line(capsys.readouterr().err) == (
        f"error: run: {run / 'config.yaml'} is empty, where spikecim wrote the run's whole config; "
        "restore it from a copy"
    )


def test_a_path_error_names_the_option_that_gave_the_path(traced_run, tmp_path, capsys):
    """`-o bad/afile/w.json` with bad/afile a file said only "bad/afile: File exists"; the
    one line now names the option too, and --set names its field."""
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    assert main(["trace", str(traced_run), "-o", str(blocker / "w.json")]) == 2
    assert the_line(capsys.readouterr().err) == f"error: -o: {blocker}: File exists"
    assert main(["run", "--set", f"output_dir={blocker}", "--epochs", "1"]) == 2
    assert (
        the_line(capsys.readouterr().err)
        == f"error: --set output_dir: {blocker / 'digits-convnet'}: Not a directory"
    )
    assert blocker.read_text() == "mine"
