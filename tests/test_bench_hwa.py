"""``spikecim bench --suite hwa``: the hardware-aware training step and the analog conversion
against aihwkit-lightning and aihwkit, end to end on a tiny size, and the peers running the
same network."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spikecim.analog import hwa_benchmark
from spikecim.cli.main import main

STEP_COLUMNS = ["model", "library", "median ms", "min ms", "spikecim speed-up", "per round"]
QUICK_MODELS = ["MLP 64-32-10, batch 8", "convnet SNN width 0.25, T=2, batch 4"]


def _table(out: str, header_start: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if "---" not in line:
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_bench_hwa_quick_prints_every_column_of_both_tables(capsys):
    pytest.importorskip("aihwkit_lightning")
    pytest.importorskip("aihwkit")
    assert main(["bench", "--suite", "hwa", "--quick"]) == 0
    out = capsys.readouterr().out
    steps = _table(out, "| model | library")
    assert steps[0] == STEP_COLUMNS
    libraries = ["spikecim", "aihwkit-lightning", "aihwkit"]
    assert [(r[0], r[1]) for r in steps[1:]] == [(m, lib) for m in QUICK_MODELS for lib in libraries]
    medians = {(r[0], r[1]): float(r[2]) for r in steps[1:]}
    for model, library, median, low, speedup, spread in steps[1:]:
        assert float(median) >= float(low) > 0
        ratio = medians[(model, library)] / medians[(model, "spikecim")]
        assert float(speedup) == pytest.approx(ratio, rel=0.02, abs=0.01)  # printed to 0.01
        least, most = (float(v) for v in spread.split("–"))
        assert 0 < least <= most and (library != "spikecim" or least == most == 1.0)
    conversion = _table(out, "| model | spikecim to_analog")
    assert len(conversion[0]) == 6
    assert [r[0] for r in conversion[1:]] == QUICK_MODELS
    for _, ours, lightning, x_lightning, aihwkit, x_aihwkit in conversion[1:]:
        assert float(x_lightning) == pytest.approx(float(lightning) / float(ours), rel=0.02, abs=0.01)
        assert float(x_aihwkit) == pytest.approx(float(aihwkit) / float(ours), rel=0.02, abs=0.01)
    assert "note:" not in out


def test_bench_hwa_json_has_a_row_per_model_and_library(capsys):
    pytest.importorskip("aihwkit_lightning")
    pytest.importorskip("aihwkit")
    assert main(["bench", "--suite", "hwa", "--quick", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["threads"] == 1 and data["noise_std"] == hwa_benchmark.NOISE_STD
    assert data["settings"] == hwa_benchmark.SETTINGS
    assert len(data["rows"]) == 6 and len(data["conversion"]) == 2
    # every round kept: the median and the per-round range recomputed from them by hand
    for model in {r["model"] for r in data["rows"]}:
        ours = next(r for r in data["rows"] if r["model"] == model and r["library"] == "spikecim")
        for r in (r for r in data["rows"] if r["model"] == model):
            rounds = sorted(r["round_ms"])  # the median by hand: the middle one, or the middle two's mean
            middle = (
                rounds[len(rounds) // 2 - 1 : len(rounds) // 2 + 1]
                if len(rounds) % 2 == 0
                else rounds[len(rounds) // 2 :][:1]
            )
            assert r["median_ms"] == pytest.approx(sum(middle) / len(middle))
            ratios = [t / o for t, o in zip(r["round_ms"], ours["round_ms"])]
            assert r["round_speedups"] == pytest.approx([min(ratios), max(ratios)])


@pytest.mark.parametrize("option", [["--batch", "4"], ["--library", "aihwkit"], ["--timesteps", "2"]])
def test_bench_hwa_refuses_options_of_other_suites(option, capsys):
    assert main(["bench", "--suite", "hwa", *option]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "only for --suite lif" in lines[0]


def test_the_peers_run_the_same_network_and_converters_as_spikecim_with_the_noise_off():
    """In evaluation the weight modifier is off: the converted networks compute spikecim's
    hardware-aware forward with the benchmark's DAC, ADC, bound, input range and tiles."""
    pytest.importorskip("aihwkit_lightning")
    pytest.importorskip("aihwkit")
    import copy

    from spikecim.analog.hwa import hwa_layers
    from spikecim.models import create_model

    torch.manual_seed(0)
    model = create_model("convnet", spiking=False, width=0.25).eval()
    x = torch.rand(1, 4, 1, 8, 8)
    with torch.no_grad():
        expected = hwa_layers(copy.deepcopy(model), hwa_benchmark._converters()).eval()(x)
        assert (expected - model(x)).abs().max() > 1e-3  # the converters change the output
        for peer in (hwa_benchmark._lightning(model), hwa_benchmark._aihwkit(model)):
            torch.testing.assert_close(peer.eval()(x), expected, atol=1e-5, rtol=1e-4)


def test_the_conversion_timed_for_aihwkit_puts_every_layer_on_its_tiles():
    """The built-in models hold spikecim's Linear and Conv2d, which aihwkit does not know: its
    copy gets torch's layers first, so every product becomes one of aihwkit's analog layers
    (else aihwkit converts and programs nothing, and its conversion time means nothing)."""
    pytest.importorskip("aihwkit")
    from spikecim.models import create_model

    model = create_model("convnet", spiking=False, width=0.25).eval()
    products = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    analog = hwa_benchmark._aihwkit_programmed(model)
    kinds = [type(m).__name__ for m in analog.modules()]
    assert len(products) == 4 and kinds.count("AnalogConv2d") == 2 and kinds.count("AnalogLinear") == 2
    assert not [
        m
        for m in analog.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and "Analog" not in type(m).__name__
    ]


def test_bench_hwa_json_is_all_that_reaches_stdout_in_a_fresh_process():
    """aihwkit-lightning's layers print a line on their first import without Triton; in a
    process that had not imported them, --json's stdout must still be one JSON document."""
    pytest.importorskip("aihwkit_lightning")
    import subprocess
    import sys

    argv = [sys.executable, "-m", "spikecim", "bench", "--suite", "hwa", "--quick", "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["repeats"] == 2
