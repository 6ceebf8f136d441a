import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def one_thread_env() -> dict[str, str]:
    """Environment for spikecim subprocesses: one thread, so results are bit-reproducible."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture
def subprocess_env():
    return one_thread_env()


@pytest.fixture
def python():
    return sys.executable


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine terms, so eval-mode BatchNorm is not identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def group_rtn(w: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Round-to-nearest of a weight's ``[out, fan_in]`` view per group of ``group`` inputs,
    with torch's per-channel fake quantiser (one channel per group): the range [min, max]
    widened to 0, asymmetric integers [0, 2^b − 1]. Returned in ``w``'s shape."""
    rows = w.reshape(-1, group)
    lo, hi = rows.amin(1).clamp(max=0), rows.amax(1).clamp(min=0)
    qmax = 2**bits - 1
    scale = ((hi - lo) / qmax).clamp(min=torch.finfo(torch.float32).eps)
    zero = (-torch.round(lo / scale)).clamp(0, qmax).to(torch.int32)
    return torch.fake_quantize_per_channel_affine(rows, scale, zero, 0, 0, qmax).reshape(w.shape)


def _kernel_loaders():
    """Every cached loader of a compiled CPU kernel (cleared around a no-compiler test)."""
    from spikecim.analog import converter_kernels, hwa_kernels, matmul_kernel, noise, written_kernel
    from spikecim.nn.kernels import cpu, recurrence_cpu

    return [
        cpu._library,
        recurrence_cpu._library,
        noise._library,
        converter_kernels._library,
        written_kernel._library,
        matmul_kernel._library,
        hwa_kernels._library,
    ]


@pytest.fixture
def no_c_compiler(monkeypatch, tmp_path):
    """A machine without a C compiler, for real: an empty kernel cache, CC unset and a PATH
    holding no cc, gcc or clang, so the compiler search itself fails; every kernel loader
    forgets what it loaded before and after the test."""
    from spikecim.nn.kernels import cbuild

    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(OSError, match="no C compiler"):
        cbuild.compiler()
    for loader in _kernel_loaders():
        loader.cache_clear()
    yield
    for loader in _kernel_loaders():
        loader.cache_clear()
