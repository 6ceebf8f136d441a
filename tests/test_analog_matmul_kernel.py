"""The compiled product of the crossbars written at run time (analog/matmul_kernel.py) against
AnalogMatMul's torch passes on the same read matrix and the same output-noise draws, and
against ``a @ b`` where every effect is off."""

from __future__ import annotations

import pytest
import torch

from spikecim.analog import load_crossbar_config, matmul_kernel
from spikecim.analog.dynamic import AnalogMatMul
from spikecim.timing import torch_threads

needs_kernel = pytest.mark.skipif(not matmul_kernel.available(torch.ones(1), 1), reason="no C compiler")


def config(unit="crossbar", dac=True, adc=True, out_noise=0.0, **kw):
    dyn = {"unit": unit, "write_noise_gamma": 5.0, "clipformer": {"enabled": unit == "crossbar"}}
    return load_crossbar_config(
        {
            "preset": "pcm-aihwkit", "tile_rows": 16, "tile_cols": 8, "dynamic": dyn, "out_noise_std": out_noise,
            "dac": {"enabled": dac, "bits": 7}, "adc": {"enabled": adc, "bits": 9, "range": 12.0}, **kw,
        }
    )  # fmt: skip


def both_paths(cfg, unit, a, b, seed=7):
    """(compiled, torch) products of one read of ``b``, each with the same output-noise key."""
    m = AnalogMatMul(cfg, unit)
    with torch.no_grad():
        torch.manual_seed(seed)
        mt, w_scale, gain = m._read_matrix(b)
        state = torch.get_rng_state()
        fused = m._products_fused(a, mt, w_scale, gain, b.shape[-1])
        torch.set_rng_state(state)
        plain = m._products(a, mt.clone(), w_scale, gain, b.shape[-1])
    return fused, plain


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("adc", [True, False])
def test_compiled_product_equals_torch_passes_on_exact_products(dtype, adc):
    # SRAM cells of 1-bit slices hold 0 or ±1 and the DAC integer levels: every column sum is
    # an exact integer, so both paths see the same ADC inputs whatever their order of sums;
    # 3 input tiles (K = 40), 3 output tiles (N = 20) and 4 slices
    torch.manual_seed(0)
    a, b = torch.rand(6, 5, 40, dtype=dtype) - 0.3, torch.randn(6, 40, 20, dtype=dtype)
    cfg = config("sram", adc=adc, weight_bits=5, bits_per_cell=1)
    fused, plain = both_paths(cfg, "sram", a, b)
    assert fused.shape == (6, 5, 20)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=0)


@needs_kernel
@pytest.mark.parametrize("dac", [True, False])
def test_compiled_product_equals_torch_passes_with_write_read_and_output_noise(dac):
    # PCM write and read noise, ClipFormer, output noise, one slice; no ADC, whose rounding
    # would turn a difference of float rounding in the sums into a whole level
    torch.manual_seed(1)
    a, b = torch.rand(64, 16, 24), torch.randn(64, 24, 12)
    cfg = config(dac=dac, adc=False, out_noise=0.06)
    fused, plain = both_paths(cfg, "crossbar", a, b)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6 * float(plain.abs().max()))


@needs_kernel
def test_compiled_product_with_adc_differs_from_torch_passes_by_at_most_one_level_rarely():
    torch.manual_seed(2)
    a, b = torch.rand(256, 16, 16), torch.randn(256, 16, 16)
    cfg = config(out_noise=0.06)
    fused, plain = both_paths(cfg, "crossbar", a, b)
    # one ADC level of a 9-bit ADC over ±12 column units, times the tile and DAC scales
    step = 12.0 / 255 * b.abs().amax(dim=(1, 2)).view(-1, 1, 1) * a.abs().amax(dim=2, keepdim=True)
    diff = (fused - plain).abs()
    assert bool((diff <= step * 1.0001 + 1e-6).all())
    assert int((diff > 1e-5 * step).sum()) <= diff.numel() // 1000


@needs_kernel
def test_compiled_product_reads_head_split_operands_where_they_lie():
    # attention's queries and keys: [B, heads, M, K] views of [B, M, heads*K] projections
    # (the keys transposed); the product equals the torch passes on [B*heads, M, K] copies,
    # the same read matrix and output-noise draws
    torch.manual_seed(7)
    q = torch.rand(4, 10, 3 * 24).view(4, 10, 3, 24).transpose(1, 2)  # [4, 3, 10, 24]
    k = torch.randn(4, 12, 3 * 24).view(4, 12, 3, 24).transpose(1, 2)  # [4, 3, 12, 24]
    cfg = config(dac=True, adc=False, out_noise=0.06)
    m = AnalogMatMul(cfg, "crossbar")
    kt = k.transpose(-2, -1)  # [4, 3, 24, 12], not mergeable into [12, 24, 12] without a copy
    with torch.no_grad():
        torch.manual_seed(8)
        got = m(q, kt)
        torch.manual_seed(8)
        mt, w_scale, gain = m._read_matrix(kt.reshape(12, 24, 12))
        plain = m._products(q.reshape(12, 10, 24), mt, w_scale, gain, 12)
    assert got.shape == (4, 3, 10, 12)
    torch.testing.assert_close(
        got.reshape(12, 10, 12), plain, rtol=1e-6, atol=1e-6 * float(plain.abs().max())
    )


@needs_kernel
def test_compiled_product_does_not_depend_on_the_number_of_threads():
    # each matrix of the batch is one work item of one thread: 3 threads give the bits of 1
    torch.manual_seed(5)
    a, b = torch.rand(512, 16, 40), torch.randn(512, 40, 20)  # above the one-thread threshold
    cfg = config(out_noise=0.06)
    m = AnalogMatMul(cfg, "crossbar")
    outs = []
    for threads in (1, 3):
        with torch.no_grad(), torch_threads(threads):
            torch.manual_seed(6)
            outs.append(m(a, b))
    assert torch.equal(outs[0], outs[1])


@needs_kernel
def test_ideal_written_crossbar_product_is_a_at_b():
    torch.manual_seed(3)
    a, b = torch.randn(8, 7, 40), torch.randn(8, 40, 20)
    cfg = config("sram", dac=False, adc=False)
    m = AnalogMatMul(cfg, "sram")
    with torch.no_grad():
        torch.testing.assert_close(m(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_without_a_compiler_the_product_runs_the_torch_passes_with_one_warning(no_c_compiler):
    with pytest.warns(UserWarning, match="could not be built"):
        assert not matmul_kernel.available(torch.ones(1), 1)
    torch.manual_seed(4)
    a, b = torch.randn(4, 3, 20), torch.randn(4, 20, 10)
    m = AnalogMatMul(config("sram", dac=False, adc=False), "sram")
    with torch.no_grad():
        torch.testing.assert_close(m(a, b), a @ b, rtol=1e-5, atol=1e-5)
