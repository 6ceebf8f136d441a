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

Median of ``--repeats`` interleaved rounds, wall clock, 1 torch thread by default.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from spikecim.analog import hwa_kernels
from spikecim.analog.hwa import UPPER
from spikecim.analog.noise import normal_like
from spikecim.timing import interleaved_times

B, C, H, W, M = 64, 16, 8, 8, 64
CLIPPED = 3300
# the convnet's weights as its tiles hold them: conv1, conv2 (2 tiles), fc1 (4 tiles), fc2
WEIGHTS = [(32, 9), (64, 144), (64, 144), (128, 256), (128, 256), (128, 256), (128, 256), (10, 128)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
