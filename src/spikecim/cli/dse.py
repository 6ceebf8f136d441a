"""``spikecim dse``: design-space exploration (see spikecim.dse and docs/dse.md).

spikecim dse examples/dse/hardware.yaml --trials 2000
spikecim dse examples/dse/digits.yaml --workers 2 --random-baseline
spikecim dse --status --out dse/digits-xbar
spikecim dse --resume --out dse/digits-xbar --trials 80
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spikecim.errors import SpikecimError

SPACE_COPY = "space.yaml"


def register(app: typer.Typer) -> None:
    app.command("dse")(dse_cmd)


def dse_cmd(
    space: Annotated[
        Path | None,
        typer.Argument(
            help="the space YAML: knobs, objectives, constraints (optional with --resume/--status)"
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", "-n", help="trials of the study in all (default: the space's trials)"),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="processes running trials in parallel")] = 1,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="run the workers as Ray tasks on this cluster ('auto', 'local', host:port)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default: dse/<space name>)")
    ] = None,
    random_baseline: Annotated[
        bool,
        typer.Option(
            "--random-baseline", metavar="", help="also run random search with the same budget and compare"
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            metavar="",
            help="continue the study in --out (its space.yaml when SPACE is not given)",
        ),
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", metavar="", help="print the state of the study in --out and exit")
    ] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage", help="an RDB URL (sqlite:///x.db, postgresql://…) instead of the journal file"
        ),
    ] = None,
) -> None:
    """Search network, crossbar and architecture knobs for the Pareto front of the objectives.

    Constraints come from the space file; Optuna ask/tell drives the search. The study is
    kept in --out, and rerunning the command continues it."""
    from rich.console import Console

    from spikecim.dse.space import load_space

    if trials is not None and trials < 1:
        raise SpikecimError(f"--trials: must be >= 1, got {trials}")
    if workers < 1:
        raise SpikecimError(f"--workers: must be >= 1, got {workers}")
    if space is None and out is None:
        raise SpikecimError("dse: give a SPACE file, or --out of an existing study with --resume or --status")
    if space is None:
        copy = out / SPACE_COPY
        if not copy.exists():
            raise SpikecimError(f"dse: {out} holds no study ({copy} not found); give the SPACE file")
        sp = load_space(copy)
    else:
        sp = load_space(space)
    out = out or Path("dse") / sp.name
    journal_exists = (out / "study.journal").exists() or storage is not None
    if (resume or status) and not journal_exists:
        raise SpikecimError(f"--{'resume' if resume else 'status'}: {out} holds no study (no study.journal)")
    _keep_space(sp, space, out)
    console = Console(stderr=True)
    if status:
        _print_status(sp, out, storage)
        return
    from spikecim.dse.workers import explore

    with _Bar(console, sp, trials or sp.trials) as bar:
        doc = explore(
            sp,
            out,
            trials=trials,
            workers=workers,
            ray_address=ray_address,
            random_baseline=random_baseline,
            url=storage,
            progress=bar.update,
        )
    front = sum(t["pareto"] for t in doc["trials"])
    print(
        f"{len(doc['trials'])} trials, {sum(t['feasible'] for t in doc['trials'])} feasible, "
        f"{front} on the Pareto front; results in {out}/ (dse.json, summary.md, pareto.png)"
    )


def _keep_space(sp, given: Path | None, out: Path) -> None:
    """Keep the space in the output folder; refuse a folder that holds another space's study."""
    import yaml

    copy = out / SPACE_COPY
    text = yaml.safe_dump(sp.model_dump(mode="json", exclude={"folder"}), sort_keys=False)
    if copy.exists():
        if given is not None and copy.read_text() != text:
            from spikecim.dse.space import load_space

            if load_space(copy).model_dump(exclude={"folder"}) != sp.model_dump(exclude={"folder"}):
                raise SpikecimError(f"dse: {out} holds a study of another space; choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    data = sp.model_dump(mode="json")
    if data["folder"]:
        data["folder"] = str(Path(data["folder"]).resolve())
    copy.write_text(yaml.safe_dump(data, sort_keys=False))


def _print_status(sp, out: Path, url: str | None) -> None:
    from optuna.trial import TrialState

    from spikecim.dse.outputs import summarise
    from spikecim.dse.study import open_study

    study = open_study(sp, out, url)
    doc = summarise(study, sp, importance=False)
    counts = {s.name: 0 for s in TrialState}
    for t in doc["trials"]:
        counts[t["state"]] += 1
    hv = doc["hypervolume"][-1]["search"] if doc["hypervolume"] else 0.0
    print(
        f"study {study.study_name} in {out}: {len(doc['trials'])} trials ("
        + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
        + f"), "
        f"{sum(t['feasible'] for t in doc['trials'])} feasible, {sum(t['pareto'] for t in doc['trials'])} "
        f"on the Pareto front, hypervolume {hv:.6g}"
    )


class _Bar:
    """The progress bar: trials done, feasible, Pareto size, hypervolume."""

    def __init__(self, console, space, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.space = space
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.total = total
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, study) -> None:
        from optuna.trial import TrialState

        from spikecim.dse.outputs import feasible, hypervolume, pareto_numbers, reference_point
        from spikecim.dse.study import directions

        name = study.study_name
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=self.total, info="")
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        dirs = directions(self.space)
        ref = reference_point([trials], dirs)
        hv = hypervolume(trials, dirs, ref)
        info = (
            f"feasible {sum(feasible(t) for t in trials)}, Pareto {len(pareto_numbers(trials, dirs))}, "
            f"hypervolume {hv:.4g}"
        )
        self.progress.update(self.tasks[name], completed=len(trials), info=info)
