"""Weight-only post-training quantisation of the trained tiny language models: perplexity of
round-to-nearest (RTN), AdaRound-style reconstruction and TesseraQ at W2/W3/W4.

    python benchmarks/bench_lm_ptq.py                       # 200 s of training per model
    python benchmarks/bench_lm_ptq.py --budget-s 60 --json lm_ptq.json

``transformer-tiny`` and ``spikegpt-tiny`` (spiking) train on the embedded ``pydoc`` corpus
(context 64, batch ``--batch``, Adam, lr 3e-3, one seeded shuffle) for ``--budget-s``
seconds of the process's CPU time (``bench_lm.train_lm``); each is then quantised by
:func:`spikecim.quant.tesseraq.post_training_quantize` (asymmetric, groups of
``--group-size`` inputs; the embedding table is not quantised) with every method at every
bit width, calibrated on the first ``--calibration`` training windows (``--calib-batch`` per
Adam step, the paper's twenty thresholds, ``--steps`` Adam steps per stage; AdaRound-style
the same number of steps in all), and scored on the first ``--val-windows`` validation
windows (:func:`spikecim.tasks.evaluate_lm`). ``matmulfree-tiny`` is left out: its weights
are ternary BitLinear already (docs/quant.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_lm import train_lm  # the same training loop and CPU-time budget

from spikecim.data import load_dataset
from spikecim.quant.groupwise import WeightQuantSpec
from spikecim.quant.tesseraq import PAPER_THRESHOLDS, ReconstructionConfig, post_training_quantize
from spikecim.tasks import evaluate_lm
from spikecim.train.batches import iterate_batches

MODELS = (("transformer-tiny", False), ("spikegpt-tiny", True))
METHODS = ("rtn", "adaround", "tesseraq")


def run_one(name: str, spiking: bool, data, args) -> dict:
    model, info = train_lm(name, spiking, data, args)
    x_val, y_val = data.x_test[: args.val_windows], data.y_test[: args.val_windows]

    def ppl(m: torch.nn.Module) -> float:
        return evaluate_lm(m, iterate_batches(x_val, y_val, 64))["perplexity"]

    calib = data.x_train[: args.calibration].t()  # time-major [L, B]
    row = {"model": name, "spiking": spiking, **info, "full_precision": ppl(model), "runs": []}
    print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    for bits in args.bits:
        spec = WeightQuantSpec(bits, args.group_size)
        for method in METHODS:
            rc = ReconstructionConfig(
                method="tesseraq" if method == "rtn" else method,
                thresholds=PAPER_THRESHOLDS,
                steps=args.steps,
                batch_size=args.calib_batch,
                seed=args.seed,
            )
            q = post_training_quantize(model, spec, method, calib, rc, batch_dim=1)
            run = {
                "bits": bits,
                "method": method,
                "perplexity": ppl(q.model),
                "seconds": q.seconds,
                "block_mse_over_rtn": [b.final_mse / b.rtn_mse for b in q.blocks if b.rtn_mse > 0],
            }
            row["runs"].append(run)
            print(json.dumps({"model": name, **run}), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=200.0, help="training CPU seconds per model")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--group-size", type=int, default=32)
    ap.add_argument("--calibration", type=int, default=64, help="training windows to calibrate on")
    ap.add_argument("--calib-batch", type=int, default=16, help="calibration windows per Adam step")
    ap.add_argument("--steps", type=int, default=8, help="Adam steps per stage of the schedule")
    ap.add_argument("--val-windows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
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
        rows.append(run_one(name, spiking, data, args))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print("| model (full precision) | bits | RTN | AdaRound-style | TesseraQ |")
    for r in rows:
        for bits in args.bits:
            p = {x["method"]: x["perplexity"] for x in r["runs"] if x["bits"] == bits}
            print(f"| {r['model']} ({r['full_precision']:.2f}) | {bits} | "
                  + " | ".join(f"{p[m]:.2f}" for m in METHODS) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
