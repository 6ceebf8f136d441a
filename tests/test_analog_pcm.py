"""PCM device statistics against aihwkit's PCMLikeNoiseModel (docs/references.md#pcm)."""

import math

import numpy as np
import pytest
import torch

from spikecim.analog import drift, to_analog
from spikecim.analog.devices import PCMDevice
from spikecim.analog.layers import AnalogLayer

G_MAX_US = 25.0
N = 100_000


def sigma_prog_ref(g_us: float) -> float:
    """σ_prog = (0.26348 + 1.9650·g/g_max − 1.1731·(g/g_max)²)·g_max/25
    (docs/references.md#pcm-programming-noise)."""
    r = g_us / G_MAX_US
    return (0.26348 + 1.9650 * r - 1.1731 * r * r) * G_MAX_US / 25


@pytest.mark.parametrize("g_rel", [0.2, 0.5, 0.8, 1.0])
def test_programming_noise_std_within_3_percent_of_reference_polynomial(g_rel):
    g = torch.full((N,), g_rel * G_MAX_US, dtype=torch.float64)
    out = PCMDevice().program(g, G_MAX_US, torch.Generator().manual_seed(1))
    assert float((out - g).std()) == pytest.approx(sigma_prog_ref(g_rel * G_MAX_US), rel=0.03)
    assert float((out - g).mean()) == pytest.approx(
        0.0, abs=4 * sigma_prog_ref(g_rel * G_MAX_US) / math.sqrt(N)
    )


def test_programmed_conductance_is_never_negative():
    g = torch.zeros(N, dtype=torch.float64)
    out = PCMDevice().program(g, G_MAX_US, torch.Generator().manual_seed(2))
    assert float(out.min()) == 0.0 and float((out > 0).double().mean()) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("g_rel", [0.05, 0.5, 1.0])
def test_drift_exponent_mean_and_std_follow_reference_clipped_log_laws(g_rel):
    g = torch.full((N,), g_rel * G_MAX_US, dtype=torch.float64)
    nu = PCMDevice().drift_exponent(g, G_MAX_US, torch.Generator().manual_seed(3)).numpy()
    mu = float(np.clip(-0.0155 * math.log(g_rel) + 0.0244, 0.049, 0.1))
    sig = float(np.clip(-0.0125 * math.log(g_rel) - 0.0059, 0.008, 0.045))
    # ν = |μ + σ N|: with μ ≥ 0.049 > 4σ the fold changes nothing measurable.
    assert nu.mean() == pytest.approx(mu, rel=0.01)
    assert nu.std() == pytest.approx(sig, rel=0.03)


@pytest.mark.parametrize("t_s", [1.0, 3600.0, 3.15e7])
def test_drift_with_fixed_nu_equals_power_law_exactly(t_s):
    dev = PCMDevice(drift_nu_fixed=0.06, read_noise_enabled=False, prog_noise_enabled=False)
    g = torch.linspace(0.1, 25.0, 1000, dtype=torch.float64)
    nu = dev.drift_exponent(g, G_MAX_US, None)
    out = dev.read(g, nu, t_s, G_MAX_US)
    expected = g * ((t_s + 20.0) / 20.0) ** -0.06  # docs/references.md#pcm-drift, t0 = 20 s
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("g_rel,t_s", [(0.3, 0.0), (0.8, 3600.0), (0.1, 86400.0)])
def test_read_noise_std_matches_1_over_f_formula(g_rel, t_s):
    dev = PCMDevice(drift_enabled=False)
    g = torch.full((N,), g_rel * G_MAX_US, dtype=torch.float64)
    torch.manual_seed(4)
    out = dev.read(g, torch.zeros_like(g), t_s, G_MAX_US)
    q_s = min(0.0088 / max(g_rel**0.65, 1e-3), 0.2)
    t = t_s + 20.0
    sigma_rel = q_s * math.sqrt(math.log((t + 250e-9) / (2 * 250e-9)))
    assert float(((out - g) / g).std()) == pytest.approx(sigma_rel, rel=0.03)


def test_read_noise_std_equals_the_formula_for_idle_capped_and_programmed_cells():
    """σ_read/g over the whole range of |g|/g_max: 0 (the idle device of a pair), below and
    around 0.044^(1/0.65) ≈ 0.00824 where Q_s meets its cap of 0.2, and above."""
    dev = PCMDevice()
    g_rel = [0.0, 1e-9, 0.005, 0.0082, 0.00825, 0.0083, 0.05, 0.3, 1.0]
    got = dev.read_noise_std_rel(torch.tensor(g_rel, dtype=torch.float64) * G_MAX_US, 3600.0, G_MAX_US)
    t = 3600.0 + 20.0
    want = [
        min(0.0088 / max(x**0.65, 1e-3), 0.2) * math.sqrt(math.log((t + 250e-9) / (2 * 250e-9)))
        for x in g_rel
    ]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


def test_read_noise_is_drawn_afresh_at_every_read():
    dev = PCMDevice(drift_enabled=False)
    g = torch.full((1000,), 10.0, dtype=torch.float64)
    a = dev.read(g, torch.zeros_like(g), 0.0, G_MAX_US)
    b = dev.read(g, torch.zeros_like(g), 0.0, G_MAX_US)
    assert not torch.equal(a, b)


def _pcm_only_drift_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(40, 12, bias=False)
    cfg = {
        "device": {
            "name": "pcm",
            "prog_noise_enabled": False,
            "read_noise_enabled": False,
            "drift_nu_fixed": 0.05,
        },
        "tile_rows": 16,
        "tile_cols": 8,
    }
    return lin, cfg


def test_global_drift_compensation_without_other_noise_restores_t0_output():
    lin, cfg = _pcm_only_drift_layer()
    x = torch.rand(20, 40)
    am = to_analog(lin, {**cfg, "drift_compensation": {"enabled": True}})
    y0 = am(x)
    y_t = drift(am, 1e6)(x)
    torch.testing.assert_close(y_t, y0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y0, lin(x), rtol=1e-5, atol=1e-6)


def test_drift_compensation_of_a_layer_whose_weights_are_all_zero_leaves_its_output_the_bias():
    """No cell reads a signal, at programming or at t: there is no gain to restore, and the
    output is the bias alone (every weight zero, by hand), not a division by zero."""
    lin, cfg = _pcm_only_drift_layer()
    with torch.no_grad():
        lin.weight.zero_()
    x = torch.rand(20, 40)
    am = drift(to_analog(lin, {**cfg, "drift_compensation": {"enabled": True}}), 1e6)
    bias = torch.zeros(lin.out_features) if lin.bias is None else lin.bias.detach()
    torch.testing.assert_close(am(x), bias.expand(20, -1), rtol=0, atol=0)


def test_without_compensation_output_shrinks_by_drift_factor():
    lin, cfg = _pcm_only_drift_layer()
    x = torch.rand(20, 40)
    am = drift(to_analog(lin, cfg), 1e6)
    factor = ((1e6 + 20.0) / 20.0) ** -0.05
    torch.testing.assert_close(am(x), lin(x) * factor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer, x",
    [
        (torch.nn.Linear(64, 16), torch.rand(8, 64)),
        (torch.nn.Conv2d(4, 8, 3, padding=1), torch.rand(2, 4, 6, 6)),  # patches through the DAC
        (torch.nn.Conv2d(4, 8, 3, padding=1), (torch.rand(2, 4, 6, 6) < 0.3).float()),  # spikes: conv2d
    ],
    ids=["linear", "conv-analog-input", "conv-spikes"],
)
@pytest.mark.parametrize("out_noise", [0.0, 0.06])
def test_a_layer_reads_fresh_noise_every_forward_and_earlier_outputs_stay_unchanged(layer, x, out_noise):
    """Read noise (no programming noise): two forwards of the same input differ, and the
    first output is not overwritten by the second call, although the layer reuses its work
    tensors (read-noise draw, read matrix, patches, output-noise draw) from call to call."""
    torch.manual_seed(3)
    cfg = {
        "device": {"name": "pcm", "prog_noise_enabled": False, "drift_enabled": False},
        "out_noise_std": out_noise,
    }
    am = drift(to_analog(layer, cfg), 3600.0)
    with torch.no_grad():
        first = am(x)
        kept = first.clone()
        second = am(x)
        digital = layer(x)
    assert _analog_layer(am)._scratch.nbytes() > 0  # the work tensors are in use
    assert torch.equal(first, kept)
    assert not torch.allclose(first, second)
    assert float((first - digital).abs().max()) > 0  # the noise is there at all


def _analog_layer(model: torch.nn.Module) -> AnalogLayer:
    return next(m for m in model.modules() if isinstance(m, AnalogLayer))
