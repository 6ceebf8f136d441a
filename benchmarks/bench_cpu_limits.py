"""What this CPU's core allows the compiled kernels (not a test): ``python benchmarks/bench_cpu_limits.py``.

Four C programs in ``benchmarks/c/``, built with the system compiler against the kernels'
own headers and run on one core, give the ceilings that BENCHMARKS.md and docs/speed.md
measure the kernels against:

1. ``row_adds.c``: vector additions of weight rows read from L1, the event-driven
   convolution forward's inner step (G vector adds per second);
2. ``micro_tile.c``: the analog convolution kernel's micro-tile alone on VGG-9's
   second-layer shape (GFLOP/s), beside torch's convolution of that layer (oneDNN, 1 thread,
   timed here);
3. ``icdf_reads.c``: the float32 normal transform of ``philox.h`` with its table read in
   other ways (ns per normal; every variant that gives the same bits is checked to), and an
   8-lane gather with all, half, a quarter or none of its lanes on (ns per gather); on a
   CPU without AVX-512, the AVX2 loops' Philox words and table transform apart;
4. ``cheaper_normals.c``: what a cheaper float32 normal generator would cost against
   ``philox.h``'s (ns per normal): ARS4x32-7 words on VAES (checked against Random123's
   known answers) and a per-binade polynomial inverse CDF without table reads (its largest
   error against the double-precision quantile printed).

Each program takes the best of several rounds, its variants interleaved. Prints a Markdown
table; ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from spikecim.memory import keep_freed_memory
from spikecim.nn.kernels import cbuild
from spikecim.timing import interleaved_times

HERE = Path(__file__).parent / "c"
KERNELS = Path(cbuild.__file__).parent
PROGRAMS = {  # program: the unit of its figures
    "row_adds": "G vector adds / s",
    "micro_tile": "GFLOP/s",
    "icdf_reads": "ns per normal",
    "cheaper_normals": "ns per normal",
}


def run_program(name: str, build: Path) -> list[tuple[str, float]]:
    """``[(figure, value)]`` printed by ``benchmarks/c/<name>.c``, built into ``build``."""
    exe = build / name
    flags = ["-O2", "-ffp-contract=off", "-fno-math-errno", "-DREAL=float", f"-I{KERNELS}"]
    subprocess.run([cbuild.compiler(), *flags, str(HERE / f"{name}.c"), "-o", str(exe), "-lm"], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():  # "<label><TAB><value>", or "skipped: <why>"
        label, _, value = line.partition("\t")
        if not value:
            print(f"{name}: {line}")
            continue
        rows.append((label, float(value)))
    return rows


def torch_conv_gflops(repeats: int) -> float:
    """torch's convolution of VGG-9's second layer (batch 32, 64 → 64, 32 × 32), 1 thread."""
    x, w = torch.rand(32, 64, 32, 32), torch.randn(64, 64, 3, 3)
    (seconds,) = interleaved_times([lambda: F.conv2d(x, w, padding=1)], repeats)
    return 2 * 32 * 32 * 32 * 64 * 576 / min(seconds) / 1e9  # the best round, as the programs take


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9, help="rounds of torch's convolution")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[tuple[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="spikecim-limits-") as build:
        for name in PROGRAMS:
            results[name] = run_program(name, Path(build))
    results["micro_tile"].append(("torch's convolution of the layer", torch_conv_gflops(args.repeats)))
    print("| program | figure | value | unit |")
    print("| --- | --- | --- | --- |")
    for name, rows in results.items():
        unit = PROGRAMS[name]
        for label, value in rows:
            print(f"| {name} | {label} | {value:.3g} | {'' if '(ns per gather)' in label else unit} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
