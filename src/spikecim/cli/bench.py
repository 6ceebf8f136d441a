"""``spikecim bench``: speed against the peer libraries (see benchmarks/).

    spikecim bench                      Linear(512->512) + LIF, T = 100, B = 16 and 64
    spikecim bench --quick              a tiny size, to check the set-up in seconds
    spikecim bench --batch 32 --timesteps 50 --repeats 9 --json
    spikecim bench --suite analog       noisy analog inference against aihwkit, and IR drop
    spikecim bench --suite analog --quick
    spikecim bench --suite train        VGG-9 and ResNet-19 training steps against SpikingJelly, snnTorch
    spikecim bench --suite train --batch 16 --library spikecim --library spikingjelly
    spikecim bench --suite train --model vgg9 --batch 16 --repeats 3
    spikecim bench --suite hwa          hardware-aware training step (DAC, ADC, clipping) against aihwkit-lightning, aihwkit
    spikecim bench --device cuda        the layer on a GPU (--suite lif, analog or train)

A thin shell over :func:`spikecim.nn.kernels.benchmark.run_lif_benchmark` (``--suite lif``),
:func:`spikecim.analog.benchmark.run_analog_benchmark` (``--suite analog``),
:func:`spikecim.train.benchmark.run_train_benchmark` (``--suite train``) and
:func:`spikecim.analog.hwa_benchmark.run_hwa_benchmark` (``--suite hwa``).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from spikecim.errors import SpikecimError, allocation_failed

SUITES = ("lif", "analog", "train", "hwa")
MAX_SIZE = 10_000_000  # timesteps, batch, features, repeats, threads: beyond, a tensor's size overflows
QUICK = {"batches": (2,), "timesteps": 5, "features": 16, "repeats": 2, "warmup": 1}
LIF_DEFAULTS = {"batches": (16, 64), "timesteps": 100, "features": 512, "repeats": 7}
ANALOG_DEFAULTS = {"repeats": 5, "threads": 1}  # 1 thread: stable timings on a shared machine
TRAIN_QUICK = {"batches": (2,), "timesteps": 2, "input_size": 8, "width": 1 / 16, "repeats": 2, "warmup": 1}
TRAIN_DEFAULTS = {"batches": (16, 64), "timesteps": 4, "repeats": 5}
# the options each suite takes beyond --quick, --repeats, --threads, --json
SUITE_OPTIONS = {
    "lif": ("batch", "timesteps", "features", "library", "device"),
    "analog": ("device",),
    "train": ("batch", "timesteps", "library", "model", "device"),
    "hwa": (),
}
HWA_DEFAULTS = {"repeats": 5, "threads": 1}


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)


def bench_cmd(
    suite: Annotated[
        str,
        typer.Option(
            "--suite",
            help="lif: Linear + LIF against snnTorch, SpikingJelly, Norse; "
            "analog: noisy crossbar inference against aihwkit and against the digital forward "
            "(with vit-tiny, K/V written into crossbars), with the output noise and then the read "
            "noise switched off (what the draws cost), and IR drop; "
            "train: VGG-9 and ResNet-19 training steps (T=4, 3x32x32) against SpikingJelly, snnTorch; "
            "hwa: hardware-aware training step (weight noise, 8-bit DAC and ADC, output bound, learned input "
            "range, 256-input tiles, weight clipping) and analog conversion against aihwkit-lightning, aihwkit",
        ),
    ] = "lif",
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            metavar="",
            help="a tiny size in 2 rounds, overriding --repeats (lif: T=5, B=2, 16 features, "
            "overriding --timesteps, --features; analog: a tiny MLP and convnet, a 32x32 array; "
            "train: width 1/16, 8x8 input, T=2, B=2; hwa: a tiny MLP and convnet)",
        ),
    ] = False,
    batch: Annotated[
        list[int] | None,
        typer.Option(
            "--batch",
            "-b",
            help="lif, train: batch size, 1 to 10,000,000; repeat for several (default: 16 and 64)",
        ),
    ] = None,
    timesteps: Annotated[
        int | None,
        typer.Option(
            "--timesteps",
            "-t",
            help="lif, train: sequence length T, 1 to 10,000,000 (default: lif 100, train 4)",
        ),
    ] = None,
    features: Annotated[
        int | None,
        typer.Option("--features", help="lif only: Linear width F (F -> F), 1 to 10,000,000 (default: 512)"),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(
            "--repeats",
            "-r",
            help="timed rounds, 1 to 10,000,000; the median is reported (default: lif 7, analog 5, train 5, hwa 5)",
        ),
    ] = None,
    library: Annotated[
        list[str] | None,
        typer.Option(
            "--library",
            "-l",
            help="lif, train: only this library (lif: spikecim, snntorch, spikingjelly, norse, linear-floor; "
            "train: spikecim, spikingjelly, snntorch); repeatable",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="torch threads, 1 to 10,000,000 (default: lif and train torch's, analog and hwa 1)",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="train only: only this network (vgg9, resnet19); repeatable"),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="lif, analog, train: where every library runs, cpu or cuda[:N] (a GPU torch sees; "
            "default: cpu); on a GPU each timed run waits for it before the clock is read; analog: aihwkit and "
            "the IR-drop solvers stay on the CPU, timed with --device cpu",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print the results as JSON")] = False,
) -> None:
    """Time spikecim against peer libraries, with the ratios side by side.

    Suites: Linear + LIF forward+backward against snnTorch, SpikingJelly, Norse and the Linear
    floor (--suite lif); noisy analog inference against aihwkit plus the IR-drop solvers
    (--suite analog); a whole-network SNN training step against SpikingJelly and snnTorch
    (--suite train); a hardware-aware training step and the analog conversion against
    aihwkit-lightning and aihwkit (--suite hwa). Every suite runs its libraries in one process,
    once each per round, each round starting one library further on; the median of the
    rounds is reported, with the least and the most of each ratio over the rounds.

    --suite train writes a line to stderr as each model and batch is timed, and its table at
    the end. Its steps interleaved in one process need several times their peak allocation
    in resident memory (about 21 GiB for ResNet-19 at batch 64 with all three libraries): a
    batch whose need, scaled from the model's batch before it (a model's first batch above
    4: from one step of each library at batch 4, times 1.5), exceeds the available memory is
    not run, with a note; fewer libraries (--library) or batches (--batch) need less.

    SPIKECIM_ISA=avx2 in the environment runs spikecim's convolution kernels on their AVX2
    loops on a CPU with AVX-512, to time what a CPU without AVX-512 runs (docs/speed.md).
    SPIKECIM_WINOGRAD=torch times the training step with torch's direct convolutions in place
    of Winograd's algorithm for the gradients of 3x3 convolutions (docs/speed.md)."""
    if suite not in SUITES:
        raise SpikecimError(f"--suite: unknown '{suite}', allowed: {', '.join(SUITES)}")
    checks = [("timesteps", timesteps), ("features", features), ("repeats", repeats), ("threads", threads)]
    for name, value in [*checks, *(("batch", b) for b in batch or ())]:
        if value is not None and not 1 <= value <= MAX_SIZE:
            raise SpikecimError(f"--{name}: must be from 1 to {MAX_SIZE:,}, got {value}")
    if device is not None and not device.strip():  # not the default: an empty value is a mistake
        raise SpikecimError("--device: empty, allowed: cpu, cuda, cuda:N")
    cpus = os.cpu_count() or 1
    if threads is not None and threads > cpus:
        raise SpikecimError(f"--threads: at most this machine's {cpus} logical CPUs, got {threads}")
    given = {
        "batch": batch,
        "timesteps": timesteps,
        "features": features,
        "library": library,
        "model": model,
        "device": device,
    }
    for name, value in given.items():
        if value is not None and name not in SUITE_OPTIONS[suite]:
            takes = [s for s in SUITES if name in SUITE_OPTIONS[s]]
            raise SpikecimError(f"--{name}: only for --suite {' or '.join(takes)}")
    try:
        _run_suite(
            suite, quick, batch, timesteps, features, repeats, library, model, threads, device, as_json
        )
    except (MemoryError, RuntimeError) as e:
        size = allocation_failed(e)
        if size is None:
            raise
        raise SpikecimError(
            f"bench: the sizes asked for need more memory than is available{size}; lower --batch, --features "
            "or --timesteps"
        ) from None


def _run_suite(
    suite, quick, batch, timesteps, features, repeats, library, model, threads, device, as_json
) -> None:
    if suite == "analog":
        _analog(quick, repeats, threads, device, as_json)
    elif suite == "train":
        _train(quick, batch, timesteps, repeats, library, model, threads, device, as_json)
    elif suite == "hwa":
        from spikecim.analog.hwa_benchmark import format_report, run_hwa_benchmark

        report = run_hwa_benchmark(
            repeats=HWA_DEFAULTS["repeats"] if repeats is None else repeats,
            threads=HWA_DEFAULTS["threads"] if threads is None else threads,
            quick=quick,
        )
        print(report.to_json() if as_json else format_report(report))
    else:
        _lif(quick, batch, timesteps, features, repeats, library, threads, device, as_json)


def _analog(quick: bool, repeats: int | None, threads: int | None, device: str | None, as_json: bool) -> None:
    from spikecim.analog.benchmark import format_report, run_analog_benchmark

    report = run_analog_benchmark(
        repeats=ANALOG_DEFAULTS["repeats"] if repeats is None else repeats,
        threads=ANALOG_DEFAULTS["threads"] if threads is None else threads,
        quick=quick,
        device=device or "cpu",
    )
    print(report.to_json() if as_json else format_report(report))


def _train(
    quick: bool,
    batch: list[int] | None,
    timesteps: int | None,
    repeats: int | None,
    library: list[str] | None,
    model: list[str] | None,
    threads: int | None,
    device: str | None,
    as_json: bool,
) -> None:
    from spikecim.train.benchmark import TRAIN_LIBRARIES, TRAIN_MODELS, format_report, run_train_benchmark

    for option, given_names, allowed in (
        ("library", library, TRAIN_LIBRARIES),
        ("model", model, TRAIN_MODELS),
    ):
        unknown = [n for n in given_names or () if n not in allowed]
        if unknown:
            raise SpikecimError(f"--{option}: unknown '{unknown[0]}', allowed: {', '.join(allowed)}")
    kw = dict(TRAIN_QUICK) if quick else dict(TRAIN_DEFAULTS)
    given = {
        "batches": tuple(batch) if batch else None,
        "timesteps": timesteps,
        "libraries": library,
        "models": model,
    }
    if not quick:
        given["repeats"] = repeats
    kw |= {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items() if v is not None}
    report = run_train_benchmark(threads=threads, device=device or "cpu", on_rows=_show_block, **kw)
    print(report.to_json() if as_json else format_report(report))


def _show_block(rows) -> None:
    """One line on stderr per timed block of the training suite (its table comes at the end)."""
    from rich.console import Console

    times = [
        f"{r.library} {r.median_ms:.1f} ms"
        + (f" ({r.spikecim_speedup:.2f}×)" if r.library != "spikecim" and r.spikecim_speedup else "")
        for r in rows
    ]
    line = f"{rows[0].model} B={rows[0].batch}: " + ", ".join(times)
    Console(stderr=True, highlight=False).print(line, soft_wrap=True)


def _lif(
    quick: bool,
    batch: list[int] | None,
    timesteps: int | None,
    features: int | None,
    repeats: int | None,
    library: list[str] | None,
    threads: int | None,
    device: str | None,
    as_json: bool,
) -> None:
    from spikecim.nn.kernels.benchmark import LIBRARIES, format_report, run_lif_benchmark

    unknown = [n for n in library or () if n not in LIBRARIES]
    if unknown:
        raise SpikecimError(f"--library: unknown '{unknown[0]}', allowed: {', '.join(LIBRARIES)}")
    if quick:
        kw = dict(QUICK)
    else:
        given = {"timesteps": timesteps, "features": features, "repeats": repeats}
        kw = LIF_DEFAULTS | {k: v for k, v in given.items() if v is not None}
    if batch:
        kw["batches"] = tuple(batch)
    if library:
        kw["libraries"] = tuple(library)
    if threads is not None:
        kw["threads"] = threads
    report = run_lif_benchmark(device=device or "cpu", **kw)
    print(report.to_json() if as_json else format_report(report))
