"""The noisy forward's tile products through oneDNN (spikecim.analog.gemm): within float32's
rounding bound of the float64 product, taken where they apply, and torch's product bit for
bit where they do not (float64, gradients, SPIKECIM_GEMM=torch)."""

import os

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from spikecim.analog import gemm, to_analog

needs_onednn = pytest.mark.skipif(
    not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    or os.environ.get("SPIKECIM_GEMM", "").lower() == "torch",
    reason="this torch has no oneDNN GEMM, or SPIKECIM_GEMM=torch is set",
)


@pytest.fixture
def fresh_probe():
    gemm.available.cache_clear()
    yield
    gemm.available.cache_clear()


def _within_rounding(got: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """|fl(a @ b) − a @ b| ≤ K·u·(|a| @ |b|) elementwise (u = 2^-24, float32's unit
    roundoff): the worst-case bound of any order of summation of K products."""
    exact = a.double() @ b.double()
    bound = a.shape[-1] * 2.0**-24 * (a.double().abs() @ b.double().abs())
    assert ((got.double() - exact).abs() <= bound + 1e-30).all()


def _linear_calls(fn) -> int:
    gemm.available()  # its probe, once per process, is not one of the calls counted
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "mkldnn::_linear_pointwise")


@needs_onednn
@pytest.mark.parametrize(("M", "K", "C"), [(8, 30, 40), (64, 300, 10), (64, 300, 40), (300, 512, 130)])
def test_rows_product_is_within_float32_rounding_of_the_exact_product(M, K, C):
    g = torch.Generator().manual_seed(M)
    x, m = torch.randn(M, K, generator=g), torch.randn(K, C, generator=g)
    out = torch.empty(M, C)
    calls = _linear_calls(lambda: gemm.rows_product(x, m, out))
    assert calls == (1 if min(M, C) >= gemm.ROWS_MIN else 0)
    _within_rounding(out, x, m)


@needs_onednn
@pytest.mark.parametrize(("N", "R", "C", "L"), [(4, 27, 16, 64), (3, 576, 64, 256)])
def test_patch_product_is_within_float32_rounding_of_the_exact_product(N, R, C, L):
    g = torch.Generator().manual_seed(R)
    m, x = torch.randn(R, C, generator=g), torch.randn(N, R + 5, L, generator=g)[:, :R]  # a tile's slice
    out = torch.empty(N, C, L)
    calls = _linear_calls(lambda: gemm.patch_product(m, x, out))
    assert calls == (N if R * C * L >= gemm.PER_SAMPLE_MIN_MACS else 0)
    for n in range(N):
        _within_rounding(out[n], m.T, x[n])


def test_float64_gradients_and_the_environment_switch_take_torchs_product(monkeypatch, fresh_probe):
    g = torch.Generator().manual_seed(0)
    m, x = torch.randn(576, 64, generator=g), torch.randn(2, 576, 256, generator=g)
    out = torch.empty(2, 64, 256, dtype=torch.float64)
    assert torch.equal(
        gemm.patch_product(m.double(), x.double(), out), torch.matmul(m.T.double(), x.double())
    )
    w = m.clone().requires_grad_()
    with torch.no_grad():
        assert torch.equal(gemm.rows_product(x[0].T, w, torch.empty(256, 64)), torch.mm(x[0].T, m))
    monkeypatch.setenv("SPIKECIM_GEMM", "torch")
    assert not gemm.available()
    assert torch.equal(gemm.patch_product(m, x, torch.empty(2, 64, 256)), torch.matmul(m.T, x))


@needs_onednn
@pytest.mark.parametrize(
    ("channels", "size", "batch", "tiles", "calls"),
    [((64, 64), 16, 2, (576, 64), 2), ((8, 16), 8, 4, (40, 10), 2)],
    ids=["per-sample", "rows"],
)
def test_noisy_conv_layer_on_onednn_equals_it_on_torchs_product_to_float32_rounding(
    monkeypatch, fresh_probe, channels, size, batch, tiles, calls
):
    """A convolution, DAC on, read and output noise drawn from one seed, against the same
    crossbar on torch's product (SPIKECIM_GEMM=torch): the DAC levels, the read matrix and
    the output-noise normals are the same, so the outputs differ by the products' rounding
    alone. per-sample: products large enough for a oneDNN call per sample (576 rows × 64
    columns × 256 positions). rows: too small for that (72 rows × 16 columns × 64 positions),
    so the patches are laid out as rows, one call per input tile over the batch (two tiles
    of 40 and 32 rows, two column tiles), the ADC kernel reading the rows."""
    monkeypatch.setenv("SPIKECIM_GEMM", "onednn")  # the passes, not the one-pass kernel (conv_kernel.py)
    torch.manual_seed(0)
    conv = nn.Conv2d(*channels, 3, padding=1)
    crossbar = {
        "preset": "pcm-aihwkit",
        "tile_rows": tiles[0],
        "tile_cols": tiles[1],
        "adc": {"enabled": False},
    }
    am = to_analog(conv, crossbar)
    x = torch.randn(batch, channels[0], size, size, generator=torch.Generator().manual_seed(1))

    def forward():
        torch.manual_seed(2)
        with torch.no_grad():
            return am(x)

    assert _linear_calls(forward) == calls
    got = forward()
    monkeypatch.setenv("SPIKECIM_GEMM", "torch")
    gemm.available.cache_clear()
    assert _linear_calls(forward) == 0
    want = forward()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * want.abs().max().item())
