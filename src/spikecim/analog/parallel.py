"""The Monte-Carlo loop over programming seeds, in worker processes or Ray tasks.

Each seed's evaluation (program, calibrate, drift, evaluate with the read noise seeded by
the seed: :func:`spikecim.analog.evaluate.monte_carlo`) depends on nothing but the model
and the seed, so the seeds can run anywhere in any order: :func:`map_seeds` returns the
results in the order of the seeds, identical to the serial loop's.

- ``workers = 1``: the serial loop, in this process.
- ``workers = N > 1``: N worker processes on this machine, started fresh ("spawn") with the
  job pickled to each. Not forked: torch's OpenMP runtime (GNU libgomp) does not survive a
  fork once its threads have run, and a forked worker that runs torch on two or more
  threads hangs. Each worker runs torch with ``max(1, threads // N)`` threads, ``threads``
  this process's count. Inside ``with worker_pool(N):`` every call with ``workers = N``
  uses the same N processes, each call's job handed over once per worker through a file,
  so the start of a process, its imports and its first touch of the working memory are
  paid once for all the passes of a stage, not once per pass.
- ``ray_address``: one Ray task per seed on the cluster at that address (``"local"``
  starts one on this machine); needs ``pip install ray``.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from spikecim.errors import SpikecimError
from spikecim.memory import keep_freed_memory

__all__ = ["map_seeds", "worker_pool"]

_JOB: Callable[[int], Any] | None = None  # the job of this worker process (set by _init)
_JOB_FILE: str | None = None  # in a kept worker: the file _JOB was loaded from
_POOL: tuple[int, ProcessPoolExecutor, Path] | None = None  # worker_pool's: (workers, pool, job folder)
_CALLS = itertools.count()  # numbers the job files of the kept pools


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Path | None]:
    """Keep ``workers`` worker processes for every :func:`map_seeds` call with that count in
    the block (module docstring); they stop at its end, and the folder of their job files,
    which the block gets, is removed. ``workers = 1``: nothing to keep (None); inside another
    kept pool: that pool's folder."""
    global _POOL
    _check(workers)
    if workers == 1 or _POOL is not None:  # serial, or a pool is already kept
        yield None if _POOL is None else _POOL[2]
        return
    jobs = Path(tempfile.mkdtemp(prefix="spikecim-jobs-"))
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(None, _threads(workers)),
    )
    _POOL = (workers, pool, jobs)
    try:
        yield jobs
    finally:
        _POOL = None
        pool.shutdown(cancel_futures=True)
        shutil.rmtree(jobs, ignore_errors=True)


def map_seeds(
    job: Callable[[int], Any],
    seeds: Sequence[int],
    workers: int = 1,
    ray_address: str | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[job(s) for s in seeds]``, serially, in ``workers`` processes or as Ray tasks (module
    docstring). ``job`` must be picklable for Ray and for workers started by spawning;
    ``on_result(seed, result)`` is called in this process in the order of the seeds."""
    _check(workers)
    seeds = list(seeds)
    if ray_address is not None:
        results = _ray_map(job, seeds, ray_address)
        for s, r in zip(seeds, results, strict=True):
            if on_result:
                on_result(s, r)
        return results
    if workers == 1 or len(seeds) < 2:
        results = []
        for s in seeds:
            results.append(job(s))
            if on_result:
                on_result(s, results[-1])
        return results
    if _POOL is not None and _POOL[0] == workers:
        return _kept_map(job, seeds, on_result)
    workers = min(workers, len(seeds))
    ctx = multiprocessing.get_context("spawn")  # not fork: see the module docstring
    results = []
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init, initargs=(job, _threads(workers))
    ) as pool:
        for s, r in zip(seeds, pool.map(_run, seeds), strict=True):
            results.append(r)
            if on_result:
                on_result(s, r)
    return results


def _kept_map(
    job: Callable[[int], Any], seeds: list[int], on_result: Callable[[int, Any], None] | None
) -> list[Any]:
    """:func:`map_seeds` on the kept pool: the job pickled once into the pool's folder, each
    worker loading it at its first seed of this call."""
    _, pool, jobs = _POOL
    name = str(jobs / f"job-{next(_CALLS)}.pkl")  # a name no earlier call of this pool had
    try:
        with open(name, "wb") as f:
            pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
        results = []
        for s, r in zip(seeds, pool.map(_run_from_file, [name] * len(seeds), seeds), strict=True):
            results.append(r)
            if on_result:
                on_result(s, r)
        return results
    finally:
        Path(name).unlink(missing_ok=True)


def _check(workers: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpikecimError(f"analog.workers: must be an integer >= 1, got {workers!r}")


def _threads(workers: int) -> int:
    return max(1, torch.get_num_threads() // workers)


def _init(job: Callable[[int], Any] | None, threads: int) -> None:
    global _JOB
    _JOB = job
    torch.set_num_threads(threads)
    keep_freed_memory()  # a process spikecim owns, as the spikecim command's


def _run(seed: int) -> Any:
    assert _JOB is not None  # set by _init in every worker
    return _JOB(seed)


def _run_from_file(path: str, seed: int) -> Any:
    global _JOB, _JOB_FILE
    if _JOB_FILE != path:  # a new call's job (each call pickles to a new file)
        with open(path, "rb") as f:
            _JOB = pickle.load(f)
        _JOB_FILE = path
    return _JOB(seed)


def _ray_map(job: Callable[[int], Any], seeds: list[int], address: str) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise SpikecimError("analog.ray_address: needs Ray (pip install ray)") from None
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpikecimError(f"analog.ray_address: cannot connect to '{address}': {first}") from None
    remote = ray.remote(_call)
    job_ref = ray.put(job)
    return ray.get([remote.remote(job_ref, s) for s in seeds])


def _call(job: Callable[[int], Any], seed: int) -> Any:
    return job(seed)
