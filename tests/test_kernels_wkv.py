"""The fused CPU WKV kernel (``nn/kernels/wkv_cpu.c``) against the reference token loop of
:func:`spikecim.nn.recurrence.wkv`, autograd through that loop, finite differences
(``torch.autograd.gradcheck``) and the WKV written as a softmax over the past (float64)."""

from __future__ import annotations

import pytest
import torch

from spikecim.errors import SpikecimError
from spikecim.nn.kernels import recurrence_cpu
from spikecim.nn.recurrence import wkv
from spikecim.timing import torch_threads

pytestmark = pytest.mark.skipif(
    not recurrence_cpu.available("wkv", torch.float64), reason="no C compiler: the WKV kernel is not built"
)


def _inputs(L: int, B: int, D: int, k_scale: float = 1.0, seed: int = 0, dtype=torch.float64):
    """``w`` (negative), ``u``, ``k``, ``v`` and an output gradient ``gy``, drawn in float64."""
    g = torch.Generator().manual_seed(seed)
    w = -torch.exp(torch.randn(D, generator=g, dtype=torch.float64))
    u = torch.randn(D, generator=g, dtype=torch.float64)
    k = torch.randn(L, B, D, generator=g, dtype=torch.float64) * k_scale
    v = torch.randn(L, B, D, generator=g, dtype=torch.float64)
    gy = torch.randn(L, B, D, generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (w, u, k, v, gy)]


def _run(ts, backend: str):
    """``(y, dL/dw, dL/du, dL/dk, dL/dv)`` with ``L = Σ gy ⊙ y``."""
    w, u, k, v = (t.clone().requires_grad_() for t in ts[:4])
    y = wkv(w, u, k, v, backend)
    return (y.detach(), *torch.autograd.grad(y, (w, u, k, v), ts[4]))


def _softmax_form(w, u, k, v):
    """WKV as a weighted mean: ``y_t = Σ_i softmax(logits)_i v_i`` over ``i <= t``, with logits
    ``(t−1−i)·w + k_i`` for ``i < t`` and ``u + k_t`` for ``i = t`` (SpikeGPT's WKV sum)."""
    L = k.shape[0]
    out = torch.empty_like(k)
    for t in range(L):
        i = torch.arange(t, dtype=k.dtype)
        past = (t - 1 - i)[:, None, None] * w + k[:t]
        logits = torch.cat([past, (u + k[t])[None]])
        out[t] = (torch.softmax(logits, 0) * v[: t + 1]).sum(0)
    return out


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest value of the truth ``b``."""
    return ((a.double() - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(
    ("L", "B", "D", "k_scale"),
    [(64, 4, 32, 1.0), (2000, 2, 8, 1.0), (64, 4, 32, 30.0), (300, 2, 16, 100.0)],
    ids=["context-64", "long-2000", "large-k-30", "large-k-100"],
)
def test_forward_equals_the_reference_loop(L, B, D, k_scale):
    # k up to ±400: e^k overflows float32 and float64 without the running maximum
    ts32 = _inputs(L, B, D, k_scale, dtype=torch.float32)
    with torch.no_grad():
        got, ref = wkv(*ts32[:4], "cpu"), wkv(*ts32[:4], "reference")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    ts64 = _inputs(L, B, D, k_scale)
    with torch.no_grad():
        torch.testing.assert_close(wkv(*ts64[:4], "cpu"), wkv(*ts64[:4], "reference"), rtol=0, atol=1e-12)


def test_forward_with_large_keys_equals_the_softmax_form():
    w, u, k, v, _ = _inputs(40, 3, 6, k_scale=200.0, seed=3)
    torch.testing.assert_close(wkv(w, u, k, v, "cpu"), _softmax_form(w, u, k, v), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("L", "B", "D", "k_scale"),
    [(64, 4, 32, 1.0), (2000, 2, 8, 1.0), (64, 4, 32, 30.0)],
    ids=["context-64", "long-2000", "large-k-30"],
)
def test_float64_gradients_of_all_inputs_equal_autograd_through_the_reference_loop(L, B, D, k_scale):
    ts = _inputs(L, B, D, k_scale, seed=1)
    got, ref = _run(ts, "cpu"), _run(ts, "reference")
    for name, a, b in zip(("y", "w", "u", "k", "v"), got, ref, strict=True):
        assert _rel_err(a, b) < 1e-10, name


@pytest.mark.parametrize("k_scale", [1.0, 30.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_gradients_are_as_accurate_as_the_reference_loop(k_scale, seed):
    # Both run in float32 on the same inputs; the truth is the float64 reference on those
    # inputs. The kernel's error stays within twice the loop's own float32 error (its sums
    # are ordered differently), and under 1e-6 of the largest gradient where the loop's is.
    ts32 = _inputs(64, 4, 32, k_scale, seed=seed, dtype=torch.float32)
    truth = _run([t.double() for t in ts32], "reference")
    got, loop = _run(ts32, "cpu"), _run(ts32, "reference")
    for name, a, b, t in zip(("y", "w", "u", "k", "v"), got, loop, truth, strict=True):
        assert _rel_err(a, t) <= 2 * _rel_err(b, t) + 2e-7, name
        if _rel_err(b, t) < 5e-7:
            assert _rel_err(a, t) < 1e-6, name


def test_gradients_pass_gradcheck_against_finite_differences():
    ts = [t.requires_grad_() for t in _inputs(5, 2, 3, k_scale=3.0, seed=4)[:4]]
    assert torch.autograd.gradcheck(lambda w, u, k, v: wkv(w, u, k, v, "cpu"), ts, eps=1e-6, atol=1e-8)


def test_decay_parametrised_as_minus_exp_gets_the_chain_rule():
    # SpikeGPT feeds w = −exp(decay): dL/d(decay) = dL/dw · w, as the CUDA kernel multiplies it
    w, u, k, v, gy = _inputs(16, 2, 5, seed=5)
    grads = {}
    for backend in ("cpu", "reference"):
        decay = w.neg().log().requires_grad_()
        y = wkv(-torch.exp(decay), u, k, v, backend)
        (grads[backend],) = torch.autograd.grad(y, decay, gy)
    _, gw, *_ = _run([w, u, k, v, gy], "reference")
    torch.testing.assert_close(grads["cpu"], gw * w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads["cpu"], grads["reference"], rtol=1e-10, atol=1e-12)


def test_thread_count_does_not_change_results():
    ts = _inputs(64, 8, 128, seed=6, dtype=torch.float32)  # above the size that starts threads
    with torch_threads(1):
        one = _run(ts, "cpu")
    with torch_threads(3):
        three = _run(ts, "cpu")
    for a, b in zip(one, three, strict=True):
        assert torch.equal(a, b)


def test_non_contiguous_inputs_equal_the_reference():
    w, u, k, v, _ = _inputs(12, 5, 4, seed=7, dtype=torch.float32)
    kt, vt = k.transpose(1, 2).contiguous().transpose(1, 2), v.transpose(0, 1).contiguous().transpose(0, 1)
    assert not kt.is_contiguous() and not vt.is_contiguous()
    torch.testing.assert_close(wkv(w, u, kt, vt, "cpu"), wkv(w, u, kt, vt, "reference"), rtol=0, atol=1e-6)


def test_unknown_backend_and_a_call_the_kernel_cannot_run_fail_in_one_line():
    w, u, k, v, _ = _inputs(3, 1, 2)
    with pytest.raises(SpikecimError, match="backend: unknown 'gpu', allowed: auto, reference, cpu"):
        wkv(w, u, k, v, "gpu")
    with pytest.raises(SpikecimError, match="backend: 'cpu' cannot run this call"):
        wkv(w.float(), u, k, v, "cpu")  # mixed dtypes
    # auto runs the loop for it, which type-promotes as torch does
    torch.testing.assert_close(wkv(w.float(), u, k, v), _softmax_form(w.float().double(), u, k, v))


def test_without_a_c_compiler_wkv_falls_back_to_the_reference(no_c_compiler):
    ts = _inputs(9, 2, 3, dtype=torch.float32)
    with pytest.warns(UserWarning, match="WKV CPU kernel could not be built"):
        assert not recurrence_cpu.available("wkv", torch.float32)
    got, ref = _run(ts, "auto"), _run(ts, "reference")
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(SpikecimError, match="backend: 'cpu' cannot run this call"):
        wkv(*ts[:4], "cpu")


def test_spikegpt_tiny_gives_the_same_logits_and_gradients_with_the_kernel_and_the_loop():
    from spikecim.models import create_model

    tokens = torch.randint(0, 256, (16, 3), generator=torch.Generator().manual_seed(8))
    out = {}
    for backend in ("auto", "reference"):
        torch.manual_seed(0)
        model = create_model("spikegpt-tiny", input_size=16, d_model=32, wkv_backend=backend).double()
        logits = model(tokens)
        logits.logsumexp(-1).sum().backward()
        out[backend] = (logits.detach(), *(p.grad for p in model.parameters()))
    for a, b in zip(out["auto"], out["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_spikegpt_tiny_refuses_an_unknown_wkv_backend():
    from spikecim.models import create_model

    with pytest.raises(
        SpikecimError, match="model.kwargs.wkv_backend: unknown 'fast', allowed: auto, reference, cpu"
    ):
        create_model("spikegpt-tiny", wkv_backend="fast")
