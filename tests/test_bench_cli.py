"""``spikecim bench``: the Linear + LIF comparison runs end to end on a tiny size."""

from __future__ import annotations

import json

import pytest

from spikecim.cli.main import main
from spikecim.nn.kernels.benchmark import LIBRARIES

COLUMNS = ["library", "B", "median ms", "min ms", "x floor", "spikecim speed-up", "peak MiB", "saved MiB"]


def test_bench_quick_prints_every_column_and_a_row_or_note_per_library(capsys):
    assert main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| library"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    rows = {
        line.split("|")[1].strip(): line
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    for name in LIBRARIES:
        assert name in rows or f"note: {name}: skipped, not installed" in out
    assert {"spikecim", "linear-floor"} <= set(rows)
    for name, line in rows.items():
        if name == "library":
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS)
        assert float(cells[2]) > 0  # a median time
    # the floor's own ratio is 1 by definition, spikecim's speed-up over itself too
    assert rows["linear-floor"].split("|")[5].strip() == "1.00"
    assert rows["spikecim"].split("|")[6].strip() == "1.00"


def test_bench_json_has_one_row_per_library_and_batch(capsys):
    assert (
        main(
            [
                "bench",
                "--quick",
                "--batch",
                "1",
                "--batch",
                "3",
                "--library",
                "spikecim",
                "--library",
                "linear-floor",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert {(r["library"], r["batch"]) for r in data["rows"]} == {
        (lib, b) for lib in ("spikecim", "linear-floor") for b in (1, 3)
    }
    assert all(r["saved_mib"] >= 0 for r in data["rows"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--timesteps", "0"], "--timesteps: must be >= 1"),
        (["bench", "--library", "brian"], "--library: unknown 'brian'"),
    ],
)
def test_bench_bad_option_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_peer_that_is_not_installed_is_skipped_with_a_note(monkeypatch):
    from spikecim.nn.kernels import benchmark

    monkeypatch.setitem(LIBRARIES, "absent-peer", ("spikecim_no_such_module", lambda f: None))
    report = benchmark.run_lif_benchmark(
        batches=(1,), timesteps=2, features=4, repeats=1, warmup=0, libraries=("spikecim", "absent-peer")
    )
    assert [r.library for r in report.rows] == ["spikecim"]
    assert report.notes == ["absent-peer: skipped, not installed (pip install 'spikecim[peers]')"]
