"""Membrane memory of EfficientLIF-Net sharing (the ``shared-lif`` method) against the plain SNN.

    python benchmarks/bench_shared_lif.py [--model vgg9 --input 3x32 --batch 16 --steps 4]

For each sharing setting: forward and backward membrane bytes of one training step,
measured (:func:`spikecim.nn.membrane_memory.measure`) and by formula from the traced
Workload (forward = B·Σ stored membranes·4 bytes; backward = T·B·Σ_layers out_size·4 bytes:
the fused kernel keeps V − θ of every update, and the initial membrane only when a gradient
reads it, a learned β or θ, which these models' neurons do not have), and the ratios to the
plain network. Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import torch

from spikecim.errors import SpikecimError
from spikecim.methods import get_method
from spikecim.models import create_model
from spikecim.nn.membrane_memory import measure
from spikecim.trace import trace

SETTINGS = [
    ("plain", None),
    ("channel groups G = 2", {"layers": False, "channel_groups": 2}),
    ("channel groups G = 4", {"layers": False, "channel_groups": 4}),
    ("layers", {"layers": True, "channel_groups": 1}),
    ("layers + G = 2", {"layers": True, "channel_groups": 2}),
    ("layers + G = 4", {"layers": True, "channel_groups": 4}),
]


def formula(model, x) -> tuple[int, int]:
    T, B = x.shape[:2]
    w = trace(model, [x[:, :1]])
    forward = B * int(w.metrics()["membrane_bytes"])  # float32: 32-bit membranes
    updates = sum(layer.out_size for layer in w.layers if layer.has_neuron)
    return forward, T * B * updates * 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg9")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(a.steps, a.batch, a.channels, a.size, a.size)
    rows, base = [], None
    for label, opts in SETTINGS:
        model = create_model(a.model, in_channels=a.channels, input_size=a.size)
        try:
            model = get_method("shared-lif")(model, **opts) if opts else model
        except SpikecimError as e:
            rows.append(f"| {label} | refused: {e} | | | | | |")
            continue
        got = measure(model, x)
        fw, bw = formula(model, x)
        base = base or (got.forward_bytes, got.backward_bytes)
        rows.append(
            f"| {label} | {got.forward_bytes / 2**20:.3f} | {fw / 2**20:.3f} | {base[0] / got.forward_bytes:.2f}× "
            f"| {got.backward_bytes / 2**20:.3f} | {bw / 2**20:.3f} | {base[1] / got.backward_bytes:.2f}× |"
        )
    print(f"{a.model}, input {a.channels}×{a.size}×{a.size}, batch {a.batch}, T = {a.steps}\n")
    print(
        "| sharing | forward MiB measured | forward MiB formula | forward saving "
        "| backward MiB measured | backward MiB formula | backward saving |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
