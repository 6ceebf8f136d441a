"""Surrogate gradients: forward is the strict step, backward is the published formula
(docs/references.md#surrogate-gradients).

Every expected value is computed here from that formula (or taken from
snnTorch 1.0 / SpikingJelly 2.0), never from spikecim's own ``grad``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikecim.errors import SpikecimError
from spikecim.nn import surrogate

U = torch.cat(
    [torch.linspace(-3, 3, 601, dtype=torch.float64), torch.tensor([0.0, 1e-9, -1e-9], dtype=torch.float64)]
)


def _formula(name: str, p: float, u: torch.Tensor) -> torch.Tensor:
    """The formulas of docs/references.md#surrogate-gradients, written out element by element in
    plain Python."""
    out = []
    for v in u.tolist():
        if name == "atan":
            g = (p / 2) / (1 + (math.pi / 2 * p * v) ** 2)
        elif name == "fast_sigmoid":
            g = 1 / (p * abs(v) + 1) ** 2
        elif name == "sigmoid":
            e = math.exp(-p * v)
            g = p * e / (1 + e) ** 2
        elif name == "triangular":
            g = max(0.0, 1 - abs(v) / p) / p
        else:  # straight_through
            g = 1.0
        out.append(g)
    return torch.tensor(out, dtype=torch.float64)


CASES = [
    ("atan", 2.0),
    ("atan", 5.0),
    ("fast_sigmoid", 25.0),
    ("fast_sigmoid", 3.0),
    ("sigmoid", 25.0),
    ("sigmoid", 4.0),
    ("triangular", 1.0),
    ("triangular", 0.5),
    ("straight_through", 0.0),
]


def _backward(sg: surrogate.Surrogate, u: torch.Tensor) -> torch.Tensor:
    u = u.clone().requires_grad_(True)
    sg(u).sum().backward()
    return u.grad


@pytest.mark.parametrize("name,param", CASES)
def test_backward_equals_reference_formula(name, param):
    sg = surrogate.get_surrogate(f"{name}({param})" if name != "straight_through" else name)
    torch.testing.assert_close(_backward(sg, U), _formula(name, param, U), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,param", CASES)
def test_forward_is_strict_step_zero_at_exactly_zero(name, param):
    sg = surrogate.get_surrogate(f"{name}({param})" if name != "straight_through" else name)
    expected = torch.tensor([1.0 if v > 0 else 0.0 for v in U.tolist()], dtype=torch.float64)
    assert torch.equal(sg(U), expected)
    assert sg(torch.zeros(3)).sum().item() == 0.0


@pytest.mark.parametrize("alpha", [0.5, 2.0, 7.0])
def test_atan_alpha_convention_matches_snntorch_and_spikingjelly(alpha):
    from snntorch import surrogate as sn_sg
    from spikingjelly.activation_based import surrogate as sj_sg

    expected_sn = _backward_fn(sn_sg.atan(alpha=alpha), U)
    expected_sj = _backward_fn(sj_sg.ATan(alpha=alpha), U)
    got = _backward(surrogate.atan(alpha), U)
    torch.testing.assert_close(got, expected_sn, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got, expected_sj, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("slope", [5.0, 25.0])
def test_sigmoid_and_fast_sigmoid_match_snntorch(slope):
    from snntorch import surrogate as sn_sg

    torch.testing.assert_close(
        _backward(surrogate.fast_sigmoid(slope), U),
        _backward_fn(sn_sg.fast_sigmoid(slope=slope), U),
        rtol=1e-6,
        atol=1e-9,
    )
    torch.testing.assert_close(
        _backward(surrogate.sigmoid(slope), U),
        _backward_fn(sn_sg.sigmoid(slope=slope), U),
        rtol=1e-6,
        atol=1e-9,
    )


def _backward_fn(fn, u: torch.Tensor) -> torch.Tensor:
    u = u.clone().requires_grad_(True)
    fn(u).sum().backward()
    return u.grad.to(torch.float64)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=40),
    st.sampled_from([n for n, _ in CASES]),
)
def test_forward_is_heaviside_for_any_input(values, name):
    u = torch.tensor(values, dtype=torch.float32)
    out = surrogate.get_surrogate(name)(u)
    assert out.tolist() == [1.0 if v > 0 else 0.0 for v in values]


def test_spec_string_sets_parameter():
    assert surrogate.get_surrogate("fast_sigmoid(10)") == surrogate.Surrogate("fast_sigmoid", 10.0)
    assert surrogate.get_surrogate(" atan ( 3.5 ) ") == surrogate.Surrogate("atan", 3.5)
    assert surrogate.get_surrogate("atan") == surrogate.Surrogate("atan", 2.0)


@pytest.mark.parametrize("spec", ["relu", "atan(x)", "atan(-1)", "sigmoid(0)", "atan(1e)", ""])
def test_bad_surrogate_spec_raises_one_line_error(spec):
    with pytest.raises(SpikecimError) as e:
        surrogate.get_surrogate(spec)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("surrogate")
