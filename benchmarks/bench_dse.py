"""Sampler and storage overhead of a hardware-only study (examples/dse/hardware.yaml).

    python benchmarks/bench_dse.py [--trials 1000]

Prints the CPU time per design of the evaluation alone (the fixed workload costed on one
architecture), then per trial of the whole ask/tell loop (NSGA-II, population 50, duplicates
reused) on Optuna's in-memory storage and on the journal file with and without an fsync per
line. CPU time (process_time) is what to read on a shared machine; wall clock is printed
beside it.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import optuna

from spikecim.dse import load_space
from spikecim.dse.evaluate import Evaluator
from spikecim.dse.study import directions, make_sampler, open_study, run_trials

SPACE = Path(__file__).resolve().parent.parent / "examples" / "dse" / "hardware.yaml"


def _timed(label: str, n: int, fn) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{label}: {n} trials, {cpu / n * 1e3:.2f} ms CPU each ({n / cpu * 60:,.0f} per CPU-minute); "
        f"wall {wall:.1f} s ({n / wall * 60:,.0f} per minute)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    n = ap.parse_args().trials
    space = load_space(SPACE)
    out = Path(tempfile.mkdtemp(prefix="bench-dse-"))
    try:
        ev = Evaluator(space, out)
        rng = random.Random(0)
        designs = [{k.name: rng.choice(k.grid()) for k in space.knobs} for _ in range(n)]
        _timed("evaluation only (no sampler, no storage)", n, lambda: [ev(d) for d in designs])
        memory = optuna.create_study(sampler=make_sampler(space), directions=directions(space))
        _timed("NSGA-II, InMemoryStorage", n, lambda: run_trials(memory, space, ev, n))
        for fsync in (False, True):
            sp = space.model_copy(update={"journal_fsync": fsync})
            study = open_study(sp, out / f"journal-{fsync}")
            _timed(
                f"NSGA-II, journal file, fsync={fsync}", n, lambda s=study, sp=sp: run_trials(s, sp, ev, n)
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
