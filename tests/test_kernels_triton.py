"""The Triton LIF kernel equals the reference loop on CUDA tensors (skipped without a GPU).

Same oracle and tolerance as tests/test_kernels_cpu.py: ``lif(..., backend="reference")``
on the same CUDA tensors, to 1e-6 in spikes, membrane and gradients.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from spikecim.nn import kernels
from spikecim.nn.functional import LIFParams, LIFState, lif
from spikecim.nn.kernels import triton_lif

pytestmark = pytest.mark.skipif(not triton_lif.available(), reason="needs a CUDA GPU and Triton")

CASES = list(
    itertools.product(
        [True, False],  # reset_delay
        ["subtract", "zero"],
        [False, True],  # detach_reset
        ["atan", "fast_sigmoid(10)", "sigmoid(5)", "triangular", "straight_through"],
    )
)


def test_auto_backend_selects_triton_for_cuda_float32():
    x = torch.zeros(3, 2, device="cuda")
    assert kernels.select(x, LIFParams(), None, "auto") is triton_lif.lif_triton
    assert kernels.select(x.double(), LIFParams(), None, "auto") is None


@pytest.mark.parametrize("reset_delay, reset, detach_reset, surrogate", CASES)
@pytest.mark.parametrize("per_neuron", [False, True])
def test_triton_kernel_equals_reference_in_spikes_membrane_and_gradients(
    reset_delay, reset, detach_reset, surrogate, per_neuron
):
    g = torch.Generator(device="cuda").manual_seed(0)
    T, B, N = 13, 5, 300  # N not a multiple of the block: masked lanes
    x0 = torch.randn(T, B, N, device="cuda", generator=g) * 1.5
    if per_neuron:
        beta0 = torch.rand(N, device="cuda", generator=g)
        th0 = 0.5 + torch.rand(B, N, device="cuda", generator=g)
    mem00 = torch.randn(B, N, device="cuda", generator=g)
    w_s, w_m = (
        torch.randn(T, B, N, device="cuda", generator=g),
        torch.randn(T, B, N, device="cuda", generator=g),
    )
    out = {}
    for backend in ("reference", "triton"):
        x, mem0 = x0.clone().requires_grad_(), mem00.clone().requires_grad_()
        leaves = [x, mem0]
        if per_neuron:
            beta, th = beta0.clone().requires_grad_(), th0.clone().requires_grad_()
            leaves += [beta, th]
        else:
            beta, th = 0.9, 1.0
        p = LIFParams(beta, th, reset, reset_delay, detach_reset, surrogate)
        s, (m,) = lif(x, LIFState(mem0), p, backend)
        grads = torch.autograd.grad((s * w_s).sum() + (m * w_m).sum(), leaves)
        out[backend] = (s, m, *grads)
    ref, tri = out["reference"], out["triton"]
    assert torch.equal(tri[0], ref[0])
    torch.testing.assert_close(tri[1], ref[1], rtol=0, atol=1e-6)
    for a, b in zip(tri[2:], ref[2:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(1.0, b.abs().max().item()))


def test_triton_kernel_reads_the_gradient_of_a_plain_sum():
    x0 = torch.randn(20, 8, 64, device="cuda")
    out = {}
    for backend in ("reference", "triton"):
        x = x0.clone().requires_grad_()
        s, (m,) = lif(x, None, LIFParams(0.9, 1.0), backend)
        out[backend] = torch.autograd.grad(s.sum() + m.sum(), x)[0]
    torch.testing.assert_close(out["triton"], out["reference"], rtol=1e-5, atol=1e-6)
