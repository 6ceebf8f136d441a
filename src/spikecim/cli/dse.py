"""``spikecim dse``: design-space exploration (see spikecim.dse and docs/dse.md).

spikecim dse examples/dse/hardware.yaml --trials 2000
spikecim dse examples/dse/digits.yaml --workers 2 --random-baseline
spikecim dse --status --out dse/digits-xbar
spikecim dse --resume --out dse/digits-xbar --trials 80
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from spikecim.dse.layout import JOURNAL, LOCK, OUTPUTS, SPACE, is_study
from spikecim.errors import RunInterrupted, SpikecimError, interrupts_deferred, terminate_as_interrupt


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
    from spikecim.dse.workers import check_command, explore

    if trials is not None and trials < 1:
        raise SpikecimError(f"--trials: must be >= 1, got {trials}")
    if workers < 1:
        raise SpikecimError(f"--workers: must be >= 1, got {workers}")
    if space is None and out is None:
        raise SpikecimError("dse: give a SPACE file, or --out of an existing study with --resume or --status")
    if space is None:
        copy = out / SPACE
        if not copy.exists():
            raise SpikecimError(f"dse: {out} holds no study ({copy} not found); give the SPACE file")
        sp = load_space(copy)
    else:
        sp = load_space(space)
    out = out or Path("dse") / sp.name
    journal_exists = (out / JOURNAL).exists() or storage is not None
    if (resume or status) and not journal_exists:
        raise SpikecimError(f"--{'resume' if resume else 'status'}: {out} holds no study (no {JOURNAL})")
    if status:  # reads, creates nothing
        _keep_space(sp, space, out, write=False)
        _print_status(sp, out, storage)
        return
    # everything that can fail at the door fails before a file is written (the space, its
    # workload and baseline were checked by load_space)
    check_command(out, storage, workers, ray_address)
    _check_out_is_ours(out)
    created = [p for p in (out, out / SPACE, out / JOURNAL, out / LOCK) if not p.exists()]
    try:
        _keep_space(sp, space, out)
        with terminate_as_interrupt(), _Bar(Console(stderr=True), sp, trials or sp.trials) as bar:
            doc = explore(
                sp,
                out,
                trials=trials,
                workers=workers,
                ray_address=ray_address,
                random_baseline=random_baseline,
                url=storage,
                progress=bar.update,
                checked=True,
            )
    except BaseException as e:
        interrupted = isinstance(e, (KeyboardInterrupt, RunInterrupted))  # Ctrl-C, also in a trial
        with interrupts_deferred(drop=True):  # a second Ctrl-C does not cut this short
            _remove_if_no_trial(created, sp, out, storage)
            line = _interrupted_line(sp, out, storage) if interrupted else None
        if line is not None:
            raise RunInterrupted(line) from None
        raise
    front = sum(t["pareto"] for t in doc["trials"])
    if doc["baseline"] and "error" in doc["baseline"]:
        print(f"dse: the baseline was not evaluated: {doc['baseline']['error']}", file=sys.stderr)
    print(
        f"{len(doc['trials'])} trials, {sum(t['feasible'] for t in doc['trials'])} feasible, "
        f"{front} on the Pareto front; results in {out}/ (dse.json, summary.md, pareto.png)"
    )


def _keep_space(sp, given: Path | None, out: Path, write: bool = True) -> None:
    """Keep the space in the output folder (``write``); refuse a folder that holds another
    space's study. The budget (``trials``) is no part of the study: a space that changes only
    it continues the study, and the kept copy takes the new budget."""
    import yaml

    copy = out / SPACE
    text = yaml.safe_dump(sp.model_dump(mode="json", exclude={"folder"}), sort_keys=False)
    if copy.exists():
        if given is None or copy.read_text() == text:
            return
        from spikecim.dse.space import load_space

        kept = load_space(copy)
        if kept.model_dump(exclude={"folder", "trials"}) != sp.model_dump(exclude={"folder", "trials"}):
            raise SpikecimError(f"dse: {out} holds a study of another space; choose another --out")
        if kept.trials != sp.trials and write:  # the kept copy's paths stay as they were
            copy.write_text(
                yaml.safe_dump({**yaml.safe_load(copy.read_text()), "trials": sp.trials}, sort_keys=False)
            )
        return
    if not write:
        return
    out.mkdir(parents=True, exist_ok=True)
    data = sp.model_dump(mode="json")
    if data["folder"]:
        data["folder"] = str(Path(data["folder"]).resolve())
    copy.write_text(yaml.safe_dump(data, sort_keys=False))


def _remove_if_no_trial(created: list[Path], sp, out: Path, url: str | None) -> None:
    """After a command failed: remove the files (and the folder) it created, when its study
    holds no trial, so the corrected command starts afresh; keep everything when a trial
    exists or the storage cannot be read."""
    import optuna

    from spikecim.dse.study import storage_for

    if (out / JOURNAL).exists() or url:
        try:
            storage = storage_for(out, url, read_only=True)
            names = {sp.name, f"{sp.name}-random"}
            summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        except Exception:  # noqa: BLE001 - cannot tell whether a trial exists: keep
            return
        if any(s.n_trials for s in summaries if s.study_name in names):
            return
    for p in reversed(created):  # the files, then the folder
        with contextlib.suppress(OSError):  # a folder that holds anything else stays
            if p == out:
                p.rmdir()
            else:
                p.unlink(missing_ok=True)


def _interrupted_line(sp, out: Path, url: str | None) -> str:
    """What an interrupted command kept: the finished trials of its studies, and how to go on."""
    from spikecim.dse.study import FINISHED, load_study, shown_url

    finished = 0
    for random in (False, True):
        try:
            study = load_study(sp, out, url, random=random)
        except SpikecimError:  # no study (yet): nothing kept
            continue
        finished += len(study.get_trials(deepcopy=False, states=FINISHED))
    if not finished:
        return "dse: interrupted before a trial finished; nothing was kept"
    where = shown_url(url) if url else out / JOURNAL
    return (
        f"dse: interrupted; {finished} finished trials are kept in {where} "
        "(a trial that was running runs again first): run the same command again to continue"
    )


def _check_out_is_ours(out: Path) -> None:
    """Refuse an ``--out`` folder without a study of spikecim dse that holds a file of the name
    of one of the study's outputs: writing them would replace it (other files stay as they are)."""
    if not out.is_dir() or is_study(out) or (out / SPACE).is_file() or (out / LOCK).is_file():
        return
    theirs = next((name for name in OUTPUTS if (out / name).exists()), None)
    if theirs is not None:
        raise SpikecimError(
            f"--out: {out} holds {theirs}, which spikecim dse did not write (no {JOURNAL}) and would "
            "overwrite; move it out or choose another folder"
        )


def _print_status(sp, out: Path, url: str | None) -> None:
    from optuna.trial import TrialState

    from spikecim.dse.outputs import summarise
    from spikecim.dse.study import load_study

    study = load_study(sp, out, url)
    try:  # the reference point over both studies, as dse.json takes it
        rstudy = load_study(sp, out, url, random=True)
    except SpikecimError:
        rstudy = None
    doc = summarise(study, sp, rstudy, importance=False)
    counts = {s.name: 0 for s in TrialState}
    for t in doc["trials"]:
        counts[t["state"]] += 1
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    hv = doc["hypervolume"][-1]["search"] if doc["hypervolume"] else 0.0
    print(
        f"study {study.study_name} in {out}: {len(doc['trials'])} trials ("
        + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
        + "), "
        + (f"{waiting} designs waiting, " if waiting else "")
        + f"{sum(t['feasible'] for t in doc['trials'])} feasible, {sum(t['pareto'] for t in doc['trials'])} "
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
