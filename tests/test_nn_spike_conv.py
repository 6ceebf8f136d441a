"""Event-driven convolutions of spikes (spikecim.nn.kernels.spike_conv_cpu, spikecim.nn.Conv2d).

The oracle is torch's convolution in float64: the kernel's forward, weight gradient and input
gradient must lie within float32's summation bound ``n·u·Σ|a·b|`` of it (n terms, u = 2^-24;
the kernel adds the same products in another order). Which path ran is read from torch's own
autograd node: ``ConvolutionBackward0`` is torch's convolution. The kernel's AVX2 loops
(``SPIKECIM_ISA=avx2``) are held to the same oracle, and on a CPU with AVX-512 to the bits of
its AVX-512 loops."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair
from torch.utils.flop_counter import FlopCounterMode

from spikecim.models import create_model
from spikecim.nn import Conv2d
from spikecim.nn.kernels import spike_conv_cpu
from spikecim.nn.twins import torch_layers

pytestmark = pytest.mark.skipif(
    not spike_conv_cpu.available(),
    reason="no AVX-512 (F, BW, VL) or AVX2 (with FMA, POPCNT) CPU or no C compiler: the kernel does not run",
)

U = 2.0**-24
TORCH = "ConvolutionBackward0"
# (N, C, H, W, Co, kernel, padding, spike rate): channels off the 16-bit words and widths off
# 16 columns; rows split into blocks (H·W > 512) and several samples per block (small images);
# output channels over one and several blocks of 64; 1×1, 3×3, 5×3 and 2×3 windows; padding
# 0, 1, 2 and unequal
CASES = [
    (2, 5, 7, 9, 3, 3, 1, 0.3),
    (3, 20, 6, 5, 70, 3, 0, 0.2),
    (2, 17, 8, 8, 33, 1, 0, 0.3),
    (2, 16, 5, 6, 16, (5, 3), 2, 0.3),
    (4, 40, 11, 13, 100, (2, 3), (1, 2), 0.25),
    (2, 24, 37, 19, 130, 3, 1, 0.1),
    (9, 32, 4, 4, 64, 3, 1, 0.35),
    (1, 3, 1, 1, 5, 3, 1, 1.0 / 3),
]


def _spikes(shape, rate: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < rate).float()


def _bound(terms: int, magnitude: torch.Tensor) -> torch.Tensor:
    """float32's bound on a sum of ``terms`` products of magnitude sum ``magnitude`` (plus
    one rounding of the result)."""
    return (terms + 1) * U * magnitude + 1e-30


def _has_avx512() -> bool:
    return spike_conv_cpu.available() and spike_conv_cpu._widest() >= 3


@pytest.mark.parametrize("n, c, h, w, co, kernel, padding, rate", CASES)
def test_values_and_gradients_lie_within_float32s_bound_of_torchs_float64_convolution(
    n, c, h, w, co, kernel, padding, rate
):
    _assert_within_float32s_bound(n, c, h, w, co, kernel, padding, rate)


@pytest.mark.parametrize("n, c, h, w, co, kernel, padding, rate", CASES)
def test_the_avx2_loops_lie_within_float32s_bound_of_torchs_float64_convolution(
    monkeypatch, n, c, h, w, co, kernel, padding, rate
):
    monkeypatch.setenv("SPIKECIM_ISA", "avx2")
    _assert_within_float32s_bound(n, c, h, w, co, kernel, padding, rate)


def _assert_within_float32s_bound(n, c, h, w, co, kernel, padding, rate, stride=1):
    """spike_conv_cpu.conv2d on spikes at ``rate`` (the kernel must run) or, with ``rate``
    None, on a dense input, against torch's float64 convolution of the same stride."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    shape = (n, c, h, w)
    x = (
        _spikes(shape, rate, seed=1)
        if rate
        else torch.rand(shape, generator=torch.Generator().manual_seed(1))
    )
    x.requires_grad_()
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(co, c, kh, kw, generator=g, requires_grad=True)
    bias = torch.randn(co, generator=g, requires_grad=True)
    y = spike_conv_cpu.conv2d(x, weight, bias, stride, padding)
    if rate:
        assert type(y.grad_fn).__name__ != TORCH
    gy = torch.randn(y.shape, generator=g)
    gx, gw, gb = torch.autograd.grad(y, (x, weight, bias), gy)

    x64, w64, b64, gy64 = x.detach().double(), weight.detach().double(), bias.detach().double(), gy.double()
    ref = F.conv2d(x64, w64, b64, stride, padding)
    assert y.shape == ref.shape
    assert (
        (y.double() - ref).abs()
        <= _bound(c * kh * kw + 1, F.conv2d(x64, w64.abs(), b64.abs(), stride, padding))
    ).all()
    strides, paddings = list(_pair(stride)), list(_pair(padding))
    ref_gx, ref_gw = torch.ops.aten.convolution_backward(
        gy64, x64, w64, None, strides, paddings, [1, 1], False, [0, 0], 1, [True, True, False]
    )[:2]
    mag_gx, mag_gw = torch.ops.aten.convolution_backward(
        gy64.abs(), x64, w64.abs(), None, strides, paddings, [1, 1], False, [0, 0], 1, [True, True, False]
    )[:2]
    assert ((gx.double() - ref_gx).abs() <= _bound(co * kh * kw, mag_gx)).all()
    assert ((gw.double() - ref_gw).abs() <= _bound(n * y.shape[2] * y.shape[3], mag_gw)).all()
    assert (
        (gb.double() - gy64.sum((0, 2, 3))).abs() <= _bound(gy[0, 0].numel() * n, gy64.abs().sum((0, 2, 3)))
    ).all()


def test_spikes_are_added_not_multiplied_so_integer_weights_give_torchs_exact_values():
    """With small integer weights every partial sum is an exact float: the kernel's result
    then equals torch's to the bit, whatever the order of the additions."""
    _assert_integer_weights_give_torchs_exact_values()


def test_the_avx2_loops_with_integer_weights_give_torchs_exact_values(monkeypatch):
    monkeypatch.setenv("SPIKECIM_ISA", "avx2")
    _assert_integer_weights_give_torchs_exact_values()


def _assert_integer_weights_give_torchs_exact_values():
    x = _spikes((3, 21, 12, 18), 0.3, seed=4)
    weight = torch.randint(-8, 9, (70, 21, 3, 3), generator=torch.Generator().manual_seed(5)).float()
    gy = torch.randint(-8, 9, (3, 70, 12, 18), generator=torch.Generator().manual_seed(6)).float()
    leaf, wl = x.clone().requires_grad_(), weight.clone().requires_grad_()
    y = spike_conv_cpu.conv2d(leaf, wl, None, 1, 1)
    y.backward(gy)
    assert torch.equal(y, F.conv2d(x, weight, None, 1, 1))
    ref_gw = torch.ops.aten.convolution_backward(
        gy, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    assert torch.equal(wl.grad, ref_gw)


@pytest.mark.parametrize(
    "shape, co, stride, rate",
    [
        ((2, 20, 9, 7), 70, 2, 0.3),
        ((3, 17, 8, 11), 33, (2, 1), 0.2),
        ((2, 5, 10, 10), 16, 3, 0.25),
        ((2, 6, 9, 9), 8, 2, None),
    ],
)
def test_a_strided_1x1_convolution_convolves_the_positions_the_stride_lands_on(shape, co, stride, rate):
    """A projection shortcut's 1×1, stride-s convolution without padding: on spikes the kernel
    takes it (torch's strided convolution otherwise would), on a dense input (rate None)
    torch's stride-1 convolution does; values and all three gradients, the input's zero
    between the strided positions, within float32's bound of torch's strided convolution in
    float64."""
    _assert_within_float32s_bound(*shape, co, 1, 0, rate, stride)


# (N, C, H, W, Co, kernel, stride, padding, spike rate): a ResNet's 3×3 downsampling layer at
# stride 2 (padding 1 and 0, odd and even sizes), strides that differ by axis and exceed the
# window, a 5×3 window, several blocks of 64 output channels, a padded 1×1 window (which the
# shortcut's subsampling does not take)
STRIDED = [
    (2, 20, 9, 7, 70, 3, 2, 1, 0.3),
    (3, 17, 8, 11, 33, 3, (2, 1), 1, 0.2),
    (2, 5, 10, 10, 16, 3, 3, 1, 0.25),
    (2, 16, 12, 12, 64, 3, 2, 0, 0.3),
    (1, 40, 33, 35, 130, (5, 3), (2, 3), (1, 2), 0.25),
    (2, 24, 17, 16, 20, 3, (1, 4), 1, 0.3),
    (2, 8, 8, 8, 16, 1, 2, 1, 0.2),
]


@pytest.mark.parametrize("n, c, h, w, co, kernel, stride, padding, rate", STRIDED)
@pytest.mark.parametrize("isa", ["native", "avx2"])
def test_a_strided_convolution_of_spikes_runs_the_kernel_within_float32s_bound(
    monkeypatch, isa, n, c, h, w, co, kernel, stride, padding, rate
):
    """Strided windows of spikes: the forward and the weight gradient on the kernel (the
    input gradient is torch's transposed convolution), each within float32's bound of
    torch's strided convolution in float64."""
    if isa == "avx2":
        monkeypatch.setenv("SPIKECIM_ISA", "avx2")
    _assert_within_float32s_bound(n, c, h, w, co, kernel, padding, rate, stride)


def test_a_strided_convolution_with_many_channels_and_spikes_keeps_the_event_driven_weight_gradient():
    """At stride 1, 256 channels at a rate of 0.3 take Winograd's weight gradient, which has
    no stride: at stride 2 the same layer's gradient is the kernel's, within float32's bound."""
    assert spike_conv_cpu._WINOGRAD_WGRAD_FROM[-1] <= (256, 0.3)
    _assert_within_float32s_bound(1, 256, 16, 16, 256, 3, 1, 0.3, 2)


@pytest.mark.parametrize("stride", [2, (2, 1), 3])
def test_a_strided_convolution_with_integer_weights_gives_torchs_exact_values(stride):
    """Small integers make every partial sum exact: the strided forward and weight gradient
    equal torch's to the bit, so no term of a window is dropped or added twice."""
    x = _spikes((3, 21, 13, 18), 0.3, seed=4)
    weight = torch.randint(-8, 9, (70, 21, 3, 3), generator=torch.Generator().manual_seed(5)).float()
    leaf, wl = x.clone().requires_grad_(), weight.clone().requires_grad_()
    y = spike_conv_cpu.conv2d(leaf, wl, None, stride, 1)
    assert type(y.grad_fn).__name__ != TORCH
    gy = torch.randint(-8, 9, y.shape, generator=torch.Generator().manual_seed(6)).float()
    y.backward(gy)
    assert torch.equal(y, F.conv2d(x, weight, None, stride, 1))
    ref_gw = torch.ops.aten.convolution_backward(
        gy, x, weight, None, list(_pair(stride)), [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    assert torch.equal(wl.grad, ref_gw)


def test_a_strided_1x1_convolution_in_channels_last_runs_torchs_strided_convolution():
    x = _spikes((2, 8, 8, 8), 0.2, seed=5).to(memory_format=torch.channels_last)
    weight = torch.randn(16, 8, 1, 1, requires_grad=True)
    y = spike_conv_cpu.conv2d(x, weight, None, 2, 0)
    assert type(y.grad_fn).__name__ == TORCH
    torch.testing.assert_close(y, F.conv2d(x, weight, None, 2, 0), rtol=0, atol=0)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_inputs_that_are_not_sparse_spikes_run_torchs_convolution():
    weight = torch.randn(8, 4, 3, 3)
    spikes = _spikes((2, 4, 9, 9), 0.2, seed=7)
    half = spikes.clone()
    half[1, 3, 8, 8] = 0.5  # one entry neither 0 nor 1, in the last block the pass reads
    nan = spikes.clone()
    nan[0, 0, 0, 0] = float("nan")
    dense = _spikes((2, 4, 9, 9), 0.9, seed=8)
    assert dense.mean() > spike_conv_cpu.DENSE_FROM
    for x in (half, nan, dense, spikes.double()):
        y = spike_conv_cpu.conv2d(x.requires_grad_(), weight.to(x.dtype), None, 1, 1)
        assert type(y.grad_fn).__name__ == TORCH
        torch.testing.assert_close(
            y, F.conv2d(x, weight.to(x.dtype), None, 1, 1), equal_nan=True, rtol=0, atol=0
        )
    for stride, dilation, groups, kw in ((1, 2, 1, 3), (1, 1, 2, 3), (1, 1, 1, 5)):
        w = torch.randn(8, 4 // groups, 3, kw)
        assert not spike_conv_cpu.applies(spikes, w, stride, 1, dilation, groups)
        y = spike_conv_cpu.conv2d(spikes, w.requires_grad_(), None, stride, 1, dilation, groups)
        assert type(y.grad_fn).__name__ == TORCH
    assert not spike_conv_cpu.applies(spikes, weight, 1, "same", 1, 1)
    assert not spike_conv_cpu.applies(spikes, torch.randn(8, 4, 17, 3), 1, 8, 1, 1)  # taller than 16
    assert not spike_conv_cpu.applies(spikes, weight, 17, 1, 1, 1)  # a stride above 16
    assert spike_conv_cpu.applies(spikes, torch.randn(8, 4, 16, 3), 16, 8, 1, 1)
    assert not spike_conv_cpu.applies(spikes.to(memory_format=torch.channels_last), weight, 1, 1, 1, 1)
    assert spike_conv_cpu.applies(spikes[:, 1:3], weight[:, 1:3], 1, 1, 1, 1)  # a slice of channels
    assert spike_conv_cpu.applies(spikes, weight, 1, 1, 1, 1)


def test_op_counters_see_torchs_convolution():
    x, weight = _spikes((2, 4, 8, 8), 0.2, seed=9), torch.randn(8, 4, 3, 3, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        y = spike_conv_cpu.conv2d(x, weight, None, 1, 1)
    assert type(y.grad_fn).__name__ == TORCH
    assert counter.get_total_flops() == 2 * 2 * 8 * 8 * 8 * 4 * 9  # 2·N·Co·Ho·Wo·C·KH·KW


def test_a_jit_trace_records_torchs_convolution():
    layer = Conv2d(4, 8, 3, padding=1, bias=False)
    x = _spikes((2, 4, 8, 8), 0.2, seed=16)
    traced = torch.jit.trace(layer, x)
    assert "aten::_convolution" in str(traced.graph)
    torch.testing.assert_close(traced(x), F.conv2d(x, layer.weight, None, 1, 1), rtol=0, atol=0)


def test_under_cpu_autocast_torchs_convolution_runs_in_its_precision():
    x, weight = _spikes((2, 4, 8, 8), 0.2, seed=17), torch.randn(8, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not spike_conv_cpu.applies(x, weight, 1, 1, 1, 1)
        y, want = spike_conv_cpu.conv2d(x, weight, None, 1, 1), F.conv2d(x, weight, None, 1, 1)
    assert y.dtype == want.dtype == torch.bfloat16 and torch.equal(y, want)


def test_spikecim_conv_torch_turns_the_kernel_off(monkeypatch):
    x, weight = _spikes((2, 4, 8, 8), 0.2, seed=10), torch.randn(8, 4, 3, 3, requires_grad=True)
    assert type(spike_conv_cpu.conv2d(x, weight, None, 1, 1).grad_fn).__name__ != TORCH
    monkeypatch.setenv("SPIKECIM_CONV", "torch")
    assert type(spike_conv_cpu.conv2d(x, weight, None, 1, 1).grad_fn).__name__ == TORCH


def test_the_spikes_are_kept_for_backward_as_bits_not_floats():
    """torch's convolution keeps its float input for the weight gradient; the kernel keeps two
    bit maps of it, 1/16 of its bytes (with the padding and the words' rounding)."""
    x, weight = _spikes((4, 32, 16, 16), 0.2, seed=11), torch.randn(16, 32, 3, 3, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        spike_conv_cpu.conv2d(x, weight, None, 1, 1)
    kept = sum(t.numel() * t.element_size() for t in saved if t is not weight)
    assert kept == 4 * 32 * 16 * 1 * 2  # [N][C][H][ceil(W/16)] 16-bit words
    assert kept <= x.numel() * x.element_size() / 16


def _hessian_vector_product(conv, x, weight, bias, wrt, v, stride=1):
    """``d/d(weight, bias) of <d loss/d wrt, v>`` for ``loss = sum(conv(x)^3)``: a second
    derivative through the convolution's backward."""
    y = conv(x, weight, bias, stride, 1)
    (g,) = torch.autograd.grad(y.pow(3).sum(), wrt, create_graph=True)
    return torch.autograd.grad((g * v).sum(), (weight, bias))


@pytest.mark.parametrize("stride", [1, 2])
def test_second_derivatives_through_the_weight_gradient_equal_torchs_float64_ones(stride):
    """With ``create_graph=True`` the backward is torch ops on the spikes the bits hold, so a
    Hessian-vector product over the weights is torch's (input without a gradient)."""
    x = _spikes((2, 5, 9, 11), 0.2, seed=21)
    g = torch.Generator().manual_seed(22)
    w, b, v = (
        torch.randn(7, 5, 3, 3, generator=g),
        torch.randn(7, generator=g),
        torch.randn(7, 5, 3, 3, generator=g),
    )
    wl, bl = w.clone().requires_grad_(), b.clone().requires_grad_()
    ours = _hessian_vector_product(spike_conv_cpu.conv2d, x, wl, bl, wl, v, stride)
    w64, b64 = w.double().requires_grad_(), b.double().requires_grad_()
    ref = _hessian_vector_product(F.conv2d, x.double(), w64, b64, w64, v.double(), stride)
    for a, r in zip(ours, ref):
        assert torch.allclose(a.double(), r, rtol=1e-4, atol=1e-4 * float(r.abs().max()))


@pytest.mark.parametrize("stride", [1, 2])
def test_second_derivatives_through_the_input_gradient_equal_torchs_float64_ones(stride):
    x = _spikes((2, 6, 9, 8), 0.25, seed=23)
    g = torch.Generator().manual_seed(24)
    w, b, v = (
        torch.randn(4, 6, 3, 3, generator=g),
        torch.randn(4, generator=g),
        torch.randn(x.shape, generator=g),
    )
    xl, wl, bl = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    y = spike_conv_cpu.conv2d(xl, wl, bl, stride, 1)
    assert type(y.grad_fn).__name__ != TORCH
    ours = _hessian_vector_product(spike_conv_cpu.conv2d, xl, wl, bl, xl, v, stride)
    x64, w64, b64 = x.double().requires_grad_(), w.double().requires_grad_(), b.double().requires_grad_()
    ref = _hessian_vector_product(F.conv2d, x64, w64, b64, x64, v.double(), stride)
    for a, r in zip(ours, ref):
        assert torch.allclose(a.double(), r, rtol=1e-4, atol=1e-4 * float(r.abs().max()))


def test_a_second_derivative_through_the_weight_gradient_of_spikes_with_a_graph_is_a_clear_error():
    """The bits carry no graph to the spikes' source: differentiating the weight gradient
    again raises one error naming the way out, instead of dropping the input's term."""
    x = _spikes((2, 4, 6, 6), 0.3, seed=25).requires_grad_()
    weight = torch.randn(3, 4, 3, 3, requires_grad=True)
    y = spike_conv_cpu.conv2d(x, weight, None, 1, 1)
    (gw,) = torch.autograd.grad(y.pow(2).sum(), weight, create_graph=True)
    with pytest.raises(RuntimeError, match="SPIKECIM_CONV=torch"):
        torch.autograd.grad(gw.sum(), weight)


def test_split_over_threads_every_sum_keeps_its_order():
    """On two threads the weight gradient's items hold 16 output channels instead of 32 (two
    items per thread); each weight's sum runs over the same blocks either way."""
    x = _spikes((8, 32, 32, 32), 0.25, seed=12)
    weight = torch.randn(64, 32, 3, 3, generator=torch.Generator().manual_seed(13))
    gy = torch.randn(8, 64, 32, 32, generator=torch.Generator().manual_seed(14))
    assert spike_conv_cpu._weight_grad_columns(32 * 32, 64, 1) != spike_conv_cpu._weight_grad_columns(
        32 * 32, 64, 2
    )
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            wl = weight.clone().requires_grad_()
            y = spike_conv_cpu.conv2d(x, wl, None, 1, 1)
            y.backward(gy)
            results.append((y, wl.grad))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_the_layer_is_nn_conv2d_and_matches_it():
    ours = Conv2d(6, 10, 3, padding=1, bias=True)
    theirs = nn.Conv2d(6, 10, 3, padding=1, bias=True)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Conv2d) and type(ours).forward is nn.Conv2d.forward
    x = _spikes((3, 6, 10, 10), 0.2, seed=15)
    y = ours(x)
    assert type(y.grad_fn).__name__ != TORCH
    torch.testing.assert_close(y, theirs(x), rtol=1e-5, atol=1e-5)
    reflect = Conv2d(6, 10, 3, padding=1, padding_mode="reflect")
    assert type(reflect(x.requires_grad_()).grad_fn).__name__ == TORCH


def test_built_in_spiking_models_convolve_with_the_layer_and_peers_get_torchs():
    vgg = create_model("vgg9", spiking=True, width=0.25)
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is Conv2d for m in convs)
    peer = torch_layers(copy.deepcopy(vgg))
    assert all(type(m) is nn.Conv2d for m in peer.modules() if isinstance(m, nn.Conv2d))
    assert repr(peer) == repr(vgg)
    seen: list[str] = []
    for m in convs[1:]:  # every convolution after the first reads a LIF's spikes
        m.register_forward_hook(lambda mod, inp, out: seen.append(type(out.grad_fn).__name__))
    vgg(torch.rand(2, 2, 3, 32, 32)).sum().backward()
    assert len(seen) == len(convs) - 1
    assert "_SpikeConvBackward" in seen


def test_a_slice_of_channels_is_read_in_place_and_the_output_written_into_a_given_tensor():
    """The crossbar's direct convolution runs one kernel call per input tile on a slice of
    channels and gathers the tiles' outputs in one tensor; the values are those of the
    convolution of a contiguous copy (the same kernel), and torch's within the bound."""
    x = _spikes((3, 40, 9, 11), 0.2, seed=18)
    weight = torch.randn(70, 24, 3, 3, generator=torch.Generator().manual_seed(19))
    part = x[:, 8:32]
    assert not part.is_contiguous()
    out = torch.full((2, 3, 70, 9 * 11), float("nan"))
    with torch.no_grad():
        assert spike_conv_cpu.conv2d_into(part, weight, 1, out[1])
        want = spike_conv_cpu.conv2d(part.contiguous(), weight, None, 1, 1)
    assert torch.equal(out[1].view_as(want), want) and bool(out[0].isnan().all())
    exact = F.conv2d(part.double(), weight.double(), None, 1, 1)
    magnitude = F.conv2d(part.double(), weight.double().abs(), None, 1, 1)
    assert bool(((want.double() - exact).abs() <= _bound(24 * 9, magnitude)).all())
    dense = torch.rand(3, 24, 9, 11, generator=torch.Generator().manual_seed(20))
    with torch.no_grad():
        assert not spike_conv_cpu.conv2d_into(dense, weight, 1, out[0])
    assert bool(out[0].isnan().all())


needs_avx512 = pytest.mark.skipif(
    not _has_avx512(), reason="no AVX-512 (F, BW, VL): no AVX-512 loops to hold the AVX2 loops to"
)

# (N, C, H, W, Co, kernel, padding, spike rate, threads): channels 3, 17, 40 (off 16 and 8),
# widths 5, 6, 13, 23, 45 and outputs 5 to 45 wide (off 8 and 16), 1×1, 3×3, 5×3 and 2×3
# windows, padding 0, 1, 2 and unequal, Co 10, 16, 70, 100 (off 64), rates 0, 0.2 and 1,
# small maps several samples to a weight-gradient block; the last on two threads, its work
# above the threshold of every pass
ISA_CASES = [
    (2, 3, 5, 5, 10, 3, 1, 0.2, 1),
    (3, 17, 13, 13, 70, 3, 0, 0.2, 1),
    (2, 40, 23, 23, 70, 1, 0, 0.2, 1),
    (2, 40, 5, 23, 10, 3, 1, 0.2, 1),
    (2, 17, 13, 13, 70, 3, 1, 0.0, 1),
    (2, 17, 13, 13, 70, 3, 1, 1.0, 1),
    (3, 40, 23, 5, 70, 1, 1, 1.0, 1),
    (2, 16, 5, 6, 16, (5, 3), 2, 0.3, 1),
    (4, 40, 11, 13, 100, (2, 3), (1, 2), 0.25, 1),
    (8, 17, 45, 45, 10, 3, 1, 0.2, 2),
]


def _kernel_run(x, weight, padding, gy, threads: int = 1):
    """Which autograd node ran, the forward, and the input and weight gradients of ``gy``."""
    xl, wl = x.clone().requires_grad_(), weight.clone().requires_grad_()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = spike_conv_cpu.conv2d(xl, wl, None, 1, padding)
        y.backward(gy)
    finally:
        torch.set_num_threads(before)
    return type(y.grad_fn).__name__, y.detach(), xl.grad, wl.grad


def _case(n, c, h, w, co, kernel, padding, rate):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    ph, pw = torch.nn.modules.utils._pair(padding)
    g = torch.Generator().manual_seed(31)
    weight = torch.randn(co, c, kh, kw, generator=g)
    gy = torch.randn(n, co, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1, generator=g)
    return _spikes((n, c, h, w), rate, seed=30), weight, gy


@needs_avx512
@pytest.mark.parametrize("n, c, h, w, co, kernel, padding, rate, threads", ISA_CASES)
def test_the_avx2_loops_give_the_avx512_loops_bits(
    monkeypatch, n, c, h, w, co, kernel, padding, rate, threads
):
    """Each output's and weight's sum adds the same terms in the same order in both, lane by
    lane: forward, weight gradient and input gradient agree to the bit."""
    monkeypatch.setattr(spike_conv_cpu, "DENSE_FROM", 1.0)  # spike rate 1 runs the kernel too
    x, weight, gy = _case(n, c, h, w, co, kernel, padding, rate)
    runs = []
    for isa in ("avx512", "avx2"):
        monkeypatch.setenv("SPIKECIM_ISA", isa)
        runs.append(_kernel_run(x, weight, padding, gy, threads))
    (node, *wide), (node2, *narrow) = runs
    assert node == node2 != TORCH
    assert all(torch.equal(a, b) for a, b in zip(wide, narrow))


@needs_avx512
@pytest.mark.parametrize("kernel, h", [(3, 7), (1, 7), (3, 23), (1, 23)])
def test_the_avx2_weight_gradient_gives_the_avx512_bits_for_items_of_16_32_and_64_channels(
    monkeypatch, kernel, h
):
    """The caller's item width (16, 32 or 64 output channels) changes no weight's sum: each of
    the six runs, both loops at every width, gives the same bits."""
    x, weight, gy = _case(3, 17, h, h, 130, kernel, 1, 0.2)
    grads = []
    for isa in ("avx512", "avx2"):
        monkeypatch.setenv("SPIKECIM_ISA", isa)
        for cbw in (16, 32, 64):
            monkeypatch.setattr(spike_conv_cpu, "_weight_grad_columns", lambda *_, cbw=cbw: cbw)
            node, _, _, gw = _kernel_run(x, weight, 1, gy)
            assert node != TORCH
            grads.append(gw)
    assert all(torch.equal(grads[0], gw) for gw in grads[1:])


@pytest.mark.parametrize("n, c, h, w, co, kernel, padding, rate, threads", ISA_CASES)
def test_the_avx2_pass_over_the_spikes_writes_their_bits(
    monkeypatch, n, c, h, w, co, kernel, padding, rate, threads
):
    """The bits the AVX2 pass writes, unpacked, are the spikes: over the channels at each
    padded position (zeros in the border) and over the columns of each row; the share of ones
    it counts is theirs."""
    monkeypatch.setattr(spike_conv_cpu, "DENSE_FROM", 1.0)
    monkeypatch.setenv("SPIKECIM_ISA", "avx2")
    x = _spikes((n, c, h, w), rate, seed=30)
    ph, pw = torch.nn.modules.utils._pair(padding)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mask, rowbits, rate = spike_conv_cpu._spike_bits(x, (ph, pw))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(spike_conv_cpu._unpack_rowbits(rowbits, w, torch.uint8), x.to(torch.uint8))
    assert rate == int(x.sum()) / x.numel()
    words = ((mask.to(torch.int32).unsqueeze(-1) >> torch.arange(16, dtype=torch.int32)) & 1).flatten(-2)
    spikes = F.pad(x, (pw, pw, ph, ph, 0, words.shape[-1] - c))  # bits past C stay 0
    assert torch.equal(words.permute(0, 3, 1, 2), spikes.to(torch.int32))


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_an_entry_neither_0_nor_1_hands_the_call_to_torch_on_either_loops(monkeypatch, isa):
    if isa == "avx512" and not _has_avx512():
        pytest.skip("no AVX-512 (F, BW, VL)")
    monkeypatch.setenv("SPIKECIM_ISA", isa)
    weight = torch.randn(8, 20, 3, 3, generator=torch.Generator().manual_seed(32))
    spikes = _spikes((2, 20, 9, 13), 0.2, seed=33)
    for at, value in (
        ((1, 19, 8, 12), 0.5),
        ((0, 3, 4, 5), float("nan")),
        ((1, 17, 0, 0), 2.0),
        ((0, 0, 0, 0), -1.0),
    ):
        x = spikes.clone()
        x[at] = value
        assert spike_conv_cpu._spike_bits(x, (1, 1)) is None
        y = spike_conv_cpu.conv2d(x.requires_grad_(), weight, None, 1, 1)
        assert type(y.grad_fn).__name__ == TORCH
        torch.testing.assert_close(y, F.conv2d(x, weight, None, 1, 1), equal_nan=True, rtol=0, atol=0)


def test_spikecim_isa_is_read_at_every_call(monkeypatch):
    x, weight = _spikes((2, 4, 8, 8), 0.2, seed=34), torch.randn(8, 4, 3, 3)
    monkeypatch.setenv("SPIKECIM_ISA", "sse4")
    with pytest.raises(ValueError, match="SPIKECIM_ISA"):
        spike_conv_cpu.conv2d(x, weight, None, 1, 1)
    monkeypatch.setenv("SPIKECIM_ISA", "avx2")
    torch.testing.assert_close(spike_conv_cpu.conv2d(x, weight, None, 1, 1), F.conv2d(x, weight, None, 1, 1))
