"""The hardware-aware training forward with converters (spikecim.analog.hwa) against
aihwkit-lightning 2.1's TorchLinear path: the same layer, the same settings, noise off."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikecim.analog.hwa import HwaLayer, hwa_layers, tile_sizes
from spikecim.analog.hwa_benchmark import lightning_rpu_config
from spikecim.analog.hwa_config import HwaConverters
from spikecim.analog.mitigation import WeightModifier, hwa_step, hwa_train
from spikecim.train.evaluate import ModelInput

SETTINGS = {
    "DAC 6 b, ADC 8 b, bound 10, learned range": {"dac_bits": 6, "adc_bits": 8, "out_bound": 10.0},
    "DAC 4 b, ADC 5 b, bound 2, 3 tiles": {"dac_bits": 4, "adc_bits": 5, "out_bound": 2.0, "tile_rows": 10},
    "learned range from 0.5, no data init (many clipped)": {
        "dac_bits": 8,
        "adc_bits": 6,
        "out_bound": 4.0,
        "range_init": 0.5,
        "range_init_batches": 0,
    },
    "DAC and ADC on the abs-max range, 2 tiles": {
        "dac_bits": 5,
        "adc_bits": 6,
        "out_bound": 3.0,
        "input_range": "abs-max",
        "tile_rows": 16,
    },
    "output bound without ADC": {"dac_bits": 8, "out_bound": 1.0},
    "tiles only": {"tile_rows": 7},
}


def peer(layer: nn.Module, c: HwaConverters) -> nn.Module:
    from aihwkit_lightning.nn import AnalogConv2d, AnalogLinear

    cls = AnalogConv2d if isinstance(layer, nn.Conv2d) else AnalogLinear
    return cls.from_digital(copy.deepcopy(layer), lightning_rpu_config(c)).train()


def forward_backward(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, range_param: str | None):
    x = x.clone().requires_grad_(True)
    out = layer(x)
    (out * g).sum().backward()
    params = dict(layer.named_parameters())
    weight = next(p for n, p in params.items() if n.endswith("weight"))
    bias = next(p for n, p in params.items() if n.endswith("bias"))
    r = params.get(range_param) if range_param else None
    return out.detach(), x.grad, weight.grad, bias.grad, None if r is None else (r.detach().clone(), r.grad)


def clipped(w: torch.Tensor) -> int:
    """How many weights sit at the largest |w| (1 for an unclipped Gaussian-like weight)."""
    a = w.detach().abs()
    return int((a == a.max()).sum())


def heavy_tailed(*shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(*shape, generator=g, dtype=torch.float64)
        * torch.rand(*shape, generator=g, dtype=torch.float64).mul(3).exp()
    )


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv2d strided", "conv2d stride 2, even size"])
def test_hwa_forward_and_gradients_equal_aihwkit_lightning(kind, name):
    pytest.importorskip("aihwkit_lightning", reason="aihwkit-lightning (the peer) is not installed")
    c = HwaConverters(**SETTINGS[name])
    # Seeded: where an output rounds to the ADC's top level q = n exactly, aihwkit-lightning
    # clamps q·(2·bound/(2n)) against the bound, which one float ulp can put above it (a zero
    # gradient there); spikecim counts only levels beyond n as saturated. Such a tie occurs
    # for 4 of the weight seeds 0-59 of the 5-bit ADC with the stride-2 convolution (this
    # test's layer and input, each seed run against the peer).
    torch.manual_seed(0)
    if kind == "linear":
        layer = nn.Linear(30, 12).double()
        x = heavy_tailed(16, 30)
    elif kind == "conv2d":
        layer = nn.Conv2d(3, 5, 3, padding=1).double()  # 27 inputs per patch
        x = heavy_tailed(4, 3, 6, 6)
    elif kind == "conv2d strided":
        layer = nn.Conv2d(3, 5, 3, padding=2, stride=2, dilation=2).double()
        x = heavy_tailed(4, 3, 7, 7)
    else:  # the last input row and column lie in the last window only
        layer = nn.Conv2d(3, 5, 3, padding=1, stride=2).double()
        x = heavy_tailed(4, 3, 8, 8)
    g = torch.randn(layer(x).shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = forward_backward(HwaLayer(copy.deepcopy(layer), c).train(), x, g, "input_range")
    theirs = forward_backward(peer(layer, c), x, g, "input_range")
    names = ["output", "input gradient", "weight gradient", "bias gradient"]
    for what, a, b in zip(names, ours[:4], theirs[:4], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=lambda m, w=what: f"{w}: {m}")
    if c.input_range == "learned":
        (r, r_grad), (r_peer, r_grad_peer) = ours[4], theirs[4]
        torch.testing.assert_close(r, r_peer, rtol=1e-6, atol=1e-6)  # the range initialised from the data
        torch.testing.assert_close(r_grad, r_grad_peer, rtol=1e-6, atol=1e-6)
        assert r_grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_an_abs_max_range_with_an_output_bound_runs_in_float32_as_aihwkit_lightning(kind):
    """A per-vector abs-max range gives the ADC a bound per input vector; the float32 CPU
    kernel takes one bound, and the forward ended in "only one element tensors can be
    converted to Python scalars". It now runs the torch passes there, as the peer does."""
    pytest.importorskip("aihwkit_lightning", reason="aihwkit-lightning (the peer) is not installed")
    c = HwaConverters(**SETTINGS["DAC and ADC on the abs-max range, 2 tiles"])
    torch.manual_seed(0)
    layer, x = (
        (nn.Linear(30, 12), heavy_tailed(16, 30).float())
        if kind == "linear"
        else (nn.Conv2d(3, 5, 3, padding=1), heavy_tailed(4, 3, 6, 6).float())
    )
    g = torch.randn(layer(x).shape, generator=torch.Generator().manual_seed(2))
    ours = forward_backward(HwaLayer(copy.deepcopy(layer), c).train(), x, g, None)
    theirs = forward_backward(peer(layer, c), x, g, None)
    for what, a, b in zip(["output", "input gradient", "weight gradient"], ours[:3], theirs[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, w=what: f"{w}: {m}")


def test_the_converters_act_on_the_output():
    """The settings above are not trivially passed through: the ADC grid shows in the output."""
    c = HwaConverters(dac_bits=4, adc_bits=3, out_bound=1.0)
    layer = HwaLayer(nn.Linear(30, 12).double(), c).train()
    x = heavy_tailed(16, 30)
    out = layer(x).detach() - layer.module.bias.detach()
    step = (
        float(layer.input_range[0].detach()) * 1.0 * float(layer.module.weight.detach().abs().max()) / 3
    )  # 2^(3-1)-1 levels
    k = out / step
    torch.testing.assert_close(k, k.round(), atol=1e-9, rtol=0)
    assert k.abs().max() == 3


def test_weight_clipping_after_a_step_equals_aihwkit_lightning():
    pytest.importorskip("aihwkit_lightning", reason="aihwkit-lightning (the peer) is not installed")
    from aihwkit_lightning.optim import AnalogOptimizer

    c = HwaConverters(dac_bits=6, adc_bits=8, out_bound=10.0, weight_clip_sigma=1.5, tile_rows=40)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    x = heavy_tailed(8, 1, 8, 8)
    y = torch.arange(8) % 10
    theirs = copy.deepcopy(model)
    from aihwkit_lightning.nn.conversion import convert_to_analog

    theirs = convert_to_analog(theirs, lightning_rpu_config(c)).train()
    opt = AnalogOptimizer(torch.optim.Adam, theirs.analog_layers, theirs.parameters(), lr=0.05)
    opt.zero_grad()
    nn.functional.cross_entropy(theirs(x), y).backward()
    opt.step()

    ours = hwa_layers(copy.deepcopy(model), c).train()
    weights = [m.weight for m in ours.modules() if isinstance(m, nn.Linear)]
    opt = torch.optim.Adam(ours.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    hwa_step(
        ours,
        opt,
        x,
        y,
        WeightModifier(kind="add_normal", std=0.0),
        ModelInput.from_encoder(None, "direct"),
        gen,
        c,
    )
    for w, w_peer in zip(
        weights, [m.weight for m in theirs.modules() if isinstance(m, nn.Linear)], strict=True
    ):
        torch.testing.assert_close(w, w_peer, rtol=1e-6, atol=1e-6)
        assert clipped(w) > 1  # the clipping acted: several weights at the same ±bound


def test_weight_clipping_of_a_pruned_layer_takes_the_std_of_the_masked_weight():
    """aihwkit clips to ±σ·std over the tile's weights, and a pruned weight is a zero on the
    tile: the bound is σ·std(W·mask), applied to the trained tensor behind the mask. A step at
    lr = 0 leaves the weights as they were, so only the clip moves them."""
    from spikecim.nn.prune import prune

    torch.manual_seed(0)
    model = prune(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)).double(),
        sparsity=0.5,
        exclude=["3"],
    )
    masked, plain = model[1], model[3]
    original = masked.parametrizations["weight"].original.detach().clone()
    mask = original.abs() < original.abs().median()  # the larger half pruned: std(W·mask) ≪ std(W)
    masked.parametrizations["weight"][0].mask.copy_(mask)
    plain_before = plain.weight.detach().clone()
    sigma = 1.5
    x, y = torch.rand(8, 1, 4, 4, dtype=torch.float64), torch.arange(8) % 4
    c = HwaConverters(weight_clip_sigma=sigma)
    trained = hwa_train(model, x, y, WeightModifier(kind="add_normal", std=0.1), 1, 0.0, None, converters=c)

    bound = sigma * float((original * mask).std())
    expected = original.clamp(-bound, bound)
    torch.testing.assert_close(trained[1].parametrizations["weight"].original, expected, rtol=0, atol=0)
    assert bool((expected[mask] != original[mask]).any())  # the clip acted on kept weights
    plain_bound = sigma * float(plain_before.std())
    torch.testing.assert_close(
        trained[3].weight, plain_before.clamp(-plain_bound, plain_bound), rtol=0, atol=0
    )


def test_tile_sizes_split_like_aihwkit_lightning():
    assert tile_sizes(30, 10) == [10, 10, 10]
    assert tile_sizes(27, 10) == [9, 9, 9]
    assert tile_sizes(64, 40) == [32, 32]
    assert tile_sizes(65, 16) == [13, 13, 13, 13, 13]
    assert tile_sizes(5, None) == [5]


@pytest.mark.parametrize("spiking", [False, True], ids=["ANN", "SNN"])
def test_hwa_train_with_converters_returns_a_digital_model_that_learned(spiking):
    from spikecim.models import create_model

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 2
    x = 0.1 * torch.rand(96, 1, 8, 8, generator=g)
    x[y == 0, :, :4] += 0.8
    x[y == 1, :, 4:] += 0.8
    model = create_model("convnet", spiking=spiking, num_classes=2, width=0.25)
    timesteps = 2 if spiking else 1
    c = HwaConverters(dac_bits=4, adc_bits=6, out_bound=10.0, tile_rows=32, weight_clip_sigma=1.5)
    trained = hwa_train(
        model, x, y, WeightModifier(kind="add_normal", std=0.02), 8, 1e-2, timesteps, converters=c
    )
    assert not any(isinstance(m, HwaLayer) for m in trained.modules())
    assert {n for n, _ in trained.named_parameters()} == {n for n, _ in model.named_parameters()}
    with torch.no_grad():
        accuracy = (
            (trained(x.expand(timesteps, *x.shape)).mean(0).argmax(-1) == y).float().mean()
        )  # [T, B, ...]
    assert accuracy > 0.9  # two separable classes, chance 0.5


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"adc_bits": 8}, "adc_bits needs out_bound"),
        ({"dac_bits": 1}, "dac_bits"),
        ({"tile_rows": 0}, "tile_rows"),
        ({"weight_clip_sigma": -1.0}, "weight_clip_sigma"),
        ({"input_range": "minmax"}, "input_range"),
    ],
)
def test_bad_converter_settings_are_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        HwaConverters(**fields)


def test_a_dac_alone_turns_the_learned_input_range_on():
    assert HwaConverters(dac_bits=8).input_range == "learned"
    assert HwaConverters(weight_clip_sigma=2.0).input_range is None
    assert not HwaConverters(weight_clip_sigma=2.0).in_forward


@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ("analog.hwa_adc_bits=8", "config.analog", "hwa_adc_bits needs hwa_out_bound"),
        ("analog.hwa_dac_bits=1", "config.analog.hwa_dac_bits", "greater than or equal to 2"),
        ("analog.hwa_input_range=minmax", "config.analog.hwa_input_range", "'learned' or 'abs-max'"),
        ("analog.hwa_weight_clip_sigma=0", "config.analog.hwa_weight_clip_sigma", "greater than 0"),
    ],
)
def test_bad_hwa_run_settings_give_one_line_naming_the_field(override, field, allowed, capsys):
    from spikecim.cli.main import main
    from spikecim.config import load_config
    from spikecim.errors import SpikecimError

    with pytest.raises(SpikecimError) as err:
        load_config(overrides=[override])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(field) and allowed in msg
    assert main(["run", "--set", override]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {msg}"]


def test_the_run_settings_reach_the_converters():
    from spikecim.config import load_config

    sc = load_config(
        overrides=["analog.hwa_dac_bits=6", "analog.hwa_adc_bits=8", "analog.hwa_out_bound=10"]
    ).analog
    assert sc.hwa_converters() == HwaConverters(dac_bits=6, adc_bits=8, out_bound=10.0, input_range="learned")
    assert not load_config().analog.hwa_converters().in_forward  # off by default: weight noise only


@pytest.mark.parametrize(
    "layer, message",
    [
        (nn.Conv2d(4, 4, 3, groups=2), "grouped convolution"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode"),
    ],
)
def test_layers_the_converters_cannot_compute_are_refused_in_one_line(layer, message):
    from spikecim.errors import SpikecimError

    with pytest.raises(SpikecimError, match=message) as err:
        HwaLayer(layer, HwaConverters(dac_bits=8))
    assert "\n" not in str(err.value)


def test_a_layer_with_its_own_forward_is_refused():
    from spikecim.errors import SpikecimError
    from spikecim.nn.bitlinear import BitLinear

    with pytest.raises(SpikecimError, match="BitLinear has its own forward"):
        HwaLayer(BitLinear(8, 4), HwaConverters(dac_bits=8))


def test_the_weight_noise_in_the_forward_has_std_s_max_w_per_tile_and_is_redrawn_each_call():
    """aihwkit's ``add_normal`` modifier per tile: Ŵ_t = W_t + s·max|W_t|·N(0, 1), drawn
    anew in each training forward, none in evaluation. The identity as input reads Ŵᵀ from
    the layer's output (no bias: out[k, m] = Ŵ[m, k], the other terms exact zeros)."""
    s, calls = 0.05, 20
    torch.manual_seed(0)
    layer = nn.Linear(200, 64, bias=False).double()
    with torch.no_grad():
        layer.weight[:, 100:] *= 3.0  # the second tile's max|W_t| three times the first's
    w = layer.weight.detach().clone()
    hwa = HwaLayer(
        layer,
        HwaConverters(tile_rows=100),
        WeightModifier(kind="add_normal", std=s),
        torch.Generator().manual_seed(1),
    ).train()
    eye = torch.eye(200, dtype=torch.float64)
    with torch.no_grad():
        noise = torch.stack([hwa(eye).T - w for _ in range(calls)])  # [calls, 64, 200]
    for cols in (slice(0, 100), slice(100, 200)):
        tile = noise[:, :, cols]
        expected = s * float(w[:, cols].abs().max())  # s·max|W_t| of the clean tile
        n = tile.numel()
        assert abs(float(tile.mean())) < 5 * expected / n**0.5  # 5 sampling sigmas of the mean
        assert float(tile.std()) == pytest.approx(expected, rel=5 / (2 * n) ** 0.5)
        # independent draws in successive calls: their difference has std √2·s·max|W_t|
        diff = tile[1:] - tile[:-1]
        assert float(diff.std()) == pytest.approx(2**0.5 * expected, rel=5 / (2 * diff.numel()) ** 0.5)
    with torch.no_grad():
        assert torch.equal(hwa.eval()(eye).T, w)  # no noise in evaluation
