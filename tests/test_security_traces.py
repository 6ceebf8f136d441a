"""Power traces, probe noise and countermeasures against hand computations."""

import numpy as np
import pytest
import torch
from torch import nn

from spikecim.analog import load_crossbar_config, to_analog
from spikecim.security.config import CountermeasureConfig, TraceConfig
from spikecim.security.countermeasures import inject_noise, shuffled_conv_forward
from spikecim.security.measure import record_traces
from spikecim.security.traces import Periphery, measure_noise
from spikecim.train.evaluate import ModelInput

V_READ = 0.2  # V, CrossbarConfig.v_read_v default
T_READ_NS = 4.0
# 3 inputs × 2 outputs; W[out, in]
W = [[0.5, -1.0, 0.25], [-0.5, 0.75, 1.0]]
X = [0.4, 1.0, 0.0]
# With max|W| = 1 and g_max = 25 µS, g_min = 0 (ideal device): G+ = 25·max(w, 0), G− = 25·max(−w, 0),
# so the devices of row i sum to 25·Σ_j |W[j][i]|: 25·(0.5 + 0.5), 25·(1.0 + 0.75), 25·(0.25 + 1.0).
ROW_G_US = [25.0, 43.75, 31.25]


def _trace(cfg: dict, x, encoding="amplitude", e_conversion_pj=0.0, cm=None):
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(W))
    xcfg = load_crossbar_config({"preset": "ideal", **cfg})
    model = to_analog(lin, xcfg)
    periphery = Periphery(e_conversion_pj, 0.0, T_READ_NS, "hand")
    tr = record_traces(
        model, torch.tensor([x]), ModelInput(None), xcfg, TraceConfig(encoding=encoding), periphery, cm
    )
    return tr.layers[0].reads_pj[0, 0, 0, :, 0]  # [bit reads] of the one read


def test_single_read_energy_is_sum_of_v_times_g_over_columns_and_both_devices():
    v = [V_READ * xi for xi in X]  # no DAC: the input voltage is x·v_read
    current_ua = v[0] * 25.0 + v[1] * 43.75 + v[2] * 31.25  # Σ_i V_i Σ_j (G+_ij + G−_ij)
    assert current_ua == pytest.approx(10.75)
    expected_pj = V_READ * current_ua * T_READ_NS * 1e-3  # supply rail at v_read, µA·V·ns = fJ
    got = _trace({}, X)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(expected_pj, rel=1e-6)


def test_dac_levels_set_the_amplitude_read():
    # 4-bit DAC: n = 7 levels, abs-max scaling by 1.0: k = round(0.4·7) = 3, 7, 0
    got = _trace({"dac": {"enabled": True, "bits": 4}}, X)
    expected = V_READ * (V_READ * 3 / 7 * 25.0 + V_READ * 1.0 * 43.75) * T_READ_NS * 1e-3
    assert got[0] == pytest.approx(expected, rel=1e-6)


def test_bit_serial_reads_one_bit_plane_at_a_time():
    # levels 3 = 0b011, 7 = 0b111, 0: plane 0 drives rows {0, 1}, plane 1 rows {0, 1}, plane 2 row {1}
    got = _trace({"dac": {"enabled": True, "bits": 4}}, X, encoding="bit_serial")
    unit = V_READ * V_READ * T_READ_NS * 1e-3
    expected = [unit * (25.0 + 43.75), unit * (25.0 + 43.75), unit * 43.75]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_each_tile_read_with_an_input_converts_every_column():
    # 2 output columns converted at 1 pJ each, on top of the crossbar's energy
    got = _trace({}, X, e_conversion_pj=1.0)
    crossbar = V_READ * 10.75 * T_READ_NS * 1e-3
    assert got[0] == pytest.approx(crossbar + 2 * 1.0, rel=1e-6)


def test_all_zero_inputs_draw_no_dynamic_energy():
    assert _trace({"dac": {"enabled": True, "bits": 4}}, [0.0, 0.0, 0.0], e_conversion_pj=1.0)[0] == 0.0
    assert (_trace({}, [0.0, 0.0, 0.0], "bit_serial", e_conversion_pj=1.0) == 0.0).all()


def test_balancing_gives_every_row_the_largest_row_conductance():
    got = _trace({}, X, cm=CountermeasureConfig(names=["balance"]))
    expected = V_READ * (V_READ * 0.4 + V_READ * 1.0) * 43.75 * T_READ_NS * 1e-3
    assert got[0] == pytest.approx(expected, rel=1e-6)


def test_ir_drop_read_of_one_cell_is_v_over_the_series_resistance():
    # one cell of 25 µS (40 kΩ) behind a 1 kΩ driver and a 1 kΩ sense amplifier: I = V / 42 kΩ
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    xcfg = load_crossbar_config(
        {
            "preset": "ideal",
            "ir_drop": {"enabled": True, "r_wire_ohm": 0.0, "r_driver_ohm": 1e3, "r_sense_ohm": 1e3},
        }
    )
    model = to_analog(lin, xcfg)
    tr = record_traces(
        model, torch.ones(1, 1), ModelInput(None), xcfg, TraceConfig(), Periphery(0.0, 0.0, T_READ_NS, "hand")
    )
    current_ua = V_READ / 42e3 * 1e6
    assert tr.layers[0].reads_pj[0, 0, 0, 0, 0] == pytest.approx(
        V_READ * current_ua * T_READ_NS * 1e-3, rel=1e-6
    )


def test_probe_noise_has_the_requested_sigma():
    samples = np.full((200, 1, 500), 3.0)
    noisy = measure_noise(samples, 0.2, np.random.default_rng(0), full_scale=10.0)
    # σ = 0.2·10 = 2; the sample variance of 1e5 draws lies within 2 % of σ² = 4 (its SE is √(2/N) ≈ 0.45 %)
    assert np.var(noisy - samples) == pytest.approx(4.0, rel=0.02)
    assert np.mean(noisy) == pytest.approx(3.0, abs=0.02)


def test_probe_quantisation_rounds_to_its_steps():
    samples = np.array([[[0.0, 0.26, 0.5, 0.74, 1.2]]])
    got = measure_noise(samples, 0.0, np.random.default_rng(0), probe_bits=2, full_scale=1.0)
    np.testing.assert_allclose(got[0, 0], [0.0, 1 / 3, 2 / 3, 2 / 3, 1.0])  # 3 steps over [0, 1], clipped


def test_injected_dummy_current_has_the_requested_sigma():
    reads = np.full((400, 1, 250, 1, 1), 5.0)
    rows, unit = np.array([64.0]), 0.01
    out, g_d = inject_noise(reads, 0.1, np.array([7.0]), rows, unit, np.random.default_rng(1))
    # Binomial(64, 1/2) bits through g_d: σ = unit·g_d·√64/2, requested 0.1 × the tile's largest read (7 pJ)
    assert unit * g_d[0] * 8 / 2 == pytest.approx(0.7)
    assert np.std(out - reads) == pytest.approx(0.7, rel=0.02)


def test_the_dummy_column_is_sized_on_the_crossbar_not_on_the_inputs_recorded():
    """g_d is hardware: the tile's largest read is every row at full scale, here
    v_read²·t_read·Σ_i G_i over the three rows (ROW_G_US), whatever inputs are recorded."""
    cm = CountermeasureConfig(names=["noise_injection"], noise_injection_level=0.1)
    unit = V_READ**2 * T_READ_NS * 1e-3  # pJ per µS of a full-scale row
    top = unit * sum(ROW_G_US)
    for x in (X, [0.1, 0.0, 0.2]):
        lin = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W))
        xcfg = load_crossbar_config({"preset": "ideal"})
        tr = record_traces(
            to_analog(lin, xcfg), torch.tensor([x]), ModelInput(None), xcfg, TraceConfig(),
            Periphery(0.0, 0.0, T_READ_NS, "hand"), cm,
        )  # fmt: skip
        (g_d,) = tr.layers[0].info["g_extra_us"]
        assert unit * g_d * np.sqrt(3) / 2 == pytest.approx(0.1 * top)  # σ of Binomial(3, 1/2) bits


def test_shuffled_reads_give_exactly_the_same_conv_outputs():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    cfg = {"preset": "ideal", "dac": {"enabled": True, "bits": 7}, "adc": {"enabled": True, "bits": 9}}
    layer = to_analog(conv, cfg)[0]
    x = torch.rand(4, 2, 6, 6)
    with torch.no_grad():
        direct = layer(x)
        shuffled = shuffled_conv_forward(layer, x, torch.Generator().manual_seed(3))
    assert torch.equal(direct, shuffled)


@pytest.mark.parametrize(
    ("dac", "binary"), [(False, False), (True, True), (True, False)], ids=["no-dac", "spikes", "dac-levels"]
)
def test_conv_window_reads_match_a_brute_force_sum_over_each_window(dac, binary):
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    cfg = {"preset": "ideal", "dac": {"enabled": dac, "bits": 5}}
    xcfg = load_crossbar_config(cfg)
    model = nn.Sequential(conv)
    analog = to_analog(model, xcfg)
    x = (torch.rand(2, 2, 5, 5) > 0.5).float() if binary else torch.rand(2, 2, 5, 5)
    tr = record_traces(
        analog, x, ModelInput(None), xcfg, TraceConfig(), Periphery(0.0, 0.0, T_READ_NS, "hand")
    )
    w = conv.weight.detach().reshape(3, -1).double()
    g_row = 25.0 * w.abs().sum(0) / w.abs().max()  # ideal device: G+ + G− = 25 µS·|w|/max|w| per cell
    windows = nn.functional.unfold(x.double(), 3, padding=1)  # [N, 18, 25]
    if dac:  # abs-max per window, 4 magnitude bits: levels round(x/s·15)/15 (binary windows stay 0/1)
        s = windows.abs().amax(1, keepdim=True).clamp(min=1e-30)
        s = torch.where(windows.abs().amax(1, keepdim=True) > 0, s, torch.ones_like(s))
        windows = torch.round(windows / s * 15) / 15
    expected = torch.einsum("nil,i->nl", windows, g_row) * V_READ * V_READ * T_READ_NS * 1e-3
    np.testing.assert_allclose(tr.layers[0].reads_pj[:, 0, :, 0, 0], expected.numpy(), rtol=1e-5)
    assert tr.layers[0].map_shape == (5, 5)


def test_shuffle_and_noise_injection_costs_count_table_entries():
    from spikecim.hw.arch import load_architecture
    from spikecim.security.countermeasures import overhead

    p = load_architecture("imc-rram-65nm").p
    layer = {"reads": 64, "steps": 4, "rows": 9, "g_extra_us": [60.0], "g_max_us": 25.0, "row_activity": 0.5}
    cm = CountermeasureConfig()
    shuffle = overhead("shuffle", [layer], p, cm)
    assert shuffle["energy_pj"] == pytest.approx(4 * 64 * 6 * p.e_sram_bit_pj)  # a 6-bit index per read
    assert shuffle["area_um2"] == pytest.approx(64 * 6 * p.a_sram_bit_um2)  # the permutation table
    noise = overhead("noise_injection", [layer], p, cm)
    # g_d = 60 µS needs ⌈60/25⌉ = 3 columns of 9 cells; half the cells are driven at each read
    assert noise["area_um2"] == pytest.approx(27 * p.a_cell_um2)
    assert noise["energy_pj"] == pytest.approx(4 * 64 * 27 * 0.5 * p.e_cell_read_pj)
    assert noise["latency_ns"] == 0.0


def test_noise_injection_and_balance_columns_are_driven_at_every_bit_serial_read():
    from spikecim.hw.arch import load_architecture
    from spikecim.security.countermeasures import overhead

    p = load_architecture("imc-rram-65nm").p
    layer = {"reads": 64, "steps": 4, "rows": 9, "g_extra_us": [60.0], "g_max_us": 25.0, "row_activity": 0.5,
             "bit_reads": 7}  # fmt: skip
    cm = CountermeasureConfig()
    # hand count: 64 reads × 4 steps × 7 bit planes, 3 columns of 9 cells, half of them driven
    assert overhead("noise_injection", [layer], p, cm)["energy_pj"] == pytest.approx(
        4 * 64 * 7 * 27 * 0.5 * p.e_cell_read_pj
    )
    assert overhead("balance", [layer], p, cm)["energy_pj"] == pytest.approx(
        4 * 64 * 7 * 27 * 0.5 * p.e_cell_read_pj
    )


def test_shuffle_draws_one_order_per_inference_for_all_its_steps():
    from spikecim.security.countermeasures import shuffle_reads

    reads = np.broadcast_to(np.arange(3 * 50, dtype=float).reshape(3, 1, 50, 1, 1), (3, 4, 50, 1, 1))
    out = shuffle_reads(reads, np.random.default_rng(0))
    for n in range(3):
        assert sorted(out[n, 0, :, 0, 0]) == list(reads[n, 0, :, 0, 0])  # a permutation of the sample's reads
        assert not np.array_equal(out[n, 0], reads[n, 0])
        for t in range(1, 4):  # the same order at every step of the inference
            assert np.array_equal(out[n, t], out[n, 0])
    assert not np.array_equal(out[0, 0, :, 0, 0] - 0, out[1, 0, :, 0, 0] - 50)  # another order per sample


def test_dummy_reads_of_analog_inputs_with_the_dac_off_are_analog_levels_not_bits():
    """The convolution's fast path reads its inputs as levels when the DAC is off; its dummy
    reads are then uniform levels (many distinct energies), bits only for binary inputs."""
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    xcfg = load_crossbar_config({"preset": "ideal"})
    model = to_analog(conv, xcfg)
    periphery = Periphery(0.0, 0.0, T_READ_NS, "hand")
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    cm = CountermeasureConfig(names=["dummy_reads"], dummy_read_fraction=1.0)
    for inputs, most in ((x, None), ((x > 0.5).float(), 2**9)):
        tr = record_traces(model, inputs, ModelInput(None), xcfg, TraceConfig(), periphery, cm)
        energies = np.unique(tr.layers[0].reads_pj.round(9))
        if most is None:  # 36 windows of real levels and 36 of uniform random levels
            assert len(energies) > 60
        else:  # binary windows: at most one energy per on/off pattern of the 9 taps
            assert len(energies) <= most


def test_tokens_read_by_a_linear_layer_are_reads_of_their_step_not_extra_steps():
    # a transformer's linear layer reads [T, N, S, in]: at each of T = 2 steps, S = 2 token reads
    tokens = [X, [1.0, 0.0, 0.5]]
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(W))
    xcfg = load_crossbar_config({"preset": "ideal"})
    periphery = Periphery(0.0, 0.0, T_READ_NS, "hand")
    tr = record_traces(
        to_analog(lin, xcfg), torch.tensor([tokens]), ModelInput(2), xcfg, TraceConfig(), periphery
    )
    reads = tr.layers[0].reads_pj
    assert reads.shape == (1, 2, 2, 1, 1)  # [N, T, reads, bit reads, tiles]
    unit = V_READ * V_READ * T_READ_NS * 1e-3
    hand = [unit * sum(x * g for x, g in zip(token, ROW_G_US, strict=True)) for token in tokens]
    for t in range(2):  # direct encoding: the same tokens at every step
        np.testing.assert_allclose(reads[0, t, :, 0, 0], hand, rtol=1e-6)


def test_the_same_seed_gives_the_same_traces_behind_a_noisy_layer_whatever_the_global_state():
    """The second layer reads the first one's noisy outputs: its traces follow the read noise,
    which ``seed`` fixes, and the caller's global generator is left as it was."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    xcfg = load_crossbar_config("pcm-aihwkit")
    analog = to_analog(model, xcfg, seed=0).eval()
    x = torch.rand(5, 8, generator=torch.Generator().manual_seed(1))
    periphery = Periphery(0.0, 0.0, T_READ_NS, "hand")

    def second_layer(seed: int, global_seed: int) -> np.ndarray:
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        tr = record_traces(analog, x, ModelInput(None), xcfg, TraceConfig(), periphery, seed=seed)
        assert torch.equal(torch.get_rng_state(), before)
        return tr.layers[1].reads_pj

    first = second_layer(seed=3, global_seed=10)
    np.testing.assert_array_equal(second_layer(seed=3, global_seed=11), first)
    assert not np.array_equal(second_layer(seed=4, global_seed=10), first)  # the noise is there
