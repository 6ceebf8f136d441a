"""The Monte-Carlo loop over programming seeds in worker processes (and Ray tasks) gives the
serial loop's results bit for bit, in the order of the seeds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from spikecim.analog import drift, program, to_analog
from spikecim.analog.evaluate import monte_carlo
from spikecim.analog.parallel import map_seeds
from spikecim.errors import SpikecimError
from spikecim.train.seeding import seeded

SEEDS = [3, 0, 7, 1, 5]


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x = torch.rand(512, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # the digital model is right on every sample: the noise decides
    return model, x, y


class _NoisyOutputs:
    """program, drift to 1 h, one forward, all draws seeded by the seed: the whole output."""

    def __init__(self, analog_model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = analog_model, x

    def __call__(self, seed: int) -> torch.Tensor:
        with seeded(seed), torch.no_grad():
            program(self.model, seed)
            drift(self.model, 3600.0)
            return self.model(self.x)


def test_worker_processes_give_the_serial_outputs_bit_for_bit_in_seed_order(problem):
    model, x, _ = problem
    serial = [_NoisyOutputs(to_analog(model, "pcm-aihwkit"), x)(s) for s in SEEDS]
    seen = []
    parallel = map_seeds(
        _NoisyOutputs(to_analog(model, "pcm-aihwkit"), x),
        SEEDS,
        workers=2,
        on_result=lambda s, _: seen.append(s),
    )
    assert seen == SEEDS
    assert not torch.equal(serial[0], serial[1])  # the seeds draw different noise
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)


def test_workers_run_torch_on_several_threads_after_this_process_did(tmp_path):
    # GNU libgomp does not survive a fork once its threads have run: a forked worker that
    # runs torch on two threads hangs. The job runs in a fresh interpreter with a timeout, so
    # a hang fails the test instead of stopping the suite.
    script = tmp_path / "threads.py"
    script.write_text(
        "import torch\n"
        "from spikecim.analog.parallel import map_seeds\n"
        "def job(seed):  # a torch reduction on two OpenMP threads in the worker\n"
        "    torch.set_num_threads(2)\n"
        "    x = torch.arange(4_000_000, dtype=torch.float64) * seed\n"
        "    return float((x * 2.0 + 1.0).sum())\n"
        "if __name__ == '__main__':\n"
        "    torch.set_num_threads(4)\n"
        "    (torch.randn(4_000_000) * 2 + 1).sum()  # this process's OpenMP threads have run\n"
        "    print(map_seeds(job, [1, 2], workers=2))\n"
    )
    # a deadlock guard, not a speed limit: the script takes seconds
    done = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    n = 4_000_000  # sum of 2·s·i + 1 over i < n, by hand
    assert done.stdout.strip() == str([float(s * n * (n - 1) + n) for s in (1, 2)])


def test_a_seeds_monte_carlo_accuracy_does_not_depend_on_the_seeds_before_it(problem):
    model, x, y = problem
    kw = {"t_inference_s": 3600.0, "timesteps": None, "calibration_x": x[:64]}
    alone = monte_carlo(to_analog(model, "pcm-aihwkit"), x, y, [5], **kw)
    after_others = monte_carlo(to_analog(model, "pcm-aihwkit"), x, y, [0, 1, 5], **kw)
    assert after_others[-1] == alone[0]


def test_monte_carlo_in_workers_equals_the_serial_loop(problem):
    model, x, y = problem
    kw = {"t_inference_s": 3600.0, "timesteps": None, "calibration_x": x[:64]}
    serial = monte_carlo(to_analog(model, "pcm-aihwkit"), x, y, SEEDS, **kw)
    parallel = monte_carlo(to_analog(model, "pcm-aihwkit"), x, y, SEEDS, workers=3, **kw)
    assert len(set(serial)) > 1  # the accuracy moves with the seed: the comparison has teeth
    assert parallel == serial


class _Pid:
    """A job that says which process ran it."""

    def __init__(self, job) -> None:
        self.job = job

    def __call__(self, seed: int):
        return os.getpid(), self.job(seed)


def test_a_kept_pool_runs_every_call_in_the_same_processes_with_the_serial_results(problem):
    """Two passes (different models, as a stage's variants) inside one worker_pool: each
    gives the serial outputs, both run in the pool's processes (a pool per call would start
    new ones), and the pool's job files are gone after the block."""
    from spikecim.analog import parallel

    model, x, _ = problem
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    jobs = [_NoisyOutputs(to_analog(m, "pcm-aihwkit"), x) for m in (model, other)]
    serial = [[job(s) for s in SEEDS] for job in jobs]
    with parallel.worker_pool(2) as folder:
        assert folder.is_dir()
        runs = [map_seeds(_Pid(job), SEEDS, workers=2) for job in jobs]
    first, second = ({pid for pid, _ in run} for run in runs)
    assert first & second and os.getpid() not in first | second  # a pool per call shares none
    assert len(first | second) <= 2
    for want, run in zip(serial, runs, strict=True):
        for a, (_, b) in zip(want, run, strict=True):
            assert torch.equal(a, b)
    assert not folder.exists()


@pytest.mark.parametrize("workers", [0, -2, 1.5, True])
def test_a_worker_count_below_one_or_not_an_integer_is_refused(workers):
    with pytest.raises(SpikecimError, match="analog.workers: must be an integer >= 1"):
        map_seeds(abs, [1, 2], workers=workers)


def test_the_analog_stage_takes_workers_and_refuses_zero():
    from pydantic import ValidationError

    from spikecim.analog.stage_config import AnalogStageConfig

    assert AnalogStageConfig(workers=4, preset="ideal").workers == 4
    with pytest.raises(ValidationError, match="workers"):
        AnalogStageConfig(workers=0, preset="ideal")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray (pip install ray)")
@pytest.mark.skipif(
    os.environ.get("SPIKECIM_TEST_RAY") != "1",
    reason="starting a local Ray cluster takes 10-60 s; set SPIKECIM_TEST_RAY=1 to run",
)
def test_monte_carlo_as_ray_tasks_equals_the_serial_loop(problem):
    import ray

    model, x, y = problem
    serial = monte_carlo(to_analog(model, "pcm-aihwkit"), x, y, SEEDS, t_inference_s=3600.0, timesteps=None)
    try:
        parallel = monte_carlo(
            to_analog(model, "pcm-aihwkit"),
            x,
            y,
            SEEDS,
            t_inference_s=3600.0,
            timesteps=None,
            ray_address="local",
        )
    finally:
        ray.shutdown()
    assert parallel == serial
