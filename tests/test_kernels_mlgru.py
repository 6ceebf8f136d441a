"""The fused CPU MLGRU scan (``nn/kernels/mlgru_cpu.c``) against the closed form of the
recurrence, the reference token loop of :func:`spikecim.nn.recurrence.mlgru_scan`, autograd
through that loop and finite differences (``torch.autograd.gradcheck``)."""

from __future__ import annotations

import pytest
import torch

from spikecim.errors import SpikecimError
from spikecim.nn.kernels import recurrence_cpu
from spikecim.nn.recurrence import mlgru_scan
from spikecim.timing import torch_threads

pytestmark = pytest.mark.skipif(
    not recurrence_cpu.available("mlgru", torch.float64),
    reason="no C compiler: the MLGRU kernel is not built",
)


def _inputs(L: int, B: int, D: int, seed: int = 0, dtype=torch.float64, h0: bool = True):
    """``i``, ``f`` in (0, 1) (a forget gate), ``h0`` (or None) and output gradients."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randn(L, B, D, generator=g, dtype=torch.float64)
    f = torch.rand(L, B, D, generator=g, dtype=torch.float64)
    h0_ = torch.randn(B, D, generator=g, dtype=torch.float64) if h0 else None
    g_all = torch.randn(L, B, D, generator=g, dtype=torch.float64)
    g_last = torch.randn(B, D, generator=g, dtype=torch.float64)
    return [None if t is None else t.to(dtype) for t in (i, f, h0_, g_all, g_last)]


def _run(ts, backend: str):
    """``(h, last, dL/di, dL/df[, dL/dh0])`` with ``L = Σ g_all ⊙ h + Σ g_last ⊙ last``."""
    i, f, h0 = (None if t is None else t.clone().requires_grad_() for t in ts[:3])
    h, last = mlgru_scan(i, f, h0, backend)
    wrt = (i, f) if h0 is None else (i, f, h0)
    grads = torch.autograd.grad((h * ts[3]).sum() + (last * ts[4]).sum(), wrt)
    return (h.detach(), last.detach(), *grads)


def test_forward_equals_the_closed_form():
    # h_t = Σ_{s<=t} (Π_{s<r<=t} f_r) i_s + (Π_{r<=t} f_r) h0, written out in float64
    i, f, h0, _, _ = _inputs(7, 2, 3, seed=1)
    h, last = mlgru_scan(i, f, h0, "cpu")
    for t in range(7):
        closed = torch.prod(f[: t + 1], 0) * h0
        for s in range(t + 1):
            closed = closed + torch.prod(f[s + 1 : t + 1], 0) * i[s]
        torch.testing.assert_close(h[t], closed, rtol=1e-12, atol=1e-12)
    assert torch.equal(last, h[-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_h0", [True, False])
def test_forward_is_the_reference_loop_bit_for_bit(dtype, with_h0):
    ts = _inputs(300, 4, 40, seed=2, dtype=dtype, h0=with_h0)
    with torch.no_grad():
        got, ref = mlgru_scan(*ts[:3], "cpu"), mlgru_scan(*ts[:3], "reference")
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@pytest.mark.parametrize("with_h0", [True, False])
def test_gradients_equal_autograd_through_the_reference_loop(with_h0):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        ts = _inputs(150, 4, 40, seed=3, dtype=dtype, h0=with_h0)
        got, ref = _run(ts, "cpu"), _run(ts, "reference")
        assert len(got) == len(ref) == (5 if with_h0 else 4)
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_gradients_pass_gradcheck_against_finite_differences():
    i, f, h0, _, _ = (
        t.requires_grad_() if t is not None and t.dim() > 0 else t for t in _inputs(5, 2, 3, seed=4)
    )
    assert torch.autograd.gradcheck(lambda *a: mlgru_scan(*a, "cpu"), (i, f, h0), eps=1e-6, atol=1e-8)


def test_thread_count_does_not_change_results():
    ts = _inputs(64, 16, 128, seed=5, dtype=torch.float32)  # above the size that starts threads
    with torch_threads(1):
        one = _run(ts, "cpu")
    with torch_threads(3):
        three = _run(ts, "cpu")
    for a, b in zip(one, three, strict=True):
        assert torch.equal(a, b)


def test_a_call_the_kernel_cannot_run_fails_in_one_line_under_cpu():
    i, f, h0, _, _ = _inputs(3, 1, 2)
    with pytest.raises(SpikecimError, match="backend: 'cpu' cannot run this call"):
        mlgru_scan(i, f, h0.float(), "cpu")  # mixed dtypes
    with pytest.raises(SpikecimError, match="backend: unknown 'fast', allowed: auto, reference, cpu"):
        mlgru_scan(i, f, h0, "fast")


def test_matmulfree_tiny_gives_the_same_logits_and_gradients_with_the_kernel_and_the_loop():
    from spikecim.models import create_model

    tokens = torch.randint(0, 256, (16, 3), generator=torch.Generator().manual_seed(8))
    out = {}
    for backend in ("auto", "reference"):
        torch.manual_seed(0)
        model = create_model(
            "matmulfree-tiny", spiking=False, input_size=16, d_model=32, scan_backend=backend
        ).double()
        logits = model(tokens)
        logits.logsumexp(-1).sum().backward()
        out[backend] = (logits.detach(), *(p.grad for p in model.parameters()))
    for a, b in zip(out["auto"], out["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(SpikecimError, match="model.kwargs.scan_backend: unknown 'fast'"):
        create_model("matmulfree-tiny", spiking=False, scan_backend="fast")


def test_without_a_c_compiler_the_scan_falls_back_to_the_reference(no_c_compiler):
    ts = _inputs(9, 2, 3, dtype=torch.float32)
    with pytest.warns(UserWarning, match="MLGRU scan CPU kernel could not be built"):
        assert not recurrence_cpu.available("mlgru", torch.float32)
    got, ref = _run(ts, "auto"), _run(ts, "reference")
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)
