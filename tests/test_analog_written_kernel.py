"""The compiled pass of the crossbars written at run time (analog/written_kernel.py) against
the formulas of the torch path written out here, fed the kernel's own normals
(noise.standard_normal for the same key: element j's write noise is normal j, its read
noise normal total + j)."""

from __future__ import annotations

import math

import pytest
import torch

from spikecim.analog import load_crossbar_config, noise, written_kernel
from spikecim.analog.dynamic import AnalogMatMul
from spikecim.timing import torch_threads

pytestmark = pytest.mark.skipif(not written_kernel.available(), reason="no C compiler")

SEED = 0x1234_5678_9ABC_DEF0


def crossbar(
    device="pcm", clip=None, weight_bits=None, bits_per_cell=1, levels=None, gamma=5.0, g_min=0.0, **kw
):
    dyn = {"unit": "crossbar", "write_noise_gamma": gamma, "write_noise_sigma": 0.01}
    dyn["clipformer"] = (
        {"enabled": False} if clip is None else {"enabled": True, "alpha": 1.6, "beta": 0.7, "shift": clip}
    )
    dev = {"name": "pcm", "read_noise_scale": 3.0} if device == "pcm" else {"name": device}
    return load_crossbar_config(
        {
            "device": dev, "g_min_us": g_min, "g_max_us": 25.0, "tile_rows": 16, "tile_cols": 8,
            "weight_bits": weight_bits, "bits_per_cell": bits_per_cell, "conductance_levels": levels,
            "mapping": "differential", "dynamic": dyn, "out_noise_std": 0.0, **kw,
        }
    )  # fmt: skip


def expected(b, cfg, bound, z):
    """mt [B, n_in, R, n_out·S·C] by the formulas of analog/dynamic.py (module docstring),
    tiles.py normalised_to_levels and the PCM read noise of aihwkit's PCMLikeNoiseModel."""
    Bn, K, N = b.shape
    R, C = min(cfg.tile_rows, K), min(cfg.tile_cols, N)
    n_in, n_out = -(-K // R), -(-N // C)
    bt = torch.nn.functional.pad(b, (0, n_out * C - N, 0, n_in * R - K)).view(Bn, n_in, R, n_out, C)
    if bound is None:
        scale = bt.abs().amax(dim=(2, 4), keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        wn = bt / scale
    else:
        wn = (bt / bound).clamp(-1, 1)
    span = cfg.g_max_us - cfg.g_min_us
    mag = wn.abs()
    cf = cfg.dynamic.clipformer
    if cf.enabled:  # G <- max(G - s G_min, G_min), G <- min(G, beta G_max), in units of the span
        s = cf.alpha - 1 if cf.shift == "alpha_minus_one" else cf.alpha
        g = mag * span + cfg.g_min_us
        g = torch.maximum(g - s * cfg.g_min_us, torch.tensor(cfg.g_min_us, dtype=b.dtype))
        g = torch.minimum(g, torch.tensor(cf.beta * cfg.g_max_us, dtype=b.dtype))
        mag = (g - cfg.g_min_us) / span
    sign = torch.sign(wn) * (mag > 0)
    if cfg.weight_bits is None:
        lev = mag.unsqueeze(4)  # [B, n_in, R, n_out, 1, C]
    else:
        q_max = 2 ** (cfg.weight_bits - 1) - 1
        base = 2**cfg.bits_per_cell
        q = torch.round(mag * q_max).to(torch.int64)
        lev = torch.stack([(q // base**k) % base for k in range(cfg.n_slices)], 4).to(b.dtype) / (base - 1)
    if cfg.conductance_levels is not None:
        n = cfg.conductance_levels - 1
        lev = torch.round(lev * n) / n
    total = lev.numel()
    zw, zr = z[:total].view(lev.shape), z[total:].view(lev.shape)
    gs = cfg.dynamic.write_noise_gamma * cfg.dynamic.write_noise_sigma
    u = torch.clamp(lev + gs * torch.sqrt(lev) * zw, min=-cfg.g_min_us / span)  # TxSim write noise
    if cfg.device.name == "pcm" and cfg.device.has_read_noise:
        p = cfg.device
        g = u * span + cfg.g_min_us
        q_s = torch.clamp(0.0088 / torch.clamp((g.abs() / cfg.g_max_us) ** 0.65, min=1e-3), max=0.2)
        sigma = (
            g.abs() * q_s * math.sqrt(math.log((p.t0_s + p.t_read_s) / (2 * p.t_read_s))) * p.read_noise_scale
        )
        u = (torch.clamp(g + sigma * zr, min=0) - cfg.g_min_us) / span
    mt = u * sign.unsqueeze(4)
    return mt.reshape(Bn, n_in, R, n_out * lev.shape[4] * C), (
        bt.abs().amax(dim=(2, 4), keepdim=True) if bound is None else None
    )


def run_kernel(b, cfg, bound=None):
    got = written_kernel.read_matrix(b, cfg, "crossbar", bound, SEED)
    assert got is not None
    return got


def normals_for(mt, dtype):
    return noise.standard_normal((2 * mt.numel(),), SEED, dtype)


CASES = {
    "pcm-tile": {"device": "pcm"},
    "pcm-calibrated": {"device": "pcm", "bound": 1.2},
    "pcm-clipformer-beta": {"device": "pcm", "clip": "alpha_minus_one"},
    "ideal-clip-alpha-minus-one": {"device": "ideal", "clip": "alpha_minus_one", "g_min": 2.5},
    "ideal-clip-alpha": {"device": "ideal", "clip": "alpha", "g_min": 2.5},
    "pcm-8bit-2bit-cells": {"device": "pcm", "weight_bits": 8, "bits_per_cell": 2},
    "pcm-5bit-1bit-cells-levels": {"device": "pcm", "weight_bits": 5, "bits_per_cell": 1, "levels": 3},
    "ideal-6bit-3bit-cells-calibrated": {
        "device": "ideal",
        "weight_bits": 6,
        "bits_per_cell": 3,
        "bound": 0.8,
    },
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("N", [21, 6])
def test_fused_read_matrix_equals_the_written_out_formulas_on_ragged_tiles(case, dtype, N):
    opts = dict(CASES[case])
    bound = opts.pop("bound", None)
    cfg = crossbar(**opts)
    gen = torch.Generator().manual_seed(3)
    # K = 37: tiles of 16 rows, the last ragged; N = 21: three ragged column tiles of 8, or
    # N = 6: one column tile, whose rows the kernel reads as one block
    b = torch.randn(3, 37, N, generator=gen, dtype=dtype)
    b[1, :16, :8] = 0  # an all-zero tile: scale 1
    mt, scale, gain = run_kernel(b, cfg, bound)
    want, want_scale = expected(b, cfg, bound, normals_for(mt, dtype))
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert mt.shape == want.shape
    torch.testing.assert_close(mt, want, rtol=tol, atol=tol)
    if want_scale is not None:
        want_scale = torch.where(want_scale > 0, want_scale, torch.ones_like(want_scale))
        assert torch.equal(scale, want_scale)
    else:
        assert torch.equal(scale, torch.full_like(scale, bound))
    if cfg.weight_bits is not None:
        q_max, base = 2 ** (cfg.weight_bits - 1) - 1, 2**cfg.bits_per_cell
        assert gain.tolist() == pytest.approx([(base - 1) * base**k / q_max for k in range(cfg.n_slices)])


def heads_view(b: torch.Tensor, heads: int) -> torch.Tensor:
    """``b [B*heads, K, N]`` as attention holds its keys: a ``[B, heads, K, N]`` view, with K
    fastest and N strided, of a ``[B, N, heads, K]`` buffer (a projection's output split into
    heads and transposed), whose leading dimensions cannot be merged without a copy."""
    Bh, K, N = b.shape
    buf = b.reshape(Bh // heads, heads, K, N).permute(0, 3, 1, 2).contiguous()  # [B, N, heads, K]
    return buf.permute(0, 2, 3, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["pcm-tile", "pcm-8bit-2bit-cells"])
@pytest.mark.parametrize("layout", ["heads_transposed", "broadcast"])
def test_fused_read_matrix_reads_a_head_split_transposed_operand_where_it_lies(case, dtype, layout):
    opts = dict(CASES[case])
    cfg = crossbar(**opts)
    b = torch.randn(6, 37, 21, generator=torch.Generator().manual_seed(4), dtype=dtype)
    if layout == "broadcast":  # one matrix for all six (strides 0), each written on its own
        view = b[0].expand(2, 3, 37, 21)
        b = view.reshape(6, 37, 21)
    else:
        view = heads_view(b, 3)
        assert view.stride(-1) != 1
    assert torch.equal(view.reshape(6, 37, 21), b)
    mt, scale, _ = run_kernel(view, cfg)
    want, want_scale = expected(b, cfg, None, normals_for(mt, dtype))
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(mt, want, rtol=tol, atol=tol)
    assert torch.equal(scale, torch.where(want_scale > 0, want_scale, torch.ones_like(want_scale)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_read_matrix_is_identical_on_one_and_two_threads(dtype, monkeypatch):
    cfg = crossbar(device="pcm", clip="alpha_minus_one", weight_bits=8, bits_per_cell=2)
    b = torch.randn(64, 40, 24, generator=torch.Generator().manual_seed(5), dtype=dtype)
    monkeypatch.setattr(written_kernel, "_PARALLEL_MIN", 0)  # every call on torch's threads
    with torch_threads(1):
        one = run_kernel(b, cfg)
    with torch_threads(2):
        two = run_kernel(b, cfg)
    assert all(torch.equal(x, y) for x, y in zip(one, two))


@pytest.mark.parametrize(
    "opts",
    [
        {"device": "ideal", "gamma": 0.0},
        {"device": "ideal", "gamma": 0.0, "weight_bits": 8, "bits_per_cell": 2, "clip": "alpha"},
    ],
)
def test_analog_matmul_with_the_noise_off_equals_its_torch_path(opts, monkeypatch):
    cfg = crossbar(**opts)
    gen = torch.Generator().manual_seed(7)
    a, b = torch.randn(2, 3, 9, 37, generator=gen), torch.randn(2, 3, 37, 21, generator=gen)
    layer = AnalogMatMul(cfg, "crossbar")
    with torch.no_grad():
        fused = layer(a, b)
        monkeypatch.setattr(written_kernel, "read_matrix", lambda *args, **kw: None)  # the torch passes
        torch_path = layer(a, b)
    torch.testing.assert_close(fused, torch_path, rtol=1e-6, atol=1e-6)


def test_analog_matmul_takes_the_fused_pass_only_for_read_noise_it_has():
    assert written_kernel.fused_device(crossbar(device="pcm"), "crossbar") == "pcm"
    assert written_kernel.fused_device(crossbar(device="ideal"), "crossbar") == "none"
    rram = load_crossbar_config({"device": {"name": "rram", "read_noise_std_rel": 0.05}})
    assert written_kernel.fused_device(rram, "crossbar") is None
    assert written_kernel.read_matrix(torch.randn(1, 4, 4), rram, "crossbar", None, SEED) is None


def test_a_nan_in_the_operand_stays_nan_in_its_cell_as_in_the_torch_path():
    cfg = crossbar(device="pcm")
    b = torch.randn(2, 37, 21, generator=torch.Generator().manual_seed(9))
    b[0, 20, 3] = float("nan")  # input tile 1, output tile 0 of matrix 0
    mt, scale, _ = run_kernel(b, cfg)
    want, _ = expected(b, cfg, None, normals_for(mt, b.dtype))
    torch.testing.assert_close(mt, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert float(scale[0, 1, 0, 0, 0]) == 1.0  # nonzero_scale maps the tile's NaN abs-max to 1
    assert int(torch.isnan(mt).sum()) == 1  # the NaN entry's one cell
