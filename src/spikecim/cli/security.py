"""``spikecim security RUN_DIR``: the power side channel of a finished run.

    spikecim security runs/digits-convnet                     every countermeasure, σ = 0 %
    spikecim security runs/digits-convnet --noise 0.2         countermeasures compared at 20 % noise
    spikecim security runs/digits-convnet --countermeasure shuffle --countermeasure balance
    spikecim security runs/digits-convnet --quick             a small attack, to check the set-up

A thin shell over :func:`spikecim.security.analysis.analyse_run`; writes RUN_DIR/security/
and the report's "Power side channel" section (docs/security.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spikecim.errors import SpikecimError
from spikecim.security.config import COUNTERMEASURES, load_security_config

QUICK = {"max_samples": 300, "attack": {"epochs": 60, "gan_epochs": 10}}


def register(app: typer.Typer) -> None:
    app.command("security")(security_cmd)


def security_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="A finished run folder (runs/<name>) with traced workloads.")
    ],
    noise: Annotated[
        float,
        typer.Option(
            "--noise",
            help="probe noise σ of the countermeasure comparison, a fraction of the max signal "
            "(0.2: 20 %), in [0, 10]; the noise sweep covers 0-40 % and this level",
        ),
    ] = 0.0,
    countermeasure: Annotated[
        list[str] | None,
        typer.Option(
            "--countermeasure",
            "-c",
            help=f"a countermeasure to compare, repeatable: {', '.join(COUNTERMEASURES)} (default: all)",
        ),
    ] = None,
    sampling: Annotated[
        str, typer.Option("--sampling", help="what one probe sample integrates: read, tile or layer")
    ] = "read",
    encoding: Annotated[
        str, typer.Option("--encoding", help="input encoding of the reads: amplitude or bit_serial")
    ] = "amplitude",
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", metavar="", help="300 samples per side and a short attack: a check in seconds"
        ),
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            metavar="",
            help="Accept a run whose training was interrupted (fewer epochs than train.epochs), with a warning.",
        ),
    ] = False,
) -> None:
    """Measure the power side channel of a run's crossbars and what closing it costs.

    Traces of every crossbar read, a reconstruction attack, leakage per layer and timestep,
    and countermeasures with their hardware cost."""
    from spikecim.report import write_report
    from spikecim.security.analysis import analyse_run

    if not 0 <= noise <= 10:  # NaN too
        raise SpikecimError(
            f"--noise: must be from 0 to 10 (a fraction of the max signal, 0.2: 20 %), got {noise:g}"
        )
    levels = [0.0, 0.1, 0.2, 0.3, 0.4]
    if noise not in levels:
        levels = sorted([*levels, noise])
    spec = {
        "noise_levels": levels,
        "countermeasure_noise": noise,
        "countermeasures": {"names": countermeasure or []},
        "trace": {"sampling": sampling, "encoding": encoding},
        **(QUICK if quick else {}),
    }
    cfg = _config(spec)
    if not (run_dir / "config.yaml").exists():
        raise SpikecimError(f"security: {run_dir} is not a run folder (no config.yaml)")
    report = (run_dir / "metrics.json").exists()
    if report:  # rewritten after the analysis: a page spikecim may not replace is refused first
        from spikecim.pipeline import folder

        folder.check_replaceable([run_dir / "report.html"], "security")
    console = Console(stderr=True)
    results = analyse_run(run_dir, cfg, console, allow_partial=allow_partial)
    for variant, entry in results["variants"].items():
        first = entry["noise"][0]
        console.print(
            f"{variant}: SSIM {first['ssim_inverse']:.3f} at σ = {100 * first['noise']:g}% "
            f"(mean image {first['ssim_mean_image']:.3f})",
            markup=False,
            highlight=False,
        )
    if report:
        write_report(run_dir)
    print(run_dir / "security" / "results.json")


_OPTIONS = {  # the config fields the options set
    "trace.sampling": "--sampling",
    "trace.encoding": "--encoding",
    "countermeasures.names": "--countermeasure",
}


def _config(spec: dict):
    """The security config of the options; a bad value names its option."""
    try:
        return load_security_config(spec)
    except SpikecimError as e:
        message = str(e).removeprefix("security: ")
        for field, option in _OPTIONS.items():
            if message.startswith(f"{field}:"):
                raise SpikecimError(option + message.removeprefix(field)) from None
        raise
