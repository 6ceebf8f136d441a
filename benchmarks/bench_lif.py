"""Linear + LIF forward+backward: spikecim against snnTorch, SpikingJelly, Norse and the Linear floor.

    python benchmarks/bench_lif.py                       # F=512, T=100, B=16 and 64
    python benchmarks/bench_lif.py --batch 16 --repeats 11 --json results.json

The default sizes are those of the peer timings in docs/references.md#peer-speed.
The same measurement as ``spikecim bench`` (spikecim.nn.kernels.benchmark); this script
adds saving the JSON next to the Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spikecim.memory import keep_freed_memory
from spikecim.nn.kernels.benchmark import format_report, run_lif_benchmark


def main() -> None:
    keep_freed_memory()  # as the spikecim command does
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--batch", type=int, action="append", help="batch size; repeat for several (default 16, 64)"
    )
    ap.add_argument("--timesteps", type=int, default=100)
    ap.add_argument("--features", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    report = run_lif_benchmark(
        batches=tuple(args.batch or (16, 64)),
        timesteps=args.timesteps,
        features=args.features,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
    )
    print(format_report(report))
    if args.json:
        args.json.write_text(report.to_json())


if __name__ == "__main__":
    main()
