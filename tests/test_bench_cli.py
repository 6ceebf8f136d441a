"""``spikecim bench``: the Linear + LIF and the analog comparisons run end to end on a tiny size."""

from __future__ import annotations

import importlib.util
import json
import os
from decimal import Decimal

import pytest
import torch

from spikecim.cli.main import main
from spikecim.nn.kernels import spike_conv_cpu
from spikecim.nn.kernels.benchmark import LIBRARIES

COLUMNS = [
    "library",
    "B",
    "median ms",
    "min ms",
    "x floor",
    "x floor, per round",
    "spikecim speed-up",
    "peak MiB",
    "saved MiB",
]


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
    assert rows["linear-floor"].split("|")[6].strip() == "1.00–1.00"
    assert rows["spikecim"].split("|")[7].strip() == "1.00"


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
    # every round kept: the per-round range over the floor recomputed from them by hand
    for batch in (1, 3):
        ours, floor = (
            next(r for r in data["rows"] if r["library"] == lib and r["batch"] == batch)
            for lib in ("spikecim", "linear-floor")
        )
        ratios = [t / f for t, f in zip(ours["round_ms"], floor["round_ms"])]
        assert ours["floor_per_round"] == pytest.approx([min(ratios), max(ratios)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--timesteps", "0"], "--timesteps: must be from 1 to 10,000,000, got 0"),
        # beyond int64 a tensor size overflowed: "TypeError: rand(): ... Overflow when unpacking long long"
        (["bench", "--batch", "99999999999999999999999"], "--batch: must be from 1 to 10,000,000"),
        (["bench", "--library", "brian"], "--library: unknown 'brian'"),
        (["bench", "--quick", "--device", ""], "--device: empty, allowed: cpu, cuda, cuda:N"),
        (
            ["bench", "--quick", "--threads", str((os.cpu_count() or 1) + 1)],
            f"--threads: at most this machine's {os.cpu_count() or 1} logical CPUs",
        ),
        # petabytes for one input: beyond any address space, so the allocation fails even
        # where the kernel overcommits memory
        (
            [
                "bench",
                "--batch",
                "10000000",
                "--features",
                "10000000",
                "--timesteps",
                "10",
                "--library",
                "spikecim",
            ],
            "bench: the sizes asked for",
        ),
    ],
)
def test_bench_bad_option_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("suite", ["lif", "analog", "train"])
def test_bench_on_a_gpu_torch_does_not_see_is_a_one_line_error(suite, capsys):
    assert main(["bench", "--suite", suite, "--quick", "--device", "cuda"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: --device: 'cuda': torch sees no CUDA GPU on this machine; use cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_quick_on_the_gpu_names_the_card_and_times_every_library(capsys):
    assert main(["bench", "--quick", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert f"device: cuda:0 ({torch.cuda.get_device_name(0)})" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows and all(float(r.split("|")[3]) > 0 for r in rows)  # every median time


def test_a_peer_that_is_not_installed_is_skipped_with_a_note(monkeypatch):
    from spikecim.nn.kernels import benchmark

    monkeypatch.setitem(LIBRARIES, "absent-peer", ("spikecim_no_such_module", lambda f: None))
    report = benchmark.run_lif_benchmark(
        batches=(1,), timesteps=2, features=4, repeats=1, warmup=0, libraries=("spikecim", "absent-peer")
    )
    assert [r.library for r in report.rows] == ["spikecim"]
    assert report.notes == ["absent-peer: skipped, not installed (pip install 'spikecim[peers]')"]


# --- spikecim bench --suite analog -------------------------------------------------------

ANALOG_QUICK_MODELS = ["MLP 64-32-10, batch 8", "convnet SNN T=2 (digits), batch 4"]


def _table(out: str, header_start: str) -> list[list[str]]:
    """The cells of the Markdown table whose header starts with ``header_start``, header first."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if "---" not in line:
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _interval(printed: str) -> tuple[float, float]:
    """The values that print as ``printed`` (half a unit of its last digit either side)."""
    d = Decimal(printed.rstrip("×"))
    half = Decimal(1).scaleb(d.as_tuple().exponent) / 2
    return float(d - half), float(d + half)


def _speedup_matches_printed_times(speedup: str, aihwkit: str, spikecim: str) -> bool:
    a_lo, a_hi = _interval(aihwkit)
    s_lo, s_hi = _interval(spikecim)
    x_lo, x_hi = _interval(speedup)
    return a_lo / s_hi <= x_hi and a_hi / s_lo >= x_lo  # the two intervals overlap


def test_bench_analog_quick_prints_a_row_per_model_and_the_ir_drop_table(capsys):
    pytest.importorskip("aihwkit")
    assert main(["bench", "--suite", "analog", "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(", device: cpu")  # the default device, named in the header
    forward = _table(out, "| model | spikecim (s) | aihwkit 1.1, forward reusing")
    assert forward[0][3] == forward[0][5] == "speed-up"
    assert [r[0] for r in forward[1:]] == ANALOG_QUICK_MODELS
    for _, ours, reuse, speedup, fresh, speedup_fresh in forward[1:]:
        assert _speedup_matches_printed_times(speedup, reuse, ours)
        assert _speedup_matches_printed_times(speedup_fresh, fresh, ours)
    versus_digital = _table(out, "| model | digital forward (s) | noisy crossbar forward (s) | × digital")
    assert [r[0] for r in versus_digital[1:]] == ANALOG_QUICK_MODELS
    for (_, digital, noisy, ratio, spread, _), forward_row in zip(
        versus_digital[1:], forward[1:], strict=True
    ):
        assert noisy == forward_row[1]  # the same noisy forward as in the aihwkit table
        assert _speedup_matches_printed_times(ratio, noisy, digital)
        low, high = (float(v) for v in spread.rstrip("×").split("–"))
        assert 0 < low <= high  # the per-round range (its values: the JSON test)
    noise = _table(out, "| model | × digital | without output noise, × digital")
    assert noise[0][3] == "also without read (and write) noise, × digital"
    assert [r[0] for r in noise[1:]] == ANALOG_QUICK_MODELS
    for row, digital_row in zip(noise[1:], versus_digital[1:], strict=True):
        assert row[1] == digital_row[3]  # the noisy forward's ratio, as in the table above
        assert all(float(x.rstrip("×")) > 0 for x in row[2:])
    mlp_rate, snn_rate = (r[5] for r in versus_digital[1:])
    assert mlp_rate == "—"  # no layer of the MLP takes spikes
    assert 0 < float(snn_rate.rstrip("%")) <= 100
    monte_carlo = _table(out, "| model | spikecim (s) | aihwkit 1.1 torch tile (s)")
    assert [r[0] for r in monte_carlo[1:]] == ANALOG_QUICK_MODELS
    for _, ours, theirs, speedup in monte_carlo[1:]:
        assert _speedup_matches_printed_times(speedup, theirs, ours)
    ir_drop = _table(out, "| array | exact IR drop")
    assert [r[0] for r in ir_drop[1:]] == ["32x32", "32x32 (SuperLU, for comparison)"]
    assert float(ir_drop[1][3]) < float(ir_drop[1][4])  # the fast model beats ignoring IR drop
    assert "note: aihwkit" not in out


def test_the_analog_suite_switches_off_the_output_noise_then_the_read_and_write_noise_and_nothing_else():
    from spikecim.analog import load_crossbar_config
    from spikecim.analog.benchmark import VIT_CROSSBAR, parts_off

    pcm = load_crossbar_config("pcm-aihwkit")
    quiet = pcm.model_copy(update={"out_noise_std": 0.0})
    silent = quiet.model_copy(
        update={
            "device": pcm.device.model_copy(update={"read_noise_enabled": False}),
            "dynamic": pcm.dynamic.model_copy(update={"write_noise_gamma": 0.0}),
        }
    )
    assert pcm.out_noise_std > 0 and pcm.device.read_noise_enabled  # there is noise to switch off
    assert [c.model_dump() for c in parts_off("pcm-aihwkit")] == [quiet.model_dump(), silent.model_dump()]
    vit = load_crossbar_config(VIT_CROSSBAR)
    assert vit.dynamic.write_noise_gamma == 5.0 and vit.dynamic.clipformer.enabled
    _, vit_silent = parts_off(VIT_CROSSBAR)
    assert vit_silent.dynamic == vit.dynamic.model_copy(update={"write_noise_gamma": 0.0})  # ClipFormer kept
    assert vit_silent.dac == vit.dac and vit_silent.adc == vit.adc  # the converters stay on


def test_the_analog_suite_gives_batchnorm_the_statistics_of_the_benchmark_input():
    """Running mean and variance equal the batch mean and unbiased variance of what reaches
    each BatchNorm layer, computed here from the layer's captured input."""
    from spikecim.analog.benchmark import batchnorm_statistics

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 3, 3),
        torch.nn.BatchNorm2d(3),
    )
    x = 3 + 2 * torch.randn(6, 2, 9, 9)
    seen = []
    hooks = [
        bn.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
        for bn in (model[1], model[4])
    ]
    batchnorm_statistics(model, x)
    for h in hooks:
        h.remove()
    assert not model.training and model[1].momentum == model[4].momentum == 0.1
    for bn, v in zip((model[1], model[4]), seen, strict=True):
        flat = v.transpose(0, 1).reshape(v.shape[1], -1).double()
        assert torch.allclose(bn.running_mean.double(), flat.mean(1), rtol=1e-5, atol=1e-6)
        assert torch.allclose(bn.running_var.double(), flat.var(1, unbiased=True), rtol=1e-5, atol=1e-6)


def test_the_analog_suite_counts_the_spikes_of_binary_crossbar_inputs_only():
    """The rate is the ones of the layer inputs that hold only zeros and ones, over their
    entries: here the first layer's spikes (a hand-made count); the second layer's input,
    the first's analog output, is not spikes and is left out."""
    from spikecim.analog import load_crossbar_config, program, to_analog
    from spikecim.analog.benchmark import _input_spike_rate

    model = to_analog(
        torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Linear(5, 3)), load_crossbar_config("ideal")
    )
    program(model, 0)
    spikes = torch.zeros(4, 8)
    spikes[0, :3] = 1
    spikes[2, 5:] = 1  # 6 ones in 32 entries
    assert _input_spike_rate(model, spikes) == pytest.approx(6 / 32)
    assert _input_spike_rate(model, spikes + 0.5) is None  # no layer takes spikes


def test_bench_analog_json_speedups_are_the_ratios_of_the_times(capsys):
    pytest.importorskip("aihwkit")
    assert main(["bench", "--suite", "analog", "--quick", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["threads"] == 1 and data["repeats"] == 2
    assert [r["model"] for r in data["rows"]] == ANALOG_QUICK_MODELS
    for r in data["rows"]:
        assert r["speedup"] == pytest.approx(r["aihwkit_s"] / r["spikecim_s"])
        assert r["speedup_fresh_read"] == pytest.approx(r["aihwkit_fresh_read_s"] / r["spikecim_s"])
        assert r["mc_speedup"] == pytest.approx(r["mc_aihwkit_s"] / r["mc_spikecim_s"])
        assert r["times_digital"] == pytest.approx(r["spikecim_s"] / r["digital_s"])
        # every round kept: the medians and the per-round range recomputed from them by hand
        noisy, digital = r["noisy_round_s"], r["digital_round_s"]
        assert len(noisy) == len(digital) == 2
        assert r["spikecim_s"] == pytest.approx(sum(noisy) / 2) and r["digital_s"] == pytest.approx(
            sum(digital) / 2
        )
        ratios = [n / d for n, d in zip(noisy, digital)]
        assert r["times_digital_per_round"] == pytest.approx([min(ratios), max(ratios)])
        assert len(r["without_s"]) == 2  # output noise off; read noise off too
        assert r["times_digital_without"] == pytest.approx([t / r["digital_s"] for t in r["without_s"]])
    assert [r["vectors"] for r in data["ir_drop"]] == [100, 100]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_analog_on_the_gpu_times_spikecim_there_and_says_what_stays_on_the_cpu(capsys):
    """On a GPU the models and inputs run there (the crossbars programmed on the CPU, the tiles
    moved at the first read); aihwkit 1.1's CPU build and the scipy IR-drop solvers are not
    timed, and the notes say so."""
    assert main(["bench", "--suite", "analog", "--quick", "--device", "cuda", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"] == f"cuda:0 ({torch.cuda.get_device_name(0)})"
    assert [r["model"] for r in data["rows"]] == ANALOG_QUICK_MODELS
    for r in data["rows"]:
        assert r["spikecim_s"] > 0 and r["digital_s"] > 0 and r["mc_spikecim_s"] > 0
        assert r["times_digital"] == pytest.approx(r["spikecim_s"] / r["digital_s"])
        assert r["aihwkit_s"] is r["mc_aihwkit_s"] is None
    assert data["ir_drop"] == []
    assert [n.split(":")[0] for n in data["notes"]] == ["aihwkit", "IR drop"]


def test_bench_analog_without_aihwkit_times_spikecim_alone_with_a_note(monkeypatch):
    from spikecim.analog import benchmark

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aihwkit" else find_spec(name, *a)
    )
    report = benchmark.run_analog_benchmark(quick=True)
    assert [r.model for r in report.rows] == ANALOG_QUICK_MODELS
    assert all(r.spikecim_s > 0 and r.mc_spikecim_s > 0 for r in report.rows)
    assert all(r.aihwkit_s is r.speedup is r.mc_aihwkit_s is None for r in report.rows)
    out = benchmark.format_report(report)
    for row in _table(out, "| model | spikecim (s) | aihwkit 1.1, forward")[1:]:
        assert row[2:] == ["—"] * 4
    assert "note: aihwkit: not installed" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--suite", "analog", "--library", "spikecim"], "--library: only for --suite lif or train"),
        (["bench", "--suite", "analog", "--batch", "4"], "--batch: only for --suite lif or train"),
        (["bench", "--suite", "analog", "--timesteps", "5"], "--timesteps: only for --suite lif or train"),
        (["bench", "--suite", "analog", "--features", "8"], "--features: only for --suite lif"),
        (["bench", "--suite", "digital"], "--suite: unknown 'digital', allowed: lif, analog, train, hwa"),
        (["bench", "--suite", "hwa", "--device", "cpu"], "--device: only for --suite lif or analog or train"),
        (["bench", "--quick", "--device", "tpu"], "--device: unknown 'tpu', allowed: cpu, cuda, cuda:N"),
    ],
)
def test_bench_option_of_another_suite_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: {message}"]


@pytest.mark.skipif(not spike_conv_cpu.available(), reason="the spiking convolution kernel does not run here")
def test_an_unknown_spikecim_isa_stops_the_bench_with_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("SPIKECIM_ISA", "sse4")
    assert main(["bench", "--suite", "train", "--quick", "--library", "spikecim"]) == 2
    err = capsys.readouterr().err
    assert err == "error: SPIKECIM_ISA: 'sse4' is not an instruction set; allowed: avx2, avx512\n"
