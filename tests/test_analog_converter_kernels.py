"""The crossbar's converter kernels (converters_cpu.c) against the converters written out in
torch, bit for bit, and the analog layers with and without a C compiler."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikecim.analog import converter_kernels as ck
from spikecim.analog import drift, noise, program, to_analog
from spikecim.nn.kernels import cbuild

DTYPES = [torch.float32, torch.float64]
THREADS = [1, 2, 3]


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def dac_written_out(x3, n_dac):
    """aihwkit's abs-max noise management and a symmetric DAC, per vector along dim 1:
    s = max|x| (1 for a zero vector), levels = round(x·(1/s)·n_dac)."""
    s = x3.abs().amax(dim=1, keepdim=True)
    s = torch.where(s > 0, s, torch.ones_like(s))
    gain = (1 / s) * n_dac
    return torch.round(x3 * gain), s


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("shape", [(64, 300, 1), (5, 33, 700), (3, 512, 17)], ids=["rows", "patches", "odd"])
def test_dac_kernel_equals_abs_max_dac_written_out(dtype, threads, shape):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=dtype) * 3
    x[1] = 0  # an all-zero vector: scale 1
    tile = x[:, 7:]  # a strided view, as one input tile of a wider input
    want, want_s = dac_written_out(tile, 63)
    got, got_s = ck.dac_levels(tile, 63)
    assert torch.equal(got, want) and torch.equal(got_s, want_s)
    inplace = tile.clone()
    got, _ = ck.dac_levels(inplace, 63, out=inplace)
    assert got.data_ptr() == inplace.data_ptr() and torch.equal(inplace, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dac_kernel_rounds_ties_to_even(dtype):
    """abs-max 1, n_dac 4: the gain is exactly 4, so (2k+1)/8 lands on k + 1/2; the hand
    rounding of half to even: 0.5→0, 1.5→2, 2.5→2, 3.5→4 and their negatives."""
    x = torch.tensor([1.0, 0.125, 0.375, 0.625, 0.875, -0.125, -0.375, -0.625, -0.875], dtype=dtype)
    got, s = ck.dac_levels(x.view(1, -1, 1), 4)
    assert got.flatten().tolist() == [4, 0, 2, 2, 4, 0, -2, -2, -4] and s.item() == 1.0
    got, _ = ck.dac_levels(x[1:].view(1, -1, 1), 4, scale=torch.ones(1, 1, 1, dtype=dtype))
    assert got.flatten().tolist() == [0, 2, 2, 4, 0, -2, -2, -4]


def test_dac_kernel_treats_nan_vector_as_torch_amax_does():
    """A NaN in a vector: torch's amax is NaN, where(s > 0, s, 1) makes the scale 1, so the
    other elements are quantised with gain n_dac."""
    x = torch.tensor([[0.5, float("nan"), -0.25], [0.5, 0.1, -0.25]]).view(2, 3, 1)
    got, s = ck.dac_levels(x, 4)
    assert s.flatten().tolist() == [1.0, 0.5]
    assert got[0, 0].item() == 2 and got[0, 1].isnan() and got[0, 2].item() == -1
    assert got[1].flatten().tolist() == [4, 1, -2]


def adc_written_out(y, gain, row_scale, adc, out_features):
    """The ADC and the digital stage as torch ops: clamp(round(y·k), −q, q)·gain·row_scale,
    summed over tiles i and slices s, left to right with i outer."""
    n_in, N, n_out, S, C, L = y.shape
    v = y
    if adc is not None:
        k, q = adc
        v = torch.clamp(torch.round(y * k), -q, q)
    v = v * gain
    if row_scale is not None:
        v = v * row_scale.view(n_in, N, 1, 1, 1, L)
    total = v[0, :, :, 0]
    for i in range(n_in):
        for s in range(S):
            if (i, s) != (0, 0):
                total = total + v[i, :, :, s]
    return total.reshape(N, n_out * C, L)[:, :out_features]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    "shape,out_features",
    [((3, 40, 2, 2, 8, 1), 13), ((1, 4, 1, 1, 16, 50), 16), ((2, 6, 3, 1, 5, 9), 15)],
    ids=["rows-sliced-padded", "one-tile-patches", "tiles-patches"],
)
@pytest.mark.parametrize("dac", [True, False])
@pytest.mark.parametrize("adc", [(0.5, 20), None], ids=["adc", "no-adc"])
@pytest.mark.parametrize("rows", [False, True], ids=["columns", "rows"])
def test_adc_kernel_equals_adc_and_digital_stage_written_out(
    dtype, threads, shape, out_features, dac, adc, rows
):
    """The column outputs as the kernel's first layout reads them, or as rows (``[n_in, N, L,
    n_out, S, C]``: the patches' products as rows), against the formula on the first."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    n_in, N, n_out, S, C, L = shape
    y = torch.randint(-60, 61, shape, generator=g).to(dtype)  # odd ints: y·0.5 are ties; |y·k| > q clips
    y[..., :2] += torch.rand(n_in, N, n_out, S, C, min(L, 2), generator=g, dtype=dtype)
    gain = torch.rand(n_in, 1, n_out, S, 1, 1, generator=g, dtype=dtype)
    row_scale = torch.rand(n_in, N, 1, L, generator=g, dtype=dtype) if dac else None
    want = adc_written_out(y, gain, row_scale, adc, out_features)
    got = ck.adc_accumulate(_layout(y, rows), gain, row_scale, adc, out_features, rows=rows)
    assert torch.equal(got, want)
    if adc is not None:  # both clipping ends are reached
        levels = torch.clamp(torch.round(y * adc[0]), -adc[1], adc[1])
        assert (levels == adc[1]).any() and (levels == -adc[1]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "shape,out_features",
    [
        ((3, 40, 2, 2, 8, 1), 13),
        ((2, 3, 2, 2, 64, 37), 100),
        ((2, 300, 1, 1, 24, 1), 24),
        ((1, 50, 1, 1, 16, 5), 16),
        ((1, 2, 1, 1, 3, 2100), 3),
        ((3, 5, 2, 1, 17, 33), 30),
    ],
    ids=[
        "rows-sliced-padded",
        "patches-longer-than-a-noise-piece",
        "samples-drawn-together",
        "patches-drawn-together",
        "patches-of-a-column-longer-than-a-noise-piece",
        "partial-transpose-blocks",
    ],
)
@pytest.mark.parametrize("adc", [(0.5, 20), None], ids=["adc", "no-adc"])
@pytest.mark.parametrize("rows", [False, True], ids=["columns", "rows"])
def test_adc_kernel_with_output_noise_equals_the_noise_pass_then_the_adc(
    dtype, threads, shape, out_features, adc, rows
):
    """In either layout every output gets the normal of its index in the first layout."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(2)
    n_in, N, n_out, S, _, L = shape
    y = torch.randn(shape, generator=g, dtype=dtype) * 30
    gain = torch.rand(n_in, 1, n_out, S, 1, 1, generator=g, dtype=dtype)
    row_scale = torch.rand(n_in, N, 1, L, generator=g, dtype=dtype)
    alpha, seed = 2.5, 0xC0FFEE_1234
    laid_out = _layout(y, rows)
    before = laid_out.clone()
    got = ck.adc_accumulate(laid_out, gain, row_scale, adc, out_features, out_noise=(alpha, seed), rows=rows)
    assert torch.equal(laid_out, before)  # the columns are only read
    # the unfused path: the output-noise pass over the columns, then the ADC kernel
    noisy = noise.add_normal_(y.clone(), alpha, seed=seed)
    assert torch.equal(got, ck.adc_accumulate(noisy, gain, row_scale, adc, out_features))
    # and the formula written out on the same normals
    z = noise.standard_normal(shape, seed, dtype)
    assert torch.equal(got, adc_written_out(y + z * alpha, gain, row_scale, adc, out_features))


def _layout(y: torch.Tensor, rows: bool) -> torch.Tensor:
    """``y[n_in, N, n_out, S, C, L]`` as the ADC kernel reads it: as is, or as rows."""
    return y.permute(0, 1, 5, 2, 3, 4).contiguous() if rows else y


def test_adc_kernel_rounds_ties_to_even_and_clamps_both_ends():
    """k = 1/2 on odd integers: 1→0.5→0, 3→1.5→2, 5→2.5→2, −3→−2; ±41→±20.5→±20, ±45 →
    ±22→ clamped to ±20 (q = 20); gain and row scale 1, one tile and slice."""
    y = torch.tensor([1.0, 3.0, 5.0, -3.0, 41.0, -41.0, 45.0, -45.0]).view(1, 1, 1, 1, 8, 1)
    got = ck.adc_accumulate(y, torch.ones(1, 1, 1, 1, 1, 1), None, (0.5, 20), 8)
    assert got.flatten().tolist() == [0, 2, 2, -2, 20, -20, 20, -20]


def unfold_dac_written_out(x, geometry, tile_rows, n_dac):
    cols = F.unfold(x, **geometry)
    levels, scales = [], []
    for r in range(0, cols.shape[1], tile_rows):
        lv, s = dac_written_out(cols[:, r : r + tile_rows], n_dac)
        levels.append(lv)
        scales.append(s)
    return torch.cat(levels, 1), torch.stack(scales)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "geometry,channels,tile_rows",
    [
        ({"kernel_size": (3, 3), "stride": 1, "padding": 1, "dilation": 1}, 4, 512),
        ({"kernel_size": (3, 3), "stride": 1, "padding": 1, "dilation": 1}, 6, 20),  # tiles cut channels
        ({"kernel_size": (3, 2), "stride": (2, 3), "padding": (2, 0), "dilation": 1}, 3, 7),
        ({"kernel_size": (2, 3), "stride": 1, "padding": (0, 3), "dilation": (2, 3)}, 2, 5),
        ({"kernel_size": (1, 1), "stride": 2, "padding": 0, "dilation": 1}, 5, 3),
        ({"kernel_size": (3, 3), "stride": (2, 1), "padding": 1, "dilation": (1, 2)}, 3, 11),
        ({"kernel_size": (1, 1), "stride": 2, "padding": 0, "dilation": 1}, 40, 17),
    ],
    ids=[
        "3x3",
        "3x3-cut",
        "strided-padded",
        "dilated-wide-pad",
        "1x1-stride2",
        "row-strided-dilated",
        "1x1-wide",
    ],
)
@pytest.mark.parametrize("rows", [False, True], ids=["columns", "rows"])
def test_unfold_dac_kernel_equals_unfold_then_dac_per_tile(
    dtype, threads, geometry, channels, tile_rows, rows
):
    """As ``F.unfold`` lays the patches out, or as rows: tile i's levels of every patch in
    one ``[N·L, R_i]`` matrix (16 × 16 transposes and their partial edges)."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, channels, 9, 11, generator=g, dtype=dtype)
    x[1] = 0
    want, want_s = unfold_dac_written_out(x, geometry, tile_rows, 63)
    sizes = [geometry[k] if isinstance(geometry[k], tuple) else (geometry[k],) * 2 for k in geometry]
    got, got_s = ck.unfold_dac(x, *sizes, tile_rows, 63, rows=rows)
    assert torch.equal(got_s, want_s)
    if not rows:
        assert torch.equal(got, want)
        return
    N, K, L = want.shape
    assert len(got) == -(-K // tile_rows)
    for i, tile in enumerate(got):
        part = want[:, i * tile_rows : (i + 1) * tile_rows]
        assert torch.equal(tile, part.transpose(1, 2).reshape(N * L, part.shape[1]))


def _layers():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 7),
    ).eval()


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """No C compiler on the PATH and an empty kernel cache: the converter kernels and the
    written products' kernel cannot be built. The noise generator stays loaded (unlike
    conftest's ``no_c_compiler``), so both forwards of a test draw the same normals."""
    from spikecim.analog import matmul_kernel, noise

    for dtype in DTYPES:  # loaded while the compiler is there (the ADC kernel's own output
        noise._library(dtype)  # noise may have been the only draw of this dtype so far)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path))
    loaders = (ck._library, matmul_kernel._library)
    for loader in loaders:
        loader.cache_clear()
    yield
    for loader in loaders:
        loader.cache_clear()


def _noisy_forwards(model, x, spikes):
    torch.manual_seed(4)  # the drift-compensation readout draws read noise too
    am = to_analog(model, {"preset": "pcm-aihwkit", "tile_rows": 16, "tile_cols": 5})
    program(am, 0)
    drift(am, 3600.0)
    outs = []
    with torch.no_grad():
        for inputs in (x, spikes):
            torch.manual_seed(4)
            outs.append(am(inputs))
    return outs


@pytest.mark.parametrize("dtype", DTYPES)
def test_noisy_analog_forward_is_the_same_without_a_compiler(dtype, request):
    """Read and output noise, DAC and ADC on, several input tiles: the kernels' forward equals
    the torch passes' (no compiler: one warning, then the fallback), for analog inputs
    (unfolded patches) and spikes (the direct convolution)."""
    model = _layers().to(dtype)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 10, 10, generator=g, dtype=dtype)
    spikes = (torch.rand(4, 3, 10, 10, generator=g) < 0.3).to(dtype)
    assert ck.available(x)
    fused = _noisy_forwards(model, x, spikes)
    request.getfixturevalue("no_compiler")
    with pytest.raises(OSError):
        cbuild.compiler()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not ck.available(x)
        fallback = _noisy_forwards(model, x, spikes)
    assert sum("converter kernels could not be built" in str(w.message) for w in caught) == 1
    for a, b in zip(fused, fallback, strict=True):
        assert torch.equal(a, b)


def test_noisy_analog_matmul_is_the_same_without_a_compiler(request):
    """The crossbar that holds an operand written at run time (attention's products): its DAC
    runs in the kernel where one is built, with the same levels as the torch passes."""
    from spikecim.analog import matmul_kernel
    from spikecim.analog.config import load_crossbar_config
    from spikecim.analog.dynamic import AnalogMatMul

    layer = AnalogMatMul(load_crossbar_config({"preset": "pcm-aihwkit", "tile_rows": 8}), "crossbar")
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(3, 5, 20, generator=g), torch.randn(3, 20, 7, generator=g)

    def forward():
        torch.manual_seed(7)
        with torch.no_grad():
            return layer(a, b)

    fused = forward()
    request.getfixturevalue("no_compiler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not ck.available(a) and not matmul_kernel.available(a, 8)
        assert torch.equal(forward(), fused)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_check_equals_torch_comparison(dtype):
    """The direct-convolution test 'every value is 0 or 1' against ((x == 0) | (x == 1)).all():
    −0 counts as 0; 0.5, 2, −1, NaN and inf anywhere (also past the first 4096-value block)
    do not."""
    base = (torch.rand(3, 5000, generator=torch.Generator().manual_seed(8)) < 0.4).to(dtype)
    assert ck.all_binary(base)
    for value in (-0.0, 0.5, 2.0, -1.0, float("nan"), float("inf"), 1.0 + 2**-20):
        for where in (0, 4095, 4096, 14999):
            x = base.clone().view(-1)
            x[where] = value
            assert ck.all_binary(x) == bool(((x == 0) | (x == 1)).all()), (value, where)
    assert ck.all_binary(base[:, ::2])  # a strided view is checked on a contiguous copy
