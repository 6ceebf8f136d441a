"""The fused CPU LIF kernel equals the reference loop (spikecim.nn.functional.lif).

The oracle is ``lif(..., backend="reference")``, the per-step Python loop over
``lif_step`` that is itself checked against snnTorch and SpikingJelly elsewhere. Here the
kernel must reproduce it to 1e-6 in spikes, membrane and every gradient (x, beta, theta,
mem0) over hypothesis-generated shapes, beta, theta (scalar and per neuron), both resets,
both reset timings, detach_reset and every surrogate.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikecim.errors import SpikecimError
from spikecim.nn import LIF, kernels
from spikecim.nn.functional import LIFParams, LIFState, lif, lif_spikes
from spikecim.nn.kernels import cbuild, cpu
from spikecim.nn.surrogate import SURROGATES
from spikecim.timing import torch_threads

pytestmark = pytest.mark.skipif(
    not cpu.available(torch.float64), reason="no C compiler: the CPU kernel is not built"
)

SURROGATE_PARAMS = {
    "atan": 2.0,
    "fast_sigmoid": 10.0,
    "sigmoid": 5.0,
    "triangular": 1.0,
    "straight_through": None,
}


@st.composite
def lif_case(draw):
    step = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    T = draw(st.integers(1, 12))

    def param(low: float, high: float):
        if draw(st.booleans()) or not step:
            return draw(st.floats(low, high)), False
        # a per-neuron shape aligned to the trailing dims, some of them broadcast (size 1)
        n = draw(st.integers(1, len(step)))
        shape = tuple(d if draw(st.booleans()) else 1 for d in step[-n:])
        learn = draw(st.booleans())
        return ("tensor", shape, low, high), learn

    name = draw(st.sampled_from(sorted(SURROGATES)))
    return {
        "T": T,
        "step": step,
        "beta": param(0.0, 1.0),
        "threshold": param(0.3, 2.0),
        "reset": draw(st.sampled_from(["subtract", "zero"])),
        "reset_delay": draw(st.booleans()),
        "detach_reset": draw(st.booleans()),
        "surrogate": name,
        "scale": draw(st.floats(0.2, 3.0)),
        "mem0": draw(st.sampled_from([None, "fixed", "learn"])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _run(case, backend: str, dtype: torch.dtype):
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["T"], *case["step"])
    x = (torch.randn(shape, generator=g, dtype=dtype) * case["scale"]).requires_grad_()
    leaves = [x]

    def make(spec):
        value, learn = spec
        if not isinstance(value, tuple):
            return value
        _, pshape, low, high = value
        t = (low + (high - low) * torch.rand(pshape, generator=g, dtype=dtype)).requires_grad_(learn)
        if learn:
            leaves.append(t)
        return t

    beta, threshold = make(case["beta"]), make(case["threshold"])
    mem0 = None
    if case["mem0"] is not None:
        mem0 = torch.randn(shape[1:], generator=g, dtype=dtype).requires_grad_(case["mem0"] == "learn")
        if case["mem0"] == "learn":
            leaves.append(mem0)
    sg = case["surrogate"]
    p = SURROGATE_PARAMS[sg]
    surrogate = SURROGATES[sg]() if p is None else SURROGATES[sg](p)
    p = LIFParams(beta, threshold, case["reset"], case["reset_delay"], case["detach_reset"], surrogate)
    spk, (mem,) = lif(x, None if mem0 is None else LIFState(mem0), p, backend)
    # a loss that uses both outputs, with weights so that every step's gradient differs
    w_s, w_m = torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)
    grads = torch.autograd.grad((spk * w_s).sum() + (mem * w_m).sum(), leaves)
    return spk.detach(), mem.detach(), grads


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lif_case())
def test_fused_cpu_kernel_equals_reference_in_spikes_membrane_and_gradients(case):
    ref = _run(case, "reference", torch.float64)
    fused = _run(case, "cpu", torch.float64)
    assert torch.equal(fused[0], ref[0])
    torch.testing.assert_close(fused[1], ref[1], rtol=0, atol=1e-6)
    assert len(fused[2]) == len(ref[2])
    for gf, gr in zip(fused[2], ref[2]):
        assert gf.shape == gr.shape
        torch.testing.assert_close(gf, gr, rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(lif_case())
def test_fused_cpu_kernel_in_float32_has_identical_spikes_and_membrane(case):
    """Same operations in the same order, no fused multiply-add: bit-identical forward."""
    ref = _run(case, "reference", torch.float32)
    fused = _run(case, "cpu", torch.float32)
    assert torch.equal(fused[0], ref[0])
    assert torch.equal(fused[1], ref[1])
    for gf, gr in zip(fused[2], ref[2]):
        # gradients are sums whose order differs from autograd's: equal to float32 rounding
        scale = max(1.0, gr.abs().max().item())
        torch.testing.assert_close(gf, gr, rtol=0, atol=1e-5 * scale)


def test_auto_backend_selects_the_cpu_kernel_for_cpu_float_tensors():
    p = LIFParams()
    assert kernels.select(torch.zeros(3, 2), p, None, "auto") is cpu.lif_cpu
    assert kernels.select(torch.zeros(3, 2, dtype=torch.float64), p, None, "auto") is cpu.lif_cpu


def test_calls_the_kernel_does_not_implement_run_the_reference():
    x = torch.zeros(3, 2, 4)
    assert kernels.select(x.half(), LIFParams(), None, "auto") is None
    # a per-neuron beta of another dtype would promote the reference's result to float64
    assert kernels.select(x, LIFParams(beta=torch.full((4,), 0.5, dtype=torch.float64)), None, "auto") is None
    assert kernels.select(x, LIFParams(), torch.zeros(4), "auto") is None  # mem0 not of one step's shape
    assert kernels.select(x, LIFParams(), None, "reference") is None


def test_forcing_the_cpu_kernel_on_an_unsupported_call_is_a_one_line_error():
    with pytest.raises(SpikecimError, match="backend: 'cpu' cannot run"):
        lif(torch.zeros(3, 2, dtype=torch.float16), backend="cpu")
    with pytest.raises(SpikecimError, match="backend: unknown 'fast'"):
        lif(torch.zeros(3, 2), backend="fast")


def test_fused_lif_with_a_zero_dim_float64_beta_matches_the_reference():
    """A 0-dim tensor does not promote the result (as in the module's buffers)."""
    x = torch.randn(6, 3, 4)
    beta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    out = {}
    for backend in ("reference", "cpu"):
        s, (m,) = lif(x.requires_grad_(), None, LIFParams(beta, 1.0), backend)
        out[backend] = (s, m, *torch.autograd.grad(s.sum() + m.sum(), [x, beta]))
    for a, b in zip(out["cpu"], out["reference"]):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "reset_delay, reset, learn_beta, expected_saved",
    [
        (True, "subtract", False, {"membrane"}),
        (True, "zero", False, {"membrane"}),
        (False, "subtract", False, {"V - theta"}),
        (False, "subtract", True, {"membrane", "uint8"}),
        (False, "zero", False, {"V"}),
    ],
)
def test_backward_keeps_one_float_sequence_and_spikes_as_bytes(
    reset_delay, reset, learn_beta, expected_saved
):
    """Only what the backward pass needs: never a float copy of the spikes, and no initial
    membrane unless a gradient reads it."""
    T, B, N = 8, 3, 5
    x = torch.randn(T, B, N, requires_grad=True)
    beta = torch.tensor(0.9, requires_grad=learn_beta)
    mem0 = torch.randn(B, N)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spk, (mem,) = lif(x, LIFState(mem0), LIFParams(beta, 1.0, reset, reset_delay), "cpu")
    # the same recurrence written out: V[t] = beta U[t-1] + x[t], U[t] after the reset
    u, v_seq, b = mem0, [], beta.detach()
    for t in range(T):
        xt = x[t].detach()
        if reset_delay:
            r = (u > 1.0).float()
            v = u = (b * u + xt) - r if reset == "subtract" else (b * (1 - r)) * u + xt
        else:
            v = b * u + xt
            s = (v > 1.0).float()
            u = v - s if reset == "subtract" else (1 - s) * v
        v_seq.append(v)
    v_seq = torch.stack(v_seq)
    full = [t for t in saved if t.shape == x.shape]
    kinds = set()
    for t in full:
        if t.dtype == torch.uint8:
            kinds.add("uint8")
        elif t.data_ptr() == mem.data_ptr():
            kinds.add("membrane")
        elif torch.equal(t, v_seq):
            kinds.add("V")
        elif torch.equal(t, v_seq - 1.0):
            kinds.add("V - theta")
        assert t.data_ptr() != spk.data_ptr()
    assert kinds == expected_saved
    assert len(full) == len(expected_saved)
    # everything else saved is per neuron (one step), not per step
    assert all(t.numel() <= B * N for t in saved if t.shape != x.shape)
    # the initial membrane only when beta's gradient reads U[-1]
    assert any(t.data_ptr() == mem0.data_ptr() for t in saved) == learn_beta


def test_a_lif_module_from_rest_keeps_no_zeros_for_backward():
    """From the zero state the kernel starts from zeros itself: nothing of one step's size is kept."""
    x = torch.randn(6, 4, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        LIF(beta=0.8, threshold=1.0, reset_delay=False)(x)
    assert [tuple(t.shape) for t in saved if t.numel() > 1] == [tuple(x.shape)]


def test_without_a_c_compiler_lif_falls_back_to_the_reference(no_c_compiler):
    x = torch.randn(5, 2, 3)
    with pytest.warns(UserWarning, match="could not be built"):
        assert kernels.select(x, LIFParams(), None, "auto") is None
    s, (m,) = lif(x)
    s_ref, (m_ref,) = lif(x, backend="reference")
    assert torch.equal(s, s_ref) and torch.equal(m, m_ref)


@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("step", [(0,), (2, 0, 3)])
def test_a_layer_without_neurons_gives_empty_spikes_and_gradients(reset_delay, step):
    """A step of no neurons (a dimension of size 0) runs the kernel forward and backward and
    gives what the reference loop gives: empty spikes, membrane and input gradient."""
    out = {}
    for backend in ("reference", "cpu"):
        x = torch.zeros(4, *step, requires_grad=True)
        s, (m,) = lif(x, None, LIFParams(0.9, 1.0, "subtract", reset_delay), backend)
        (gx,) = torch.autograd.grad(s.sum() + m.sum(), [x])
        out[backend] = (s, m, gx)
    for a, b in zip(out["cpu"], out["reference"], strict=True):
        assert a.shape == b.shape == (4, *step)


def test_inference_without_grad_runs_the_kernel_and_saves_nothing():
    x = torch.randn(10, 4, 6)
    with torch.no_grad():
        s, (m,) = lif(x, None, LIFParams(0.7, 0.5, "zero", False), "cpu")
    s_ref, (m_ref,) = lif(x, None, LIFParams(0.7, 0.5, "zero", False), "reference")
    assert torch.equal(s, s_ref) and torch.equal(m, m_ref)
    assert s.grad_fn is None


@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("uses", ["spikes", "membrane", "both"])
def test_gradient_of_a_plain_sum_equals_the_reference(reset_delay, uses):
    """``.sum()`` sends one value broadcast over the sequence; the kernel reads it as that value."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(9, 4, 7, generator=g, dtype=torch.float64) * 1.5
    beta = torch.rand(7, generator=g, dtype=torch.float64).requires_grad_()
    out = {}
    for backend in ("reference", "cpu"):
        x = x0.clone().requires_grad_()
        s, (m,) = lif(x, None, LIFParams(beta, 0.8, "subtract", reset_delay), backend)
        loss = {"spikes": s.sum(), "membrane": m.sum(), "both": 2 * s.sum() + m.sum()}[uses]
        out[backend] = torch.autograd.grad(loss, [x, beta])
    for a, b in zip(out["cpu"], out["reference"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reset_delay, reset", [(True, "zero"), (False, "subtract"), (False, "zero")])
@pytest.mark.parametrize(
    "T, B, N",
    [
        (20, 7, 601),  # M = 4207 on 3 threads: chunks of 1536 neurons (6 pieces of 256), the last one partial
        (3, 7, 2000),  # M = 14000: three chunks of the most neurons a chunk holds, 4096, and one of 1712
    ],
)
def test_a_layer_split_over_threads_equals_the_reference(reset_delay, reset, T, B, N, monkeypatch):
    """Large layers share their neurons out over threads in chunks of at most 4096, each
    gone through in pieces of 256 (a per-neuron threshold read piece by piece)."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(T, B, N, generator=g, dtype=torch.float64) * 1.5
    th0 = 0.5 + torch.rand(N, generator=g, dtype=torch.float64)
    w = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    monkeypatch.setattr(cpu, "_PARALLEL_MIN", 1)  # split even this small layer
    try:
        out = {}
        for backend in ("reference", "cpu"):
            x, th = x0.clone().requires_grad_(), th0.clone().requires_grad_()
            s, (m,) = lif(x, None, LIFParams(0.85, th, reset, reset_delay, surrogate="fast_sigmoid"), backend)
            out[backend] = (s, m, *torch.autograd.grad((s * w).sum() + m.sum(), [x, th]))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(out["cpu"], out["reference"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_compiler_without_openmp_builds_the_threaded_kernel_that_equals_the_reference(
    monkeypatch, tmp_path
):
    """A compiler that rejects -fopenmp (as Apple's clang does) still gives the kernel, on plain threads."""
    cc = tmp_path / "cc-no-openmp"
    cc.write_text(
        '#!/bin/sh\ncase " $* " in *" -fopenmp "*) echo "unsupported option -fopenmp" >&2; exit 1;; esac\n'
        f'exec {cbuild.compiler()} "$@"\n'
    )
    cc.chmod(0o755)
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setattr(cpu, "_PARALLEL_MIN", 1)
    cpu._library.cache_clear()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert cpu.available(torch.float64)
        built = sorted(p.name for p in (tmp_path / "cache" / "kernels").glob("*.so"))
        assert len(built) == 1  # the OpenMP build failed, the plain one is loaded
        g = torch.Generator().manual_seed(3)
        x0 = torch.randn(10, 5, 301, generator=g, dtype=torch.float64) * 1.5  # M = 1505: three chunks
        out = {}
        for backend in ("reference", "cpu"):
            x = x0.clone().requires_grad_()
            s, (m,) = lif(x, None, LIFParams(0.8, 0.7, "subtract", False), backend)
            out[backend] = (s, m, *torch.autograd.grad(s.sum() + m.sum(), [x]))
    finally:
        torch.set_num_threads(before)
        cpu._library.cache_clear()
    for a, b in zip(out["cpu"], out["reference"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reset_delay, reset, learn_beta", [
    (True, "subtract", False), (False, "subtract", False), (False, "subtract", True), (False, "zero", False),
])  # fmt: skip
def test_spikes_alone_equal_the_reference_in_spikes_and_gradients(
    reset_delay, reset, learn_beta, monkeypatch
):
    """``lif_spikes`` (what ``LIF.forward`` runs) writes no membrane sequence, on two threads too."""
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(12, 3, 700, generator=g, dtype=torch.float64) * 1.5  # M = 2100: five chunks
    w = torch.randn(12, 3, 700, generator=g, dtype=torch.float64)
    monkeypatch.setattr(cpu, "_PARALLEL_MIN", 1)
    out = {}
    for backend in ("reference", "cpu"):
        x, beta = (
            x0.clone().requires_grad_(),
            torch.tensor(0.85, dtype=torch.float64, requires_grad=learn_beta),
        )
        with torch_threads(2):
            s = lif_spikes(x, None, LIFParams(beta, 0.9, reset, reset_delay), backend)
            out[backend] = (s, *torch.autograd.grad((s * w).sum(), [x, beta] if learn_beta else [x]))
    for a, b in zip(out["cpu"], out["reference"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_spikes_alone_allocate_one_sequence_where_lif_allocates_two():
    """Inference from rest: the spikes (T*B*N*4 bytes) and no membrane sequence."""
    from spikecim.timing import peak_mib

    x = torch.randn(16, 8, 2048)  # 1 MiB per float32 sequence
    one = x.numel() * 4 / 2**20
    p = LIFParams(0.9, 1.0, "subtract", False)
    with torch.no_grad():
        spikes_only = peak_mib(lambda: lif_spikes(x, None, p, "cpu"))
        both = peak_mib(lambda: lif(x, None, p, "cpu"))
    assert spikes_only == pytest.approx(one, abs=0.01)
    assert both == pytest.approx(2 * one, abs=0.01)
