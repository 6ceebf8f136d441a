"""``spikecim bench``: speed against the peer libraries (see benchmarks/).

    spikecim bench                      Linear(512->512) + LIF, T = 100, B = 16 and 64
    spikecim bench --quick              a tiny size, to check the set-up in seconds
    spikecim bench --batch 32 --timesteps 50 --repeats 9 --json

A thin shell over :func:`spikecim.nn.kernels.benchmark.run_lif_benchmark`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from spikecim.errors import SpikecimError

QUICK = {"batches": (2,), "timesteps": 5, "features": 16, "repeats": 2, "warmup": 1}


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)


def bench_cmd(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="a tiny size (T=5, B=2, 16 features, 2 rounds); overrides --timesteps, --features, --repeats",
        ),
    ] = False,
    batch: Annotated[
        list[int] | None,
        typer.Option("--batch", "-b", help="batch size, >= 1; repeat for several (default: 16 and 64)"),
    ] = None,
    timesteps: Annotated[int, typer.Option("--timesteps", "-t", help="sequence length T, >= 1")] = 100,
    features: Annotated[int, typer.Option("--features", help="Linear width F (F -> F), >= 1")] = 512,
    repeats: Annotated[
        int, typer.Option("--repeats", "-r", help="timed rounds, >= 1; the median is reported")
    ] = 7,
    library: Annotated[
        list[str] | None,
        typer.Option(
            "--library",
            "-l",
            help="only this library (spikecim, snntorch, spikingjelly, norse, linear-floor); repeatable",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch threads, >= 1 (default: torch's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Time Linear + LIF forward+backward for spikecim, snnTorch, SpikingJelly, Norse and the Linear floor."""
    from spikecim.nn.kernels.benchmark import LIBRARIES, format_report, run_lif_benchmark

    checks = [("timesteps", timesteps), ("features", features), ("repeats", repeats), ("threads", threads)]
    for name, value in checks:
        if value is not None and value < 1:
            raise SpikecimError(f"--{name}: must be >= 1, got {value}")
    if batch and min(batch) < 1:
        raise SpikecimError(f"--batch: must be >= 1, got {min(batch)}")
    unknown = [n for n in library or () if n not in LIBRARIES]
    if unknown:
        raise SpikecimError(f"--library: unknown '{unknown[0]}', allowed: {', '.join(LIBRARIES)}")
    kw = (
        dict(QUICK)
        if quick
        else {"batches": (16, 64), "timesteps": timesteps, "features": features, "repeats": repeats}
    )
    if batch:
        kw["batches"] = tuple(batch)
    if library:
        kw["libraries"] = tuple(library)
    if threads is not None:
        kw["threads"] = threads
    report = run_lif_benchmark(**kw)
    print(report.to_json() if as_json else format_report(report))
