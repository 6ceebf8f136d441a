"""oneDNN's float32 GEMM, where torch carries it: the products of :class:`spikecim.nn.Linear`
and of the noisy forward's crossbar tiles (:mod:`spikecim.analog.gemm`).

torch's CPU matrix products (``mm``, ``addmm``, ``linear``) call its BLAS, MKL; its
convolutions call oneDNN. On CPUs whose vector units MKL does not use to the full (on AMD's
AVX-512 cores MKL's sgemm runs at about the AVX2 rate) oneDNN's GEMM is about twice as fast
(``python benchmarks/bench_linear.py``, ``python benchmarks/bench_gemm.py``; docs/speed.md,
"Linear layers"). torch reaches it
through ``torch.ops.mkldnn._linear_pointwise``, the kernel its compiler uses for frozen
linear layers; :func:`available` probes it once against ``torch.mm``. With
``SPIKECIM_GEMM=torch`` in the environment it is never used (torch's products run, bit for
bit).
"""

from __future__ import annotations

import functools
import os

import torch

__all__ = ["available", "linear"]


@functools.cache
def available() -> bool:
    """Whether oneDNN's GEMM is reachable and gives ``torch.mm``'s values on a probe."""
    if os.environ.get("SPIKECIM_GEMM", "").lower() == "torch":
        return False
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)
    a, w = torch.randn(37, 70, generator=gen), torch.randn(19, 70, generator=gen)
    try:
        got = linear(a, w)
    except RuntimeError:
        return False
    want = a.double() @ w.double().T
    return got.shape == want.shape and bool(torch.allclose(got.double(), want, rtol=1e-5, atol=1e-4))


def linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ wᵀ + bias`` by oneDNN (``a[M, K]``, ``w[C, K]``, float32 CPU tensors; either may
    be a strided view, such as a transpose). No gradient flows through it."""
    return torch.ops.mkldnn._linear_pointwise(a, w, bias, "none", [], "")
