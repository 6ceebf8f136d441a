"""spikecim's CPU pooling kernel (spikecim.nn.kernels.pool_cpu) and the pooling layers of the
built-in models. The oracle is torch's own pooling (``F.avg_pool2d``, ``F.max_pool2d``):
values and every gradient equal bit for bit, NaN and -inf included, and the max's choice
among equal entries (spikes tie all the time) the same, in the default layout and in
channels-last (whose outputs and gradients torch also gives in channels-last)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spikecim.models import create_model
from spikecim.nn import AvgPool2d, MaxPool2d
from spikecim.nn.kernels import pool_cpu
from spikecim.nn.twins import torch_layers

pytestmark = pytest.mark.skipif(
    not pool_cpu.available(torch.float64), reason="no C compiler: the kernel is not built"
)

POOLS = [(pool_cpu.avg_pool2d, F.avg_pool2d), (pool_cpu.max_pool2d, F.max_pool2d)]
# (input shape, kernel): the 2x2 widths with their own code (8, 16: two stages; 32, 64: one),
# odd sizes (a margin without a window), other widths (even: two stages; odd: one), a 3x3 and
# a non-square window, a [C, H, W] input
CASES = [
    ((2, 3, 8, 8), 2),
    ((2, 2, 7, 8), 2),
    ((2, 2, 16, 16), 2),
    ((1, 2, 32, 32), 2),
    ((1, 1, 6, 64), 2),
    ((2, 3, 9, 7), 2),
    ((1, 2, 30, 30), 2),
    ((1, 2, 9, 10), 3),
    ((2, 1, 7, 9), (2, 3)),
    ((3, 5, 6), 2),
]


def _input(shape, kind: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if kind == "relu":  # many exact zeros: ties in most windows
        return x.relu()
    if kind == "spikes":
        return (x > 0.5).to(dtype)
    if kind == "non-finite":
        x[x > 1.2] = float("nan")
        x[x < -1.5] = float("-inf")
    return x


def _run(pool, x: torch.Tensor, kernel, gy_seed: int = 7, gy_layout=torch.contiguous_format):
    leaf = x.clone().requires_grad_()  # clone keeps x's layout
    y = pool(leaf, kernel)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed), dtype=x.dtype)
    y.backward(gy.contiguous(memory_format=gy_layout))
    return y.detach(), leaf.grad, y.grad_fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["normal", "relu", "spikes", "non-finite"])
@pytest.mark.parametrize(("shape", "kernel"), CASES)
def test_pooling_equals_torch_bit_for_bit_values_and_gradients(shape, kernel, kind, dtype):
    x = _input(shape, kind, dtype, seed=len(shape) * 100 + shape[-1])
    for ours, theirs in POOLS:
        y, gx, fn = _run(ours, x, kernel)
        y_ref, gx_ref, fn_ref = _run(theirs, x, kernel)
        assert "Pool" in type(fn).__name__ and type(fn).__name__ != type(fn_ref).__name__  # the kernel ran
        assert torch.equal(y.isnan(), y_ref.isnan())
        assert torch.equal(y.nan_to_num(), y_ref.nan_to_num()), ours.__name__
        assert torch.equal(gx, gx_ref), ours.__name__


# [N, C, H, W] cases with more than one channel and a map larger than one entry: the kernel
# reads these as channels-last (C = 1 or H = W = 1 is also the default layout)
CHANNELS_LAST_CASES = [(s, k) for s, k in CASES if len(s) == 4 and s[1] > 1] + [
    ((2, 64, 8, 8), 2),
    ((1, 3, 5, 5), 5),
]


@pytest.mark.parametrize("gy_layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["normal", "relu", "spikes", "non-finite"])
@pytest.mark.parametrize(("shape", "kernel"), CHANNELS_LAST_CASES)
def test_channels_last_pooling_equals_torch_bit_for_bit_in_torchs_layouts(
    shape, kernel, kind, dtype, gy_layout
):
    """The output gradient in either layout (after a flatten it comes in the default one)."""
    x = _input(shape, kind, dtype, seed=shape[1] * 100 + shape[-1]).to(memory_format=torch.channels_last)
    assert pool_cpu.applies(x, kernel, None, 0)
    for ours, theirs in POOLS:
        y, gx, fn = _run(ours, x, kernel, gy_layout=gy_layout)
        y_ref, gx_ref, _ = _run(theirs, x, kernel, gy_layout=gy_layout)
        assert type(fn).__name__ in ("_AvgPoolBackward", "_MaxPoolBackward")  # the kernel ran
        assert torch.equal(y.isnan(), y_ref.isnan())
        assert torch.equal(y.nan_to_num(), y_ref.nan_to_num()), ours.__name__
        assert torch.equal(gx, gx_ref), ours.__name__
        assert y.stride() == y_ref.stride() and gx.stride() == gx_ref.stride(), ours.__name__


def test_the_max_gradient_goes_to_the_first_largest_entry_and_to_the_last_nan():
    """Hand-built windows: torch's rule `val > maxval or isnan(val)` from -inf."""
    nan, inf = float("nan"), float("inf")
    windows = [
        [1.0, 1.0, 0.0, 1.0],
        [0.0, 2.0, 2.0, 1.0],
        [nan, 1.0, nan, 5.0],
        [-inf, -inf, -inf, -inf],
        [3.0, nan, 4.0, 9.0],
    ]
    expect = [0, 1, 2, 0, 1]  # offset of the entry that receives the gradient
    x = torch.tensor(windows).reshape(len(windows), 1, 2, 2)
    _, gx, _ = _run(pool_cpu.max_pool2d, x, 2)
    for w, at in enumerate(expect):
        assert gx[w].flatten().nonzero().flatten().tolist() == [at]


def test_layouts_and_settings_the_kernel_does_not_cover_run_torchs_pooling():
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    cases = [  # (input, kernel, stride, padding, ceil_mode)
        (x, 3, 2, 0, False),  # stride != kernel
        (x, 2, 2, 1, False),  # padding
        (x, 2, 2, 0, True),  # ceil_mode
        (x.to(memory_format=torch.channels_last)[:, :, :, ::2], 2, 2, 0, False),  # channels-last, not dense
        (x[:, :, :, ::2], 2, 2, 0, False),  # not contiguous
        (x.half(), 2, 2, 0, False),
    ]
    for inp, k, s, p, ceil in cases:
        assert not pool_cpu.applies(inp, k, s, p, 1, ceil)
        for ours, theirs, torch_fn in (
            (pool_cpu.avg_pool2d, F.avg_pool2d, "AvgPool2DBackward0"),
            (pool_cpu.max_pool2d, F.max_pool2d, "MaxPool2DWithIndicesBackward0"),
        ):
            y = ours(inp, k, s, p, ceil_mode=ceil)
            assert type(y.grad_fn).__name__ == torch_fn
            assert torch.equal(y, theirs(inp, k, s, p, ceil_mode=ceil))
    assert not pool_cpu.applies(x, 2, None, 0, dilation=2)
    assert pool_cpu.applies(x, 2, None, 0) and pool_cpu.applies(x, (2, 2), [], 0)
    _, ind = pool_cpu.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(ind, F.max_pool2d(x, 2, return_indices=True)[1])
    assert torch.equal(pool_cpu.avg_pool2d(x, 2, divisor_override=1), F.avg_pool2d(x, 2, divisor_override=1))


def test_op_counters_see_torchs_pooling_op():
    """Under a dispatch mode (torch's FlopCounterMode here; SpikingJelly's op counters are
    the same kind) torch's op runs, so the tool sees aten's pooling."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    with FlopCounterMode(display=False):
        y = pool_cpu.avg_pool2d(x, 2)
    assert type(y.grad_fn).__name__ == "AvgPool2DBackward0"
    assert type(pool_cpu.avg_pool2d(x, 2).grad_fn).__name__ != "AvgPool2DBackward0"


def test_a_jit_trace_records_torchs_pooling_op():
    traced = torch.jit.trace(AvgPool2d(2), torch.randn(2, 4, 8, 8))
    assert "aten::avg_pool2d" in str(traced.graph)
    x = torch.randn(3, 4, 8, 8)
    assert torch.equal(traced(x), F.avg_pool2d(x, 2))


def test_spikecim_pool_torch_turns_the_kernel_off(monkeypatch):
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    monkeypatch.setenv("SPIKECIM_POOL", "torch")
    assert type(pool_cpu.max_pool2d(x, 2).grad_fn).__name__ == "MaxPool2DWithIndicesBackward0"


def test_the_max_keeps_one_byte_per_output_for_backward():
    """torch keeps an int64 index per output (and its input); the kernel a byte per output."""
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        pool_cpu.max_pool2d(x, 2)
    assert sum(t.numel() * t.element_size() for t in saved) == 4 * 8 * 8 * 8  # one byte per output
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        pool_cpu.avg_pool2d(x, 2)
    assert saved == []


def test_built_in_models_pool_with_the_layers_and_peers_get_torchs(monkeypatch):
    monkeypatch.setenv("SPIKECIM_CONV", "torch")  # the event-driven convolutions round otherwise
    vgg, conv = create_model("vgg9", spiking=True), create_model("convnet", spiking=False)
    pools = [m for m in vgg.modules() if isinstance(m, nn.AvgPool2d)]
    assert pools and all(type(m) is AvgPool2d for m in pools)
    assert any(type(m) is MaxPool2d for m in conv.modules())
    x = torch.rand(2, 2, 3, 32, 32)
    peer = torch_layers(copy.deepcopy(vgg))
    assert all(type(m) is nn.AvgPool2d for m in peer.modules() if isinstance(m, nn.AvgPool2d))
    assert torch.equal(vgg(x), peer(x))
    assert repr(peer) == repr(vgg)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pooling_split_over_threads_equals_torch(layout):
    """A tensor above the one-thread threshold, over two threads: work items of whole planes,
    or of rows of outputs in channels-last (a 63-row map: its last row has no window)."""
    x = _input((4, 16, 63, 64), "relu", torch.float32, seed=3).contiguous(memory_format=layout)
    assert x.numel() >= pool_cpu._PARALLEL_MIN
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for ours, theirs in POOLS:
            y, gx, _ = _run(ours, x, 2)
            y_ref, gx_ref, _ = _run(theirs, x, 2)
            assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("kernel", [2, (2, 3), 3])
def test_second_derivatives_equal_torchs(kind, kernel, layout):
    """With ``create_graph=True`` the backward runs the same map in torch ops (windows laid
    back over the input; the max's chosen entries from its bytes), so the gradient of an
    input gradient is torch's pooling's, on a 7 × 8 map whose last rows and columns no window
    reaches."""
    ours = (AvgPool2d if kind == "avg" else MaxPool2d)(kernel)
    theirs = (nn.AvgPool2d if kind == "avg" else nn.MaxPool2d)(kernel)
    gen = torch.Generator().manual_seed(11)
    x = (
        torch.randn(3, 4, 7, 8, dtype=torch.float64, generator=gen)
        .contiguous(memory_format=layout)
        .requires_grad_()
    )
    weights = torch.randn(theirs(x).shape, dtype=torch.float64, generator=gen)
    results = []
    for layer in (ours, theirs):
        (gx,) = torch.autograd.grad((layer(x).pow(3) * weights).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), x)[0])
    assert type(ours(x).grad_fn).__name__ in ("_AvgPoolBackward", "_MaxPoolBackward")
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)
