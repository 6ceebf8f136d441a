"""The analog convolution in one compiled pass (spikecim.analog.conv_kernel) against the three
passes it replaces: the patch DAC (converter_kernels.unfold_dac), the tile products and the
ADC with the digital stage (converter_kernels.adc_accumulate); and its AVX2 loops against its
AVX-512 ones."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from spikecim.analog import conv_kernel, converter_kernels, to_analog
from spikecim.nn.kernels import spike_conv_cpu

pytestmark = pytest.mark.skipif(
    not conv_kernel.available(torch.ones(1)),
    reason="needs a CPU with AVX2 and FMA (or AVX-512) and a C compiler",
)

# (batch, channels, height, width, kernel, stride, padding, dilation, tile rows, column tiles,
# slices, columns per tile, outputs)
GEOMETRIES = {
    "convnet": (3, 32, 8, 8, 3, 1, 1, 1, 512, 1, 1, 64, 64),
    "two tiles, 32 x 32": (2, 64, 32, 32, 3, 1, 1, 1, 512, 1, 1, 64, 64),
    "wide rows in panels": (2, 4, 20, 37, 3, 1, 1, 1, 20, 1, 1, 16, 16),
    "stride 2, slices": (2, 5, 9, 7, 3, 2, 1, 1, 16, 2, 2, 7, 11),
    "dilation 2, padding 2": (2, 3, 12, 10, 5, 1, 2, 2, 20, 3, 1, 5, 13),
    "narrow rows, odd count": (2, 6, 7, 5, 3, 1, 1, 1, 30, 1, 1, 8, 8),
    "a row wider than a panel": (1, 2, 3, 300, 3, 1, 1, 1, 20, 1, 1, 8, 8),
    "samples 4 to an item, 8 wide, odd rows": (5, 3, 7, 8, 3, 1, 1, 1, 27, 1, 1, 8, 8),
}


def _passes(x, geometry, m, n_dac, factor, adc, out_f, c_tile, out_noise):
    """The same convolution through the passes: the patches' levels (``n_dac`` None: the
    patches themselves), the products of each tile (in float64, then rounded to ``m``'s
    dtype) and the ADC kernel."""
    n_in, R, cols = m.shape
    if n_dac is None:  # no DAC: the patches as they are, scale 1
        (kernel, stride, padding, dilation) = geometry
        patches = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
        scale = torch.ones(n_in, patches.shape[0], 1, patches.shape[2])
    else:
        patches, scale = converter_kernels.unfold_dac(x, *geometry, R, n_dac)
    N, _, L = patches.shape
    y = torch.empty(n_in, N, cols, L, dtype=m.dtype)
    for i in range(n_in):
        xi = patches[:, i * R : (i + 1) * R]
        y[i] = torch.matmul(m[i, : xi.shape[1]].T.double(), xi.double()).to(m.dtype)
    n_out, S = factor.shape[1:]
    y = y.view(n_in, N, n_out, S, c_tile, L)
    return converter_kernels.adc_accumulate(
        y, factor.view(n_in, 1, n_out, S, 1, 1), scale, adc, out_f, out_noise
    )


def _case(name, integer_matrix, geometries=GEOMETRIES):
    N, C, H, W, k, s, p, d, R, n_out, S, c_tile, out_f = geometries[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, W, generator=gen)
    n_in = -(-C * k * k // R)
    shape = (n_in, R, n_out * S * c_tile)
    m = (
        torch.randint(-8, 9, shape, generator=gen).float()
        if integer_matrix
        else torch.randn(shape, generator=gen)
    )
    factor = torch.rand(n_in, n_out, S, generator=gen) + 0.5
    return x, ((k, k), (s, s), (p, p), (d, d)), m, factor, out_f, c_tile


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("adc", [None, (0.01, 127)], ids=["adc off", "adc on"])
@pytest.mark.parametrize("out_noise", [None, (3.0, 1234)], ids=["no noise", "output noise"])
@pytest.mark.parametrize("n_dac", [127, None], ids=["dac", "no dac, spikes"])
def test_one_pass_equals_the_passes_bit_for_bit_where_the_products_are_exact(name, adc, out_noise, n_dac):
    """With integer read values every product and partial sum is an integer below 2^24, exact
    in any order of summation: the DAC levels (or, without a DAC, binary spikes as they
    are), the output-noise normals, the ADC and the sums over slices and tiles must then
    give the passes' bits."""
    x, geometry, m, factor, out_f, c_tile = _case(name, integer_matrix=True)
    x = x if n_dac is not None else (x > 0.5).float()
    got = conv_kernel.conv_adc(x, geometry, m, n_dac, factor, adc, out_f, c_tile, out_noise)
    want = _passes(x, geometry, m, n_dac, factor, adc, out_f, c_tile, out_noise)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("n_dac", [127, None], ids=["dac", "no dac"])
def test_one_pass_is_within_float32_rounding_of_the_exact_convolution(name, n_dac):
    """Real read values, no ADC: each tile's column outputs within K·u·(|m|ᵀ|levels|) of the
    exact product (u = 2^-24; any order of summation of K products), so the output within
    that bound carried through the factors and DAC scales, plus the rounding of the sums.
    Without a DAC the levels are the real inputs themselves."""
    x, geometry, m, factor, out_f, c_tile = _case(name, integer_matrix=False)
    got = conv_kernel.conv_adc(x, geometry, m, n_dac, factor, None, out_f, c_tile, None).double()
    exact = _passes(x, geometry, m.double(), n_dac, factor.double(), None, out_f, c_tile, None)
    # |x| has the same DAC scales and the levels' magnitudes (rint(−v) = −rint(v))
    bound = _passes(x.abs(), geometry, m.abs().double(), n_dac, factor.double(), None, out_f, c_tile, None)
    K = min(m.shape[1], x.shape[1] * geometry[0][0] * geometry[0][1])
    assert ((got - exact).abs() <= K * 2.0**-24 * bound + 4 * 2.0**-24 * exact.abs() + 1e-12).all()


@pytest.mark.parametrize(
    ("channels", "spike_above", "sparse_spikes"),
    [(32, None, False), (32, 1.0, True), (64, 1.0, True), (64, 0.0, False)],
    ids=[
        "analog input",
        "sparse spikes on one tile",
        "sparse spikes over two tiles",
        "dense spikes over two tiles",
    ],
)
def test_a_noisy_conv_layer_takes_the_one_pass_where_it_is_faster_and_matches_the_passes(
    channels, spike_above, sparse_spikes
):
    """A noisy PCM convolution layer (read and output noise, DAC and ADC on): no convolution
    or GEMM call of torch runs, and its output equals that of the passes for the same seed
    (SPIKECIM_GEMM=onednn: the patch DAC and oneDNN's products, or for spikes, which the DAC
    leaves unchanged, the direct convolution), up to the rare output whose column sum lies
    on an ADC rounding boundary and moves one level. Sparse spikes (16 % ones) keep the
    direct convolution of each tile, which runs on the event-driven kernel of spikes
    (spikecim.nn.kernels.spike_conv_cpu), not torch's; dense ones (half ones) over two
    512-row tiles (64·9 = 576 rows) take the one pass. Without the event-driven kernel
    (SPIKECIM_CONV=torch, or neither AVX-512 BW/VL nor AVX2), spikes over two tiles take the one pass and
    spikes on one tile torch's direct convolution."""
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, 64, 3, padding=1)
    am = to_analog(conv, "pcm-aihwkit")
    x = torch.relu(torch.randn(8, channels, 16, 16, generator=torch.Generator().manual_seed(1)))
    x = x if spike_above is None else (x > spike_above).float()

    def forward():
        torch.manual_seed(2)
        with torch.no_grad():
            return am(x)

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = forward()
    ops = {e.key for e in prof.key_averages()}
    torch_products = ops & {"aten::mkldnn_convolution", "mkldnn::_linear_pointwise", "aten::mm", "aten::bmm"}
    events = sparse_spikes and spike_conv_cpu.available()
    torch_direct = spike_above is not None and not events and channels * 9 <= 512  # one tile
    assert torch_products == ({"aten::mkldnn_convolution"} if torch_direct else set())
    assert bool(ops & {"_SpikeConv", spike_conv_cpu.PROFILER_NAME}) == events
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKECIM_GEMM", "onednn")
        want = forward()
    apart = (got - want).abs() > 1e-5 * want.abs().max()
    assert apart.float().mean() < 1e-3


@pytest.mark.parametrize("name", ["two tiles, 32 x 32", "samples 4 to an item, 8 wide, odd rows"])
def test_one_pass_gives_the_same_bits_on_one_and_two_threads(name):
    """Each work item (a sample and panel of patches, or several samples' whole maps) is
    computed whole by one thread, so the result does not depend on how the items are
    shared out."""
    x, geometry, m, factor, out_f, c_tile = _case(name, integer_matrix=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = conv_kernel.conv_adc(x, geometry, m, 127, factor, (0.01, 127), out_f, c_tile, (3.0, 7))
        torch.set_num_threads(2)
        two = conv_kernel.conv_adc(x, geometry, m, 127, factor, (0.01, 127), out_f, c_tile, (3.0, 7))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_an_ideal_crossbar_over_several_tiles_in_one_pass_equals_the_digital_convolution():
    """The ideal preset (no noise, no converters): a convolution of real inputs over five
    input tiles of 128 rows runs in the one pass without a DAC (no torch convolution runs)
    and gives torch's digital convolution to float rounding."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 16, 3, padding=1)
    am = to_analog(conv, "ideal")
    x = torch.randn(4, 64, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        got = am(x)
    assert "aten::mkldnn_convolution" not in {e.key for e in prof.key_averages()}
    with torch.no_grad():
        want = conv(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * want.abs().max().item())


# As GEOMETRIES: micro-tiles of 6 columns left partial (14, 10, 9, 8, 33, 14, 11, 15 columns),
# rows of 8 patches, of 4 (two to an AVX2 vector) and of 7, 6, 13, 30 (masked tails of 16- and
# 8-patch vectors), stride 2 (the levels written one by one), several input tiles, samples
# several to an item and maps split into panels of whole rows.
ISA_GEOMETRIES = {
    "C 3, 8 x 8, samples 4 to an item": (5, 3, 8, 8, 3, 1, 1, 1, 27, 2, 1, 7, 13),
    "C 5, 7 x 9, rows of 7, two tiles, slices": (3, 5, 7, 9, 3, 1, 0, 1, 24, 1, 2, 5, 5),
    "C 5, 6 x 6, rows of 4": (3, 5, 6, 6, 3, 1, 0, 1, 45, 1, 1, 9, 9),
    "C 5, 7 x 9, stride 2, three tiles": (3, 5, 7, 9, 3, 2, 1, 1, 20, 2, 1, 4, 7),
    "C 17, 13 x 13, four tiles": (2, 17, 13, 13, 3, 1, 1, 1, 40, 3, 1, 11, 31),
    "C 17, 13 x 13, stride 2, slices": (3, 17, 13, 13, 3, 2, 1, 1, 64, 1, 2, 7, 7),
    "C 3, 24 x 30, panels of 8 rows": (2, 3, 24, 30, 3, 1, 1, 1, 27, 1, 1, 11, 11),
    "C 3, 12 x 10, dilation 2": (2, 3, 12, 10, 5, 1, 2, 2, 20, 3, 1, 5, 13),
}
# (input, ADC on, output noise): the inputs "real" (DAC on), "NaN" (real with one NaN, DAC on),
# "real, no DAC" and "spikes" (no DAC), the ADC's (k, q) and the noise's alpha scaled to the
# column outputs' size so that the ADC clamps some of them at ±q
ISA_SETTINGS = [
    (i, adc, noise) for i in ("real", "NaN", "real, no DAC", "spikes") for adc in (0, 1) for noise in (0, 1)
]


def _has_avx512() -> bool:
    """Whether the kernel has AVX-512 loops to run here (its own report of the CPU)."""
    return conv_kernel.available(torch.ones(1)) and conv_kernel._library()[2] >= 3


class _IsaSpy:
    """The kernel's library, noting the instruction set each call hands the C code."""

    def __init__(self, lib):
        self.lib, self.isas = lib, []

    def conv_adc(self, args, threads):
        self.isas.append(args._obj.isa)
        self.lib.conv_adc(args, threads)


def _spy_isa(monkeypatch) -> list[int]:
    """Route conv_kernel's calls through an :class:`_IsaSpy`; returns its list of isas."""
    lib, nr, widest = conv_kernel._library()
    spy = _IsaSpy(lib)
    monkeypatch.setattr(conv_kernel, "_library", lambda: (spy, nr, widest))
    return spy.isas


def _isa_inputs(x, setting):
    """``(x, n_dac, adc, out_noise)`` of an ISA_SETTINGS entry."""
    kind, adc, noise = setting
    if kind == "NaN":
        x = x.clone()
        x[0, 0, 2, 3] = float("nan")
    if kind == "spikes":
        x = (x > 0.5).float()
    dac = kind in ("real", "NaN")
    adc_levels = ((0.02 if dac else 1.0), 7) if adc else None
    out_noise = ((30.0 if dac else 0.5), 99) if noise else None
    return x, 127 if dac else None, adc_levels, out_noise


@pytest.mark.skipif(not _has_avx512(), reason="needs a CPU with AVX-512 to compare the AVX2 loops with")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", list(ISA_GEOMETRIES))
def test_avx2_loops_give_the_avx512_loops_bits(name, threads, monkeypatch):
    """SPIKECIM_ISA=avx2 runs the AVX2 loops (the C code is handed isa 2, against 3 without
    it), which do the AVX-512 loops' IEEE operations lane by lane: the output's bits are the
    same, NaN included (compared as integers), for the DAC on and off, spikes, the ADC on and
    off, output noise on and off, on 1 and 2 threads (on 2 every call of several work items
    shares them out)."""
    x, geometry, m, factor, out_f, c_tile = _case(name, integer_matrix=False, geometries=ISA_GEOMETRIES)
    monkeypatch.setattr(conv_kernel, "_PARALLEL_MIN", 0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for setting in ISA_SETTINGS:
            xs, n_dac, adc, out_noise = _isa_inputs(x, setting)
            outs = []
            for isa in ("", "avx2"):
                monkeypatch.setenv("SPIKECIM_ISA", isa)
                isas = _spy_isa(monkeypatch)
                outs.append(
                    conv_kernel.conv_adc(xs, geometry, m, n_dac, factor, adc, out_f, c_tile, out_noise)
                )
                assert isas == [2 if isa else 3]
            wide, narrow = outs
            assert torch.equal(narrow.view(torch.int32), wide.view(torch.int32)), setting
            assert wide.isnan().any() == (setting[0] == "NaN"), setting  # the NaN reaches the output
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_avx2_loops_equal_the_passes_bit_for_bit_where_the_products_are_exact(name, monkeypatch):
    """The AVX2 loops (SPIKECIM_ISA=avx2, what a CPU without AVX-512 runs) against the passes,
    as test_one_pass_equals_the_passes_bit_for_bit_where_the_products_are_exact checks the
    widest loops: with integer read values every product and partial sum is exact, so the
    DAC on or off (spikes), the ADC on or off and output noise on or off give the passes'
    bits."""
    x, geometry, m, factor, out_f, c_tile = _case(name, integer_matrix=True)
    monkeypatch.setenv("SPIKECIM_ISA", "avx2")
    isas = _spy_isa(monkeypatch)
    for n_dac in (127, None):
        xs = x if n_dac is not None else (x > 0.5).float()
        for adc in (None, (0.01, 127)):
            for out_noise in (None, (3.0, 1234)):
                got = conv_kernel.conv_adc(xs, geometry, m, n_dac, factor, adc, out_f, c_tile, out_noise)
                want = _passes(xs, geometry, m, n_dac, factor, adc, out_f, c_tile, out_noise)
                assert torch.equal(got, want), (n_dac, adc, out_noise)
    assert set(isas) == {2}
