"""``spikecim trex``: TReX attention reuse chosen for a latency target, trained and costed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from spikecim.cli.pipeline import NAME_OPT, SET_OPT, _config, _rank_console

CONFIG_ARG = typer.Argument(
    None, help="Run config (YAML). Omit to run the embedded default (digits) with --model's transformer."
)


def trex_cmd(
    config: Path | None = CONFIG_ARG,
    set_: list[str] | None = SET_OPT,
    name: str | None = NAME_OPT,
    model: str | None = typer.Option(
        None,
        help="A transformer (model.name): vit-tiny or spikformer-tiny (default: the config's, else vit-tiny).",
    ),
    epochs: int | None = typer.Option(None, help="Epochs of the final training (train.epochs), >= 0."),
    variant: str = typer.Option(
        "ann", help="The run's variant whose encoders reuse attention (the baseline)."
    ),
    arch: str = typer.Option(
        "imc-rram-65nm",
        help="Architecture that costs the candidates: a table name (`spikecim hw list`) or YAML.",
    ),
    latency_target_ns: float | None = typer.Option(
        None, "--latency-target-ns", help="Latency target per inference (ns) on --arch."
    ),
    latency_ratio: float | None = typer.Option(
        None, "--latency-ratio", help="Latency target as a share of the baseline's, in (0, 1]."
    ),
    brief_epochs: int = typer.Option(
        2, help="Epochs each candidate of the chosen reuse count trains for, >= 1."
    ),
) -> None:
    """TReX attention reuse (Moitra et al.): search reuse encoders for a latency target.

    Replaces the attention of some encoders by a transformation of the previous encoder's.
    The number of reuse encoders is the smallest whose latency on --arch
    meets the target; its reuse patterns (strided, contiguous, pyramid) are briefly trained,
    and the best is trained fully beside the baseline through the run's stages. Writes
    <run>/trex.json and prints EDAP, TOPS/mm² and accuracy (digital, analog) against the baseline."""
    from spikecim.pipeline.trex_search import trex_search, trex_tables

    named = config is not None or any(o.startswith("model.name=") for o in set_ or [])
    model = model or (None if named else "vit-tiny")
    cfg = _config(config, set_, **{"name": name, "train.epochs": epochs, "model.name": model})
    r = trex_search(
        cfg,
        variant=variant,
        arch=arch,
        latency_target_ns=latency_target_ns,
        latency_ratio=latency_ratio,
        brief_epochs=brief_epochs,
        console=_rank_console(),
    )
    out = Console()
    titles = (
        f"TReX candidates on {r.arch} (target {r.latency_target_ns:.4g} ns)",
        f"TReX against the baseline '{r.variant}' — {cfg.run_dir / 'trex.json'}",
    )
    for title, (headers, rows) in zip(titles, trex_tables(r), strict=True):
        t = Table(title=title)
        for col in headers:
            t.add_column(col)
        for row in rows:
            t.add_row(*row)
        out.print(t)


def register(app: typer.Typer) -> None:
    app.command("trex")(trex_cmd)
