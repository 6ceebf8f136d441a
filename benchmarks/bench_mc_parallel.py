"""The Monte-Carlo passes of an analog stage, serial against worker processes (not a test):
``python benchmarks/bench_mc_parallel.py``.

``--passes`` calls of ``spikecim.analog.evaluate.monte_carlo`` (program, drift, evaluate, per
seed; one call per drift time, as the analog stage's sweep) on two models and random
inputs: once in this process with torch's threads (``workers=1``), once over ``--workers``
worker processes kept for all the passes (``analog.parallel.worker_pool``, what the
``analog`` stage runs with ``analog.workers``), each with torch's threads divided among
them; and over new worker processes for every pass (``monte_carlo(..., workers=N)`` outside
a ``worker_pool``). Wall clock of all the passes, worker start-up included, median of
``--repeats``; the accuracies must all be equal (the serial loop's bit for bit,
``tests/test_analog_parallel.py``). The models are untrained: only the time is read.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spikecim.analog import load_crossbar_config, to_analog
from spikecim.analog.evaluate import monte_carlo
from spikecim.analog.parallel import worker_pool
from spikecim.memory import keep_freed_memory
from spikecim.models import create_model

CASES = {  # name: (model, input shape [N, C, H, W])
    "convnet ANN, 8×8 digits": ("convnet", (512, 1, 8, 8)),
    "VGG-9 ANN, 3×32×32": ("vgg9", (256, 3, 32, 32)),
}


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    keep_freed_memory()  # as the spikecim command and its workers do
    seeds = list(range(args.seeds))
    drift_s = [10.0 ** (2 * k) for k in range(args.passes)]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.passes} passes of {args.seeds} seeds"
    )
    n = args.workers
    print(
        f"| model | serial (s) | {n} workers kept (s) | speed-up | {n} workers per pass (s) | speed-up | equal |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (model_name, shape) in CASES.items():
        torch.manual_seed(0)
        model = create_model(model_name, spiking=False, in_channels=shape[1]).eval()
        analog = to_analog(model, load_crossbar_config("pcm-aihwkit"))
        g = torch.Generator().manual_seed(1)
        x, y = torch.rand(shape, generator=g), torch.randint(0, 10, (shape[0],), generator=g)

        def stage(workers: int, kept: bool = True, analog=analog, x=x, y=y):
            with worker_pool(workers if kept else 1):
                return [monte_carlo(analog, x, y, seeds, t_inference_s=t, workers=workers) for t in drift_s]

        t_serial, serial = timed(lambda: stage(1), args.repeats)
        t_kept, kept = timed(lambda: stage(n), args.repeats)
        t_new, new = timed(lambda: stage(n, kept=False), args.repeats)
        print(
            f"| {name} | {t_serial:.2f} | {t_kept:.2f} | {t_serial / t_kept:.2f}× | {t_new:.2f} "
            f"| {t_serial / t_new:.2f}× | {serial == kept == new} |"
        )


if __name__ == "__main__":
    main()
