"""The noisy forward's tile products through oneDNN's GEMM, where torch carries it.

On CPUs whose vector units MKL does not use to the full, oneDNN's float32 GEMM
(:mod:`spikecim.nn.kernels.onednn`) is faster than torch's products: the tile products of
one noisy VGG-9 forward (ANN, batch 32) take 74 ms through it against 135 ms through
``torch.matmul`` on one Zen 5 core, 90 against 150–180 GFLOP/s on the largest
(``python benchmarks/bench_gemm.py``).

:func:`rows_product` and :func:`patch_product` take it for float32 CPU tensors when
:func:`~spikecim.nn.kernels.onednn.available`, and torch's product otherwise. A convolution
whose products are too small per sample for a oneDNN call each (:data:`PER_SAMPLE_MIN_MACS`)
runs them on its patches laid out as rows instead (:func:`prefers_rows`): one call per input
tile over every patch of the batch, 3.2 against 7.2 ms through torch's product for the
convnet's second layer at batch 256 (``python benchmarks/bench_gemm.py --model convnet
--batch 256``). Both orders of summation are float rounding apart, nothing more; with
``SPIKECIM_GEMM=torch`` in the environment torch's product always runs (for bit-for-bit
comparisons with it). Inference only: no gradient flows through :func:`_linear`.
"""

from __future__ import annotations

import torch

from spikecim.nn.kernels import onednn
from spikecim.nn.kernels.onednn import available

__all__ = ["available", "patch_product", "prefers_rows", "rows_product"]

# Multiply-adds per sample below which one torch.matmul over the batch beats a oneDNN call
# per sample (the calls' overhead; measured on VGG-9's and the convnet's tile shapes).
PER_SAMPLE_MIN_MACS = 1 << 22
ROWS_MIN = 16  # fewer input vectors or columns: torch.mm (the call's overhead would dominate)


def rows_product(x: torch.Tensor, m: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out[M, C] = x[M, K] @ m[K, C]`` (``torch.mm(x, m, out=out)``; ``out=None``: a new
    tensor, without the copy oneDNN's result would need)."""
    if _applies(x, m) and min(x.shape[0], m.shape[1]) >= ROWS_MIN:
        product = _linear(x, m.T)
        return product if out is None else out.copy_(product)
    return torch.mm(x, m, out=out)


def prefers_rows(x: torch.Tensor, rows: int, columns: int, patches: int) -> bool:
    """Whether a convolution's tile products on input ``x`` (``rows`` × ``columns`` per tile,
    ``patches`` per sample) run as one oneDNN product over the patches laid out as rows:
    where :func:`patch_product` would fall back to ``torch.matmul``, the per-sample products
    being too small for a oneDNN call each."""
    return (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and rows * columns * patches < PER_SAMPLE_MIN_MACS
        and min(x.shape[0] * patches, columns) >= ROWS_MIN
        and available()
    )


def patch_product(m: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out[N, C, L] = m[R, C]ᵀ @ x[N, R, L]`` for every sample n
    (``torch.matmul(m.T, x, out=out)``): one oneDNN call per sample where a sample's product
    is large enough (:data:`PER_SAMPLE_MIN_MACS`)."""
    R, C = m.shape
    if not (_applies(x, m) and R * C * x.shape[2] >= PER_SAMPLE_MIN_MACS):
        return torch.matmul(m.T, x, out=out)
    m_t = m.T.contiguous()
    for n in range(x.shape[0]):  # out[n] = m_t @ x[n]: a linear layer of weight x[n]ᵀ
        out[n].copy_(_linear(m_t, x[n].T))
    return out


def _applies(x: torch.Tensor, m: torch.Tensor) -> bool:
    return (
        x.dtype == m.dtype == torch.float32
        and x.device.type == m.device.type == "cpu"
        and not (x.requires_grad or m.requires_grad)
        and available()
    )


def _linear(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ wᵀ`` by oneDNN (``a[M, K]``, ``w[C, K]``)."""
    return onednn.linear(a, w)
