"""MINT (docs/references.md#mint): the quantiser against the paper's formula, α's
initialisation, the integer-only path against the fake-quantised model bit for bit, the
memory footprint against a hand count, and the refusals."""

import math

import pytest
import torch

from spikecim.errors import SpikecimError
from spikecim.methods import apply_methods
from spikecim.models import create_model
from spikecim.quant.integer import integer_model
from spikecim.quant.mint import memory_footprint, mint_alpha_init, mint_quantize
from spikecim.quant.transforms import MintWeight
from spikecim.variants import MethodConfig


def _paper_q(x, alpha, b, tanh=True):
    # training_utils.py, w_q / u_q: tanh, clamp(x/alpha, -1, 1), * (2^(b-1) - 1), round, * alpha / (2^(b-1) - 1)
    u = torch.tanh(x) if tanh else x
    u = torch.clamp(u / alpha, min=-1, max=1) * (2 ** (b - 1) - 1)
    return u.round() * alpha / (2 ** (b - 1) - 1)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("squash", ["tanh", "clamp"])
def test_quantiser_equals_the_paper_formula(bits, squash):
    x = torch.randn(5000, generator=torch.Generator().manual_seed(bits)) * 0.7
    alpha = torch.tensor(0.37)
    assert torch.equal(mint_quantize(x, alpha, bits, squash), _paper_q(x, alpha, bits, squash == "tanh"))
    assert len(torch.unique(mint_quantize(x, alpha, bits, squash))) <= 2**bits - 1


def test_quantiser_rounds_straight_through_and_alpha_learns_from_saturated_entries():
    x = torch.tensor([0.05, -0.02, 3.0], requires_grad=True)
    alpha = torch.tensor(0.5, requires_grad=True)
    mint_quantize(x, alpha, 4, "clamp").sum().backward()
    # d/dx: 1 inside the clamp (rounding straight-through), 0 where x/alpha > 1
    assert x.grad.tolist() == pytest.approx([1.0, 1.0, 0.0])
    # d/dalpha of k*alpha/n with k = round(clamp(x/alpha)*n) straight-through:
    # inside k/n - x/alpha, saturated k/n = 1 (n = 7)
    n = 7
    inside = sum(round(v / 0.5 * n) / n - v / 0.5 for v in (0.05, -0.02))
    assert alpha.grad.item() == pytest.approx(inside + 1.0)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_alpha_starts_at_twice_mean_abs_weight_over_sqrt_levels(bits):
    w = torch.randn(16, 8, 3, 3)
    want = 2 * w.abs().mean().item() / math.sqrt(2 ** (bits - 1) - 1)
    assert mint_alpha_init(w, bits).item() == pytest.approx(want, rel=1e-6)
    q = MintWeight(w, bits)
    assert q.alpha.item() == pytest.approx(want, rel=1e-6) and q.alpha.requires_grad


def test_footprint_of_two_bit_weights_and_membranes_is_93_75_percent_smaller():
    # hand count: 1000 weights and 300 membranes at 2 bits = 2600 bits; at 32 bits 41600
    fp = memory_footprint([(1000, 2)], [(300, 2)])
    assert (fp.bits, fp.reference_bits) == (2600, 41600)
    assert fp.reduction == 0.9375
    mixed = memory_footprint([(1000, 2), (10, 32)], [(300, 4)])
    assert mixed.reduction == pytest.approx(1 - (2000 + 320 + 1200) / (1310 * 32))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_mint_neuron_equals_the_public_lifspike_step_for_step(reset):
    """spike_related.py of RuokaiYin/MINT_Quantization, LIFSpike.forward with quant_u and
    share: H = s + U; S = (H − θ > 0); U = (H − S·θ)·leak (soft reset) or H·leak·(1 − S)
    (hard), then U = u_q(U) with the layer's α: the leak acts before the quantiser."""
    torch.manual_seed(0)
    model = create_model(
        "convnet", spiking=True, num_classes=10, in_channels=1, input_size=8, width=0.25,
        neuron_kw={"reset_delay": False, "beta": 0.5, "threshold": 0.5, "reset": reset},
    )  # fmt: skip
    model = apply_methods(model, [MethodConfig(name="mint", bits=2)])
    neuron = model[5]  # after the second convolution, a MINT layer
    alpha = neuron.membrane_quant.weight_q.alpha.detach()
    x = torch.rand(20, 4, *_second_conv_output(model), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        spikes, membrane = neuron.forward_with_mem(x)
    u = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        h = x[t] + u
        s = (h - 0.5 > 0).float()
        u = (h - s * 0.5) * 0.5 if reset == "subtract" else h * 0.5 * (1 - s)
        u = _paper_q(u, alpha, 2)
        assert torch.equal(spikes[t], s) and torch.equal(membrane[t], u), t
    assert 0 < spikes.mean() < 1


def _second_conv_output(model):
    """The [C, H, W] of what reaches model[5]: the second convolution's output."""
    return model[3].out_channels, 8, 8


def _tiny(seed=0, bits=2, beta=0.5):
    torch.manual_seed(seed)
    m = create_model(
        "convnet",
        spiking=True,
        num_classes=10,
        in_channels=1,
        input_size=8,
        width=0.25,
        neuron_kw={"reset_delay": False, "beta": beta},
    )
    return apply_methods(m, [MethodConfig(name="mint", bits=bits, integer=True)])


def _hidden_spikes(model, x):
    counts = []
    hooks = [model[i].register_forward_hook(lambda m, a, o: counts.append(float(o.sum()))) for i in (5, 9)]
    model(x)
    for h in hooks:
        h.remove()
    return counts


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_integer_path_equals_fake_quantised_model_bit_for_bit_on_random_inputs(bits):
    model = _tiny(bits, bits).eval()
    for name, p in model.named_parameters():  # a step of 2^-bits and weights that make the layers spike
        if name.endswith("alpha"):
            p.data.fill_((2 ** (bits - 1) - 1) / 2**bits)
        elif "original" in name:
            p.data.mul_(4.0)
    x = torch.rand(4, 32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        fake = model(x)
        ints = integer_model(model)(x)
        assert all(c > 0 for c in _hidden_spikes(model, x))  # the MINT layers spike
    assert torch.equal(fake, ints)


def test_integer_path_equals_fake_quantised_model_after_training():
    model = _tiny(3)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 64, 1, 8, 8, generator=gen) * 2
    y = torch.randint(0, 10, (64,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).mean(0), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert all(c > 0 for c in _hidden_spikes(model, x))
        assert torch.equal(model(x), integer_model(model)(x))


def test_integer_state_uses_only_the_configured_levels():
    model = _tiny(4).eval()
    ints = integer_model(model)
    w = ints[3].weight
    assert w.dtype == torch.int64 and set(w.unique().tolist()) <= {-1, 0, 1}  # 2 bits: n = 1


def test_integer_path_refuses_a_leak_that_is_not_a_shift_and_the_paper_variant():
    m = _tiny(0, 2, beta=0.9)
    with pytest.raises(SpikecimError, match="beta must be a power of two"):
        integer_model(m)
    paper = apply_methods(
        create_model("convnet", spiking=True, width=0.25, neuron_kw={"reset_delay": False}),
        [MethodConfig(name="mint", bits=2)],
    )
    with pytest.raises(SpikecimError, match="integer: true"):
        integer_model(paper)


@pytest.mark.parametrize(
    "options,match",
    [({"bits": 1}, "mint.bits"), ({"bits": 16}, "mint.bits"), ({"integer": "yes"}, "mint.integer")],
)
def test_bad_mint_options_name_the_field(options, match):
    m = create_model("convnet", spiking=True, width=0.25, neuron_kw={"reset_delay": False})
    with pytest.raises(SpikecimError, match=match):
        apply_methods(m, [MethodConfig(name="mint", **options)])


def test_mint_refuses_the_delayed_reset():
    with pytest.raises(SpikecimError, match="reset_delay: false"):
        apply_methods(create_model("convnet", spiking=True, width=0.25), [MethodConfig(name="mint")])
