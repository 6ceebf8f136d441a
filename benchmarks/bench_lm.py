"""The three tiny language models side by side: validation bits per character after a fixed
CPU training budget, training and generation tokens per second, energy per token.

    python benchmarks/bench_lm.py                          # 600 s of CPU training per model
    python benchmarks/bench_lm.py --budget-s 60 --json lm.json
    python benchmarks/bench_lm.py --only spikegpt-tiny     # one model (run the three side by side)

Each model (``transformer-tiny``, ``matmulfree-tiny``, ``spikegpt-tiny`` spiking) trains on
the embedded ``pydoc`` corpus (context 64, batch 32, Adam, lr 3e-3) for ``--budget-s``
seconds of the process's CPU time (``time.process_time``, one torch thread by default, so the
budget does not shrink on a busy machine), one seeded shuffle; then it is scored on the first ``--val-windows``
validation windows (:func:`spikecim.tasks.evaluate_lm`), generates ``--gen-tokens`` bytes
greedily, is run on a PCM crossbar (``pcm-aihwkit``, one hour of drift, ``--analog-seeds``
programming seeds) on the first ``--analog-windows`` validation windows, and is traced on 8
validation windows and costed on ``naive``, ``systolic`` and
``imc`` (energy and latency per window / tokens per window = per token; the layers in
sequence), with the weight and membrane footprint of its operators at the bits it stores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spikecim.analog import drift, program, to_analog
from spikecim.data import load_dataset
from spikecim.hw.estimate import estimate
from spikecim.models import create_model
from spikecim.tasks import evaluate_lm, generate
from spikecim.tasks.lm import TokenInput, lm_loss
from spikecim.trace import trace
from spikecim.train.batches import iterate_batches
from spikecim.train.seeding import seeded

MODELS = (("transformer-tiny", False), ("matmulfree-tiny", False), ("spikegpt-tiny", True))
ARCHS = ("naive-45nm", "systolic-sata", "imc-rram-65nm")


def train_lm(name: str, spiking: bool, data, args) -> tuple[torch.nn.Module, dict]:
    """Train ``name`` on ``data`` for ``args.budget_s`` seconds of the process's CPU time
    (batch ``args.batch``, Adam at ``args.lr``, one seeded shuffle); the model in eval mode
    and the training figures. Shared with ``bench_lm_ptq.py``."""
    torch.manual_seed(args.seed)
    model = create_model(name, spiking=spiking, num_classes=256, input_size=data.input_size)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    inputs = TokenInput()
    gen = torch.Generator().manual_seed(args.seed)
    tokens, steps = 0, 0
    start, cpu0 = time.perf_counter(), time.process_time()
    model.train()
    while time.process_time() - cpu0 < args.budget_s:
        for xb, yb in iterate_batches(data.x_train, data.y_train, args.batch, gen):
            loss = lm_loss(inputs.decode(model(inputs.encode(xb))), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tokens += yb.numel()
            steps += 1
            if time.process_time() - cpu0 >= args.budget_s:
                break
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu0
    info = {
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
        "train_steps": steps,
        "train_tokens": tokens,
        "train_tokens_per_cpu_s": tokens / train_cpu_s,
    }
    return model.eval(), info


def run_one(name: str, spiking: bool, data, args) -> dict:
    model, info = train_lm(name, spiking, data, args)
    inputs = TokenInput()
    x_val, y_val = data.x_test[: args.val_windows], data.y_test[: args.val_windows]
    metrics = evaluate_lm(model, iterate_batches(x_val, y_val, 64))
    t0 = time.process_time()
    sample = generate(model, "The ", tokens=args.gen_tokens)
    gen_cpu_s = time.process_time() - t0
    x_a, y_a = data.x_test[: args.analog_windows], data.y_test[: args.analog_windows]
    analog = {}
    for seed in range(
        args.analog_seeds
    ):  # PCM crossbar (aihwkit's statistical model), one hour after programming
        am = drift(program(to_analog(model, "pcm-aihwkit"), seed), 3600.0)
        with seeded(seed):
            analog[seed] = evaluate_lm(am, iterate_batches(x_a, y_a, 64))["perplexity"]
    digital_subset = evaluate_lm(model, iterate_batches(x_a, y_a, 64))["perplexity"]
    w = trace(model, [inputs.encode(data.x_test[:8])], model_name=name, dataset="pydoc")
    reports = {a: estimate(w, a) for a in ARCHS}
    footprint = w.metrics()
    return {
        "model": name,
        "spiking": spiking,
        "params": sum(p.numel() for p in model.parameters()),
        **info,
        "val_tokens": metrics["tokens"],
        "val_bits_per_char": metrics["bits_per_char"],
        "val_perplexity": metrics["perplexity"],
        "generation_tokens_per_cpu_s": args.gen_tokens / gen_cpu_s,
        "analog_windows": len(x_a),
        "digital_perplexity_on_analog_windows": digital_subset,
        "analog_perplexity_per_seed": list(analog.values()),
        "energy_per_token_pj": {a: r.energy_pj / data.input_size for a, r in reports.items()},
        "latency_per_token_ns": {a: r.latency_ns / data.input_size for a, r in reports.items()},
        "weight_bytes": footprint["weight_bytes"],
        "membrane_bytes": footprint["membrane_bytes"],
        "sample": sample,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=600.0, help="training CPU seconds per model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--val-windows", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--analog-windows", type=int, default=32)
    ap.add_argument("--analog-seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="one model name")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("pydoc", context=64)
    rows = []
    for name, spiking in MODELS:
        if args.only and name != args.only:
            continue
        row = run_one(name, spiking, data, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(
        "| model | params | train tokens / CPU s | tokens seen | val bits/char | generation tokens / CPU s | "
        + " | ".join(f"{a} pJ/token" for a in ARCHS)
        + " | "
        + " | ".join(f"{a} ns/token" for a in ARCHS)
        + " | weight KB | membrane KB |"
    )
    for r in rows:
        e = " | ".join(f"{r['energy_per_token_pj'][a]:.3g}" for a in ARCHS)
        t = " | ".join(f"{r['latency_per_token_ns'][a]:.3g}" for a in ARCHS)
        print(
            f"| {r['model']} | {r['params']} | {r['train_tokens_per_cpu_s']:.0f} | {r['train_tokens']} | "
            f"{r['val_bits_per_char']:.3f} | {r['generation_tokens_per_cpu_s']:.1f} | {e} | {t} | "
            f"{r['weight_bytes'] / 1000:.0f} | {r['membrane_bytes'] / 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
