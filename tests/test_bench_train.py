"""``spikecim bench --suite train``: the whole-network training step against SpikingJelly and
snnTorch, end to end on a tiny size, and the peer networks computing what spikecim's does."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spikecim import memory
from spikecim import nn as snn
from spikecim.cli.main import main
from spikecim.train import benchmark

COLUMNS = ["model", "library", "B", "median ms", "min ms", "spikecim speed-up", "per round", "peak MiB"]


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | library"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if "---" not in line:
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_bench_train_quick_prints_every_column_and_a_row_per_model_and_library(capsys):
    pytest.importorskip("spikingjelly")
    pytest.importorskip("snntorch")
    assert main(["bench", "--suite", "train", "--quick"]) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert rows[0] == COLUMNS
    expected = [(m, lib) for m in ("vgg9", "resnet19") for lib in ("spikecim", "spikingjelly", "snntorch")]
    assert [(r[0], r[1]) for r in rows[1:]] == expected
    medians = {(r[0], r[1]): float(r[3]) for r in rows[1:]}
    for model, library, batch, median, low, speedup, spread, peak in rows[1:]:
        assert batch == "2" and float(median) >= float(low) > 0 and float(peak) > 0
        ratio = medians[(model, library)] / medians[(model, "spikecim")]
        # printed to 0.1 ms and 0.01: the ratio of the printed medians agrees to rounding
        assert float(speedup) == pytest.approx(ratio, rel=0.1, abs=0.02)
    assert all(r[5] == "1.00" and r[6] == "1.00–1.00" for r in rows[1:] if r[1] == "spikecim")
    # each block's line on stderr, written when it was timed, gives the table's medians
    lines = [line for line in captured.err.splitlines() if " B=2: " in line]
    assert [line.split(" B=")[0] for line in lines] == ["vgg9", "resnet19"]
    for line in lines:
        model = line.split(" B=")[0]
        for library in ("spikecim", "spikingjelly", "snntorch"):
            assert f"{library} {medians[(model, library)]:.1f} ms" in line


TINY = {"timesteps": 2, "input_size": 8, "width": 1 / 16, "repeats": 1, "libraries": ("spikecim",)}


@pytest.mark.skipif(memory.resident_bytes() is None, reason="resident memory is read from Linux's /proc")
def test_a_block_that_would_need_more_memory_than_the_budget_is_not_run_and_is_noted():
    blocks = []
    report = benchmark.run_train_benchmark(
        models=("vgg9",), batches=(1, 2), memory_budget=0, on_rows=blocks.append, **TINY
    )
    # the first block runs (nothing to scale from, and no probe below batch 4); the second's
    # need, 2/1 of the first's growth, is at least the budget of 0 bytes
    assert [(r.model, r.batch) for r in report.rows] == [("vgg9", 1)]
    assert [[(r.model, r.batch) for r in rows] for rows in blocks] == [[("vgg9", 1)]]
    assert len(report.notes) == 1 and report.notes[0].startswith("vgg9 B=2: not run")


def test_the_probe_estimate_scales_the_probes_growth_by_batch_with_the_margin():
    # 1000 bytes at B = 4, asked for B = 64: 16 times as much, times the margin
    assert benchmark.PROBE_BATCH == 4
    assert benchmark._probe_estimate(1000, 64) == benchmark.PROBE_MARGIN * 16_000


@pytest.mark.skipif(memory.resident_bytes() is None, reason="resident memory is read from Linux's /proc")
def test_a_models_first_block_above_the_probe_batches_is_estimated_and_not_run_over_budget():
    blocks = []
    batch = benchmark.PROBE_BATCH + 4
    report = benchmark.run_train_benchmark(
        models=("vgg9",), batches=(batch,), memory_budget=0, on_rows=blocks.append, **TINY
    )
    assert report.rows == [] and blocks == []
    (note,) = report.notes
    assert note.startswith(f"vgg9 B={batch}: not run") and f"took at B={benchmark.PROBE_BATCH}" in note
    report = benchmark.run_train_benchmark(models=("vgg9",), batches=(batch,), memory_budget=1 << 50, **TINY)
    assert [(r.model, r.batch) for r in report.rows] == [("vgg9", batch)] and not report.notes


def test_every_block_within_the_budget_runs_and_reaches_the_caller_when_timed():
    blocks = []
    report = benchmark.run_train_benchmark(
        models=("vgg9", "resnet19"), batches=(1, 2), memory_budget=1 << 50, on_rows=blocks.append, **TINY
    )
    expected = [(m, b) for m in ("vgg9", "resnet19") for b in (1, 2)]
    assert [(r.model, r.batch) for r in report.rows] == expected and not report.notes
    assert [[(r.model, r.batch) for r in rows] for rows in blocks] == [[block] for block in expected]


def test_bench_train_json_keeps_the_models_libraries_and_batches_asked_for(capsys):
    argv = ["bench", "--suite", "train", "--quick", "--batch", "1", "--batch", "3", "--library", "spikecim"]
    assert main([*argv, "--timesteps", "3", "--model", "resnet19", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["timesteps"] == 3
    assert [(r["model"], r["library"], r["batch"]) for r in data["rows"]] == [
        ("resnet19", "spikecim", b) for b in (1, 3)
    ]


def test_every_round_s_step_is_kept_and_the_per_round_ratios_are_those_of_the_same_round():
    pytest.importorskip("snntorch")
    tiny = {**TINY, "repeats": 5, "libraries": ("spikecim", "snntorch")}
    report = benchmark.run_train_benchmark(models=("vgg9",), batches=(1,), **tiny)
    ours, theirs = report.rows
    assert len(ours.round_ms) == len(theirs.round_ms) == 5
    for row in (ours, theirs):
        assert row.median_ms == sorted(row.round_ms)[2] and row.min_ms == min(row.round_ms)
    ratios = [t / o for t, o in zip(theirs.round_ms, ours.round_ms)]
    assert theirs.round_speedups == pytest.approx((min(ratios), max(ratios)))
    assert ours.round_speedups == (1.0, 1.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["bench", "--suite", "train", "--library", "norse"],
            "--library: unknown 'norse', allowed: spikecim",
        ),
        (["bench", "--suite", "train", "--features", "8"], "--features: only for --suite lif"),
        (["bench", "--suite", "train", "--batch", "0"], "--batch: must be from 1 to 10,000,000, got 0"),
    ],
)
def test_bench_train_bad_option_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize("name", ["vgg9", "resnet19"])
def test_the_spikingjelly_network_computes_spikecims_logits_and_gradients(name):
    """The same weights in SpikingJelly's multi-step layers and LIFNode(tau=10, decay_input=False,
    v_reset=None, ATan): the same LIF, so the same logits and weight gradients."""
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    ours = benchmark.spikecim_model(name, 1 / 16, 8)
    theirs = benchmark.spikingjelly_model(ours)
    x = torch.rand(3, 4, 3, 8, 8) * 2
    functional.reset_net(theirs)
    a, b = ours(x), theirs(x)
    assert a.abs().sum() > 0
    torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    ours_w = [p for p in ours.parameters() if p.dim() > 1]
    theirs_w = [p for p in theirs.parameters() if p.dim() > 1]
    assert len(ours_w) == len(theirs_w)
    for p, q in zip(ours_w, theirs_w, strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4)


def test_the_snntorch_network_steps_snntorch_leaky_in_place_of_every_lif():
    """With inputs below 0.9 every membrane is below threshold after a reset (0.9 * 1 + 0.9 - 1 < 1),
    where snnTorch's same-step reset and spikecim's agree: the replaced network gives the same spikes."""
    pytest.importorskip("snntorch")
    from spikecim.nn import LIF, Sequential

    torch.manual_seed(0)
    ours = Sequential(torch.nn.Identity(), LIF(beta=0.9, reset_delay=False))
    theirs = benchmark.snntorch_model(ours)
    assert not any(isinstance(m, LIF) for m in theirs.modules())
    x = torch.rand(8, 5, 64) * 0.9
    torch.testing.assert_close(theirs(x), ours(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_train_quick_on_the_gpu_names_the_card_and_times_every_library(capsys):
    assert main(["bench", "--suite", "train", "--quick", "--model", "vgg9", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert f"device: cuda:0 ({torch.cuda.get_device_name(0)})" in out
    rows = _rows(out)[1:]
    assert rows and all(float(r[3]) > 0 and float(r[6]) > 0 for r in rows)  # median time, peak


@pytest.mark.parametrize("library", ["spikecim", "spikingjelly", "snntorch"])
def test_every_library_s_network_moves_whole_to_the_benchmark_device(library):
    # torch's "meta" device stands in for a GPU: every parameter and buffer must follow
    # the network there, and a training step on meta tensors refuses any tensor left on the
    # CPU (snnTorch's neuron reads a value with .item(), which meta tensors cannot give, so
    # its step is not run here)
    if library != "spikecim":
        pytest.importorskip(library)
    meta = torch.device("meta")
    net, before = benchmark._on(meta, *benchmark._build(library, benchmark.spikecim_model("vgg9", 1 / 16, 8)))
    assert {t.device for t in (*net.parameters(), *net.buffers())} == {meta}
    if library != "snntorch":
        x, y = torch.rand(2, 2, 3, 8, 8, device=meta), torch.randint(0, 10, (2,), device=meta)
        benchmark._step_fn(net, before, x, y)()
        assert all(p.grad is not None and p.grad.device == meta for p in net.parameters())


@pytest.mark.parametrize(
    ("model", "ours", "theirs"),
    [
        ("vgg9", snn.Conv2d, nn.Conv2d),
        ("resnet19", snn.Conv2d, nn.Conv2d),
        ("vgg9", snn.Linear, nn.Linear),
        ("vgg9", snn.AvgPool2d, nn.AvgPool2d),
        ("resnet19", snn.BatchNorm2d, nn.BatchNorm2d),
    ],
)
def test_the_peers_are_timed_on_torchs_layers_where_spikecims_model_has_its_own(model, ours, theirs):
    """No peer runs a spikecim kernel: their copies hold torch's layer where the model holds
    spikecim's (spikecim.nn.twins)."""
    pytest.importorskip("spikingjelly")
    pytest.importorskip("snntorch")
    net = benchmark.spikecim_model(model, 0.25, 32)
    assert any(type(m) is ours for m in net.modules())
    for peer in (benchmark.snntorch_model(net), benchmark.spikingjelly_model(net)):
        layers = [m for m in peer.modules() if isinstance(m, theirs)]
        assert layers and all(type(m) is theirs for m in layers)


def test_a_run_whose_libraries_are_all_missing_gives_notes_and_no_rows(monkeypatch):
    monkeypatch.setitem(benchmark.TRAIN_LIBRARIES, "snntorch", "a_module_that_is_not_installed")
    blocks = []
    tiny = {**TINY, "libraries": ("snntorch",)}
    report = benchmark.run_train_benchmark(models=("vgg9",), batches=(1,), on_rows=blocks.append, **tiny)
    assert report.rows == [] and blocks == []
    assert report.notes == ["snntorch: skipped, not installed (pip install 'spikecim[peers]')"]
