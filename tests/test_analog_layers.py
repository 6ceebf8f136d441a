"""Analog layers and converters: ideal equals digital, faults, calibration, IR drop in a layer."""

import numpy as np
import pytest
import torch
from torch import nn

from spikecim.analog import (
    AnalogConv2d,
    AnalogLinear,
    analog_layers,
    calibrate_adc,
    drift,
    program,
    to_analog,
    to_digital,
)
from spikecim.analog.circuit import effective_conductance
from spikecim.analog.layers import AnalogLayer
from spikecim.models import create_model


def on_grid_weight(out_f, in_f, bits, tile_rows, tile_cols, seed=0):
    """Integer weights k/q_max (|k| ≤ q_max) with ±q_max in every tile, so b-bit
    quantisation at each tile's own scale is lossless."""
    q_max = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(-q_max, q_max + 1, (out_f, in_f), generator=g).double()
    for r in range(0, in_f, tile_rows):
        for c in range(0, out_f, tile_cols):
            k[c, r] = q_max
    return k / q_max * 0.37


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"tile_rows": 7, "tile_cols": 5},
        {"tile_rows": 7, "tile_cols": 5, "mapping": "offset"},
        {"tile_rows": 16, "tile_cols": 4, "weight_bits": 8, "bits_per_cell": 2},
        {"tile_rows": 16, "tile_cols": 4, "weight_bits": 8, "bits_per_cell": 3, "mapping": "offset"},
        {"weight_bits": 6, "bits_per_cell": 1},
    ],
)
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "with-gradient"])
def test_ideal_linear_equals_digital_tiled_or_not_sliced_or_not(fields, grad):
    """Both paths: in inference the stages work in place (tiles and slices summed by in-place
    adds); with a gradient they work out of place."""
    bits = fields.get("weight_bits", 8)
    lin = nn.Linear(37, 11).double()
    with torch.no_grad():
        lin.weight.copy_(
            on_grid_weight(11, 37, bits, fields.get("tile_rows", 128), fields.get("tile_cols", 128))
        )
    x = torch.randn(9, 37, dtype=torch.float64, requires_grad=grad)
    am = to_analog(lin, {"preset": "ideal", **fields})
    torch.testing.assert_close(am(x), lin(x), rtol=0, atol=1e-5)


def test_ideal_conv_and_spiking_registry_model_equal_digital():
    torch.manual_seed(0)
    model = create_model("convnet", spiking=True).eval()
    x = 3 * torch.rand(4, 5, 1, 8, 8)
    ref = model(x)
    am = to_analog(model, {"preset": "ideal", "tile_rows": 40, "tile_cols": 24})
    assert len([m for m in analog_layers(am) if isinstance(m, AnalogConv2d)]) == 2
    out = am(x)
    assert ref.abs().sum() > 0
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_plain_torch_model_converts_and_converts_back():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)
    )
    x = torch.randn(6, 2, 8, 8)
    am = to_analog(model, "ideal")
    assert isinstance(am[0], AnalogConv2d) and isinstance(am[3], AnalogLinear)
    assert isinstance(model[0], nn.Conv2d)  # the input model is untouched
    torch.testing.assert_close(am(x), model(x), rtol=0, atol=1e-5)
    back = to_digital(am)
    assert type(back[0]) is nn.Conv2d and type(back[3]) is nn.Linear
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_stuck_fractions_equal_configured_rates_within_sampling_error():
    lin = nn.Linear(400, 250, bias=False)
    with torch.no_grad():
        lin.weight.uniform_(-0.9, 0.9)
        lin.weight[0, 0] = 1.0
    cfg = {
        "tile_rows": 400,
        "tile_cols": 250,
        "mapping": "offset",
        "faults": {"enabled": True, "stuck_on_rate": 0.05, "stuck_off_rate": 0.1},
    }
    am = to_analog(lin, cfg, seed=3)
    g = am[0].tiles.g_prog_us.flatten()
    n = g.numel()
    for value, rate in ((25.0, 0.05), (0.0, 0.1)):
        frac = float((g == value).double().mean()) - (1 / n if value == 25.0 else 0.0)  # W = 1 sits at g_max
        assert abs(frac - rate) < 4 * np.sqrt(rate * (1 - rate) / n)


def test_same_seed_programs_identically_and_other_seeds_differ():
    lin = nn.Linear(20, 6)
    x = torch.rand(3, 20)
    cfg = {"device": {"name": "pcm", "read_noise_enabled": False}}
    a = to_analog(lin, cfg, seed=5)
    b = to_analog(lin, cfg, seed=5)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(program(b, 6)(x), a(x))


def test_calibrated_adc_bound_is_percentile_of_column_outputs():
    torch.manual_seed(2)
    lin = nn.Linear(30, 8, bias=False)
    x = torch.rand(500, 30)
    am = to_analog(
        lin, {"adc": {"enabled": True, "bits": 6, "range": "calibrated", "calibration_percentile": 99.0}}
    )
    calibrate_adc(am, [x])
    w = lin.weight.detach().double()
    expected = np.percentile((x.double() @ (w / w.abs().max()).T).abs().numpy(), 99.0)
    assert am[0].adc_bound == pytest.approx(expected, rel=1e-5)
    y = am(x).detach().double()
    step = expected / 31 * float(w.abs().max())
    assert torch.allclose(y / step, torch.round(y / step), atol=1e-3)  # outputs on the ADC grid


def test_ir_drop_in_a_layer_equals_exact_solve_of_both_polarity_arrays():
    torch.manual_seed(3)
    lin = nn.Linear(12, 5, bias=False).double()
    x = torch.rand(4, 12, dtype=torch.float64)
    am = to_analog(lin, {"g_max_us": 100.0, "ir_drop": {"enabled": True, "r_wire_ohm": 20.0}})
    w = lin.weight.detach().T.numpy()  # [rows = inputs, cols = outputs]
    s = np.abs(w).max()
    g_pos = np.clip(w / s, 0, None) * 100e-6
    g_neg = np.clip(-w / s, 0, None) * 100e-6
    diff = effective_conductance(g_pos, 20.0) - effective_conductance(g_neg, 20.0)
    expected = x.numpy() @ diff / 100e-6 * s
    np.testing.assert_allclose(am(x).detach().numpy(), expected, rtol=1e-5, atol=1e-9)  # float32 state
    assert np.abs(expected - lin(x).detach().numpy()).max() > 1e-3  # the drop changes the output


def test_drift_rejects_negative_time_with_one_line_error():
    from spikecim.errors import SpikecimError

    am = to_analog(nn.Linear(3, 2), "ideal")
    with pytest.raises(SpikecimError, match="t_s"):
        drift(am, -1.0)


def test_binary_spikes_pass_a_coarse_dac_unchanged():
    torch.manual_seed(4)
    lin = nn.Linear(24, 6)
    spikes = (torch.rand(50, 24) < 0.3).float()
    am = to_analog(lin, {"dac": {"enabled": True, "bits": 2}})
    torch.testing.assert_close(am(spikes), lin(spikes), rtol=0, atol=1e-5)
    analog_in = torch.rand(50, 24)
    assert (am(analog_in) - lin(analog_in)).abs().max() > 1e-2  # analog inputs are quantised


def test_output_noise_std_is_in_units_of_the_tile_weight_scale():
    torch.manual_seed(5)
    lin = nn.Linear(16, 500, bias=False)
    with torch.no_grad():
        lin.weight.mul_(3.0)
    x = torch.rand(400, 16)
    am = to_analog(lin, {"out_noise_std": 0.1, "tile_cols": 500})
    err = (am(x) - lin(x)).detach()
    assert float(err.std()) == pytest.approx(0.1 * float(lin.weight.detach().abs().max()), rel=0.03)


@pytest.mark.parametrize("stride", [1, 2])  # 2: the event-driven kernel at its stride
@pytest.mark.parametrize("tile_rows", [128, 10])  # 10: four tiles, three cut a channel's kernel
def test_direct_conv_path_for_spikes_equals_unfolded_patch_path(tile_rows, stride):
    torch.manual_seed(6)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1)
    cfg = {
        "device": {"name": "pcm", "read_noise_enabled": False},
        "tile_rows": tile_rows,
        "dac": {"enabled": True, "bits": 7},
        "adc": {"enabled": True, "bits": 6, "range": 4.0},
    }
    layer = to_analog(conv, cfg)[0]
    spikes = (torch.rand(5, 4, 7, 7) < 0.4).float()
    for grad in (True, False):  # training, and inference (the tiles' outputs written in place)
        with torch.set_grad_enabled(grad):
            direct = layer(spikes)
        side = (7 + 2 - 3) // stride + 1
        cols = torch.nn.functional.unfold(spikes, 3, padding=1, stride=stride)  # [N, 36, side²]
        unfolded = layer.matmul(cols.transpose(1, 2).reshape(-1, 36)) + conv.bias
        unfolded = unfolded.view(5, side * side, 6).transpose(1, 2).reshape(5, 6, side, side)
        torch.testing.assert_close(direct, unfolded, rtol=0, atol=1e-5)


def test_fast_ir_drop_method_in_a_layer_uses_the_first_order_model():
    torch.manual_seed(7)
    lin = nn.Linear(12, 5, bias=False).double()
    x = torch.rand(4, 12, dtype=torch.float64)
    ir = {"enabled": True, "r_wire_ohm": 20.0, "method": "fast", "fast_kappa": 0.9}
    am = to_analog(lin, {"g_max_us": 100.0, "ir_drop": ir})
    w = lin.weight.detach().T.numpy()
    s = np.abs(w).max()
    g_pos, g_neg = np.clip(w / s, 0, None) * 100e-6, np.clip(-w / s, 0, None) * 100e-6
    from spikecim.analog.circuit import effective_conductance_fast

    diff = effective_conductance_fast(g_pos, 20.0, kappa=0.9) - effective_conductance_fast(
        g_neg, 20.0, kappa=0.9
    )
    np.testing.assert_allclose(am(x).detach().numpy(), x.numpy() @ diff / 100e-6 * s, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("geometry", [(2, 1, 1), (1, 2, 2), (1, 3, 1)])  # stride, padding, dilation
@pytest.mark.parametrize("tile_rows", [128, 10])
@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_conv_with_dac_equals_per_patch_abs_max_quantisation_written_out(mapping, tile_rows, geometry):
    """A crossbar with only the DAC on: every patch is split at the tile boundaries (rows
    0–9, 10–19, 20–26 for 10-row tiles), each part scaled by its own abs-max and rounded to
    the 7-bit grid over ±1 (aihwkit IOParameters, docs/references.md#adc-dac), then multiplied by the
    exact weights and the tiles' partial sums added."""
    stride, padding, dilation = geometry
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation).double()
    with torch.no_grad():
        conv.weight.copy_(on_grid_weight(5, 27, 8, tile_rows, 128).view(5, 3, 3, 3))
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64)
    cfg = {"preset": "ideal", "mapping": mapping, "tile_rows": tile_rows, "dac": {"enabled": True, "bits": 7}}
    layer = to_analog(conv, cfg)[0]
    cols = torch.nn.functional.unfold(x, 3, dilation, padding, stride)  # [N, 27, L]
    n = 2**6 - 1
    ref = conv.bias.view(1, 5, 1)
    for a in range(0, 27, tile_rows):
        part = cols[:, a : a + tile_rows]
        scale = part.abs().amax(dim=1, keepdim=True)
        scale = torch.where(scale > 0, scale, 1.0)  # a patch wholly in the padding stays 0
        q = torch.round(part / scale * n) / n * scale
        ref = ref + conv.weight.view(5, 27)[:, a : a + tile_rows] @ q
    torch.testing.assert_close(layer(x), ref.view(conv(x).shape), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dac", [False, True])
@pytest.mark.parametrize("mapping", ["differential", "offset"])
def test_dac_and_adc_equal_the_quantisers_written_out_per_tile(dac, mapping):
    """Three input tiles (12, 12, 6 rows). Per tile: inputs scaled by their abs-max and
    rounded to 6 bits (DAC), column output (W/max|W|, or (W/max|W| + 1)/2 with the reference
    column subtracted digitally for the offset mapping) rounded to 5 bits over ±3 and
    clipped (ADC grid, docs/references.md#adc-dac), times the scales; the tiles' partial sums added."""
    torch.manual_seed(0)
    lin = nn.Linear(30, 7).double()
    x = torch.randn(11, 30, dtype=torch.float64)
    cfg = {
        "preset": "ideal",
        "mapping": mapping,
        "tile_rows": 12,
        "adc": {"enabled": True, "bits": 5, "range": 3.0},
        "dac": {"enabled": dac, "bits": 6},
    }
    am = to_analog(lin, cfg)
    n_adc, n_dac = 2**4 - 1, 2**5 - 1
    w = lin.weight.detach()
    ref = lin.bias.detach().expand(11, 7)
    for a in range(0, 30, 12):
        x_t, w_t = x[:, a : a + 12], w[:, a : a + 12]
        w_scale = w_t.abs().max()
        x_scale = x_t.abs().amax(1, keepdim=True) if dac else torch.ones(11, 1, dtype=x.dtype)
        x_q = torch.round(x_t / x_scale * n_dac) / n_dac if dac else x_t
        g = w_t / w_scale if mapping == "differential" else (w_t / w_scale + 1) / 2
        col = torch.clamp(torch.round(x_q @ g.T * n_adc / 3.0), -n_adc, n_adc) * 3.0 / n_adc
        if mapping == "offset":
            col = 2 * col - x_q.sum(1, keepdim=True)
        ref = ref + col * w_scale * x_scale
    with torch.no_grad():
        torch.testing.assert_close(am(x), ref, rtol=0, atol=1e-5)


def test_saved_analog_convolution_leaves_its_work_tensors_behind_and_computes_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKECIM_GEMM", "onednn")  # the passes, which keep work tensors (conv_kernel.py)
    torch.manual_seed(9)
    am = to_analog(nn.Conv2d(16, 8, 3, padding=1), "pcm-aihwkit")
    x = torch.rand(32, 16, 16, 16)
    with torch.no_grad():
        am(x)  # fills the work tensors, the patches alone 32·16·9·256 floats
    assert _analog_layer(am)._scratch.nbytes() >= 32 * 16 * 9 * 256 * 4
    torch.save(am, tmp_path / "am.pt")
    assert (tmp_path / "am.pt").stat().st_size < 32 * 16 * 9 * 256 * 4 / 10
    loaded = torch.load(tmp_path / "am.pt", weights_only=False)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = am(x)
        torch.manual_seed(1)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def _analog_layer(model: torch.nn.Module) -> AnalogLayer:
    return next(m for m in model.modules() if isinstance(m, AnalogLayer))


def test_adc_calibration_leaves_config_hooks_and_state_dict_as_they_were():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4))
    am = to_analog(model, {"adc": {"enabled": True, "bits": 5, "range": "calibrated"}})

    def hooks():
        return [(lyr.config, dict(lyr._adc_observers), dict(lyr._forward_hooks)) for lyr in analog_layers(am)]

    before, keys = hooks(), list(am.state_dict())
    calibrate_adc(am, [torch.rand(64, 12)])
    after = hooks()
    assert all(a[0] is b[0] for a, b in zip(after, before, strict=True))  # the same config objects
    assert after == before and list(am.state_dict()) == keys
    assert all(lyr.adc() is not None for lyr in analog_layers(am))  # ADCs convert again
    assert all(lyr.adc_bound is not None for lyr in analog_layers(am))  # bounds set


@pytest.mark.parametrize("preset", ["ideal", "pcm-aihwkit", "rram-65nm"])
def test_input_of_the_wrong_width_is_refused_as_digital_layers_refuse_it(preset):
    """A Linear(8, 4) fed 7 or 9 features, a Conv2d(3, ...) fed 2 channels: the digital layers
    raise; the analog ones returned an output computed from the wrong rows."""
    from spikecim.errors import SpikecimError

    torch.manual_seed(0)
    lin, conv = nn.Linear(8, 4), nn.Conv2d(3, 4, 3)
    for bad in (torch.randn(3, 7), torch.randn(3, 9)):
        with pytest.raises(RuntimeError):
            lin(bad)
        with pytest.raises(SpikecimError) as e:
            to_analog(lin, preset)(bad)
        assert str(e.value) == (
            "analog: AnalogLinear takes 8 input features in the last dimension, "
            f"got an input of shape {tuple(bad.shape)}"
        )
    for bad in (torch.randn(1, 2, 5, 5), (torch.rand(1, 2, 5, 5) < 0.5).float()):
        with pytest.raises(RuntimeError):
            conv(bad)
        with pytest.raises(SpikecimError) as e:
            to_analog(conv, preset)(bad)
        assert str(e.value) == (
            "analog: AnalogConv2d takes [N, 3, H, W] or [3, H, W], got an input of shape (1, 2, 5, 5)"
        )


@pytest.mark.parametrize("fields", [{}, {"mapping": "offset", "dac_bits": 4}, {"preset": "pcm-aihwkit"}])
def test_an_empty_batch_gives_an_empty_output_as_the_digital_layer_does(fields):
    torch.manual_seed(0)
    lin, conv = nn.Linear(300, 4), nn.Conv2d(3, 4, 3)
    for layer, x in [(lin, torch.randn(0, 300)), (conv, torch.randn(0, 3, 6, 6))]:
        y = to_analog(layer, {"tile_rows": 128, **fields})(x)
        assert y.shape == layer(x).shape


def test_one_unbatched_image_convolves_as_nn_conv2d_does():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(3, 6, 6)
    torch.testing.assert_close(to_analog(conv, "ideal")(x), conv(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, float("nan"), "3", True])
def test_program_refuses_a_seed_that_is_not_an_integer_below_2_pow_63(seed):
    """Before: -1 and nan raised numpy's ValueError, 1.5 was truncated to 1 without a word."""
    from spikecim.errors import SpikecimError

    am = to_analog(nn.Linear(3, 2), "ideal")
    with pytest.raises(SpikecimError) as e:
        program(am, seed)
    assert str(e.value) == f"program: seed must be an integer, 0 <= seed < 2**63, got {seed!r}"


def test_drift_refuses_a_time_that_is_not_a_number_and_a_model_with_nothing_to_drift():
    """Before: drift(model, '10') drifted to 10 s, True to 1 s, None raised a TypeError, and
    drift of a digital model did nothing without a word (program refuses it)."""
    from spikecim.errors import SpikecimError

    am = to_analog(nn.Linear(3, 2), "ideal")
    for t in ("10", True, None):
        with pytest.raises(SpikecimError) as e:
            drift(am, t)
        assert str(e.value) == f"drift: t_s must be a number of seconds, finite and >= 0, got {t!r}"
    with pytest.raises(SpikecimError) as e:
        drift(nn.Linear(3, 2), 10.0)
    assert str(e.value) == "drift: the model has no analog layers; call to_analog first"


@pytest.mark.parametrize("t_s", [1.0, 3600.0, 86400.0 * 365])
def test_pcm_drift_scales_every_weight_by_the_power_law_of_the_device_paper(t_s):
    """One ν for every cell, no programming or read noise, no compensation: both cells of a
    pair drift by ((t + t0)/t0)^−ν (Ambrogio et al.; aihwkit PCMLikeNoiseModel, t0 = 20 s),
    so the output is the digital product times that factor."""
    torch.manual_seed(0)
    lin = nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 8)
    device = {"name": "pcm", "prog_noise_enabled": False, "read_noise_enabled": False, "drift_nu_fixed": 0.05}
    am = drift(to_analog(lin, {"device": device}), t_s)
    torch.testing.assert_close(am(x), lin(x) * ((t_s + 20.0) / 20.0) ** -0.05, rtol=1e-5, atol=1e-6)


def test_adc_of_a_known_column_output_equals_the_hand_quantisation():
    """3-bit ADC over ±1: n = 2^(3−1) − 1 = 3 levels a side, Δ = 1/3; a single weight of 1 on
    a g_max cell reads its input as the column output (DAC off)."""
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0]]))
    am = to_analog(lin, {"adc": {"enabled": True, "bits": 3, "range": 1.0}})
    x = torch.tensor([[0.1, 0.0], [0.2, 0.0], [0.5, 0.0], [0.9, 0.0], [1.5, 0.0], [-0.4, 0.0]])
    # round(3x) clipped to ±3, times 1/3: 0.3→0, 0.6→1, 1.5→2, 2.7→3, 4.5→3, −1.2→−1
    expected = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.0, -1.0]) / 3
    torch.testing.assert_close(am(x)[:, 0], expected, rtol=0, atol=1e-6)
