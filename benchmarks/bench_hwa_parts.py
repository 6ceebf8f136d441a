"""Two pieces of the hardware-aware training step on their own (not a test):
``python benchmarks/bench_hwa_parts.py``.

- The range gradient of a convolution tile from its clipped inputs
  (:func:`spikecim.analog.hwa_kernels.conv_range_grad`) on the shape of the convnet's second
  convolution in ``spikecim bench --suite hwa`` (batch 64, a tile of 16 input channels,
  8×8, 64 output channels, 3×3): 3 300 clipped inputs, the count that tile has in that
  benchmark's steps, at random places; and with one clipped input per sample (the fixed
  cost).
- The weight noise of one step of that convnet (its weights split as its tiles are) drawn
  by torch's ``randn`` and by spikecim's compiled generator
  (:func:`spikecim.analog.noise.normal_like`), both from a seeded ``torch.Generator``.
- A convolution tile of VGG-9's 32×32 layer (batch 32, 22 of its 64 input channels, 64
  outputs, 3×3) forward in torch's default layout and in channels-last, the layout
  :class:`spikecim.analog.hwa.HwaLayer` runs its tiles in on the CPU.
- The range gradient on channels-last codes and output gradients of VGG-9's three tile
  shapes in ``spikecim bench --suite hwa`` (29 channels of 8×8 into 256, 26 of 16×16 into
  128, 22 of 32×32 into 64; batch 32; ±2 std clips about 4.5 % of normal inputs), in
  GFLOP/s of its dot products (9 taps × outputs per clipped input).
- One call of the DAC's autograd function (nine arguments) and of the surrogate spike
  function (two), through :class:`spikecim.autograd.Function`'s ``apply`` and through
  torch's ``Function.apply``, which binds each call's arguments to ``forward``'s signature.

Median of ``--repeats`` interleaved rounds, wall clock, 1 torch thread by default.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from spikecim.analog import hwa_kernels
from spikecim.analog.hwa import UPPER, _Dac
from spikecim.analog.noise import normal_like
from spikecim.memory import keep_freed_memory
from spikecim.nn.surrogate import _Heaviside, atan
from spikecim.timing import interleaved_times

B, C, H, W, M = 64, 16, 8, 8, 64
CLIPPED = 3300
# the convnet's weights as its tiles hold them: conv1, conv2 (2 tiles), fc1 (4 tiles), fc2
WEIGHTS = [(32, 9), (64, 144), (64, 144), (128, 256), (128, 256), (128, 256), (128, 256), (10, 128)]
VGG9_TILES = [(29, 8, 256), (26, 16, 128), (22, 32, 64)]  # (input channels, H = W, outputs)
CALLS = 1000  # autograd calls per timed round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    keep_freed_memory()  # as the spikecim command runs
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    g, kernel = torch.randn(B, M, H, W, generator=gen), torch.randn(M, C, 3, 3, generator=gen)
    clipped = torch.zeros(B, C, H, W, dtype=torch.uint8)
    clipped.view(-1)[torch.randperm(clipped.numel(), generator=gen)[:CLIPPED]] = UPPER
    one = torch.zeros_like(clipped)
    one[:, 0, 4, 4] = UPPER
    geometry = ((1, 1), (1, 1), (1, 1))
    weights = [torch.randn(s, generator=gen) for s in WEIGHTS]
    t = interleaved_times(
        [
            lambda: hwa_kernels.conv_range_grad(clipped, kernel, g, geometry),
            lambda: hwa_kernels.conv_range_grad(one, kernel, g, geometry),
            lambda: [torch.randn(w.shape, generator=gen) for w in weights],
            lambda: [normal_like(w, gen) for w in weights],
        ],
        args.repeats,
    )
    ms = [statistics.median(v) * 1e3 for v in t]
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} rounds")
    print(f"conv_range_grad, {CLIPPED} clipped inputs: {ms[0]:.3f} ms; one per sample: {ms[1]:.3f} ms")
    n = sum(w.numel() for w in weights)
    print(
        f"weight noise of one convnet step ({n} normals): torch.randn {ms[2]:.3f} ms, spikecim {ms[3]:.3f} ms"
    )
    _tile_layouts(gen, args.repeats)
    _vgg9_range_grads(gen, args.repeats)
    _autograd_calls(gen, args.repeats)


def _tile_layouts(gen: torch.Generator, repeats: int) -> None:
    x, k = torch.randn(32, 22, 32, 32, generator=gen), torch.randn(64, 22, 3, 3, generator=gen)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    t = interleaved_times(
        [lambda: F.conv2d(x, k, None, 1, 1), lambda: F.conv2d(x_cl, k, None, 1, 1)], repeats
    )
    ms = [statistics.median(v) * 1e3 for v in t]
    print(
        f"VGG-9 32x32 tile forward (22 -> 64 channels, batch 32): default layout {ms[0]:.2f} ms, channels-last {ms[1]:.2f} ms"
    )


def _vgg9_range_grads(gen: torch.Generator, repeats: int) -> None:
    geometry = ((1, 1), (1, 1), (1, 1))
    for c, hw, m in VGG9_TILES:
        x = torch.randn(32, c, hw, hw, generator=gen).contiguous(memory_format=torch.channels_last)
        _, code, clipped, _ = hwa_kernels.dac(x, torch.tensor(2.0), 127)
        kernel = torch.randn(m, c, 3, 3, generator=gen)
        g = torch.randn(32, m, hw, hw, generator=gen).contiguous(memory_format=torch.channels_last)
        (t,) = interleaved_times(
            [lambda code=code, kernel=kernel, g=g: hwa_kernels.conv_range_grad(code, kernel, g, geometry)],
            repeats,
        )
        ms = statistics.median(t) * 1e3
        gflops = 2 * clipped * 9 * m / (ms * 1e6)
        print(
            f"VGG-9 tile range gradient, {c} x {hw}x{hw} -> {m}: {clipped} clipped, {ms:.3f} ms, {gflops:.1f} GFLOP/s"
        )


def _autograd_calls(gen: torch.Generator, repeats: int) -> None:
    x, r = torch.randn(64, generator=gen), torch.tensor(3.0)
    u, spike = torch.randn(64, generator=gen, requires_grad=True), atan()
    torchs = torch.autograd.Function.apply.__func__  # torch's own apply of a given class

    def calls(fn):
        return lambda: [fn() for _ in range(CALLS)]

    t = interleaved_times(
        [
            calls(lambda: _Dac.apply(x, r, 8, 0.001, 0.5)),
            calls(lambda: torchs(_Dac, x, r, 8, 0.001, 0.5)),
            calls(lambda: _Heaviside.apply(u, spike)),
            calls(lambda: torchs(_Heaviside, u, spike)),
        ],
        repeats,
    )
    us = [statistics.median(v) * 1e6 / CALLS for v in t]
    print(
        f"one call, DAC (5 arguments): spikecim.autograd.Function {us[0]:.1f} us, torch's apply {us[1]:.1f} us"
    )
    print(
        f"one call, surrogate spike (2 arguments): spikecim.autograd.Function {us[2]:.1f} us, torch's apply {us[3]:.1f} us"
    )


if __name__ == "__main__":
    main()
