"""spikecim's CPU pooling and BatchNorm against torch's (not a test):
``python benchmarks/bench_layers.py``.

Forward and forward + backward of 2×2 average and max pooling on float32 ``[N, C, H, W]``
tensors the size of the built-in models' pools at T·B = 64 (VGG-9 and the convnet), through
:mod:`spikecim.nn.kernels.pool_cpu` and through ``F.avg_pool2d`` / ``F.max_pool2d``; inputs:
spikes (15 % ones, what a spiking model pools) and a ReLU output (half zeros, the rest
positive: what an ANN pools). Then BatchNorm's training step (batch statistics, running
statistics, affine) on the shapes of VGG-9's BatchNorms at T·B = 64, through
:mod:`spikecim.nn.kernels.bn_cpu` and ``F.batch_norm``. Interleaved in every round, median
of ``--repeats`` rounds, wall clock, 1 torch thread by default.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from spikecim.memory import keep_freed_memory
from spikecim.nn.kernels import bn_cpu, pool_cpu
from spikecim.timing import interleaved_times

SHAPES = [(64, 64, 8, 8), (64, 256, 16, 16), (64, 128, 32, 32)]
BN_SHAPES = [(64, 64, 32, 32), (64, 128, 32, 32), (64, 256, 16, 16), (64, 512, 8, 8)]


def _inputs(shape: tuple[int, ...], gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "spikes": (torch.rand(shape, generator=gen) < 0.15).float(),
        "relu": torch.randn(shape, generator=gen).relu(),
    }


def _calls(pool, x: torch.Tensor, gy: torch.Tensor):
    leaf = x.clone().requires_grad_()

    def forward_backward():
        leaf.grad = None
        pool(leaf, 2).backward(gy)

    return [lambda: pool(x, 2), forward_backward]


def _bn_calls(bn, x: torch.Tensor, gy: torch.Tensor):
    C = x.shape[1]
    weight, bias = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
    mean, var = torch.zeros(C), torch.ones(C)
    leaf = x.clone().requires_grad_()

    def forward_backward():
        leaf.grad = weight.grad = bias.grad = None
        bn(leaf, mean, var, weight, bias, True, 0.1, 1e-5).backward(gy)

    return [lambda: bn(x, mean, var, weight, bias, True, 0.1, 1e-5), forward_backward]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} rounds, ms")
    print("| pool | input | shape | torch fwd | spikecim fwd | × | torch fwd+bwd | spikecim fwd+bwd | × |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, ours, theirs in (
        ("avg", pool_cpu.avg_pool2d, F.avg_pool2d),
        ("max", pool_cpu.max_pool2d, F.max_pool2d),
    ):
        for shape in SHAPES:
            gy = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=gen)
            for kind, x in _inputs(shape, gen).items():
                t = interleaved_times([*_calls(theirs, x, gy), *_calls(ours, x, gy)], args.repeats)
                tf, tfb, of, ofb = (statistics.median(v) * 1e3 for v in t)
                print(
                    f"| {name} | {kind} | {list(shape)} | {tf:.2f} | {of:.2f} | {tf / of:.1f} | "
                    f"{tfb:.2f} | {ofb:.2f} | {tfb / ofb:.1f} |"
                )
    print()
    print(
        "| BatchNorm (training) | shape | torch fwd | spikecim fwd | × | torch fwd+bwd | spikecim fwd+bwd | × |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape in BN_SHAPES:
        x, gy = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        t = interleaved_times(
            [*_bn_calls(F.batch_norm, x, gy), *_bn_calls(bn_cpu.batch_norm, x, gy)], args.repeats
        )
        tf, tfb, of, ofb = (statistics.median(v) * 1e3 for v in t)
        print(
            f"| | {list(shape)} | {tf:.2f} | {of:.2f} | {tf / of:.1f} | {tfb:.2f} | {ofb:.2f} | {tfb / ofb:.1f} |"
        )


if __name__ == "__main__":
    main()
