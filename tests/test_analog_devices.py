"""Contract tests over the device registry, and the device-independent non-idealities."""

import pytest
import torch
from torch import nn

from spikecim.analog import DEVICES, CrossbarConfig, drift, to_analog
from spikecim.analog.devices import RRAMDevice


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_every_registered_device_keeps_shape_finiteness_and_nonnegativity(name):
    dev = DEVICES[name]()
    g = torch.linspace(0, 25, 500, dtype=torch.float64).view(20, 25)
    gen = torch.Generator().manual_seed(0)
    g_prog = dev.program(g, 25.0, gen)
    nu = dev.drift_exponent(g, 25.0, gen)
    g_read = dev.read(g_prog, nu, 3600.0, 25.0)
    for t in (g_prog, nu, g_read):
        assert t.shape == g.shape and torch.isfinite(t).all() and (t >= 0).all()


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_every_device_round_trips_through_crossbar_config(name):
    c = CrossbarConfig(device=name)
    assert CrossbarConfig.model_validate(c.model_dump()).device == c.device


@pytest.mark.parametrize("name", ["ideal", "sram"])
def test_noiseless_devices_store_and_read_exactly(name):
    dev = DEVICES[name]()
    g = torch.rand(100, dtype=torch.float64) * 25
    assert torch.equal(dev.read(dev.program(g, 25.0, None), dev.drift_exponent(g, 25.0, None), 1e6, 25.0), g)


def test_rram_write_and_read_noise_have_configured_std():
    dev = RRAMDevice(write_noise_std_us=0.4, read_noise_std_rel=0.02)
    g = torch.full((100_000,), 10.0, dtype=torch.float64)
    g_prog = dev.program(g, 10.0, torch.Generator().manual_seed(0))
    assert float((g_prog - g).std()) == pytest.approx(0.4, rel=0.03)
    torch.manual_seed(0)
    g_read = dev.read(g, torch.zeros_like(g), 0.0, 10.0)
    assert float(((g_read - g) / g).std()) == pytest.approx(0.02, rel=0.03)


def _programmed_conductances(fields, out_f=200, in_f=500):
    torch.manual_seed(0)
    lin = nn.Linear(in_f, out_f, bias=False)
    with torch.no_grad():
        lin.weight.uniform_(0.2, 0.8)
        lin.weight[0, 0] = 1.0
    am = to_analog(lin, {"tile_rows": in_f, "tile_cols": out_f, "mapping": "offset", **fields})
    return lin, am[0].tiles


def test_device_to_device_variation_is_multiplicative_with_configured_std():
    lin, tiles = _programmed_conductances({"variation": {"enabled": True, "std_rel": 0.05}})
    w = lin.weight.detach().double().T  # [rows, cols]
    target = (w / w.abs().max() + 1) / 2 * 25.0
    ratio = tiles.g_prog_us[0, 0, :, 0, 0, :].double() / target  # G of tile (0, 0): [rows, cols]
    assert float(ratio.std()) == pytest.approx(0.05, rel=0.03)
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.001)


def test_finite_conductance_levels_put_every_cell_on_the_level_grid():
    _, tiles = _programmed_conductances({"conductance_levels": 5, "g_min_us": 1.0, "g_max_us": 21.0})
    allowed = torch.tensor([1.0, 6.0, 11.0, 16.0, 21.0])
    g = tiles.g_prog_us.flatten()
    assert torch.isclose(g[:, None], allowed[None, :], atol=1e-5).any(1).all()


@pytest.mark.parametrize(
    "device", [{"name": "pcm"}, {"name": "rram", "read_noise_std_rel": 0.05, "drift_nu": 0.01}]
)
def test_crossbar_read_is_the_device_models_read_normalised(device):
    """What a layer reads (tiles.read_matrix) equals DeviceModel.read of the programmed cells
    at time t with the same noise draw, normalised to the span, G+ − G−."""
    from spikecim.analog.tiles import read_matrix

    torch.manual_seed(4)
    lin = nn.Linear(16, 8, bias=False)  # one tile, no padding cells
    cfg = CrossbarConfig(device=device, g_min_us=1.0, g_max_us=25.0)
    state = drift(to_analog(lin, cfg), 3600.0)[0].tiles
    torch.manual_seed(11)
    got = read_matrix(state, cfg)
    torch.manual_seed(11)
    g = cfg.device.read(state.g_prog_us, state.nu, 3600.0, cfg.g_max_us)  # [2, 1, R, 1, 1, C] µS
    expected = ((g[0] - g[1]) / (cfg.g_max_us - cfg.g_min_us)).view_as(got)
    assert torch.allclose(got.double(), expected.double(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(read_matrix(state, cfg), got)  # a fresh draw at every read


def test_drifted_tiles_hold_the_drift_formula_in_real_cells_and_g_min_without_noise_in_padding():
    """After drift, a layer whose last tiles are part padding (700 inputs on 64-row tiles,
    600 outputs on 48-column tiles): the real cells hold g_prog·((t + t0)/t0)^(−ν) in units of
    the span (the PCM drift of aihwkit's PCMLikeNoiseModel), the padding cells hold g_min and
    no read noise, so they add nothing to a column."""
    from spikecim.analog.tiles import program_tiles, set_time

    cfg = CrossbarConfig(device="pcm", g_min_us=2.0, g_max_us=25.0, tile_rows=64, tile_cols=48)
    state = set_time(program_tiles(torch.randn(600, 700), cfg, seed=5), cfg, 3600.0)
    P, n_in, R, n_out, S, C = state.grid
    rows = (torch.arange(n_in * R) < 700).view(1, n_in, R, 1, 1, 1)  # by hand: 11 tiles, 4 rows past
    cols = (torch.arange(n_out * C) < 600).view(1, 1, 1, n_out, 1, C)  # 13 tiles, 24 columns past
    real = (rows & cols).expand(P, n_in, R, n_out, S, C)
    assert (n_in * R - 700, n_out * C - 600) == (4, 24)
    t0 = cfg.device.t0_s
    g = state.g_prog_us.double() * ((3600.0 + t0) / t0) ** (-state.nu.double())
    span = cfg.g_max_us - cfg.g_min_us
    assert torch.allclose(state.g_drift_k.double()[real], (g / span)[real], rtol=1e-5, atol=0)
    assert (state.g_drift_k[~real] == cfg.g_min_us / span).all()
    assert (state.read_std_k[~real] == 0).all() and (state.read_std_k[real] > 0).any()
