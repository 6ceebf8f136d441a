"""The token recurrences of the language models (SpikeGPT's WKV, the MatMul-free LM's MLGRU
scan): the fused CPU kernel against the reference token loop, in one process.

    python benchmarks/bench_recurrence.py                          # spikegpt-tiny, 60 CPU s per path
    python benchmarks/bench_recurrence.py --model matmulfree-tiny --budget-s 30 --json mmf.json

Everything is CPU time of the process (``time.process_time``) on ``--threads`` torch threads
(1 by default), and the two paths alternate step by step, so a load that comes and goes on a
shared machine falls on both alike:

- **the recurrence alone**, at the model's shapes (``L = 64``, ``D = 128``): forward and
  forward + backward in ms, batch 32 (training) and batch 1 (generation);
- **its share**: ``layers × (forward + backward)`` over one training step of the model,
  and ``layers × forward`` over one forward pass;
- **training**: two models from the same seed (spikegpt-tiny as the SNN, matmulfree-tiny
  as the ANN it only has), one per path (``model.kwargs.wkv_backend`` or
  ``scan_backend``), trained as ``bench_lm.py`` trains (pydoc, context 64,
  batch 32, Adam, lr 3e-3, one seeded shuffle), one step of each in turn, for
  ``--budget-s`` CPU seconds each: tokens per CPU second and the last losses;
- **generation**: ``--gen-tokens`` greedy bytes from each trained model, in turn, repeated
  ``--repeats`` times: tokens per CPU second and whether the two texts agree.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spikecim.data import load_dataset
from spikecim.models import create_model
from spikecim.nn.kernels import recurrence_cpu
from spikecim.nn.recurrence import mlgru_scan, wkv
from spikecim.tasks import generate
from spikecim.tasks.lm import TokenInput, lm_loss
from spikecim.train.batches import iterate_batches

BACKENDS = ("reference", "auto")
LABEL = {"reference": "reference loop", "auto": "fused kernel"}
# model -> (kernel, spiking, the model's keyword for the path, the recurrence's name)
MODELS = {
    "spikegpt-tiny": ("wkv", True, "wkv_backend", "WKV"),
    "matmulfree-tiny": ("mlgru", False, "scan_backend", "MLGRU scan"),
}


def cpu_ms(fn, repeats: int) -> float:
    """Median CPU milliseconds of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


def recurrence_alone(kernel: str, batch: int, repeats: int) -> dict:
    """The recurrence's forward and forward + backward, CPU ms, per path, at ``[64, batch, 128]``."""
    g = torch.Generator().manual_seed(0)
    decay = torch.randn(128, generator=g).requires_grad_()
    bonus = torch.randn(128, generator=g).requires_grad_()
    x = torch.randn(64, batch, 128, generator=g).requires_grad_()
    y = torch.rand(64, batch, 128, generator=g).requires_grad_()
    gy = torch.randn(64, batch, 128, generator=g)

    def run(backend):
        if kernel == "wkv":  # w = −exp(decay), as SpikeGPT feeds it; k = x, v = y
            return wkv(-torch.exp(decay), bonus, x, y, backend)
        return mlgru_scan(x, y, None, backend)[0]  # i = x, f = y in (0, 1)

    def forward(backend):
        with torch.no_grad():
            run(backend)

    def train(backend):
        run(backend).backward(gy)

    out = {b: {} for b in BACKENDS}
    for _ in range(2):  # the first round warms up (and builds the kernel)
        for b in BACKENDS:
            out[b]["forward_ms"] = cpu_ms(lambda b=b: forward(b), repeats)
            out[b]["forward_backward_ms"] = cpu_ms(lambda b=b: train(b), repeats)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="spikegpt-tiny")
    ap.add_argument("--budget-s", type=float, default=60.0, help="training CPU seconds per path")
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="generation rounds per path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kernel, spiking, keyword, title = MODELS[args.model]
    if not recurrence_cpu.available(kernel, torch.float32):
        raise SystemExit(f"the {title} kernel could not be built here: nothing to compare")
    data = load_dataset("pydoc", context=64)
    res = {
        "model": args.model,
        "threads": args.threads,
        "train_shape": recurrence_alone(kernel, 32, 20),
        "generate_shape": recurrence_alone(kernel, 1, 50),
    }

    models, opts, cpu, tokens, losses = {}, {}, {}, {}, {}
    for b in BACKENDS:
        torch.manual_seed(0)
        models[b] = create_model(args.model, spiking=spiking, num_classes=256, input_size=64, **{keyword: b})
        opts[b] = torch.optim.Adam(models[b].parameters(), lr=3e-3)
        cpu[b], tokens[b], losses[b] = 0.0, 0, []
        models[b].train()
    layers = len(models["auto"].blocks)
    inputs = TokenInput()
    gen = torch.Generator().manual_seed(0)
    step_ms = {b: [] for b in BACKENDS}
    forward_ms = {b: [] for b in BACKENDS}
    while min(cpu.values()) < args.budget_s:
        for xb, yb in iterate_batches(data.x_train, data.y_train, 32, gen):
            for b in BACKENDS:
                t0 = time.process_time()
                loss = lm_loss(inputs.decode(models[b](inputs.encode(xb))), yb)
                opts[b].zero_grad(set_to_none=True)
                loss.backward()
                opts[b].step()
                dt = time.process_time() - t0
                cpu[b] += dt
                tokens[b] += yb.numel()
                losses[b].append(loss.item())
                step_ms[b].append(1e3 * dt)
                with torch.no_grad():
                    forward_ms[b].append(cpu_ms(lambda b=b, xb=xb: models[b](inputs.encode(xb)), 1))
            if min(cpu.values()) >= args.budget_s:
                break
    # (the forward passes timed in the loop are not in the training budget)
    for b in BACKENDS:
        res[b] = {
            "train_steps": len(losses[b]),
            "train_cpu_s": cpu[b],
            "train_tokens_per_cpu_s": tokens[b] / cpu[b],
            "median_step_ms": sorted(step_ms[b])[len(step_ms[b]) // 2],
            "median_forward_ms": sorted(forward_ms[b])[len(forward_ms[b]) // 2],
            "last_losses": losses[b][-3:],
        }
        alone = res["train_shape"][b]
        res[b]["share_of_training_step"] = layers * alone["forward_backward_ms"] / res[b]["median_step_ms"]
        res[b]["share_of_forward"] = layers * alone["forward_ms"] / res[b]["median_forward_ms"]
        models[b].eval()

    gen_cpu = {b: 0.0 for b in BACKENDS}
    samples = {}
    for _ in range(args.repeats):
        for b in BACKENDS:
            t0 = time.process_time()
            samples[b] = generate(models[b], "The ", tokens=args.gen_tokens)
            gen_cpu[b] += time.process_time() - t0
    for b in BACKENDS:
        res[b]["generation_tokens_per_cpu_s"] = args.repeats * args.gen_tokens / gen_cpu[b]
        res[b]["sample"] = samples[b]

    print(json.dumps(res, indent=1))
    print(f"| {args.model}, {args.threads} thread(s) | " + " | ".join(LABEL[b] for b in BACKENDS) + " |")
    print("| --- | --- | --- |")
    rows = [
        (f"{title} forward, [64, 32, 128] (ms)", lambda b: f"{res['train_shape'][b]['forward_ms']:.2f}"),
        (
            f"{title} forward + backward, [64, 32, 128] (ms)",
            lambda b: f"{res['train_shape'][b]['forward_backward_ms']:.2f}",
        ),
        (f"{title} forward, [64, 1, 128] (ms)", lambda b: f"{res['generate_shape'][b]['forward_ms']:.3f}"),
        ("training step, batch 32 (median ms)", lambda b: f"{res[b]['median_step_ms']:.1f}"),
        (f"{title} share of a training step", lambda b: f"{100 * res[b]['share_of_training_step']:.0f} %"),
        (f"{title} share of a forward pass", lambda b: f"{100 * res[b]['share_of_forward']:.0f} %"),
        ("training tokens per CPU second", lambda b: f"{res[b]['train_tokens_per_cpu_s']:.0f}"),
        ("generation tokens per CPU second", lambda b: f"{res[b]['generation_tokens_per_cpu_s']:.0f}"),
        ("last training losses", lambda b: " / ".join(f"{x:.4f}" for x in res[b]["last_losses"])),
    ]
    for name, cell in rows:
        print(f"| {name} | " + " | ".join(cell(b) for b in BACKENDS) + " |")
    print(f"same greedy text: {samples['auto'] == samples['reference']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
