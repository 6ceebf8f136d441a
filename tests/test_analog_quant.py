"""Quantisers (DAC, ADC): on the grid, error ≤ Δ/2 inside the range, clipped at the bounds."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikecim.analog.quant import abs_max_scale, quantize

values = st.lists(st.floats(-100, 100, allow_nan=False, width=64), min_size=1, max_size=64)


@settings(max_examples=60, deadline=None)
@given(values, st.integers(2, 16), st.floats(0.01, 50))
def test_quantized_values_lie_on_grid_with_error_at_most_half_step(xs, bits, bound):
    x = torch.tensor(xs, dtype=torch.float64)
    q = quantize(x, bits, bound)
    delta = bound / (2 ** (bits - 1) - 1)  # docs/references.md#adc-dac: res = 1/(2^bits - 2) over 2·bound
    k = q / delta
    assert torch.allclose(k, torch.round(k), atol=1e-6)
    inside = x.abs() <= bound
    assert ((q - x)[inside].abs() <= delta / 2 + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(values, st.integers(1, 16), st.floats(0.01, 50))
def test_quantizer_clips_at_bounds(xs, bits, bound):
    x = torch.tensor(xs, dtype=torch.float64)
    q = quantize(x, bits, bound)
    assert (q.abs() <= bound + 1e-12).all()
    assert (q[x > bound] == bound).all() and (q[x < -bound] == -bound).all()


def test_seven_bit_dac_has_126_steps_over_two_volts_like_aihwkit():
    x = torch.linspace(-1, 1, 10001, dtype=torch.float64)
    levels = torch.unique(quantize(x, 7, 1.0))
    assert len(levels) == 127  # 2^7 - 2 steps -> 127 levels, aihwkit inp_res = 1/(2^7 - 2)


def test_quantizer_gradient_is_straight_through():
    x = torch.tensor([0.123, -0.4, 0.9], requires_grad=True)
    quantize(x, 4, 1.0).sum().backward()
    assert torch.equal(x.grad, torch.ones(3))


def test_abs_max_scale_is_one_for_zero_vectors():
    x = torch.tensor([[0.0, 0.0], [3.0, -4.0]])
    assert abs_max_scale(x).flatten().tolist() == [1.0, 4.0]
