"""Neuron modules: state per call, per-neuron parameters, validation at the door, and
hand-checked traces of the LIF equations (docs/references.md#lif)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spikecim.nn as snn_
from spikecim.errors import SpikecimError
from spikecim.nn import IF, LIF, SynapticLIF, functional


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 0.9 + 0.4


@pytest.mark.parametrize(
    "make",
    [
        lambda: LIF(0.9),
        lambda: IF(),
        lambda: SynapticLIF(0.8, 0.7),
        lambda: LIF(0.6, reset="zero", reset_delay=False),
    ],
    ids=["lif", "if", "synaptic", "lif_zero_same_step"],
)
def test_state_resets_on_every_forward_call(make):
    neuron, x = make(), _x(12, 4, 5)
    s1, m1 = neuron.forward_with_mem(x)
    s2, m2 = neuron.forward_with_mem(x)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)
    # and the first call starts from zero membrane: U[0] = I[0] for every reset mode (docs/references.md#lif)
    if not isinstance(neuron, SynapticLIF) and neuron.reset_delay:
        assert torch.equal(m1[0], x[0])


def test_forward_returns_spikes_only_and_forward_with_mem_adds_membrane():
    """Both against snnTorch ``Leaky`` stepped by hand (docs/references.md#lif-peers: the default delayed
    subtract reset equals it exactly)."""
    import snntorch as snn

    neuron, x = LIF(0.9), _x(5, 2, 3) * 2
    out = neuron(x)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    spk, mem = neuron.forward_with_mem(x)
    ref, m, ref_spk, ref_mem = snn.Leaky(beta=0.9), torch.zeros(2, 3), [], []
    for t in range(5):
        s, m = ref(x[t], m)
        ref_spk.append(s)
        ref_mem.append(m)
    assert 0 < out.sum() < out.numel()  # the check sees both spikes and silence
    assert torch.equal(out, torch.stack(ref_spk)) and torch.equal(spk, out)
    torch.testing.assert_close(mem, torch.stack(ref_mem), rtol=1e-6, atol=1e-6)


def test_hand_count_delayed_subtract_trace():
    """beta = 0.5, theta = 1, input 0.8 each step, delayed subtract by hand
    (docs/references.md#lif-delayed-reset):
    U1 = 0.8; U2 = 0.4 + 0.8 = 1.2 (S = 1); U3 = 0.6 + 0.8 - 1 = 0.4; U4 = 0.2 + 0.8 = 1.0 (S = 0)."""
    x = torch.full((4, 1, 1), 0.8, dtype=torch.float64)
    spk, mem = LIF(0.5, 1.0).double().forward_with_mem(x)
    assert spk.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert mem.flatten().tolist() == pytest.approx([0.8, 1.2, 0.4, 1.0])


def test_per_neuron_beta_and_threshold_equal_separate_scalar_neurons():
    """A [C, 1, 1] beta / threshold on [T, B, C, H, W] input acts per channel: each channel
    equals a scalar LIF run on that channel alone."""
    C = 3
    beta = torch.tensor([0.2, 0.6, 0.95]).view(C, 1, 1)
    thr = torch.tensor([0.5, 1.0, 1.5]).view(C, 1, 1)
    x = _x(8, 2, C, 4, 4)
    spk, mem = LIF(beta, thr, reset="zero").forward_with_mem(x)
    for c in range(C):
        s_c, m_c = LIF(float(beta[c]), float(thr[c]), reset="zero").forward_with_mem(x[:, :, c])
        assert torch.equal(spk[:, :, c], s_c)
        torch.testing.assert_close(mem[:, :, c], m_c, rtol=0, atol=0)


def test_per_neuron_beta_of_feature_shape_broadcasts_over_batch():
    beta = torch.linspace(0.1, 0.9, 5)
    x = _x(6, 3, 5)
    _, mem = LIF(beta, 10.0).forward_with_mem(x)  # no spikes: U[t] = beta*U[t-1] + I[t]
    u = torch.zeros(3, 5)
    for t in range(6):
        u = beta * u + x[t]
        torch.testing.assert_close(mem[t], u)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (1, 2, 3, 5, 5)])
def test_per_neuron_beta_that_does_not_fit_one_step_raises(shape):
    neuron = LIF(torch.full(shape, 0.5))
    with pytest.raises(SpikecimError, match=r"^beta: shape"):
        neuron(_x(4, 2, 3, 5, 5))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"beta": 1.5}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"beta": torch.tensor([0.5, 1.2])}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": "fast"}, "beta"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": -1.0}, "threshold"),
        ({"threshold": torch.tensor([1.0, 0.0])}, "threshold"),
        ({"reset": "none"}, "reset"),
        ({"surrogate": "relu"}, "surrogate"),
        ({"surrogate": "atan(-2)"}, "surrogate"),
        ({"backend": "gpu"}, "backend"),
    ],
)
def test_bad_lif_argument_raises_one_line_error_naming_field(kwargs, field):
    with pytest.raises(SpikecimError) as e:
        LIF(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(field)


def test_bad_synaptic_alpha_raises_one_line_error():
    with pytest.raises(SpikecimError, match=r"^alpha: must be in \[0, 1\]"):
        SynapticLIF(alpha=1.1)


def test_lif_params_reject_bad_values_when_built_and_lif_rejects_a_scalar_input():
    with pytest.raises(SpikecimError, match=r"^beta"):
        functional.LIFParams(beta=2.0)
    with pytest.raises(SpikecimError, match=r"^reset"):
        functional.LIFParams(reset="hard")
    with pytest.raises(SpikecimError, match=r"^surrogate"):
        functional.LIFParams(surrogate="relu")
    with pytest.raises(SpikecimError, match=r"^alpha"):
        functional.SynapticParams(alpha=-0.5)
    with pytest.raises(SpikecimError, match=r"^x"):
        functional.lif(torch.tensor(1.0))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-2.0, 3.0, allow_nan=False), min_size=1, max_size=30),
    st.floats(0.125, 3.0, width=32),  # the threshold buffer is float32, so draw float32 values
)
def test_if_subtract_reset_conserves_charge(inputs, theta):
    """IF (beta = 1), delayed subtract: U[T] = sum_t I[t] - theta * sum_{t<T} S[t]
    (every spike but the last step's is paid for by one reset of theta;
    docs/references.md#lif-delayed-reset)."""
    x = torch.tensor(inputs, dtype=torch.float64).view(-1, 1)
    spk, mem = IF(theta).double().forward_with_mem(x)
    expected = sum(inputs) - theta * spk[:-1].sum().item()
    assert mem[-1].item() == pytest.approx(expected, abs=1e-9)
    assert spk.flatten().tolist() == [1.0 if u > theta else 0.0 for u in mem.flatten().tolist()]


@settings(max_examples=20, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.2, 2.0), st.sampled_from(["subtract", "zero"]), st.booleans())
def test_lif_output_is_binary_and_membrane_after_same_step_reset_stays_at_or_below_threshold(
    beta, theta, reset, delay
):
    x = _x(10, 2, 3, seed=3).double() * 2
    spk, mem = LIF(beta, theta, reset=reset, reset_delay=delay).double().forward_with_mem(x)
    assert set(spk.unique().tolist()) <= {0.0, 1.0}
    if not delay and reset == "zero":
        assert (mem <= theta + 1e-12).all()
        assert (mem[spk == 1] == 0).all()


def test_learnable_alpha_beta_threshold_receive_gradients():
    neuron = SynapticLIF(0.7, 0.8, 1.0, learn_alpha=True, learn_beta=True, learn_threshold=True)
    assert {n for n, _ in neuron.named_parameters()} == {"alpha", "beta", "threshold"}
    spk, mem = neuron.forward_with_mem(_x(8, 4, 6))
    (spk.sum() + mem.sum()).backward()
    for name, p in neuron.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fixed_beta_and_threshold_are_buffers_saved_in_state_dict():
    neuron = LIF(0.7, 1.3)
    assert list(neuron.parameters()) == []
    sd = neuron.state_dict()
    assert sd["beta"].item() == pytest.approx(0.7) and sd["threshold"].item() == pytest.approx(1.3)


def test_sequential_folds_time_for_stateless_layers_and_matches_a_step_loop():
    """spikecim.nn.Sequential over [T, B, F] equals stepping Linear -> LIF by hand with
    snnTorch's Leaky as the neuron (docs/references.md#lif-peers: delayed subtract equals Leaky)."""
    import snntorch as snn

    torch.manual_seed(0)
    lin = nn.Linear(5, 4)
    model = snn_.Sequential(lin, LIF(0.8))
    x = _x(7, 3, 5)
    ref, mem, outs = snn.Leaky(beta=0.8), torch.zeros(3, 4), []
    for t in range(7):
        s, mem = ref(lin(x[t]), mem)
        outs.append(s)
    assert torch.equal(model(x), torch.stack(outs))
