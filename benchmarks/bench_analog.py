"""Benchmarks of spikecim.analog (not tests): run ``python benchmarks/bench_analog.py``.

1. Noisy inference, PCM preset vs aihwkit 1.1's pure-torch inference tile
   (``TorchInferenceRPUConfig``: PCMLikeNoiseModel, IO defaults, 512×512 tiles), same
   model and batch, measured side by side in one process: median time of one noisy forward,
   and of a Monte-Carlo loop (5 × program, drift to 1 h, forward), and their ratios.
   spikecim draws read noise afresh at every forward; aihwkit draws it once per drift call.
2. Exact IR drop: one factorisation plus 1000 input vectors for 128×128 and 256×256 arrays.
3. The fast IR-drop model: its calibrated relative error against the exact solver, and time.

Prints a Markdown table; ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from spikecim.analog import drift, program, to_analog
from spikecim.analog.circuit import (
    calibrate_fast,
    effective_conductance,
    effective_conductance_fast,
    solve_crossbar,
)
from spikecim.models import create_model


def _median_times(fns, repeats: int) -> list[float]:
    """Median seconds of each callable, the callables interleaved in every round (so a change
    of load on a shared machine hits all of them alike), after one warm-up call each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def _models():
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Flatten(), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    conv = create_model("convnet", spiking=False)
    snn = create_model("convnet", spiking=True)
    vgg = create_model("vgg9", spiking=False)  # CIFAR-10 size: 3×32×32, 5.9 M weights
    vgg_snn = create_model("vgg9", spiking=True)
    return [
        ("MLP 1024-512-512-10, batch 256", mlp.eval(), torch.rand(256, 1, 32, 32)),
        ("convnet ANN (digits), batch 256", conv.eval(), torch.rand(1, 256, 1, 8, 8)),
        ("convnet SNN T=4 (digits), batch 64", snn.eval(), torch.rand(4, 64, 1, 8, 8)),
        ("VGG-9 ANN (CIFAR-10 size), batch 32", vgg.eval(), torch.rand(1, 32, 3, 32, 32)),
        ("VGG-9 SNN T=4 (CIFAR-10 size), batch 8", vgg_snn.eval(), torch.rand(4, 8, 3, 32, 32)),
    ]


def bench_inference(repeats: int) -> list[dict]:
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    rows = []
    for name, model, x in _models():
        ours = to_analog(model, "pcm-aihwkit")
        program(ours, 0)
        drift(ours, 3600.0)
        theirs = convert_to_analog(model, TorchInferenceRPUConfig())
        theirs.eval()
        theirs.drift_analog_weights(3600.0)
        with torch.no_grad():
            t_ours, t_theirs = _median_times(
                [lambda ours=ours, x=x: ours(x), lambda theirs=theirs, x=x: theirs(x)], repeats
            )

            def mc_ours(ours=ours, x=x):
                for s in range(5):
                    program(ours, s)
                    drift(ours, 3600.0)
                    ours(x)

            def mc_theirs(theirs=theirs, x=x):
                for _ in range(5):
                    theirs.program_analog_weights()
                    theirs.drift_analog_weights(3600.0)
                    theirs(x)

            t_mc_ours, t_mc_theirs = _median_times([mc_ours, mc_theirs], max(1, repeats // 3))
        rows.append(
            {
                "model": name,
                "spikecim_s": t_ours,
                "aihwkit_s": t_theirs,
                "speedup": t_theirs / t_ours,
                "mc_spikecim_s": t_mc_ours,
                "mc_aihwkit_s": t_mc_theirs,
                "mc_speedup": t_mc_theirs / t_mc_ours,
            }
        )
    return rows


def bench_ir_drop() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in (128, 256):
        G = rng.uniform(0, 25e-6, (n, n))
        v = rng.uniform(0, 0.2, (1000, n))
        t = time.perf_counter()
        I_exact = solve_crossbar(G, v, 1.0)
        t_exact = time.perf_counter() - t
        fit = calibrate_fast(G[:64, :64], 1.0)  # calibrated on a 64×64 corner, used on the full array
        t = time.perf_counter()
        I_fast = v @ effective_conductance_fast(G, 1.0, kappa=fit.kappa)
        t_fast = time.perf_counter() - t
        err_fast = float(np.linalg.norm(I_fast - I_exact) / np.linalg.norm(I_exact))
        err_ideal = float(np.linalg.norm(v @ G - I_exact) / np.linalg.norm(I_exact))
        rows.append(
            {
                "array": f"{n}x{n}",
                "exact_s_1000_vectors": t_exact,
                "fast_s_1000_vectors": t_fast,
                "fast_rel_error": err_fast,
                "ideal_rel_error": err_ideal,
                "kappa": fit.kappa,
            }
        )
    G = rng.uniform(0, 25e-6, (128, 128))
    t = time.perf_counter()
    effective_conductance(G, 1.0, solver="splu")
    rows.append(
        {"array": "128x128 (SuperLU, for comparison)", "exact_s_1000_vectors": time.perf_counter() - t}
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both libraries (1: stable on a shared machine)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    inf = bench_inference(args.repeats)
    ir = bench_ir_drop()
    print(f"machine: {machine}\n")
    print("One noisy forward (median):\n")
    print("| model | spikecim (s) | aihwkit 1.1 torch tile (s) | speed-up |\n| --- | --- | --- | --- |")
    for r in inf:
        print(f"| {r['model']} | {r['spikecim_s']:.4f} | {r['aihwkit_s']:.4f} | {r['speedup']:.1f}× |")
    print("\nMonte-Carlo: 5 × (program, drift to 1 h, one noisy forward):\n")
    print("| model | spikecim (s) | aihwkit 1.1 torch tile (s) | speed-up |\n| --- | --- | --- | --- |")
    for r in inf:
        print(
            f"| {r['model']} | {r['mc_spikecim_s']:.3f} | {r['mc_aihwkit_s']:.3f} | {r['mc_speedup']:.1f}× |"
        )
    print(
        "\n| array | exact IR drop, factorise + 1000 vectors (s) | fast model (s) | fast rel. error | no-IR-drop rel. error |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in ir:
        if "fast_s_1000_vectors" in r:
            print(
                f"| {r['array']} | {r['exact_s_1000_vectors']:.3f} | {r['fast_s_1000_vectors']:.4f} | "
                f"{r['fast_rel_error']:.2e} | {r['ideal_rel_error']:.2e} |"
            )
        else:
            print(f"| {r['array']} | {r['exact_s_1000_vectors']:.3f} | | | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "inference": inf, "ir_drop": ir}, f, indent=2)


if __name__ == "__main__":
    main()
