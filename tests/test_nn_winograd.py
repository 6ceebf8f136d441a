"""The Winograd F(4×4, 3×3) convolution (spikecim.nn.kernels.winograd) against torch's float64
convolution, within the rounding-error bound of the bilinear algorithm, and its use as the
spiking convolution's input gradient.

The bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.5,
applied to each path of Lavin and Gray's algorithm): every computed output is the exact
bilinear form with each term perturbed by at most γ_n = n·u / (1 − n·u), n the longest chain of
roundings on a path (the transforms of the input, the kernel and the output, at most 8 each,
the product, and the sum over C channels), so
|ŷ − y| ≤ γ_(C+25) · |Aᵀ| (Σ_c (|G| |g| |Gᵀ|) ⊙ (|Bᵀ| |d| |B|)) |A|, computed here in float64
from the absolute values of Lavin and Gray's matrices with torch's unfold and einsum.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikecim.nn.kernels import spike_conv_cpu, winograd

pytestmark = pytest.mark.skipif(not winograd.available(), reason="no C compiler for the Winograd kernel")

# Lavin and Gray, CVPR 2016, section 4.1, F(4x4, 3x3).
BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float64,
)
G = torch.tensor(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=torch.float64,
)
AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64
)
U = 2.0**-24


def error_bound(x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """The bound on |ŷ − y| of every output of F.conv2d(x, weight, padding=padding)."""
    n, c, h, w = x.shape
    ph, pw = padding
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = -(-ho // 4), -(-wo // 4)
    d = F.pad(x.double().abs(), (pw, 4 * tw + 2 - w - pw, ph, 4 * th + 2 - h - ph))
    tiles = d.unfold(2, 6, 4).unfold(3, 6, 4)  # [N, C, th, tw, 6, 6]
    v = torch.einsum("ar,ncijrs,bs->ncijab", BT.abs(), tiles, BT.abs())
    u = torch.einsum("ar,ocrs,bs->ocab", G.abs(), weight.double().abs(), G.abs())
    m = torch.einsum("ncijab,ocab->noijab", v, u)
    y = torch.einsum("ea,noijab,fb->noiejf", AT.abs(), m, AT.abs()).reshape(n, -1, 4 * th, 4 * tw)
    chain = c + 25
    return chain * U / (1 - chain * U) * y[..., :ho, :wo]


def weight_grad_bound(x: torch.Tensor, gy: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """The bound on |ĝ − g| of every entry of the weight gradient of F.conv2d(x, ·, padding)
    for the output gradient gy: Gᵀ (Σ_tiles (A |gy| Aᵀ) ⊙ (Bᵀ |d| B)) G with absolute values,
    the longest chain the sum over every tile of the batch."""
    n, _, h, w = x.shape
    ph, pw = padding
    ho, wo = gy.shape[2:]
    th, tw = -(-ho // 4), -(-wo // 4)
    d = F.pad(x.double().abs(), (pw, 4 * tw + 2 - w - pw, ph, 4 * th + 2 - h - ph))
    v = torch.einsum("ar,ncijrs,bs->ncijab", BT.abs(), d.unfold(2, 6, 4).unfold(3, 6, 4), BT.abs())
    g = F.pad(gy.double().abs(), (0, 4 * tw - wo, 0, 4 * th - ho)).unfold(2, 4, 4).unfold(3, 4, 4)
    g = torch.einsum("ar,noijrs,bs->noijab", AT.T.abs(), g, AT.T.abs())
    gu = torch.einsum("ncijab,noijab->ocab", v, g)
    chain = n * th * tw + 25
    return chain * U / (1 - chain * U) * torch.einsum("ar,ocab,bs->ocrs", G.abs(), gu, G.abs())


@pytest.fixture
def any_size(monkeypatch):
    """The kernel on every size, small ones included (it leaves those to torch for speed)."""
    monkeypatch.setattr(winograd, "_MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "_MIN_WORK", 0)
    monkeypatch.setattr(winograd, "_MAX_OVERHANG", 16.0)


SHAPES = [  # N, C, Co, H, W, padding: channel tails of the 16- and 8-lane loops, partial tiles
    (2, 3, 5, 7, 9, (1, 1)),
    (1, 16, 16, 8, 8, (1, 1)),
    (3, 17, 33, 13, 6, (0, 0)),
    (2, 40, 20, 5, 11, (2, 2)),
    (2, 24, 9, 4, 4, (1, 0)),
    (1, 64, 64, 3, 3, (0, 2)),
    (4, 8, 70, 16, 15, (1, 1)),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_convolution_is_torchs_within_the_bilinear_algorithms_rounding_bound(shape, any_size):
    n, c, co, h, w, padding = shape
    gen = torch.Generator().manual_seed(sum(shape[:5]))
    x, weight = torch.randn(n, c, h, w, generator=gen), torch.randn(co, c, 3, 3, generator=gen)
    got = winograd.conv3x3(x, weight, padding)
    want = F.conv2d(x.double(), weight.double(), padding=padding)
    assert got.shape == want.shape
    assert bool(((got.double() - want).abs() <= error_bound(x, weight, padding)).all())


@pytest.mark.parametrize("shape", SHAPES)
def test_the_transposed_convolution_is_torchs_within_the_rounding_bound(shape, any_size):
    n, c, co, h, w, padding = shape  # the input gradient of a convolution c -> co of this padding
    gen = torch.Generator().manual_seed(sum(shape[:5]) + 1)
    weight = torch.randn(co, c, 3, 3, generator=gen)
    gy = torch.randn(n, co, h + 2 * padding[0] - 2, w + 2 * padding[1] - 2, generator=gen)
    got = winograd.conv_transpose2d(gy, weight, padding)
    want = F.conv_transpose2d(gy.double(), weight.double(), padding=padding)
    turned = weight.flip(2, 3).transpose(0, 1)  # the same convolution as a plain one
    assert got.shape == want.shape == (n, c, h, w)
    assert bool(
        ((got.double() - want).abs() <= error_bound(gy, turned, (2 - padding[0], 2 - padding[1]))).all()
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_the_weight_gradient_is_torchs_within_the_rounding_bound(shape, any_size):
    n, c, co, h, w, padding = shape
    gen = torch.Generator().manual_seed(sum(shape[:5]) + 2)
    x = torch.randn(n, c, h, w, generator=gen)
    gy = torch.randn(n, co, h + 2 * padding[0] - 2, w + 2 * padding[1] - 2, generator=gen)
    got = winograd.weight_grad3x3(x, gy, padding)
    want = torch.nn.grad.conv2d_weight(x.double(), (co, c, 3, 3), gy.double(), padding=padding)
    assert got.shape == want.shape
    assert bool(((got.double() - want).abs() <= weight_grad_bound(x, gy, padding)).all())


def test_a_wrong_transform_falls_outside_the_bound(any_size):
    """The bound is tight enough to catch a wrong constant: the same algorithm with one entry
    of G off by a float32 rounding step of 1/6 is already out of it on some output."""
    gen = torch.Generator().manual_seed(5)
    x, weight = torch.randn(2, 32, 12, 12, generator=gen), torch.randn(16, 32, 3, 3, generator=gen)
    wrong = G.clone()
    wrong[1, 0] *= 1 + 2**-10
    d = F.pad(x.double(), (1, 1, 1, 1)).unfold(2, 6, 4).unfold(3, 6, 4)
    v = torch.einsum("ar,ncijrs,bs->ncijab", BT, d, BT)
    u = torch.einsum("ar,ocrs,bs->ocab", wrong, weight.double(), wrong)
    y = torch.einsum("ea,noijab,fb->noiejf", AT, torch.einsum("ncijab,ocab->noijab", v, u), AT).reshape(
        2, 16, 12, 12
    )
    want = F.conv2d(x.double(), weight.double(), padding=1)
    assert bool(((y - want).abs() > error_bound(x, weight, (1, 1))).any())


def test_groups_of_samples_give_the_whole_batchs_values(any_size, monkeypatch):
    gen = torch.Generator().manual_seed(3)
    x, weight = torch.randn(7, 20, 9, 10, generator=gen), torch.randn(12, 20, 3, 3, generator=gen)
    gy = torch.randn(7, 12, 9, 10, generator=gen)
    whole = winograd.conv3x3(x, weight, (1, 1))
    monkeypatch.setattr(winograd, "_MIN_GROUP_TILES", 1)
    monkeypatch.setattr(winograd, "_GROUP_BYTES", 1)  # one sample per group
    alone = torch.cat([winograd.conv3x3(x[i : i + 1], weight, (1, 1)) for i in range(7)])
    assert torch.equal(winograd.conv3x3(x, weight, (1, 1)), alone)
    assert torch.equal(whole, alone)
    # groups of 3, 3 and 1 sample (9 tiles of 20 channels each), the last in part of the buffer
    monkeypatch.setattr(winograd, "_GROUP_BYTES", 3 * 36 * 9 * 20 * 4)
    assert [tiles for _, tiles, _ in winograd._groups(7, (9, 10), (9, 10), (1, 1), 20, 0)] == [27, 27, 9]
    assert torch.equal(winograd.conv3x3(x, weight, (1, 1)), alone)
    got = winograd.weight_grad3x3(x, gy, (1, 1))
    want = torch.nn.grad.conv2d_weight(x.double(), (12, 20, 3, 3), gy.double(), padding=(1, 1))
    assert bool(((got.double() - want).abs() <= weight_grad_bound(x, gy, (1, 1))).all())


def test_a_group_holds_enough_tiles_for_the_products_whatever_its_bytes():
    """Each group's 36 products have its tiles as rows: with 512 channels on 8 × 8 maps the
    byte budget alone would give them 112."""
    th_tw = 4  # an 8 × 8 output map: 2 × 2 tiles of 4 × 4
    by_bytes = winograd._GROUP_BYTES // (36 * th_tw * 512 * 4)
    assert by_bytes * th_tw < winograd._MIN_GROUP_TILES
    groups = list(winograd._groups(256, (8, 8), (8, 8), (1, 1), 512, 0))
    assert all(tiles >= winograd._MIN_GROUP_TILES for _, tiles, _ in groups[:-1])
    assert sum(tiles for _, tiles, _ in groups) == 256 * th_tw
    # where the bytes give more tiles than that, the bytes decide (32 channels on 32 × 32)
    wide = list(winograd._groups(256, (32, 32), (32, 32), (1, 1), 32, 0))
    assert wide[0][1] == winograd._GROUP_BYTES // (36 * 64 * 32 * 4) * 64 > winograd._MIN_GROUP_TILES


@pytest.mark.skipif(winograd.available() and winograd._widest() < 2, reason="no AVX2 on this CPU")
def test_the_vector_loops_and_the_plain_loops_give_the_same_bits(any_size, monkeypatch):
    """The transforms add the same terms in the same order in every lane, without fused
    multiply-adds: AVX-512, AVX2 and plain C agree to the bit (one sample per group, so each
    loop's output transform also clears M for the next group)."""
    gen = torch.Generator().manual_seed(4)
    x, weight = torch.randn(3, 37, 11, 14, generator=gen), torch.randn(21, 37, 3, 3, generator=gen)
    monkeypatch.setattr(winograd, "_MIN_GROUP_TILES", 1)
    monkeypatch.setattr(winograd, "_GROUP_BYTES", 1)
    results = []
    for widest in sorted({winograd._widest(), 2, 0}):
        monkeypatch.setattr(winograd, "_widest", lambda widest=widest: widest)
        results.append(winograd.conv3x3(x, weight, (1, 1)))
        results.append(winograd.conv_transpose2d(x[:, :21], weight, (1, 1)))
        results.append(winograd.weight_grad3x3(x, x[:, :21], (1, 1)))
    assert len(results) >= 6
    for first in range(3):
        assert all(torch.equal(got, results[first]) for got in results[first::3])


def test_a_non_finite_output_gradient_stays_non_finite(any_size):
    gen = torch.Generator().manual_seed(6)
    weight = torch.randn(16, 16, 3, 3, generator=gen)
    gy = torch.randn(2, 16, 10, 10, generator=gen)
    gy[1, 3, 4, 5] = float("inf")
    gy[0, 7, 0, 0] = float("nan")
    got = winograd.conv_transpose2d(gy, weight, (1, 1))
    want = F.conv_transpose2d(gy, weight, padding=1)
    assert bool((~torch.isfinite(got[~torch.isfinite(want)])).all())
    assert not bool(torch.isfinite(want).all())


def _spikes(n, c, h, w, rate, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=gen) < rate).float()


def test_the_spiking_convolutions_input_gradient_is_the_transposed_convolution_within_the_bound():
    """At its default sizes (64 channels and more): the input gradient of the event-driven
    convolution is the Winograd transposed convolution, within its bound of torch's float64."""
    if not spike_conv_cpu.available():
        pytest.skip("no spiking-convolution kernel on this CPU")
    x = _spikes(16, 64, 16, 16, 0.2, 0).requires_grad_()
    weight = torch.randn(64, 64, 3, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert winograd.applies(torch.empty(16, 64, 16, 16), weight.transpose(0, 1), (1, 1))
    gy = torch.randn(16, 64, 16, 16, generator=torch.Generator().manual_seed(2))
    (gx,) = torch.autograd.grad(spike_conv_cpu.conv2d(x, weight, padding=1), x, gy)
    want = F.conv_transpose2d(gy.double(), weight.detach().double(), padding=1)
    turned = weight.detach().flip(2, 3).transpose(0, 1)
    assert bool(((gx.double() - want).abs() <= error_bound(gy, turned, (1, 1))).all())


@pytest.mark.parametrize("rate", [0.15, 0.35])
def test_a_spiking_convolution_takes_winograds_weight_gradient_from_its_spike_rate_on(
    rate, any_size, monkeypatch
):
    """Above the rate where Winograd's weight gradient is the faster (here set to 0.25 for 64
    channels), the event-driven convolution's weight gradient is Winograd's of the unpacked
    spikes, bit for bit, and within that algorithm's bound of torch's float64 gradient; below
    it, the event-driven kernel's."""
    if not spike_conv_cpu.available():
        pytest.skip("no spiking-convolution kernel on this CPU")
    monkeypatch.setattr(spike_conv_cpu, "_WINOGRAD_WGRAD_FROM", ((64, 0.25),))
    x = _spikes(3, 64, 9, 8, rate, 10)
    weight = torch.randn(64, 64, 3, 3, generator=torch.Generator().manual_seed(11), requires_grad=True)
    gy = torch.randn(3, 64, 9, 8, generator=torch.Generator().manual_seed(12))
    (gw,) = torch.autograd.grad(spike_conv_cpu.conv2d(x, weight, padding=1), weight, gy)
    if rate > 0.25:
        assert torch.equal(gw, winograd.weight_grad3x3(x, gy, (1, 1)))
    else:
        _, rowbits, _ = spike_conv_cpu._spike_bits(x, (1, 1))
        assert torch.equal(gw, spike_conv_cpu._weight_grad(x.shape, rowbits, gy, weight.shape, (1, 1)))
    want = torch.nn.grad.conv2d_weight(x.double(), weight.shape, gy.double(), padding=1)
    assert bool(((gw.double() - want).abs() <= weight_grad_bound(x, gy, (1, 1))).all())


def test_winograd_torch_gives_torchs_transposed_convolution_bit_for_bit(monkeypatch):
    monkeypatch.setenv("SPIKECIM_WINOGRAD", "torch")
    assert not winograd.available()
    gen = torch.Generator().manual_seed(7)
    gy, weight = torch.randn(16, 64, 16, 16, generator=gen), torch.randn(64, 64, 3, 3, generator=gen)
    assert torch.equal(
        winograd.conv_transpose2d(gy, weight, (1, 1)), F.conv_transpose2d(gy, weight, padding=1)
    )


def test_small_convolutions_and_watched_calls_are_left_to_torch():
    gen = torch.Generator().manual_seed(8)
    weight = torch.randn(64, 64, 3, 3, generator=gen)
    assert winograd.applies(torch.empty(16, 64, 16, 16), weight, (1, 1))
    assert not winograd.applies(
        torch.empty(16, 32, 16, 16), torch.empty(64, 32, 3, 3), (1, 1)
    )  # few channels
    assert not winograd.applies(torch.empty(1, 64, 4, 4), weight, (1, 1))  # little work
    assert not winograd.applies(torch.empty(16, 64, 16, 16, dtype=torch.float64), weight.double(), (1, 1))
    assert not winograd.applies(torch.empty(16, 64, 16, 16), weight, (3, 3))
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False):  # an op counter must see torch's convolution
        assert not winograd.applies(torch.empty(16, 64, 16, 16), weight, (1, 1))


def test_maps_whose_tiles_compute_many_spare_outputs_are_left_to_torch():
    """4×4 output tiles over a map 4 does not divide compute outputs the map does not have:
    16·⌈H/4⌉·⌈W/4⌉ per H·W outputs (hand counts below)."""
    assert winograd.tile_overhang(8, 8) == 1.0
    assert winograd.tile_overhang(2, 2) == 4.0
    assert winograd.tile_overhang(1, 1) == 16.0
    assert winograd.tile_overhang(5, 5) == 64 / 25
    assert winograd.tile_overhang(7, 7) == 64 / 49
    assert winograd.tile_overhang(4, 9) == 48 / 36
    gen = torch.Generator().manual_seed(9)
    weight = torch.randn(256, 256, 3, 3, generator=gen)
    for hw, runs in ((2, False), (3, False), (5, False), (6, False), (7, True), (8, True), (14, True)):
        assert winograd.applies(torch.empty(64, 256, hw, hw), weight, (1, 1)) == runs, hw
    gy = torch.randn(64, 256, 2, 2, generator=gen)
    assert torch.equal(
        winograd.conv_transpose2d(gy, weight, (1, 1)), F.conv_transpose2d(gy, weight, padding=1)
    )


def test_a_dense_convolution_that_trains_runs_winograds_forward_and_gradients():
    """A convolution of a dense map (a spiking VGG's pooled spikes) that needs an input
    gradient: the forward, the input and the weight gradients are Winograd's within their
    bounds; without a gradient the forward is torch's, bit for bit."""
    gen = torch.Generator().manual_seed(9)
    x0 = torch.rand(16, 64, 16, 16, generator=gen)
    w0, b0 = torch.randn(128, 64, 3, 3, generator=gen), torch.randn(128, generator=gen)
    gy = torch.randn(16, 128, 16, 16, generator=gen)
    x, weight, bias = (t.clone().requires_grad_() for t in (x0, w0, b0))
    y = spike_conv_cpu.conv2d(x, weight, bias, 1, 1)
    y.backward(gy)
    tx, tw, tb = (t.clone().requires_grad_() for t in (x0, w0, b0))
    want = F.conv2d(tx, tw, tb, 1, 1)
    want.backward(gy)
    plain = (y - b0.view(1, -1, 1, 1)).double()  # the bias added after: one more rounding
    slack = 2 * U * (y.double().abs() + b0.double().abs().view(1, -1, 1, 1))
    exact_y = F.conv2d(x0.double(), w0.double(), padding=1)
    assert bool(((plain - exact_y).abs() <= error_bound(x0, w0, (1, 1)) + slack).all())
    assert not torch.equal(y, want)  # another algorithm's rounding: Winograd's ran
    with torch.no_grad():
        assert torch.equal(spike_conv_cpu.conv2d(x0, w0, b0, 1, 1), F.conv2d(x0, w0, b0, 1, 1))
    gb_exact = gy.double().sum((0, 2, 3))  # the bias gradient: a sum, within its summation bound
    terms = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert bool(((bias.grad.double() - gb_exact).abs() <= terms * U * gy.double().abs().sum((0, 2, 3))).all())
    exact_w = torch.nn.grad.conv2d_weight(x0.double(), w0.shape, gy.double(), padding=1)
    assert bool(((weight.grad.double() - exact_w).abs() <= weight_grad_bound(x0, gy, (1, 1))).all())
    exact = F.conv_transpose2d(gy.double(), w0.double(), padding=1)
    assert not torch.equal(x.grad, tx.grad)  # another algorithm's rounding: Winograd's ran
    assert bool(
        ((x.grad.double() - exact).abs() <= error_bound(gy, w0.flip(2, 3).transpose(0, 1), (1, 1))).all()
    )


def test_a_dense_convolutions_second_derivatives_are_torchs():
    """With create_graph the gradients are torch's ops, so a second derivative through them is
    torch's convolution's (here against torch's float64 double backward)."""
    gen = torch.Generator().manual_seed(10)
    x0, w0 = torch.rand(16, 64, 16, 16, generator=gen), torch.randn(64, 64, 3, 3, generator=gen) * 0.05
    grads = []
    for conv, dtype in ((spike_conv_cpu.conv2d, torch.float32), (F.conv2d, torch.float64)):
        x, weight = x0.to(dtype).requires_grad_(), w0.to(dtype).requires_grad_()
        (gx,) = torch.autograd.grad(conv(x, weight, None, 1, 1).square().sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(gx.square().sum(), weight)[0])
    assert torch.allclose(grads[0].double(), grads[1], rtol=1e-4, atol=1e-4 * float(grads[1].abs().max()))
