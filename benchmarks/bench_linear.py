"""spikecim's linear layer (its products on oneDNN's GEMM) against torch's (not a test):
``python benchmarks/bench_linear.py``.

The products of the built-in models' linear layers, each as :class:`spikecim.nn.Linear` and
as ``nn.Linear`` with the same weights: VGG-9's classifier at T·B = 64 and 256 (the training
benchmark's B = 16 and 64, T = 4), the convnet's hidden layer at T·B = 256, the MLP's
layers at batch 256, transformer-tiny's projections at batch 32 × context 64. The forward
alone (no gradient) and the training step's forward + backward (input, weight and bias
gradients). Interleaved in every round, median of ``--repeats`` rounds, wall clock,
``--threads`` torch threads (default 2).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from spikecim.memory import keep_freed_memory
from spikecim.nn import Linear
from spikecim.nn.kernels import onednn
from spikecim.timing import interleaved_times

# (layer, rows, inputs, outputs)
SHAPES = [
    ("VGG-9 classifier, B = 16", 64, 4096, 1024),
    ("VGG-9 classifier, B = 64", 256, 4096, 1024),
    ("convnet hidden, B = 64", 256, 1024, 128),
    ("MLP 1024 → 512, batch 256", 256, 1024, 512),
    ("MLP 512 → 512, batch 256", 256, 512, 512),
    ("transformer-tiny qkv", 2048, 128, 384),
    ("transformer-tiny MLP up", 2048, 128, 512),
    ("transformer-tiny MLP down", 2048, 512, 128),
]


def _calls(layer: nn.Module, x: torch.Tensor, gy: torch.Tensor):
    leaf = x.clone().requires_grad_()

    def forward():
        with torch.no_grad():
            layer(x)

    def forward_backward():
        leaf.grad = None
        layer.zero_grad(set_to_none=True)
        layer(leaf).backward(gy)

    return [forward, forward_backward]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not onednn.available():
        raise SystemExit("bench_linear: oneDNN's GEMM is not reachable here (or SPIKECIM_GEMM=torch is set)")
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} rounds, ms")
    print("| layer | rows × in → out | torch fwd | spikecim fwd | × | torch fwd+bwd | spikecim fwd+bwd | × |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows, inputs, outputs in SHAPES:
        ours = Linear(inputs, outputs)
        theirs = nn.Linear(inputs, outputs)
        theirs.load_state_dict(ours.state_dict())
        x, gy = torch.randn(rows, inputs, generator=gen), torch.randn(rows, outputs, generator=gen)
        t = interleaved_times([*_calls(theirs, x, gy), *_calls(ours, x, gy)], args.repeats)
        tf, tb, of, ob = (statistics.median(v) * 1e3 for v in t)
        print(
            f"| {name} | {rows} × {inputs} → {outputs} | {tf:.2f} | {of:.2f} | {tf / of:.2f} | {tb:.2f} | "
            f"{ob:.2f} | {tb / ob:.2f} |"
        )


if __name__ == "__main__":
    main()
