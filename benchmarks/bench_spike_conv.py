"""spikecim's event-driven convolution of spikes against torch's (not a test):
``python benchmarks/bench_spike_conv.py``.

The 3×3, stride-1 convolutions that read spikes in the built-in spiking VGG-9 and ResNet-19,
at T·B = 64 (B = 16, T = 4), on spikes drawn at each ``--rate`` (default 0.1, 0.2, 0.3: the
layers of the training benchmark's models fire at 19–31 % at initialisation), through
:mod:`spikecim.nn.kernels.spike_conv_cpu` and ``F.conv2d``: the forward, the weight
gradient alone, and forward + backward with both gradients (spikecim's input gradient is
the transposed convolution by Winograd's algorithm, ``benchmarks/bench_winograd.py``;
``SPIKECIM_WINOGRAD=torch``: torch's). Interleaved in every round, median of ``--repeats``
rounds, wall clock, 1 torch thread by default. ``SPIKECIM_ISA=avx2`` in the environment times
the kernel's AVX2 loops on a CPU with AVX-512.

A second table does the same for ResNet-19's 3×3 convolutions of stride 2 (the first of the
second and third stages), whose forward and weight gradient run on the kernel and whose input
gradient is torch's transposed convolution. A third times ResNet-19's projection shortcuts
(1×1, stride 2, no padding), forward + backward with both gradients, on spikes at 0.3 and on
a dense input: torch's strided convolution against spikecim's, which convolves the positions
the stride lands on.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from spikecim.memory import keep_freed_memory
from spikecim.nn.kernels import spike_conv_cpu
from spikecim.timing import interleaved_times

# (C, H = W, Co): VGG-9's spiking layers share the first two shapes, ResNet-19's the others
SHAPES = [(64, 32, 64), (128, 16, 128), (128, 32, 128), (256, 16, 256), (512, 8, 512)]
# (C, H = W, Co) of ResNet-19's downsampling blocks: their 3×3 stride-2 convolutions and their
# 1×1 stride-2 shortcuts have the same channels and maps
DOWNSAMPLING = [(128, 32, 256), (256, 16, 512)]


def _calls(conv, x: torch.Tensor, weight: torch.Tensor, gy: torch.Tensor, stride: int = 1, padding: int = 1):
    leaf, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
    frozen = x.clone()

    def weight_grad():
        w.grad = None
        conv(frozen, w, None, stride, padding).backward(gy)

    def forward_backward():
        leaf.grad = w.grad = None
        conv(leaf, w, None, stride, padding).backward(gy)

    return [lambda: conv(x, weight, None, stride, padding), weight_grad, forward_backward]


def _table(shapes, stride: int, rates, repeats: int, gen: torch.Generator) -> None:
    """Forward, forward + weight gradient, forward + backward of 3×3 convolutions (padding 1) of
    ``stride`` on spikes at each rate, torch's against spikecim's: one markdown table."""
    print(
        f"| C → Co, H×W, stride {stride} | rate | torch fwd | spikecim fwd | × | torch fwd + weight grad | "
        "spikecim | × | torch fwd+bwd | spikecim | × |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c, hw, co in shapes:
        weight = torch.randn(co, c, 3, 3, generator=gen) * 0.05
        gy = torch.randn(64, co, hw // stride, hw // stride, generator=gen)
        for rate in rates:
            x = (torch.rand(64, c, hw, hw, generator=gen) < rate).float()
            t = interleaved_times(
                [
                    *_calls(F.conv2d, x, weight, gy, stride),
                    *_calls(spike_conv_cpu.conv2d, x, weight, gy, stride),
                ],
                repeats,
            )
            tf, tw, tb, of, ow, ob = (statistics.median(v) * 1e3 for v in t)
            print(
                f"| {c} → {co}, {hw}×{hw} | {rate:g} | {tf:.1f} | {of:.1f} | {tf / of:.2f} | {tw:.1f} | {ow:.1f} | "
                f"{tw / ow:.2f} | {tb:.1f} | {ob:.1f} | {tb / ob:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rate", type=float, action="append", help="spike rate (repeatable)")
    args = parser.parse_args()
    if not spike_conv_cpu.available():
        raise SystemExit(
            "bench_spike_conv: the kernel does not run here (no AVX-512 F/BW/VL or AVX2 + FMA CPU, or no compiler)"
        )
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} rounds, ms")
    _table(SHAPES, 1, args.rate or (0.1, 0.2, 0.3), args.repeats, gen)
    print()
    _table(DOWNSAMPLING, 2, args.rate or (0.2, 0.3), args.repeats, gen)
    print("\n| shortcut C → Co, H×W, 1×1 stride 2 | input | torch fwd+bwd | spikecim | × |")
    print("| --- | --- | --- | --- | --- |")
    for c, hw, co in DOWNSAMPLING:
        weight = torch.randn(co, c, 1, 1, generator=gen) * 0.05
        gy = torch.randn(64, co, hw // 2, hw // 2, generator=gen)
        spikes = (torch.rand(64, c, hw, hw, generator=gen) < 0.3).float()
        for name, x in (("spikes at 0.3", spikes), ("dense", torch.rand(64, c, hw, hw, generator=gen))):
            t = interleaved_times(
                [
                    _calls(F.conv2d, x, weight, gy, 2, 0)[2],
                    _calls(spike_conv_cpu.conv2d, x, weight, gy, 2, 0)[2],
                ],
                args.repeats,
            )
            tb, ob = (statistics.median(v) * 1e3 for v in t)
            print(f"| {c} → {co}, {hw}×{hw} | {name} | {tb:.1f} | {ob:.1f} | {tb / ob:.2f} |")


if __name__ == "__main__":
    main()
