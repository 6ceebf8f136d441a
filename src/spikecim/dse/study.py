"""The search: an Optuna study driven by ask and tell, stored so it survives being stopped.

- Sampler, chosen explicitly (Optuna 5 defaults every study to TPE): NSGA-II with the space's
  ``population_size`` for several objectives, TPE for one, or the one ``sampler.name`` asks
  for (``gp``, ``random``, ``grid``), seeded with ``sampler.seed`` in a new study's first
  worker and with a seed drawn from it, the trials already in the study and the worker's
  index otherwise (:func:`sampler_seed`), so resuming or a second worker never replays.
- Constraints go through ``trial.set_constraint`` (feasible when every value is <= 0), so
  ``study.best_trials`` is the feasible Pareto front.
- A trial whose knobs equal a finished trial's (NSGA-II re-suggests them in small discrete
  spaces) is not evaluated again: it is told the earlier values and constraints, with the
  user attribute ``reused_from``.
- A trial whose training is skipped by the lower bound is told PRUNED, with its constraints
  and the reason (user attribute ``skipped``).
- Storage: a journal file ``<out>/study.journal`` by default (many processes on one machine;
  a torn last line is cut before the next append, :class:`Journal`), an RDB URL on request.
  RDB storage runs heartbeats, so a trial whose worker died is failed and retried by
  ``RetryHeartbeatStaleTrialCallback``; with the journal (no heartbeats) a trial still
  RUNNING when the study is opened again belonged to a stopped command: :func:`recover` tells
  it FAIL and enqueues its knobs, so it runs again first.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from spikecim.dse.evaluate import Evaluator, Outcome
from spikecim.dse.layout import JOURNAL
from spikecim.dse.objectives import METRICS, constraint_values
from spikecim.dse.space import Space, sample
from spikecim.errors import RunInterrupted, SpikecimError, first_line, interrupts_deferred

__all__ = [
    "Journal",
    "PageCacheJournal",
    "directions",
    "failure",
    "load_study",
    "make_sampler",
    "open_study",
    "recover",
    "run_trials",
    "sampler_seed",
    "shown_url",
    "storage_for",
]

HEARTBEAT_S = 10
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def directions(space: Space) -> list[str]:
    return [o.direction or METRICS[o.metric].direction for o in space.objectives]


def sampler_seed(seed: int, history: int = 0, worker: int = 0) -> int:
    """The seed of one command's sampler: ``seed`` itself for the first worker of a new study
    (so a study run in one go is the same as ever), otherwise drawn from ``seed``, the
    trials already in the study (``history``) and the worker's index by NumPy's
    ``SeedSequence``: a resumed study or a second worker never replays the draws of the first,
    and the same history gives the same seed again."""
    if history == 0 and worker == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, history, worker]).generate_state(1)[0])


def make_sampler(space: Space, random: bool = False, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The space's sampler (``random``: RandomSampler, the baseline), seeded with ``seed``
    (default: the space's ``sampler.seed``; see :func:`sampler_seed`)."""
    s = space.sampler
    seed = s.seed if seed is None else seed
    name = "random" if random else (s.name or ("nsga2" if len(space.objectives) > 1 else "tpe"))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":  # one objective: checked by Space
        return optuna.samplers.GPSampler(seed=seed)
    # grid: every design is enqueued when the study is created (open_study), so parallel
    # workers take each one once; Optuna's GridSampler stops the study from a callback, which
    # an ask/tell loop has not.
    return optuna.samplers.RandomSampler(seed=seed)


def storage_for(out_dir: str | Path, url: str | None = None, fsync: bool = True, read_only: bool = False):
    """The journal file in ``out_dir`` (default) or an RDB storage with heartbeats, checked
    when opened: a URL that cannot be opened or a damaged journal is a one-line error.

    ``fsync=False`` writes journal lines to the kernel without waiting for the disk (see
    :class:`PageCacheJournal`). ``read_only`` (``--status``) creates nothing: no folder, no
    journal, no database, no tables; a storage that holds no study is a one-line error."""
    if url:
        return _rdb(url, read_only)
    from optuna.storages import JournalStorage

    path = Path(out_dir) / JOURNAL
    if read_only and not path.is_file():
        raise SpikecimError(f"dse: no study in {out_dir} ({path} not found)")
    try:
        if not read_only:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        storage = JournalStorage((Journal if fsync else PageCacheJournal)(str(path)))  # replays every line
        _check_last_line(path)
    except OSError as e:
        raise SpikecimError(f"dse: cannot open {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - whatever Optuna's reader or replay raises
        raise SpikecimError(
            f"dse: {path} is damaged ({_damage(path, e)}); it was left as it is: "
            "restore it from a copy or choose another --out"
        ) from None
    return storage


def _damage(path: Path, err: Exception) -> str:
    """What is wrong with a journal Optuna failed to read: the first complete line that is not
    a JSON record, else the replay's error."""
    import json

    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                break  # a torn last line: skipped when read
            try:
                value = json.loads(line)
                if isinstance(value, dict):
                    continue
                why = f"a JSON {type(value).__name__}, not an object"
            except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
                why = first_line(e)
            return f"line {number} is not a JSON record: {why}"
    why = (str(err).splitlines() or [""])[0]
    return f"a record Optuna cannot replay: {type(err).__name__}{': ' + why if why else ''}"


def _rdb(url: str, read_only: bool):
    """Optuna's RDBStorage of ``url`` (heartbeats on), or a one-line error."""
    import sqlalchemy
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    shown = shown_url(url)
    try:
        if read_only:  # RDBStorage writes its tables and version into a database without them
            parsed = sqlalchemy.engine.make_url(url)
            if parsed.get_backend_name() == "sqlite" and not (
                parsed.database and parsed.database != ":memory:" and Path(parsed.database).is_file()
            ):
                raise SpikecimError(f"dse: no study in {shown} (no database file)")
            engine = sqlalchemy.create_engine(url)
            try:
                tables = set(sqlalchemy.inspect(engine).get_table_names())
            finally:
                engine.dispose()
            if not {"studies", "version_info", "alembic_version"} <= tables:
                raise SpikecimError(f"dse: no study in {shown} (no Optuna tables)")
            return RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5.1
            warnings.simplefilter("ignore", ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=3 * HEARTBEAT_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except SpikecimError:
        raise
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors, ImportError
        why = first_line(e)
        if isinstance(e, ImportError) and e.__cause__ is not None:  # Optuna's, over the driver's
            why += f" ({e.__cause__})"
        raise SpikecimError(f"--storage: cannot open {shown}: {why}") from None


def shown_url(url: str) -> str:
    """``url`` as it may be printed: without its password."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even a URL: shown as given
        return url


def _check_last_line(path: Path) -> None:
    """Raise when the journal's last complete line is not a JSON record. Optuna's reader
    raises on any other bad line but skips a bad last one, until a line appended after it
    makes every later read fail; a last line without its ``\\n`` is a torn write instead,
    skipped when read and cut before the next append (:class:`Journal`)."""
    import json

    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        chunk = 4096
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            tail = f.read(size - start)
            lines = tail[: tail.rfind(b"\n") + 1].split(b"\n")  # [..., last complete, b""]
            if len(lines) >= 3 or start == 0:
                break
            chunk *= 2
    if len(lines) >= 2 and not isinstance(json.loads(lines[-2]), dict):
        raise ValueError("its last line is not a journal record")


def _journal_classes():
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class Journal(JournalFileBackend):
        """Optuna's journal file, with a torn last line cut before each append.

        A process killed in the middle of a write (or a machine that crashed) can leave a last
        line without its ``\\n``. Optuna's reader skips it, but Optuna appends the next lines
        onto it, and the line it makes is not JSON: every later read fails, and every finished
        trial with it. Under the journal's lock (so no write is in progress), the bytes after
        the last ``\\n`` are cut before the new lines are written. Ctrl-C and SIGTERM wait
        until the lines are written and the lock is released."""

        fsync = True

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            import json

            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            # the same lock and file as JournalFileBackend; an interrupt waits until the lock
            # is released, or it could leave the lock file behind (interrupts_deferred)
            with interrupts_deferred(), get_lock_file(self._lock), open(self._file_path, "a+b") as f:
                _cut_torn_tail(f, self._file_path)
                f.write(text.encode("utf-8"))
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())

    class PageCacheJournal(Journal):
        """The journal without the ``fsync`` after each write: a line is in the kernel when
        the call returns, so a killed process (SIGKILL included) loses nothing, but a crash of
        the machine may lose the last lines (a torn last line is cut, :class:`Journal`). On a
        busy disk the fsync, not the sampler, limits a hardware-only study (BENCHMARKS.md)."""

        fsync = False

    return Journal, PageCacheJournal


Journal, PageCacheJournal = _journal_classes()


def _cut_torn_tail(f, path: str) -> None:
    """Cut ``f`` (open for reading and appending) back to just after its last ``\\n``."""
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        cut = f.read(step).rfind(b"\n")
        if cut >= 0:
            pos += cut + 1
            break
    f.truncate(pos)
    sys.stderr.write(
        f"dse: {path}: cut {end - pos} bytes after its last complete line (a write torn by a "
        "stopped command; Optuna never read them)\n"
    )


def open_study(
    space: Space,
    out_dir: str | Path,
    url: str | None = None,
    random: bool = False,
    worker: int = 0,
    history: int | None = None,
) -> optuna.Study:
    """The space's study (created or loaded); ``random`` the random-search baseline study
    ``<name>-random`` in the same storage. Its sampler is seeded by :func:`sampler_seed` from
    the trials in the study (``history``: as counted by the command that started this worker,
    default: now) and the worker's index."""
    name = f"{space.name}-random" if random else space.name
    study = optuna.create_study(
        study_name=name,
        storage=storage_for(out_dir, url, space.journal_fsync),
        sampler=make_sampler(space, random),
        directions=directions(space),
        load_if_exists=True,
    )
    trials = study.get_trials(deepcopy=False)
    n = len(trials) if history is None else history
    if n or worker:
        study.sampler = make_sampler(space, random, sampler_seed(space.sampler.seed, n, worker))
    if space.sampler.name == "grid" and not random and not trials:
        for params in grid_designs(space):
            study.enqueue_trial(params)
    return study


def load_study(
    space: Space, out_dir: str | Path, url: str | None = None, random: bool = False
) -> optuna.Study:
    """The space's study as it is, to read (``--status``): nothing is created or written; a
    storage without the study is a one-line error."""
    name = f"{space.name}-random" if random else space.name
    storage = storage_for(out_dir, url, read_only=True)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(space, random))
    except KeyError:
        where = shown_url(url) if url else Path(out_dir) / JOURNAL
        raise SpikecimError(f"dse: no study '{name}' in {where}") from None


def grid_designs(space: Space) -> list[dict[str, Any]]:
    """Every design of a discrete space (conditional knobs only where switched on), in an
    order shuffled by the sampler's seed."""
    import random as _random

    designs: list[dict[str, Any]] = [{}]
    for k in space.knobs:
        grown = []
        for d in designs:
            grown += [{**d, k.name: v} for v in k.grid()] if k.active(d) else [d]
        designs = grown
    _random.Random(space.sampler.seed).shuffle(designs)
    return designs


def recover(study: optuna.Study, rdb: bool = False) -> list[int]:
    """Fail the trials left RUNNING by a stopped command and enqueue their knobs again;
    returns their numbers. With RDB storage, only trials whose heartbeat stopped."""
    if rdb:  # run_trials fails the trials whose heartbeat stopped, and their retries run
        return []
    lost = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except ValueError:  # finished meanwhile, by a worker of the stopped command: kept as it is
            continue
        lost.append(t.number)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if not any(w.system_attrs.get("fixed_params") == t.params for w in waiting):
            study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
    return lost


def done(study: optuna.Study) -> int:
    """Trials that count against the budget: finished, running, or failed because the design
    could not be built; not waiting, and not lost with a stopped command (those run again)."""
    return sum(_counts(t) for t in study.get_trials(deepcopy=False))


def exhausted(study: optuna.Study, space: Space) -> bool:
    """A grid study whose every design has been taken (none waiting any more)."""
    if space.sampler.name != "grid" or study.study_name.endswith("-random"):
        return False
    return not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def run_trials(
    study: optuna.Study,
    space: Space,
    evaluate: Evaluator | Callable[[dict], Outcome],
    trials: int,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    lock: contextlib.AbstractContextManager | None = None,
) -> None:
    """Ask, evaluate and tell until the study holds ``trials`` trials that count against the
    budget (:func:`done`, counting those of other workers on the same storage), or a grid is
    exhausted. ``lock``: held by the workers of one command around counting and asking, so
    two workers that both see one trial left do not both take it (without it, workers on
    one storage can overshoot the budget by one trial each)."""
    from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

    heartbeats = is_heartbeat_enabled(study._storage)
    if heartbeats:
        # the heartbeats run from this loop (below), as study.optimize runs them
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    seen = _Designs()
    while True:
        with lock if lock is not None else contextlib.nullcontext():
            # before every trial, as study.optimize does: a dead worker's trial fails and is retried
            if heartbeats:
                optuna.storages.fail_stale_trials(study)
            if seen.update(study.get_trials(deepcopy=False)) >= trials or exhausted(study, space):
                break
            trial = _take_rerun(study) or study.ask()  # RUNNING: counted by the next look
        params = sample(space, trial)
        prev = seen.finished.get(_key(params))
        if prev is not None and prev.number != trial.number:
            _tell_copy(study, trial, prev)
        else:
            try:
                # what study.optimize does: a thread beats while the trial runs (RDB storage
                # only; a null thread for the journal)
                with get_heartbeat_thread(trial._trial_id, study._storage):
                    outcome = evaluate(params)
            except RunInterrupted:  # Ctrl-C in the training: the trial stays RUNNING, runs again
                raise
            except Exception as e:  # noqa: BLE001 - this design failed: recorded, the study goes on
                trial.set_user_attr("error", failure(e))
                study.tell(trial, state=TrialState.FAIL)
            else:
                _tell(study, space, trial, outcome)
        if on_trial is not None:
            on_trial(study.get_trials(deepcopy=False)[trial.number])


def failure(err: Exception) -> str:
    """Why a design failed, in one line: spikecim's own message (a design that cannot be
    built, a training that diverged), or a library's error with its type
    (``OutOfMemoryError: CUDA out of memory…``). Either way the design, not the study, failed:
    a command that stopped on it would run it again first (:func:`recover`) and stop again."""
    if isinstance(err, SpikecimError):
        return err.finding  # without the command line's advice (--fresh, --name): not for a trial
    return f"{type(err).__name__}: {first_line(err)}"


def _counts(t: optuna.trial.FrozenTrial) -> bool:
    return t.state in (*FINISHED, TrialState.RUNNING) or (
        t.state == TrialState.FAIL and "error" in t.user_attrs
    )


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


class _Designs:
    """The finished designs of a study (knobs → first trial) and the budget count, updated
    from the trials list by looking only at trials after the last one that was settled."""

    def __init__(self) -> None:
        self.finished: dict[tuple, optuna.trial.FrozenTrial] = {}
        self.settled = 0  # trials[:settled] are finished or failed: they no longer change
        self.settled_count = 0

    def update(self, trials: list[optuna.trial.FrozenTrial]) -> int:
        """Index the newly finished trials; returns the trials counting against the budget."""
        for t in trials[self.settled :]:
            if t.state in FINISHED:
                self.finished.setdefault(_key(t.params), t)
        while self.settled < len(trials) and trials[self.settled].state.is_finished():
            self.settled_count += _counts(trials[self.settled])
            self.settled += 1
        return self.settled_count + sum(_counts(t) for t in trials[self.settled :])


def _take_rerun(study: optuna.Study) -> optuna.Trial | None:
    """A waiting rerun of a lost trial (:func:`recover`), taken before the queue's order
    (Optuna pops waiting trials oldest first, and a grid study enqueued its designs before);
    the storage's state change is atomic, so two workers never take the same one."""
    from optuna.exceptions import UpdateFinishedTrialError

    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if "rerun_of" not in t.user_attrs:
            continue
        try:
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.trial.Trial(study, t._trial_id)
        except UpdateFinishedTrialError:
            continue
    return None


def _tell(study: optuna.Study, space: Space, trial: optuna.Trial, outcome: Outcome) -> None:
    measured = outcome.values or outcome.bounds
    for c, v in zip(space.constraints, constraint_values(space.constraints, measured)):
        trial.set_constraint(f"{c.metric} {c.op} {c.bound:g}", v)
    trial.set_user_attr("values", outcome.values)
    if outcome.bounds:
        trial.set_user_attr("bounds", outcome.bounds)
    if outcome.trained:
        trial.set_user_attr("trained", outcome.trained)
    if outcome.skipped is not None:
        trial.set_user_attr("skipped", outcome.skipped)
        study.tell(trial, state=TrialState.PRUNED)
        return
    values = []
    for o in space.objectives:
        v = outcome.values.get(o.metric)
        if v is None or not math.isfinite(v):
            trial.set_user_attr("error", f"{o.metric} was not computed (the estimator does not model it)")
            study.tell(trial, state=TrialState.FAIL)
            return
        values.append(v)
    study.tell(trial, values)


def _tell_copy(study: optuna.Study, trial: optuna.Trial, prev: optuna.trial.FrozenTrial) -> None:
    for key, v in prev.constraints.items():
        trial.set_constraint(key, v)
    for key, v in prev.user_attrs.items():
        if key not in ("reused_from", "rerun_of"):
            trial.set_user_attr(key, v)
    trial.set_user_attr("reused_from", prev.user_attrs.get("reused_from", prev.number))
    if prev.state == TrialState.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, prev.values)
