"""The compiled converters of hardware-aware training (spikecim.analog.hwa_kernels) against
the torch passes of spikecim.analog.hwa they replace (themselves checked against
aihwkit-lightning in tests/test_hwa_converters.py): outputs bit for bit, sums to 1e-6, on
1 and 2 threads; and the torch passes, with one warning, where no compiler works."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from spikecim.analog import hwa, hwa_kernels
from spikecim.analog.hwa import HwaLayer
from spikecim.analog.hwa_config import HwaConverters
from spikecim.timing import torch_threads

pytestmark = pytest.mark.skipif(
    not hwa_kernels.available(torch.zeros(1)), reason="no C compiler: the kernels do not run"
)
THREADS = [1, 2]


@pytest.fixture
def torch_passes(monkeypatch):
    """Run the torch passes of spikecim.analog.hwa instead of the kernels (a callable that
    switches between them)."""

    def use(torch_only: bool) -> None:
        monkeypatch.setattr(
            hwa_kernels, "available", (lambda x: False) if torch_only else _AVAILABLE, raising=True
        )

    return use


_AVAILABLE = hwa_kernels.available


def inputs(*shape, seed=0) -> torch.Tensor:
    """Heavy-tailed float32 values, a few of them exactly at ±1 (the range in the tests)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * torch.rand(*shape, generator=g).mul(2).exp() * 0.4
    flat = x.view(-1)
    flat[::97] = 1.0
    flat[5::89] = -1.0
    return x


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("bits", [8, 4, None])
def test_dac_kernel_equals_the_torch_passes_bit_for_bit(bits, threads, torch_passes):
    x = inputs(8, 4, 64, 64)  # 2^17 inputs: several work items
    r = torch.tensor(1.0)
    copies = torch.randint(1, 10, (4, 64, 64)).float()
    with torch_threads(threads):
        y, clip = hwa._clip_and_dac(x, r, bits, copies)
    torch_passes(True)
    y_ref, ref = hwa._clip_and_dac(x, r, bits, copies)
    assert torch.equal(y, y_ref)
    assert torch.equal(clip.code, ref.code)
    upper, lower = int((x >= 1).sum()), int((x <= -1).sum())
    assert clip.clipped == ref.clipped == upper + lower  # a hand count as well
    hand = float((((x >= 1) | (x <= -1)).sum(0).double() * copies.double()).sum())
    assert clip.weighted == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize("threads", THREADS)
def test_dac_backward_kernel_masks_and_sums_like_the_torch_passes(threads, torch_passes):
    x = inputs(2, 2**16)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    _, clip = hwa._clip_and_dac(x, torch.tensor(1.0), 6)
    with torch_threads(threads):
        grad, sums = hwa._dac_grad(g, clip.code, True)
    torch_passes(True)
    grad_ref, sums_ref = hwa._dac_grad(g, clip.code, True)
    assert torch.equal(grad, grad_ref)
    hand = float(g.double()[x >= 1].clamp(max=0).sum() - g.double()[x <= -1].clamp(min=0).sum())
    assert sums == pytest.approx(hand, rel=1e-9)
    assert float(sums_ref) == pytest.approx(hand, rel=1e-5)


GEOMETRIES = {
    "3x3, padding 1": ((1, 1), (1, 1), (1, 1)),
    "stride 2, padding 2, dilation 2": ((2, 2), (2, 2), (2, 2)),
    "3x3, no padding, stride (1, 2)": ((1, 2), (0, 0), (1, 1)),
}


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_conv_range_gradient_kernel_equals_the_patch_gradients(name, threads, torch_passes):
    stride, padding, dilation = GEOMETRIES[name]
    x = inputs(8, 8, 32, 32)
    kernel = torch.randn(6, 8, 3, 3, generator=torch.Generator().manual_seed(4))
    out = torch.nn.functional.conv2d(x, kernel, None, stride, padding, dilation)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    _, clip = hwa._clip_and_dac(x, torch.tensor(1.0), 8)
    with torch_threads(threads):
        got = hwa._clipped_patch_grads(clip.code, kernel, g, (stride, padding, dilation))
    # brute force: the gradient at every patch entry, read where the unfolded input clipped
    cols = torch.matmul(kernel.reshape(6, -1).t().double(), g.flatten(2).double())  # [B, taps, L]
    patches = nn.functional.unfold(x, (3, 3), dilation, padding, stride)  # padding zeros never clip
    hand = float(cols[patches >= 1].clamp(max=0).sum() - cols[patches <= -1].clamp(min=0).sum())
    assert got == pytest.approx(hand, rel=1e-5)
    torch_passes(True)
    assert float(
        hwa._clipped_patch_grads(clip.code, kernel, g, (stride, padding, dilation))
    ) == pytest.approx(got, rel=1e-5)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("bits", [8, 3, None])
@pytest.mark.parametrize("with_prev", [False, True])
def test_adc_kernel_equals_the_torch_passes_bit_for_bit(bits, with_prev, threads, torch_passes):
    y = inputs(4, 2**15, seed=6) * 3
    prev = inputs(4, 2**15, seed=7) if with_prev else None
    bound = torch.tensor(2.5)
    with torch_threads(threads):
        out = hwa._Adc.apply(y, bound, bits, None if prev is None else prev.clone())[0]
    torch_passes(True)
    ref = hwa._Adc.apply(y, bound, bits, None if prev is None else prev.clone())[0]
    assert torch.equal(out, ref)
    if not with_prev:
        assert out.abs().max() <= 2.5  # the bound holds


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_a_layer_trains_the_same_on_the_kernels_and_on_the_torch_passes(kind, threads, torch_passes):
    c = HwaConverters(
        dac_bits=6, adc_bits=6, out_bound=2.0, tile_rows=40, range_init=0.5, range_init_batches=0
    )
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = nn.Linear(100, 24), inputs(64, 100, seed=8)
    else:
        layer, x = nn.Conv2d(9, 16, 3, padding=1), inputs(16, 9, 24, 24, seed=8)  # 81 inputs: 3 tiles

    def run(torch_only: bool):
        torch_passes(torch_only)
        m = HwaLayer(copy.deepcopy(layer), c).train()
        xi = x.clone().requires_grad_(True)
        out = m(xi)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
        (out * g).sum().backward()
        return out.detach(), xi.grad, m.module.weight.grad, m.input_range.grad

    with torch_threads(threads):  # both: torch's own convolutions sum in a per-thread-count order
        ours = run(False)
        ref = run(True)
    assert torch.equal(ours[0], ref[0])  # the forward: the same operations, bit for bit
    for a, b in zip(ours[1:], ref[1:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert ours[3].abs().sum() > 0


def test_without_a_compiler_the_torch_passes_run_with_one_warning(no_c_compiler):
    c = HwaConverters(dac_bits=8, adc_bits=8, out_bound=10.0, tile_rows=20)
    layer = HwaLayer(nn.Conv2d(4, 8, 3), c).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            layer(inputs(2, 4, 8, 8)).sum().backward()
    messages = [str(w.message) for w in caught if "hardware-aware training kernels" in str(w.message)]
    assert len(messages) == 1 and "using the torch passes" in messages[0]
    assert layer.module.weight.grad.isfinite().all() and layer.input_range.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_learned_range_initialises_from_the_data_in_its_dtype_as_torch_computes_it(dtype):
    """aihwkit-lightning's running mean r ← (r·i + 3·std)/(i + 1), written out with tensors of
    the layer's dtype, against the layer's range after each of 5 batches (a linear layer, 2
    tiles), bit for bit."""
    c = HwaConverters(dac_bits=8, tile_rows=50)
    layer = HwaLayer(nn.Linear(100, 8).to(dtype), c).train()
    r = torch.full((2,), 3.0, dtype=dtype)
    for i in range(5):
        x = inputs(32, 100, seed=20 + i).to(dtype)
        layer(x)
        for t, xt in enumerate(x.split(50, -1)):
            r[t] = ((r[t] * i + 3.0 * xt.std()) / (i + 1)).abs()
        assert torch.equal(layer.input_range.detach(), r)
    assert layer.range_updates.tolist() == [5, 5]


@pytest.mark.parametrize("threads", THREADS)
def test_conv_patch_moments_kernel_equals_the_sums_over_the_unfolded_patches(threads):
    x = inputs(4, 8, 64, 64, seed=11)  # 2^17 inputs
    copies = torch.randint(0, 10, (8, 64, 64)).float()
    with torch_threads(threads):
        s1, s2 = hwa_kernels.moments(x, copies)
    w = copies.double()
    assert s1 == pytest.approx(float((x.double() * w).sum()), rel=1e-12)
    assert s2 == pytest.approx(float((x.square().double() * w).sum()), rel=1e-12)


def test_a_conv_tile_range_initialises_from_the_std_of_its_unfolded_patches():
    """The first batch sets r = 3·std of the tile's patch entries (padding zeros included),
    the std taken over F.unfold's patches, here in float64."""
    c = HwaConverters(dac_bits=8, tile_rows=30, range_init_batches=5)
    layer = HwaLayer(nn.Conv2d(6, 4, 3, padding=1, stride=2), c).train()  # 54 inputs: 2 tiles of 27
    x = inputs(8, 6, 20, 20, seed=12)
    layer(x)
    patches = nn.functional.unfold(x.double(), 3, 1, 1, 2).split(27, 1)
    expected = torch.stack([3 * p.std() for p in patches]).float()
    torch.testing.assert_close(layer.input_range.detach(), expected, rtol=1e-6, atol=0)


def test_the_hwa_optimizer_updates_as_torchs_per_operation_adam():
    from spikecim.analog.mitigation import hwa_optimizer

    torch.manual_seed(0)
    ours, ref = nn.Linear(40, 12), nn.Linear(40, 12)
    ref.load_state_dict(ours.state_dict())
    opts = [hwa_optimizer(list(ours.parameters()), 1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)]
    assert opts[0].defaults["fused"] is True
    for step in range(5):
        x = inputs(16, 40, seed=30 + step)
        for m, opt in zip((ours, ref), opts, strict=True):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


LAYOUTS = ["channels-last", "channel slice of channels-last"]


def laid_out(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` (``[B, C, H, W]``) with the same values in ``layout``: channels-last, or a slice
    of the channels of a wider channels-last tensor (not dense: the kernels lay it out)."""
    if layout == "channels-last":
        return x.contiguous(memory_format=torch.channels_last)
    wide = torch.cat([x, x[:, :3]], 1).contiguous(memory_format=torch.channels_last)
    return wide[:, : x.shape[1]]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_dac_and_its_backward_on_channels_last_equal_the_torch_passes(layout, threads, torch_passes):
    x = inputs(4, 12, 16, 16, seed=11)
    copies = torch.randint(1, 10, (12, 16, 16)).float()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(12))
    r = torch.tensor(1.0)
    with torch_threads(threads):
        y, code, clipped, weighted = hwa_kernels.dac(laid_out(x, layout), r, 31, copies)
        grad, sums = hwa_kernels.dac_backward(laid_out(g, layout), code, True)
    torch_passes(True)
    y_ref, ref = hwa._clip_and_dac(x, r, 6, copies)  # 6 bits: 31 levels each side, as the kernel call
    code_ref, clipped_ref = ref.code, ref.clipped
    assert y.is_contiguous(memory_format=torch.channels_last)  # the convolution reads it as it lies
    assert code.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, y_ref) and torch.equal(code, code_ref) and clipped == clipped_ref
    hand = float((((x >= 1) | (x <= -1)).sum(0).double() * copies.double()).sum())
    assert weighted == pytest.approx(hand, rel=1e-12)
    assert torch.equal(grad, g.masked_fill((x > 1) | (x < -1), 0))
    assert grad.is_contiguous(memory_format=torch.channels_last)
    hand = float(g.double()[x >= 1].clamp(max=0).sum() - g.double()[x <= -1].clamp(min=0).sum())
    assert sums == pytest.approx(hand, rel=1e-9)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("with_prev", [False, True])
def test_adc_on_channels_last_equals_the_torch_passes_and_writes_into_prev(with_prev, threads):
    y = inputs(4, 8, 16, 16, seed=13) * 3
    prev = inputs(4, 8, 16, 16, seed=14) if with_prev else None
    bound = torch.tensor(2.5)
    ref, mask_ref, saturated_ref = hwa._adc(y, bound, 31)  # the torch passes
    ref = ref if prev is None else prev + ref
    mask_ref = mask_ref.to(torch.uint8) * hwa_kernels.OUTSIDE
    target = None if prev is None else laid_out(prev, "channels-last")
    with torch_threads(threads):
        out, mask, saturated = hwa_kernels.adc(laid_out(y, "channels-last"), target, bound, 31)
    assert torch.equal(out, ref) and torch.equal(mask, mask_ref) and saturated == saturated_ref
    assert out.is_contiguous(memory_format=torch.channels_last)
    if with_prev:
        assert out.data_ptr() == target.data_ptr()  # the sum over tiles, in place
    # a default-layout output into a channels-last sum: read in the sum's layout
    mixed = None if prev is None else laid_out(prev, "channels-last")
    out2, _, _ = hwa_kernels.adc(y, mixed, bound, 31)
    assert torch.equal(out2, ref)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_patch_moments_on_channels_last_equal_the_sums_over_the_patches(layout):
    x = inputs(4, 6, 12, 12, seed=15)
    inside = torch.ones(1, 6, 3, 3)
    copies, _ = hwa._copies(inside, x.shape[2:], ((1, 1), (1, 1), (1, 1)))
    s1, s2 = hwa_kernels.moments(laid_out(x, layout), copies)
    patches = nn.functional.unfold(x, (3, 3), 1, 1, 1).double()  # the padding zeros add nothing
    assert s1 == pytest.approx(float(patches.sum()), rel=1e-9)
    assert s2 == pytest.approx(float(x.square().double().sum((0,)).mul(copies.double()).sum()), rel=1e-9)
    assert s2 == pytest.approx(float(patches.square().sum()), rel=1e-6)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_range_gradient_kernel_on_channels_last_equals_the_patch_gradients(layout, name, threads):
    stride, padding, dilation = GEOMETRIES[name]
    x = inputs(4, 11, 20, 20, seed=16)  # 11 channels: a run of 8 codes and a rest
    kernel = torch.randn(6, 11, 3, 3, generator=torch.Generator().manual_seed(17))
    out = torch.nn.functional.conv2d(x, kernel, None, stride, padding, dilation)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(18))
    _, code, _, _ = hwa_kernels.dac(laid_out(x, layout), torch.tensor(1.0), 8)
    with torch_threads(threads):
        got = hwa_kernels.conv_range_grad(
            code, kernel, laid_out(g, "channels-last"), (stride, padding, dilation)
        )
    cols = torch.matmul(kernel.reshape(6, -1).t().double(), g.flatten(2).double())  # [B, taps, L]
    patches = nn.functional.unfold(x, (3, 3), dilation, padding, stride)
    hand = float(cols[patches >= 1].clamp(max=0).sum() - cols[patches <= -1].clamp(min=0).sum())
    assert got == pytest.approx(hand, rel=1e-5)


def test_a_conv_layer_on_the_cpu_runs_its_tiles_in_channels_last_with_the_patch_forms_numbers():
    c = HwaConverters(
        dac_bits=6, adc_bits=None, out_bound=2.0, tile_rows=40, range_init=0.5, range_init_batches=0
    )  # the ADC's bound alone: no level boundary for the summation order to cross
    torch.manual_seed(0)
    layer = HwaLayer(nn.Conv2d(9, 16, 3, padding=1), c).train()  # 81 inputs: 3 tiles
    x = inputs(8, 9, 12, 12, seed=19).requires_grad_(True)
    out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # the patch form by hand: each tile's unfolded inputs through the DAC, times its weights
    patches = nn.functional.unfold(x.detach(), (3, 3), 1, 1, 1)  # [B, 81, L]
    w = layer.module.weight.detach().reshape(16, 81)
    total = torch.zeros(8, 16, 144)
    for t, (start, size) in enumerate(zip(layer.starts, layer.sizes, strict=True)):
        r = float(layer.input_range[t].detach())
        xt = patches[:, start : start + size].clamp(-r, r)
        n = 31
        xt = torch.round(xt * (n / r)) * (r / n)
        yt = torch.matmul(w[:, start : start + size], xt)
        bound = 2.0 * r * float(w[:, start : start + size].abs().max())
        total += yt.clamp(-bound, bound)
    total += layer.module.bias.detach().view(1, -1, 1)
    torch.testing.assert_close(out.detach(), total.view(8, 16, 12, 12), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 5])
def test_a_conv_layer_hands_back_its_input_gradient_in_the_inputs_layout(channels):
    c = HwaConverters(
        dac_bits=6, adc_bits=6, out_bound=2.0, tile_rows=40, range_init=0.5, range_init_batches=0
    )
    layer = HwaLayer(nn.Conv2d(channels, 8, 3, padding=1), c).train()
    leaf = inputs(4, channels, 10, 10, seed=20).requires_grad_(True)
    x = (
        leaf * 1.0
    )  # torch's default layout, the output of a layer before (a leaf's .grad takes its layout anyway)
    seen = []
    x.register_hook(seen.append)
    out = layer(x)
    assert out.stride(1) == 1 and out.is_contiguous(memory_format=torch.channels_last)  # also for one channel
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(21)))
    assert seen[0].is_contiguous() and (
        channels == 1 or seen[0].stride(1) != 1
    )  # the layers before see one layout
