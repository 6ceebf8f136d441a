"""The gradients of 3×3 convolutions by Winograd's F(4×4, 3×3) against torch's (not a test):
``python benchmarks/bench_winograd.py``.

The input gradients of the 3×3, stride-1 convolutions of the built-in spiking VGG-9 and
ResNet-19 at T·B = 64 (B = 16, T = 4): Winograd's transposed convolution
(:func:`spikecim.nn.kernels.winograd.conv3x3` with ``flip``, run in every table whatever
``winograd.applies`` says) against ``F.conv_transpose2d`` with the same output gradient and
weights, interleaved in every
round, median of ``--repeats`` rounds, wall clock, 2 torch threads by default (the training
benchmark's). Also the largest error of each against torch's float64 result, as a fraction
of the largest output. A second table times the weight gradient of VGG-9's convolutions of
dense maps (its pooled spikes) against torch's (``convolution_backward`` for the weight
alone), a third the input gradients of layers with fewer channels, which
``winograd.applies`` leaves to torch, and a fourth those of maps whose 4×4 output tiles
overhang them (2×2 to 14×14: the tiles compute up to 4× the outputs the map has), with that
factor, which ``winograd.applies`` bounds. A fifth times the weight gradient of spikes on the
first table's layers at spike rates of 0.2 and 0.3: the event-driven sum
(``spike_conv_cpu._weight_grad`` on the spikes' bits) against Winograd's on the spikes
unpacked from those bits, the unpacking included, and which of the two
``spike_conv_cpu._WINOGRAD_WGRAD_FROM`` picks.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from spikecim.memory import keep_freed_memory
from spikecim.nn.kernels import spike_conv_cpu, winograd
from spikecim.timing import interleaved_times

# (C, H = W, Co) of the forward convolution: VGG-9's layers, then ResNet-19's
SHAPES = [
    (64, 32, 64),
    (128, 16, 128),
    (256, 8, 256),
    (128, 32, 128),
    (256, 16, 256),
    (512, 8, 512),
    (128, 16, 256),
]
DENSE = [(64, 16, 128), (128, 8, 256)]  # VGG-9's convolutions of pooled spikes
# (samples, C, H = W, Co) around winograd._MIN_CHANNELS, run through conv3x3 whatever the
# thresholds: the few-channel layers of small models, which the thresholds leave to torch
SMALL = [
    (256, 16, 8, 32),
    (256, 32, 8, 64),
    (256, 32, 8, 32),
    (64, 16, 32, 16),
    (64, 32, 16, 32),
    (256, 64, 4, 64),
]
# (samples, C = Co, H = W): maps 4×4 tiles cover with outputs to spare (and 4, 8: none)
MAPS = [
    (64, 512, 2),
    (64, 256, 3),
    (64, 256, 4),
    (64, 256, 5),
    (64, 256, 6),
    (64, 512, 6),
    (64, 256, 7),
    (64, 256, 8),
    (64, 128, 9),
    (64, 128, 13),
    (64, 256, 14),
]


def _input_gradients(gy: torch.Tensor, weight: torch.Tensor) -> list:
    """torch's transposed convolution of ``gy`` and Winograd's, whatever the thresholds."""
    return [
        lambda: F.conv_transpose2d(gy, weight, padding=1),
        lambda: winograd.conv3x3(gy, weight, (1, 1), flip=True),
    ]


def _weight_gradients_of_spikes(shape: torch.Size, rowbits: torch.Tensor, gy: torch.Tensor, weight) -> list:
    """The event-driven weight gradient of the spikes ``rowbits`` holds, and Winograd's of the
    spikes unpacked from them."""
    return [
        lambda: spike_conv_cpu._weight_grad(shape, rowbits, gy, weight.shape, (1, 1)),
        lambda: winograd.weight_grad3x3(
            spike_conv_cpu._unpack_rowbits(rowbits, shape[-1], gy.dtype), gy, (1, 1)
        ),
    ]


def _medians_ms(calls: list, repeats: int) -> list[float]:
    return [statistics.median(v) * 1e3 for v in interleaved_times(calls, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64, help="T·B, the samples of the gradient")
    args = parser.parse_args()
    if not winograd.available():
        raise SystemExit(
            "bench_winograd: the kernel does not run here (no C compiler, or SPIKECIM_WINOGRAD=torch)"
        )
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), T·B = {args.batch}, median of {args.repeats} rounds, ms"
    )
    print("| C ← Co, H×W | torch | Winograd | × | torch error | Winograd error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c, hw, co in SHAPES:
        weight = torch.randn(co, c, 3, 3, generator=gen) * 0.05
        gy = torch.randn(args.batch, co, hw, hw, generator=gen)
        calls = _input_gradients(gy, weight)
        direct, wino = _medians_ms(calls, args.repeats)
        exact = F.conv_transpose2d(gy.double(), weight.double(), padding=1)
        scale = float(exact.abs().max())
        errors = [float((call().double() - exact).abs().max()) / scale for call in calls]
        print(
            f"| {c} ← {co}, {hw}×{hw} | {direct:.1f} | {wino:.1f} | {direct / wino:.2f} | "
            f"{errors[0]:.1e} | {errors[1]:.1e} |"
        )

    print()
    print("| weight gradient, C → Co, H×W | torch | Winograd | × | torch error | Winograd error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c, hw, co in DENSE:
        x = torch.rand(args.batch, c, hw, hw, generator=gen)
        gy = torch.randn(args.batch, co, hw, hw, generator=gen)
        weight = torch.empty(co, c, 3, 3)
        calls = [
            lambda x=x, gy=gy, w=weight: torch.ops.aten.convolution_backward(
                gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
            )[1],
            lambda x=x, gy=gy: winograd.weight_grad3x3(x, gy, (1, 1)),
        ]
        direct, wino = _medians_ms(calls, args.repeats)
        exact = torch.nn.grad.conv2d_weight(x.double(), weight.shape, gy.double(), padding=1)
        scale = float(exact.abs().max())
        errors = [float((call().double() - exact).abs().max()) / scale for call in calls]
        print(
            f"| {c} → {co}, {hw}×{hw} | {direct:.1f} | {wino:.1f} | {direct / wino:.2f} | "
            f"{errors[0]:.1e} | {errors[1]:.1e} |"
        )
    print()
    print("| below the thresholds: samples, C ← Co, H×W | torch | Winograd | × |")
    print("| --- | --- | --- | --- |")
    for n, c, hw, co in SMALL:
        weight = torch.randn(co, c, 3, 3, generator=gen)
        gy = torch.randn(n, co, hw, hw, generator=gen)
        direct, wino = _medians_ms(_input_gradients(gy, weight), args.repeats)
        print(f"| {n}, {c} ← {co}, {hw}×{hw} | {direct:.2f} | {wino:.2f} | {direct / wino:.2f} |")
    print()
    print("| tiles over the map: samples, C ← C, H×W | tile outputs ÷ outputs | torch | Winograd | × |")
    print("| --- | --- | --- | --- | --- |")
    for n, c, hw in MAPS:
        weight = torch.randn(c, c, 3, 3, generator=gen)
        gy = torch.randn(n, c, hw, hw, generator=gen)
        direct, wino = _medians_ms(_input_gradients(gy, weight), args.repeats)
        print(
            f"| {n}, {c} ← {c}, {hw}×{hw} | {winograd.tile_overhang(hw, hw):.2f} | {direct:.2f} | {wino:.2f} | "
            f"{direct / wino:.2f} |"
        )
    if spike_conv_cpu.available():
        _spike_weight_gradients(args, gen)


def _spike_weight_gradients(args, gen: torch.Generator) -> None:
    print()
    print(
        "| weight gradient of spikes, C → Co, H×W | rate | event-driven | Winograd + unpacking | × | picked |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for c, hw, co in SHAPES:
        for rate in (0.2, 0.3):
            x = (torch.rand(args.batch, c, hw, hw, generator=gen) < rate).float()
            gy = torch.randn(args.batch, co, hw, hw, generator=gen)
            weight = torch.empty(co, c, 3, 3)
            _, rowbits, share = spike_conv_cpu._spike_bits(x, (1, 1))
            event, wino = _medians_ms(_weight_gradients_of_spikes(x.shape, rowbits, gy, weight), args.repeats)
            picked = (
                "Winograd"
                if spike_conv_cpu._weight_grad_by_winograd(x, weight, (1, 1), (1, 1), share)
                else "event"
            )
            print(
                f"| {c} → {co}, {hw}×{hw} | {share:.2f} | {event:.1f} | {wino:.1f} | {event / wino:.2f} | {picked} |"
            )


if __name__ == "__main__":
    main()
