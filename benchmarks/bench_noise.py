"""The Gaussian generator of the analog simulator (not a test): ``python benchmarks/bench_noise.py``.

1. float32 N(0, 1) draws added in place: spikecim's Philox4x32-10 kernel with its table
   inverse CDF (:mod:`spikecim.analog.noise`, ``add_normal_``) against torch's ``normal_``
   on the same 8.4 M-element tensor;
2. one noisy read of every crossbar of VGG-9 (the ANN at CIFAR-10 size, ``pcm-aihwkit``,
   12.6 M cells in G+/G− pairs): ``read_matrix`` (one fused pass per layer) against torch's
   passes (``normal_``, ``mul_``, ``add_``, ``clamp_``, then G+ − G−) on the same state.

Both are timed in CPU time of the calling thread (``time.thread_time``: a shared, loaded
machine inflates wall-clock times but hardly the CPU time), 1 torch thread by default,
interleaved in every round, median of ``--repeats``; nanoseconds per element or cell.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spikecim.analog import drift, noise, program, to_analog
from spikecim.analog.scratch import Scratch
from spikecim.analog.tiles import read_matrix
from spikecim.models import create_model
from spikecim.timing import interleaved_times


def torch_read(state, out: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """The read as torch operations: the code of spikecim before the fused kernel."""
    g = work.normal_().mul_(state.read_std_k).add_(state.g_drift_k).clamp_(min=0.0)
    return torch.sub(g[0], g[1], out=out)


def median_cpu_times(fns, repeats: int) -> list[float]:
    return [statistics.median(ts) for ts in interleaved_times(fns, repeats, clock=time.thread_time)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    n = 1 << 23
    x = torch.empty(n)
    t_ours, t_torch = median_cpu_times([lambda: noise.add_normal_(x, 1.0), lambda: x.normal_()], args.repeats)
    print(f"N(0, 1), {n} draws: spikecim {t_ours / n * 1e9:.2f} ns, torch normal_ {t_torch / n * 1e9:.2f} ns")

    model = to_analog(create_model("vgg9", spiking=False).eval(), "pcm-aihwkit")
    program(model, 0)
    drift(model, 3600.0)
    layers = [m for m in model.modules() if getattr(m, "tiles", None) is not None]
    scratch = [Scratch() for _ in layers]
    outs = [torch.empty(m.tiles.g_drift_k.shape[1:]) for m in layers]
    works = [torch.empty_like(m.tiles.g_drift_k) for m in layers]
    cells = sum(m.tiles.g_drift_k.numel() for m in layers)

    def fused():
        for m, s in zip(layers, scratch, strict=True):
            read_matrix(m.tiles, m.config, s)

    def passes():
        for m, o, w in zip(layers, outs, works, strict=True):
            torch_read(m.tiles, o, w)

    t_ours, t_torch = median_cpu_times([fused, passes], args.repeats)
    print(
        f"VGG-9 read, {len(layers)} layers, {cells / 1e6:.1f} M cells: spikecim {t_ours * 1e3:.1f} ms "
        f"({t_ours / cells * 1e9:.2f} ns/cell), torch passes {t_torch * 1e3:.1f} ms ({t_torch / cells * 1e9:.2f} ns/cell)"
    )


if __name__ == "__main__":
    main()
