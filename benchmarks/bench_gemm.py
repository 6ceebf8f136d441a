"""The tile products of the noisy forward (not a test): ``python benchmarks/bench_gemm.py``.

Records the matrix products one noisy forward of VGG-9 (the ANN at CIFAR-10 size, batch 32,
``pcm-aihwkit``; ``--model convnet``: the convnet ANN on 8×8 digits, whose convolutions'
patches are laid out as rows, ``gemm.prefers_rows``) asks for, then times each on the same
operands through
:mod:`spikecim.analog.gemm` (oneDNN where it applies) and through torch's product
(``torch.matmul`` / ``torch.mm``, MKL), interleaved in every round, median of ``--repeats``,
CPU time of the calling thread, 1 torch thread by default. Prints one row per distinct shape
and the totals per forward. These are the products of the three passes (the forward is
recorded with ``SPIKECIM_GEMM=onednn``); on AVX-512 CPUs the analog-input convolutions run
in one pass instead (``benchmarks/bench_conv_kernel.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter

import torch

from spikecim.analog import drift, gemm, load_crossbar_config, program, to_analog
from spikecim.models import create_model
from spikecim.timing import interleaved_times

INPUTS = {"vgg9": (3, 32), "convnet": (1, 8)}  # channels, image size


def recorded_products(name: str, batch: int) -> Counter:
    """``(kind, m shape, x shape)``: how often one forward of model ``name`` calls each product."""
    model = create_model(name, spiking=False).eval()
    am = to_analog(model, load_crossbar_config("pcm-aihwkit"))
    program(am, 0)
    drift(am, 3600.0)
    seen: Counter = Counter()
    patch, rows = gemm.patch_product, gemm.rows_product

    def patch_seen(m, x, out):
        seen["patches", tuple(m.shape), tuple(x.shape)] += 1
        return patch(m, x, out)

    def rows_seen(x, m, out=None):
        seen["rows", tuple(m.shape), tuple(x.shape)] += 1
        return rows(x, m, out)

    gemm.patch_product, gemm.rows_product = patch_seen, rows_seen
    saved = os.environ.get("SPIKECIM_GEMM")
    os.environ["SPIKECIM_GEMM"] = "onednn"  # the passes' products, not the one-pass kernel's (conv_kernel.py)
    try:
        with torch.no_grad():
            channels, size = INPUTS[name]
            am(torch.rand(1, batch, channels, size, size))
    finally:
        gemm.patch_product, gemm.rows_product = patch, rows
        if saved is None:
            del os.environ["SPIKECIM_GEMM"]
        else:
            os.environ["SPIKECIM_GEMM"] = saved
    return seen


def timed_pair(kind: str, m: torch.Tensor, x: torch.Tensor):
    """``([torch's product, spikecim's], FLOPs)`` of one recorded product."""
    if kind == "patches":
        out = torch.empty(x.shape[0], m.shape[1], x.shape[2])
        fns = [lambda: torch.matmul(m.T, x, out=out), lambda: gemm.patch_product(m, x, out)]
        return fns, 2 * x.shape[0] * m.shape[0] * m.shape[1] * x.shape[2]
    out = torch.empty(x.shape[0], m.shape[1])
    return [lambda: torch.mm(x, m, out=out), lambda: gemm.rows_product(x, m, out)], 2 * x.shape[0] * m.numel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model", choices=sorted(INPUTS), default="vgg9")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"oneDNN GEMM reachable: {gemm.available()}; torch {torch.__version__}, {args.threads} thread(s)")
    print(
        "| product | m | x | calls | torch (ms) | spikecim.analog.gemm (ms) | speed-up | GFLOP/s torch / gemm |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    total_torch = total_ours = 0.0
    for (kind, m_shape, x_shape), calls in sorted(recorded_products(args.model, args.batch).items()):
        g = torch.Generator().manual_seed(0)
        m, x = torch.randn(m_shape, generator=g), torch.randn(x_shape, generator=g)
        fns, flops = timed_pair(kind, m, x)
        t_torch, t_ours = [
            statistics.median(ts) for ts in interleaved_times(fns, args.repeats, clock=time.thread_time)
        ]
        total_torch += calls * t_torch
        total_ours += calls * t_ours
        print(
            f"| {kind} | {list(m_shape)} | {list(x_shape)} | {calls} | {t_torch * 1e3:.2f} | {t_ours * 1e3:.2f} "
            f"| {t_torch / t_ours:.2f}× | {flops / t_torch / 1e9:.0f} / {flops / t_ours / 1e9:.0f} |"
        )
    print(
        f"\nper forward: torch {total_torch * 1e3:.1f} ms, spikecim.analog.gemm {total_ours * 1e3:.1f} ms "
        f"({total_torch / total_ours:.2f}×)"
    )


if __name__ == "__main__":
    main()
