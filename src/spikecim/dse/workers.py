"""Where trials run: in this process, in ``workers`` processes on this machine, or as Ray
tasks on a Ray cluster. Every worker runs the same ask/tell loop
(:func:`~spikecim.dse.study.run_trials`) against the same storage, so the study is the one
record whichever way it ran; the budget counts every worker's trials.

Ray (``pip install spikecim[distributed]``): ``ray_address`` is passed to ``ray.init``
(``auto`` for a running cluster, ``local`` to start one here, or ``host:port``, which must
accept a TCP connection within ``RAY_CONNECT_S``); each worker is a Ray task.
Ray Tune's Optuna searcher is not used: it cannot carry ``trial.set_constraint``. With the
journal file, every Ray node must see the output folder (one machine, or a shared file
system); otherwise pass an RDB URL.

Workers: at most one per trial of the budget (more are not started), and on this machine at
most ``MAX_WORKERS_PER_CORE`` per core (a larger ``workers`` is a one-line error).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spikecim.dse.layout import LOCK
from spikecim.dse.space import Space
from spikecim.errors import RunInterrupted, SpikecimError, first_line
from spikecim.memory import keep_freed_memory

__all__ = ["check_command", "explore", "max_workers", "run_worker"]

POLL_S = 0.5
MAX_WORKERS_PER_CORE = 4
RAY_CONNECT_S = 5.0


def run_worker(
    space: Space,
    out_dir: str,
    trials: int,
    url: str | None = None,
    random: bool = False,
    threads: int | None = None,
    worker: int = 0,
    history: int | None = None,
) -> int:
    """One worker: open the study and run trials until the budget is reached; returns the
    trials it ran. ``threads``: torch's intra-op threads in this process (workers sharing a
    machine split its cores; left as they are when None). ``worker`` (its index) and
    ``history`` (the trials in the study when the command started) seed its sampler
    (:func:`~spikecim.dse.study.sampler_seed`)."""
    from spikecim.dse.evaluate import Evaluator
    from spikecim.dse.study import open_study, run_trials

    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    study = open_study(space, out_dir, url, random, worker=worker, history=history)
    ran = []
    run_trials(study, space, Evaluator(space, out_dir), trials, on_trial=ran.append, lock=_budget_lock)
    return len(ran)


_budget_lock = None  # in a worker of the local pool: the lock its command's workers share


def _init_worker(lock) -> None:
    """A local pool worker: freed memory kept (as the spikecim command does), and the lock
    the workers hold while they count the trials and ask for one."""
    global _budget_lock
    keep_freed_memory()
    _budget_lock = lock
    _exit_with_parent()


def _exit_with_parent() -> None:
    """Stop this worker when the command that started it dies (a SIGKILL gives it no chance
    to stop its pool): its trial stays RUNNING, and the next command runs it again. The stop
    is a SIGTERM to itself, which a journal write holds back until it is whole
    (:func:`~spikecim.errors.interrupts_deferred`): a worker ended inside one would leave
    Optuna's journal lock behind, and the next command would wait out its grace period."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def explore(
    space: Space,
    out_dir: str | Path,
    trials: int | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    random_baseline: bool = False,
    url: str | None = None,
    progress: Callable[[Any], None] | None = None,
    write: bool = True,
    checked: bool = False,
) -> dict:
    """Run (or continue) the study of ``space`` in ``out_dir`` up to ``trials`` trials
    (default: the space's), then the random-search baseline at the same budget when asked,
    and write the output folder; returns the ``dse.json`` document. The command is checked
    first (:func:`check_command`; ``checked``: the caller already did): a bad one writes
    nothing."""
    from spikecim.dse.outputs import summarise, write_outputs
    from spikecim.dse.study import open_study, recover

    out = str(Path(out_dir))
    n = trials or space.trials
    if not checked:
        check_command(out, url, workers, ray_address)
    workers = min(workers, n)
    studies = [False, True] if random_baseline else [False]
    with _one_command(Path(out)):
        for random in studies:
            study = open_study(space, out, url, random)
            history = len(study.get_trials(deepcopy=False))
            recover(study, rdb=url is not None)
            _run(space, out, n, workers, ray_address, url, random, study, progress, history)
        study = open_study(space, out, url)
        rstudy = open_study(space, out, url, random=True) if random_baseline else None
        doc = summarise(study, space, rstudy, baseline=_baseline(space, out))
        if write:
            write_outputs(doc, out)
    return doc


def max_workers(ray_address: str | None = None) -> int | None:
    """The most worker processes on this machine (None with Ray: the cluster schedules them)."""
    return None if ray_address is not None else MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)


def check_command(
    out_dir: str | Path, url: str | None = None, workers: int = 1, ray_address: str | None = None
) -> None:
    """Everything about a command that can fail before it writes anything, each a one-line
    error: the worker count, Ray and the cluster's address, the storage (an RDB URL opened; a
    journal that exists read and checked for damage)."""
    from spikecim.dse.layout import JOURNAL
    from spikecim.dse.study import storage_for

    cap = max_workers(ray_address)
    if workers < 1:
        raise SpikecimError(f"--workers: must be >= 1, got {workers}")
    if cap is not None and workers > cap:
        raise SpikecimError(
            f"--workers: at most {cap} ({MAX_WORKERS_PER_CORE} per core of this machine), got {workers}"
        )
    if ray_address is not None:
        _check_ray_address(ray_address)
    if url or (Path(out_dir) / JOURNAL).exists():
        storage_for(out_dir, url, read_only=url is None)


def _check_ray_address(address: str) -> None:
    """Ray is installed, and a ``host:port`` (or ``ray://host:port``) address resolves and
    accepts a TCP connection within ``RAY_CONNECT_S`` (``ray.init`` would retry for minutes)."""
    import socket

    try:
        import ray  # noqa: F401
    except ImportError:
        raise SpikecimError(
            "--ray-address: Ray is not installed; pip install spikecim[distributed]"
        ) from None
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpikecimError(
            f"--ray-address: '{address}' is not 'auto', 'local', host:port or ray://host:port"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_S).close()
    except OSError as e:
        raise SpikecimError(f"--ray-address: cannot reach {address}: {e.strerror or e}") from None


@contextlib.contextmanager
def _one_command(out: Path):
    """Hold ``out/dse.lock`` while a command drives the study: a trial RUNNING when the study
    is opened then belongs to a stopped command (:func:`~spikecim.dse.study.recover`)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpikecimError(
                f"dse: {out} is in use by another spikecim dse; wait for it or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def _run(space, out, n, workers, ray_address, url, random, study, progress, history) -> None:
    from spikecim.dse.evaluate import Evaluator
    from spikecim.dse.study import run_trials

    if ray_address is not None:
        _run_ray(space, out, n, workers, ray_address, url, random, study, progress, history)
        return
    if workers == 1:
        last = [0.0]

        def tick(_t) -> None:
            now = time.monotonic()
            if progress is not None and now - last[0] >= POLL_S:
                last[0] = now
                progress(study)

        run_trials(study, space, Evaluator(space, out), n, on_trial=tick)
        if progress is not None:
            progress(study)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(
        workers, initializer=_init_worker, initargs=(ctx.Lock(),)
    ) as pool:  # processes spikecim owns
        # each worker gets its share of the cores: torch's default of one thread per core in
        # every worker oversubscribes them (measured: twice the CPU time for the same trials)
        threads = max(1, (os.cpu_count() or 1) // workers)
        jobs = [
            pool.apply_async(run_worker, (space, out, n, url, random, threads, i, history))
            for i in range(workers)
        ]
        while not all(j.ready() for j in jobs):
            if progress is not None:
                progress(study)
            time.sleep(POLL_S)
        for j in jobs:
            j.get()  # a worker's error is raised here
    if progress is not None:
        progress(study)


def _run_ray(space, out, n, workers, address, url, random, study, progress, history) -> None:
    import ray  # checked by check_command

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(
                address=None if address == "local" else address,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
        except Exception as e:  # noqa: BLE001 - Ray's ConnectionError, RuntimeError, ValueError
            raise SpikecimError(f"--ray-address: cannot connect to {address}: {first_line(e)}") from None
    try:
        task = ray.remote(num_cpus=1)(run_worker)
        where = str(Path(out).resolve())
        refs = [task.remote(space, where, n, url, random, 1, i, history) for i in range(workers)]
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, timeout=POLL_S)
            if progress is not None:
                progress(study)
        ray.get(refs)
    finally:
        if started:
            ray.shutdown()


def _baseline(space: Space, out: str) -> dict | None:
    """The hand-picked design of ``space.baseline`` with its values (evaluated once, reusing
    a cached trained network); one that fails (its training diverged, say) is recorded with
    its ``error`` and no values, like a failed trial: the study's files are written all the
    same."""
    if space.baseline is None:
        return None
    from spikecim.dse.evaluate import Evaluator
    from spikecim.dse.study import failure

    try:
        outcome = Evaluator(space, out)(dict(space.baseline))
    except RunInterrupted:
        raise
    except Exception as e:  # noqa: BLE001 - as a trial's failure (run_trials)
        return {"params": dict(space.baseline), "values": {}, "error": failure(e)}
    return {"params": dict(space.baseline), "values": outcome.values or outcome.bounds}
