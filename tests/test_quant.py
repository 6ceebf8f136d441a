"""spikecim.quant: the quantisers against hand-computed values and torch's own
fake_quantize, gradients, per-group scales against a loop, observers against numpy, and the
observing context leaves a model as it found it."""

import numpy as np
import pytest
import torch
from torch import nn

from spikecim.quant import (
    AbsMaxObserver,
    MinMaxObserver,
    PercentileObserver,
    QParams,
    dequantize,
    fake_quantize,
    int_range,
    observing,
    qparams_from_range,
    quantize_to_int,
)


def test_symmetric_fake_quantize_hand_example_rounds_half_to_even_and_clips():
    # Δ = 0.5, [qmin, qmax] = [-2, 2]: x/Δ = -2, -0.52, 0, 0.48, 0.5, 1.5, 4
    # rounded (half to even) -2, -1, 0, 0, 0, 2, 4; clipped -2, -1, 0, 0, 0, 2, 2
    x = torch.tensor([-1.0, -0.26, 0.0, 0.24, 0.25, 0.75, 2.0])
    out = fake_quantize(x, 0.5, 0, -2, 2)
    assert out.tolist() == [-1.0, -0.5, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_asymmetric_quantize_to_int_hand_example_with_zero_point():
    # Δ = 0.25, z = 5, [0, 15]: x/Δ = -8, -0.5, 1.5, 10, 15 -> round -8, 0, 2, 10, 15
    # + z = -3, 5, 7, 15, 20 -> clip 0, 5, 7, 15, 15 -> (q - z)·Δ = -1.25, 0, 0.5, 2.5, 2.5
    x = torch.tensor([-2.0, -0.125, 0.375, 2.5, 3.75])
    q = quantize_to_int(x, 0.25, 5, 0, 15)
    assert q.dtype == torch.int32 and q.tolist() == [0, 5, 7, 15, 15]
    assert dequantize(q, 0.25, 5).tolist() == [-1.25, 0.0, 0.5, 2.5, 2.5]
    assert fake_quantize(x, 0.25, 5, 0, 15).tolist() == [-1.25, 0.0, 0.5, 2.5, 2.5]


def _inputs_with_edges(scale: float, qmin: int, qmax: int, zp: int, gen: torch.Generator) -> torch.Tensor:
    """Random values over twice the range, exact ties (k + 1/2)·Δ and the range ends."""
    lo, hi = (qmin - zp) * scale, (qmax - zp) * scale
    span = hi - lo
    rand = (torch.rand(2000, generator=gen) * 2 * span + lo - span / 2).tolist()
    ties = [(k + 0.5) * scale for k in range(qmin - zp - 2, qmax - zp + 2)]
    ends = [lo, hi, lo - scale, hi + scale, 0.0, -0.0, 1e6, -1e6]
    return torch.tensor(rand + ties + ends, dtype=torch.float32)


@pytest.mark.parametrize(
    ("scale", "zp", "qmin", "qmax"),
    [(0.25, 0, -127, 127), (0.037, 0, -128, 127), (0.0123, 17, 0, 255), (0.5, -3, -8, 7), (1.7, 0, -1, 1)],
)
def test_fake_quantize_per_tensor_equals_torch(scale, zp, qmin, qmax):
    x = _inputs_with_edges(scale, qmin, qmax, zp, torch.Generator().manual_seed(qmax))
    expected = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
    assert torch.equal(fake_quantize(x, scale, zp, qmin, qmax), expected)
    q = quantize_to_int(x, scale, zp, qmin, qmax)
    assert torch.equal(dequantize(q, scale, zp), expected)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize(("qmin", "qmax", "symmetric"), [(-128, 127, True), (0, 255, False), (-7, 7, True)])
def test_fake_quantize_per_channel_equals_torch(axis, qmin, qmax, symmetric):
    gen = torch.Generator().manual_seed(axis + 7)
    x = torch.randn(5, 6, 7, generator=gen) * 3
    c = x.shape[axis]
    scale = torch.rand(c, generator=gen) * 0.1 + 0.01
    zp = (
        torch.zeros(c, dtype=torch.int32)
        if symmetric
        else torch.randint(qmin, qmax + 1, (c,), generator=gen, dtype=torch.int32)
    )
    # put exact ties and clipped values on every channel
    x.movedim(axis, 0)[:, 0, 0] = 2.5 * scale
    x.movedim(axis, 0)[:, 1, 0] = 1e4
    expected = torch.fake_quantize_per_channel_affine(x, scale, zp, axis % 3, qmin, qmax)
    assert torch.equal(fake_quantize(x, scale, zp, qmin, qmax, axis=axis), expected)
    q = quantize_to_int(x, scale, zp, qmin, qmax, axis=axis)
    assert torch.equal(dequantize(q, scale, zp, axis=axis), expected)


def test_saturated_straight_through_gradient_is_one_inside_the_range_and_zero_outside():
    # Δ = 0.25, [-4, 3]: representable range [-1, 0.75]; 0.8/Δ = 3.2 rounds to 3 (inside),
    # 0.9/Δ = 3.6 rounds to 4 (outside), -1.1/Δ = -4.4 rounds to -4 (inside), -1.2 -> -5 (out)
    x = torch.tensor([-1.2, -1.1, -0.3, 0.0, 0.6, 0.8, 0.9, 5.0], requires_grad=True)
    fake_quantize(x, 0.25, 0, -4, 3).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    xt = x.detach().clone().requires_grad_()
    torch.fake_quantize_per_tensor_affine(xt, 0.25, 0, -4, 3).sum().backward()
    assert torch.equal(x.grad, xt.grad)


def test_gradient_matches_torch_fake_quantize_for_random_inputs_per_channel():
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 9, generator=gen) * 2).requires_grad_()
    scale = torch.rand(4, generator=gen) * 0.05 + 0.01
    zp = torch.randint(-10, 10, (4,), generator=gen, dtype=torch.int32)
    fake_quantize(x, scale, zp, -64, 63, axis=0).backward(torch.arange(36.0).view(4, 9))
    xt = x.detach().clone().requires_grad_()
    torch.fake_quantize_per_channel_affine(xt, scale, zp, 0, -64, 63).backward(torch.arange(36.0).view(4, 9))
    assert torch.equal(xt.grad == 0, x.grad == 0)  # the same elements saturate
    assert torch.allclose(x.grad, xt.grad, rtol=1e-6, atol=0)  # Δ·(1/Δ) is 1 to one rounding


def test_identity_straight_through_passes_the_gradient_outside_the_range_too():
    x = torch.tensor([-3.0, 0.1, 3.0], requires_grad=True)
    fake_quantize(x, 0.5, 0, -2, 2, ste="identity").sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    y = torch.tensor([-3.0, 0.1, 3.0], requires_grad=True)
    fake_quantize(y, 0.5, 0, -2, 2, ste=None).sum().backward()
    assert y.grad.tolist() == [0.0, 0.0, 0.0]  # rounding's true gradient


@pytest.mark.parametrize(("axis", "group_size"), [(1, 4), (0, 2), (-1, 3)])
def test_per_group_fake_quantize_equals_a_loop_over_groups(axis, group_size):
    gen = torch.Generator().manual_seed(group_size)
    x = torch.randn(6, 12, generator=gen)
    n_groups = x.shape[axis] // group_size
    # one scale per (other index, group): shape of x with n_groups along axis
    shape = list(x.shape)
    shape[axis] = n_groups
    scale = torch.rand(shape, generator=gen) * 0.1 + 0.02
    zp = torch.randint(-3, 4, shape, generator=gen, dtype=torch.int32)
    out = fake_quantize(x, scale, zp, -16, 15, axis=axis, group_size=group_size)
    expected = torch.empty_like(x)
    xm, em = x.movedim(axis, 0), expected.movedim(axis, 0)
    sm, zm = scale.movedim(axis, 0), zp.movedim(axis, 0)
    for i in range(xm.shape[0]):
        g = i // group_size
        for j in range(xm.shape[1]):
            s, z = float(sm[g, j]), int(zm[g, j])
            q = min(max(round(float(xm[i, j]) * float(np.float32(1) / np.float32(s))) + z, -16), 15)
            em[i, j] = (q - z) * s
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


def test_per_group_with_one_scale_vector_shares_it_across_the_other_dimensions():
    x = torch.arange(8.0).view(2, 4) / 8
    out = fake_quantize(x, torch.tensor([0.25, 0.5]), 0, -8, 7, axis=1, group_size=2)
    # columns 0-1 on a 0.25 grid, 2-3 on a 0.5 grid: 0.125 -> 0 (tie to even), 0.375 -> 0.5
    assert out.tolist() == [[0.0, 0.0, 0.0, 0.5], [0.5, 0.5, 1.0, 1.0]]


def test_int_range_and_qparams_from_range_follow_the_formulas():
    assert int_range(8) == (-128, 127)
    assert int_range(8, narrow=True) == (-127, 127)
    assert int_range(4, signed=False) == (0, 15)
    sym = qparams_from_range(-0.5, 2.54, -127, 127, symmetric=True)
    assert float(sym.scale) == pytest.approx(2.54 / 127) and int(sym.zero_point) == 0
    asym = qparams_from_range(-1.0, 3.0, 0, 255, symmetric=False)
    assert float(asym.scale) == pytest.approx(4.0 / 255)
    assert int(asym.zero_point) == round(1.0 / (4.0 / 255))  # real 0 lands on a level
    assert float(asym.fake_quantize(torch.zeros(1))) == 0.0
    with pytest.raises(ValueError, match="qmin"):
        QParams(torch.tensor(1.0), torch.tensor(0), 5, 5)


def _batches(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(7, 3, 5, generator=gen) * (k + 1) + k for k in range(3)]


@pytest.mark.parametrize("axis", [None, 1])
def test_min_max_observer_equals_numpy_min_and_max(axis):
    batches = _batches(1)
    obs = MinMaxObserver(0, 255, symmetric=False, axis=axis)
    for b in batches:
        obs.observe(b)
    all_x = np.concatenate([b.numpy() for b in batches], axis=0)
    reduce = None if axis is None else (0, 2)
    lo, hi = obs.compute_range()
    assert np.array_equal(lo.numpy(), all_x.min(axis=reduce))
    assert np.array_equal(hi.numpy(), all_x.max(axis=reduce))
    qp = obs.compute_qparams()
    lo0, hi0 = np.minimum(all_x.min(axis=reduce), 0), np.maximum(all_x.max(axis=reduce), 0)
    assert np.allclose(qp.scale.numpy(), (hi0 - lo0) / 255, rtol=1e-6)
    assert qp.axis == axis


@pytest.mark.parametrize("axis", [None, 2])
def test_abs_max_observer_equals_numpy_max_abs(axis):
    batches = _batches(2)
    obs = AbsMaxObserver(-127, 127, axis=axis)
    for b in batches:
        obs.observe(b)
    all_x = np.concatenate([b.numpy() for b in batches], axis=0)
    m = np.abs(all_x).max(axis=None if axis is None else (0, 1))
    lo, hi = obs.compute_range()
    assert np.array_equal(hi.numpy(), m) and np.array_equal(lo.numpy(), -m)
    assert np.allclose(obs.compute_qparams().scale.numpy(), m / 127, rtol=1e-6)


@pytest.mark.parametrize("axis", [None, 1])
@pytest.mark.parametrize("absolute", [True, False])
def test_percentile_observer_equals_numpy_percentile(axis, absolute):
    batches = _batches(3)
    obs = PercentileObserver(99.0, absolute=absolute, axis=axis)
    for b in batches:
        obs.observe(b)
    all_x = np.concatenate([b.numpy() for b in batches], axis=0).astype(np.float64)
    vals = np.abs(all_x) if absolute else all_x
    reduce = None if axis is None else (0, 2)
    lo, hi = obs.compute_range()
    assert np.allclose(hi.numpy(), np.percentile(vals, 99.0, axis=reduce), rtol=1e-6)
    expected_lo = (
        -np.percentile(vals, 99.0, axis=reduce) if absolute else np.percentile(vals, 1.0, axis=reduce)
    )
    assert np.allclose(lo.numpy(), expected_lo, rtol=1e-6)


@pytest.mark.parametrize(
    "bits,narrow", [(0, False), (33, False), (65, False), (1.5, False), (True, False), (1, True)]
)
def test_int_range_refuses_bits_that_are_not_an_integer_it_can_hold(bits, narrow):
    """Before: 65 bits gave a range no int32 or int64 holds, 1.5 bits a range of floats,
    1 narrow bit the empty range (0, 0)."""
    low = 2 if narrow else 1
    with pytest.raises(ValueError) as e:
        int_range(bits, narrow=narrow)
    assert str(e.value) == f"bits must be an integer from {low} to 32, got {bits!r}"
    assert int_range(32) == (-(2**31), 2**31 - 1) and int_range(1) == (-1, 0)


def test_a_range_with_an_infinite_end_gives_no_quantiser():
    """Before: hi = inf gave Δ = inf, accepted, and every fake-quantised value NaN."""
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        qparams_from_range(-1.0, float("inf"), -8, 7, symmetric=False)


@pytest.mark.parametrize(
    "observer",
    [MinMaxObserver, AbsMaxObserver, lambda: PercentileObserver(100.0)],
    ids=["minmax", "absmax", "pct"],
)
def test_observers_skip_an_empty_batch_as_torch_observers_do(observer):
    """torch's MinMaxObserver returns an empty input untouched; ours raised an IndexError."""
    torch_obs = torch.ao.quantization.MinMaxObserver()
    obs = observer()
    x = torch.tensor([-1.5, 0.25, 3.0])
    for batch in (torch.zeros(0), x, torch.zeros(0, 3)):
        torch_obs(batch)
        obs.observe(batch)
    lo, hi = obs.compute_range()
    if observer is MinMaxObserver:
        assert (float(lo), float(hi)) == (float(torch_obs.min_val), float(torch_obs.max_val))
    assert float(hi) == 3.0 and obs.count == 1
    with pytest.raises(RuntimeError, match="before any observe"):
        empty = observer()
        empty.observe(torch.zeros(0))
        empty.compute_range()


def test_observer_refuses_to_compute_before_observing():
    with pytest.raises(RuntimeError, match="before any observe"):
        AbsMaxObserver().compute_qparams()


def _hook_state(model: nn.Module):
    return [
        (name, dict(m._forward_hooks), dict(m._forward_pre_hooks), sorted(vars(m)))
        for name, m in model.named_modules()
    ]


@pytest.mark.parametrize("attach", ["output", "input"])
def test_observing_sees_the_chosen_tensors_and_leaves_no_hooks_or_attributes(attach):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    keys, hooks = list(model.state_dict()), _hook_state(model)
    x = torch.randn(10, 4)
    with observing([model[0], model[2]], lambda m: AbsMaxObserver(), attach=attach) as observers:
        model(x)
    assert list(model.state_dict()) == keys and _hook_state(model) == hooks
    h = model[1](model[0](x))
    seen = [x, h] if attach == "input" else [model[0](x), model[2](h)]
    for obs, t in zip(observers, seen, strict=True):
        assert float(obs.compute_range()[1]) == float(t.detach().abs().max())


def test_observing_removes_its_hooks_when_the_block_raises():
    model = nn.Sequential(nn.Linear(2, 2))
    hooks = _hook_state(model)
    with pytest.raises(KeyError), observing([model[0]], lambda m: MinMaxObserver()):
        raise KeyError("calibration failed")
    assert _hook_state(model) == hooks
