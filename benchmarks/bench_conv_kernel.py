"""Analog convolutions as spikecim runs them against the passes (not a test):
``python benchmarks/bench_conv_kernel.py``.

Every convolution of one noisy forward (``pcm-aihwkit``, drifted to 1 h: read and output
noise, 7-bit DAC, 9-bit ADC) of ``--model``: VGG-9 (the ANN at CIFAR-10 size, batch 32; the SNN
at T = 4, batch 8) or the convnet (8×8 digits; the ANN at batch 256, the SNN at T = 4, batch
64; BatchNorm's running statistics those of the input, as the analog suite sets them:
:func:`spikecim.analog.benchmark.batchnorm_statistics`), each layer on the input it
receives in that forward, timed three ways, interleaved in
every round, median of ``--repeats``, wall clock, 1 torch thread by default: the digital
``Conv2d``; the analog layer through the passes (``SPIKECIM_GEMM=onednn``: the patch DAC,
oneDNN's products and the ADC kernel, or for spikes the direct convolution and the ADC
kernel); the analog layer as spikecim runs it (in one pass, :mod:`spikecim.analog.conv_kernel`,
except spikes on one input tile). Needs a CPU with AVX-512 or AVX2 with FMA;
``SPIKECIM_ISA=avx2`` in the environment times the one pass's AVX2 loops on a CPU with AVX-512.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from spikecim.analog import AnalogConv2d, conv_kernel, drift, load_crossbar_config, program, to_analog
from spikecim.analog.benchmark import batchnorm_statistics
from spikecim.memory import keep_freed_memory
from spikecim.models import create_model
from spikecim.timing import interleaved_times

MODELS = {  # model, spiking, input [T, B, C, H, W]
    "vgg9": ("vgg9", False, (1, 32, 3, 32, 32)),
    "vgg9-snn": ("vgg9", True, (4, 8, 3, 32, 32)),
    "convnet": ("convnet", False, (1, 256, 1, 8, 8)),
    "convnet-snn": ("convnet", True, (4, 64, 1, 8, 8)),
}


def layer_inputs(name: str) -> list[tuple[str, torch.nn.Module, AnalogConv2d, torch.Tensor]]:
    """``(name, digital conv, analog conv, its input)`` of every convolution of one forward."""
    torch.manual_seed(0)
    arch, spiking, shape = MODELS[name]
    x = torch.rand(shape)
    model = batchnorm_statistics(create_model(arch, spiking=spiking), x)
    am = to_analog(model, load_crossbar_config("pcm-aihwkit"))
    program(am, 0)
    drift(am, 3600.0)
    digital = dict(model.named_modules())
    seen: list = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp, n=n: seen.append((n, digital[n], mod, inp[0].detach())))
        for n, m in am.named_modules()
        if isinstance(m, AnalogConv2d)
    ]
    with torch.no_grad():
        am(x)
    for h in hooks:
        h.remove()
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=sorted(MODELS), default="vgg9")
    args = ap.parse_args()
    if not conv_kernel.available(torch.ones(1)):
        raise SystemExit(
            "bench_conv_kernel: the one-pass kernel does not run here (needs AVX-512 or AVX2 with FMA, and a C compiler)"
        )
    keep_freed_memory()
    torch.set_num_threads(args.threads)

    def passes(layer, x):
        os.environ["SPIKECIM_GEMM"] = "onednn"
        try:
            return layer(x)
        finally:
            del os.environ["SPIKECIM_GEMM"]

    print(f"{args.model}, torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    print(
        "| layer | input | digital (ms) | passes (ms) | spikecim (ms) | passes ÷ spikecim | spikecim ÷ digital |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    totals = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for name, conv, layer, x in layer_inputs(args.model):
            fns = [lambda c=conv, x=x: c(x), lambda f=layer, x=x: passes(f, x), lambda f=layer, x=x: f(x)]
            t = [statistics.median(ts) for ts in interleaved_times(fns, args.repeats)]
            totals = [a + b for a, b in zip(totals, t, strict=True)]
            print(
                f"| {name} | {list(x.shape)} | {t[0] * 1e3:.2f} | {t[1] * 1e3:.2f} | {t[2] * 1e3:.2f} "
                f"| {t[1] / t[2]:.2f}× | {t[2] / t[0]:.2f}× |"
            )
    d, p, o = totals
    print(f"| all | | {d * 1e3:.1f} | {p * 1e3:.1f} | {o * 1e3:.1f} | {p / o:.2f}× | {o / d:.2f}× |")


if __name__ == "__main__":
    main()
