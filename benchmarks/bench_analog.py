"""Benchmarks of spikecim.analog (not tests): run ``python benchmarks/bench_analog.py``.

1. Noisy inference, PCM preset vs aihwkit 1.1's pure-torch inference tile
   (``TorchInferenceRPUConfig``: PCMLikeNoiseModel, IO defaults, 512×512 tiles), same
   model and batch, measured side by side in one process: median time of one noisy forward,
   and of a Monte-Carlo loop (5 × program, drift to 1 h, forward), and their ratios.
   spikecim draws read noise afresh at every forward; aihwkit draws it once per
   ``drift_analog_weights`` call, so the same work on its side (a fresh read-noise draw for
   every forward) is ``drift_analog_weights`` + forward: both are timed.
2. Exact IR drop: one factorisation plus 1000 input vectors for 128×128 and 256×256 arrays.
3. The fast IR-drop model: its calibrated relative error against the exact solver, and time.

Prints a Markdown table; ``--json PATH`` also writes the figures. The same measurement as
``spikecim bench --suite analog`` (spikecim.analog.benchmark).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spikecim.analog.benchmark import format_report, run_analog_benchmark
from spikecim.memory import keep_freed_memory


def main() -> None:
    keep_freed_memory()  # as the spikecim command does
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both libraries (1: stable on a shared machine)",
    )
    args = ap.parse_args()
    report = run_analog_benchmark(repeats=args.repeats, threads=args.threads)
    print(format_report(report))
    if args.json:
        args.json.write_text(report.to_json())


if __name__ == "__main__":
    main()
