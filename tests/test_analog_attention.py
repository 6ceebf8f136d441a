"""Attention on crossbars: products of two activations written at run time (write noise,
ClipFormer, SRAM), and the cost of their writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spikecim import ops
from spikecim.analog import load_crossbar_config, to_analog, to_digital
from spikecim.analog.dynamic import AnalogMatMul, write_noise
from spikecim.errors import SpikecimError
from spikecim.hw.arch import load_architecture
from spikecim.hw.estimators import get_estimator
from spikecim.trace import trace


class TinyAttention(nn.Module):
    """One encoder's multi-head softmax attention on tokens ``[..., S, D]``: Linear q, k, v, o,
    MatMul ``qk`` (K written) and ``av`` (V written), Softmax; mean over tokens, a classifier."""

    def __init__(self, dim: int = 8, heads: int = 2, classes: int = 3):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.qk, self.av = ops.MatMul(), ops.MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.head = nn.Linear(dim, classes)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)  # [..., H, S, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = self.qk(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = self.av(self.softmax(scores), v).transpose(-3, -2).flatten(-2)
        return self.head(self.o(out).mean(-2))


@pytest.fixture(scope="module")
def model() -> TinyAttention:
    torch.manual_seed(0)
    return TinyAttention().eval()


def _x(*lead: int) -> torch.Tensor:
    return torch.randn(*lead, 5, 8, generator=torch.Generator().manual_seed(1))


def _cfg(**dynamic) -> dict:
    return {"preset": "ideal", "dynamic": {"unit": "crossbar", **dynamic}}


def test_ideal_analog_attention_equals_the_digital_model(model):
    x = _x(4)
    am = to_analog(model, _cfg())
    assert isinstance(am.qk, AnalogMatMul) and isinstance(am.av, AnalogMatMul)
    with torch.no_grad():
        assert torch.allclose(am(x), model(x), atol=1e-5)


def test_ideal_written_crossbar_equals_a_matmul_tiled_offset_and_broadcast():
    a, b = torch.randn(2, 3, 6, 7), torch.randn(3, 7, 5)
    for fields in ({"tile_rows": 3, "tile_cols": 2}, {"mapping": "offset"}):
        layer = AnalogMatMul(load_crossbar_config({"preset": "ideal", **fields}), "crossbar")
        assert torch.allclose(layer(a, b), a @ b, atol=1e-5)


def test_digital_unit_leaves_the_matmul_and_operators_choose_their_unit(model):
    assert isinstance(to_analog(model, "ideal").qk, ops.MatMul)
    am = to_analog(model, _cfg(operators={"qk": "digital", "av": "sram"}))
    assert type(am.qk) is ops.MatMul and am.av.unit == "sram"
    back = to_digital(am)
    assert type(back.av) is ops.MatMul and type(back.q) is nn.Linear


def test_an_operator_name_that_matches_no_matmul_is_refused_in_one_line(model):
    with pytest.raises(SpikecimError, match=r"analog.dynamic.operators: 'kv' names no MatMul") as e:
        to_analog(model, _cfg(operators={"kv": "digital"}))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("field", "value"), [("alpha", 0.5), ("beta", 0.0), ("beta", 1.5), ("shift", "half")]
)
def test_clipformer_bounds_are_checked_naming_the_field(field, value):
    with pytest.raises(SpikecimError, match=f"dynamic.clipformer.{field}"):
        load_crossbar_config(_cfg(clipformer={field: value}))


def test_write_noise_mean_and_variance_follow_the_txsim_formula():
    """G' = G + γ·sqrt((G − G_min)(G_max − G_min))·N(0, σ²): per written G, over 1e5 draws,
    mean G and variance γ²σ²(G − G_min)(G_max − G_min). Drawn through the layer's write."""
    g_min, g_max, gamma, sigma, n = 1.0, 10.0, 3.0, 0.05, 100_000
    cfg = load_crossbar_config(
        {
            "g_min_us": g_min,
            "g_max_us": g_max,
            "dynamic": {"unit": "crossbar", "write_noise_gamma": gamma, "write_noise_sigma": sigma},
        }
    )
    targets = torch.tensor([0.0, 0.25, 0.5, 1.0])  # levels; max|b| = 1 so they are the weights
    b = targets.repeat(n).view(1, 1, -1)  # one row of 4e5 columns, one tile
    torch.manual_seed(0)
    g, _, _ = AnalogMatMul(cfg.with_updates(tile_cols=b.shape[-1]), "crossbar").conductances(b)
    g_pos = g[0, 0].reshape(n, 4)  # G+ of each column; G− sit at G_min (weights ≥ 0)
    for j, level in enumerate(targets.tolist()):
        G = g_min + level * (g_max - g_min)
        var = gamma**2 * sigma**2 * (G - g_min) * (g_max - g_min)
        col = g_pos[:, j].double()
        assert abs(col.mean().item() - G) < 5 * math.sqrt(var / n) + 1e-9
        assert col.var().item() == pytest.approx(var, rel=0.03, abs=1e-12)
    assert torch.equal(g[1], torch.full_like(g[1], g_min))  # at G_min the noise vanishes


def test_clipformer_transforms_the_entries_before_the_write_so_clipped_cells_draw_less_noise():
    """ClipFormer on K/V before they are written: an entry at G_max clipped to β·G_max is
    written there, so its write noise has the TxSim variance at β·G_max, not at G_max."""
    g_min, g_max, gamma, sigma, beta, n = 0.0, 10.0, 3.0, 0.05, 0.5, 100_000
    cfg = load_crossbar_config(
        {
            "g_min_us": g_min,
            "g_max_us": g_max,
            "tile_cols": n,
            "dynamic": {
                "unit": "crossbar",
                "write_noise_gamma": gamma,
                "write_noise_sigma": sigma,
                "clipformer": {"enabled": True, "alpha": 1.0, "beta": beta},
            },
        }
    )
    torch.manual_seed(0)
    g, _, _ = AnalogMatMul(cfg, "crossbar").conductances(torch.ones(1, 1, n))
    col = g[0, 0].flatten().double()
    G = beta * g_max
    var = gamma**2 * sigma**2 * (G - g_min) * (g_max - g_min)
    assert abs(col.mean().item() - G) < 5 * math.sqrt(var / n)
    assert col.var().item() == pytest.approx(var, rel=0.03)


def test_calibrated_operand_range_without_calibration_samples_is_refused_by_monte_carlo(model):
    from spikecim.analog.evaluate import monte_carlo

    am = to_analog(model, _cfg(operand_range="calibrated"))
    with pytest.raises(SpikecimError, match="calibration_samples.*dynamic.operand_range"):
        monte_carlo(am, _x(4), torch.zeros(4, dtype=torch.long), [0])


def test_write_noise_draws_nothing_at_gamma_zero():
    u = torch.linspace(0, 1, 11)
    assert torch.equal(write_noise(u, 0.0, 1.0, 0.0), u)


def test_clipformer_with_alpha_one_and_beta_one_is_the_identity(model):
    """With G_min = 0 the shift max(G − 1·G_min, G_min) and the clip min(G, 1·G_max) leave every
    written conductance (in [G_min, G_max]) where it is."""
    x = _x(3)
    plain = to_analog(model, _cfg())
    clipped = to_analog(model, _cfg(clipformer={"enabled": True, "alpha": 1.0, "beta": 1.0}))
    with torch.no_grad():
        assert torch.equal(clipped(x), plain(x))


def test_clipformer_shifts_by_alpha_gmin_and_clips_at_beta_gmax():
    cfg = load_crossbar_config(
        {
            "g_min_us": 1.0,
            "g_max_us": 9.0,
            "dynamic": {"unit": "crossbar", "clipformer": {"enabled": True, "alpha": 2.0, "beta": 0.5}},
        }
    )
    b = torch.tensor([[[1.0, 0.5, 0.25, 0.0]]])  # G = 9, 5, 3, 1 µS before ClipFormer
    g, _, _ = AnalogMatMul(cfg, "crossbar").conductances(b)
    # max(G − (2 − 1)·1, 1) = 8, 4, 2, 1; then min(·, 0.5·9)
    assert g[0, 0].flatten().tolist() == [4.5, 4.0, 2.0, 1.0]


def test_clipformer_paper_shift_moves_by_alpha_gmin_and_clips_at_beta_gmax():
    """``shift: alpha``, the paper's formula as printed: G ← max(G − α·G_min, G_min)."""
    cfg = load_crossbar_config(
        {
            "g_min_us": 1.0,
            "g_max_us": 9.0,
            "dynamic": {
                "unit": "crossbar",
                "clipformer": {"enabled": True, "alpha": 2.0, "beta": 0.5, "shift": "alpha"},
            },
        }
    )
    b = torch.tensor([[[1.0, 0.5, 0.25, 0.125, 0.0]]])  # G = 9, 5, 3, 2, 1 µS before ClipFormer
    g, _, _ = AnalogMatMul(cfg, "crossbar").conductances(b)
    # max(G − 2·1, 1) = 7, 3, 1, 1, 1; then min(·, 0.5·9)
    assert g[0, 0].flatten().tolist() == [4.5, 3.0, 1.0, 1.0, 1.0]


def test_clipformer_paper_shift_at_alpha_one_beta_one_still_moves_every_entry_by_gmin():
    """The paper's form has no identity for α ≥ 1: α = 1 lowers every entry above G_min by
    G_min (entries below 2·G_min to G_min); the default form leaves them (test above)."""
    on = {"enabled": True, "alpha": 1.0, "beta": 1.0, "shift": "alpha"}
    cfg = {"g_min_us": 1.0, "g_max_us": 9.0, "dynamic": {"unit": "crossbar", "clipformer": on}}
    b = torch.tensor([[[1.0, 0.5, 0.25, 0.0]]])  # G = 9, 5, 3, 1 µS
    g, _, _ = AnalogMatMul(load_crossbar_config(cfg), "crossbar").conductances(b)
    assert g[0, 0].flatten().tolist() == [8.0, 4.0, 2.0, 1.0]


@pytest.mark.parametrize(
    ("clip", "digits"),
    [(None, [3, 3, 3, 1]), (0.5, [3, 3, 3, 0]), (0.25, [3, 3, 1, 0])],
)
def test_clipformer_clip_empties_the_top_cells_of_a_bit_sliced_entry(clip, digits):
    """ClipFormer's setup (R_on 100 kΩ, on/off 100: G = 0.1–10 µS; signed 8 bits, 2-bit
    cells): the largest entry is 127 = 1·64 + 3·16 + 3·4 + 3. Clipped at β·G_max (after the
    shift by (α − 1)·G_min = 0.1 µS), u = (β·10 − 0.1)/9.9, i.e. round(127·u) = 63 = 0·64 +
    3·16 + 3·4 + 3 at β = 0.5 and 31 = 1·16 + 3·4 + 3 at β = 0.25: the top cell at G_min."""
    dynamic = {"unit": "crossbar"}
    if clip is not None:
        dynamic["clipformer"] = {"enabled": True, "alpha": 2.0, "beta": clip}
    cfg = load_crossbar_config(
        {"r_on_ohm": 1e5, "r_off_ohm": 1e7, "weight_bits": 8, "bits_per_cell": 2, "dynamic": dynamic}
    )
    g, _, _ = AnalogMatMul(cfg, "crossbar").conductances(torch.ones(1, 1, 1))
    expected = [0.1 + d / 3 * 9.9 for d in digits]  # least significant cell first
    assert g[0].flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_clipformer_with_alpha_one_and_beta_one_is_the_identity_for_gmin_above_zero():
    cfg = {"g_min_us": 1.0, "g_max_us": 9.0, "dynamic": {"unit": "crossbar"}}
    b = torch.tensor([[[1.0, 0.5, 0.25, 0.0]]])  # G = 1 + 8·(1, 0.5, 0.25, 0) µS
    on = {**cfg, "dynamic": {"unit": "crossbar", "clipformer": {"enabled": True, "alpha": 1.0, "beta": 1.0}}}
    g, _, _ = AnalogMatMul(load_crossbar_config(on), "crossbar").conductances(b)
    assert g[0, 0].flatten().tolist() == [9.0, 5.0, 3.0, 1.0]


class _SelfProduct(nn.Module):
    """x @ xᵀ: the written operand is xᵀ."""

    def __init__(self):
        super().__init__()
        self.mm = ops.MatMul()

    def forward(self, x):
        return self.mm(x, x.transpose(-2, -1))


@pytest.mark.parametrize("pct", [100.0, 50.0])
def test_calibrated_operand_range_is_the_percentile_of_the_written_entries(pct):
    from spikecim.analog import calibrate_adc

    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(2, 3, 4, generator=g), 3 * torch.randn(1, 3, 4, generator=g)]
    cfg = _cfg(operand_range="calibrated", operand_percentile=pct)
    am = to_analog(_SelfProduct(), cfg)
    calibrate_adc(am, batches)
    entries = torch.cat([b.abs().flatten() for b in batches]).numpy()
    want = entries.max() if pct == 100 else np.percentile(entries, pct)
    assert am.mm.operand_bound == pytest.approx(float(want), rel=1e-6)


def test_calibrated_operand_range_maps_entries_by_the_fixed_range_and_saturates_beyond():
    cfg = load_crossbar_config(
        {"g_min_us": 1.0, "g_max_us": 9.0, "dynamic": {"unit": "crossbar", "operand_range": "calibrated"}}
    )
    layer = AnalogMatMul(cfg, "crossbar")
    layer.operand_bound = 2.0
    b = torch.tensor([[[1.0, 0.5, 0.0, 4.0]]])  # |b|/2 = 0.5, 0.25, 0, 1 (4 saturates at G_max)
    g, _, _ = layer.conductances(b)
    assert g[0, 0].flatten().tolist() == [5.0, 3.0, 1.0, 9.0]


def test_calibrated_operand_range_without_calibration_is_refused_in_one_line():
    layer = AnalogMatMul(load_crossbar_config(_cfg(operand_range="calibrated")), "crossbar")
    with pytest.raises(SpikecimError, match="dynamic.operand_range"):
        layer(torch.randn(2, 3), torch.randn(3, 2))


def test_ideal_analog_vit_tiny_with_written_products_equals_the_digital_model():
    from spikecim.models import create_model

    torch.manual_seed(0)
    vit = create_model("vit-tiny", spiking=False, num_classes=10, in_channels=1, input_size=8).eval()
    x = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(5))  # [T, B, C, H, W]
    am = to_analog(vit, _cfg())
    assert len([m for m in am.modules() if isinstance(m, AnalogMatMul)]) >= 4
    with torch.no_grad():
        assert torch.allclose(am(x), vit(x), atol=1e-5)


def test_sram_unit_has_no_write_noise_and_the_crossbar_has():
    a, b = torch.randn(2, 4, 6), torch.randn(2, 6, 3)
    noisy = _cfg(write_noise_gamma=5.0, write_noise_sigma=0.1)
    sram = AnalogMatMul(load_crossbar_config(noisy), "sram")
    xbar = AnalogMatMul(load_crossbar_config(noisy), "crossbar")
    torch.manual_seed(0)
    assert torch.allclose(sram(a, b), a @ b, atol=1e-5)
    assert not torch.allclose(xbar(a, b), a @ b, atol=1e-2)


def test_gradient_reaches_both_operands_through_the_written_crossbar():
    layer = AnalogMatMul(load_crossbar_config(_cfg(write_noise_gamma=3.0)), "crossbar")
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(4, 2, requires_grad=True)
    layer(a, b).sum().backward()
    # d(Σ a@b)/da = row sums of b, d/db = column sums of a (the straight-through gradient)
    assert torch.allclose(a.grad, b.detach().sum(1).expand(3, 4))
    assert torch.allclose(b.grad, a.detach().sum(0)[:, None].expand(4, 2))


# ---- the cost of the writes ---------------------------------------------------------------


def test_crossbar_writes_of_one_encoder_equal_a_hand_count(model):
    """S = 5 tokens, D = 8, 2 heads of d = 4: Q·Kᵀ writes Kᵀ (d × S per head), A·V writes
    V (S × d per head): 2·4·5 + 2·5·4 = 80 cells per sample per step."""
    w = trace(model, [_x(1, 2)])
    by_name = {layer.name: layer for layer in w.layers}
    assert by_name["qk"].cell_writes_per_step == 2 * 4 * 5
    assert by_name["av"].cell_writes_per_step == 2 * 5 * 4
    assert sum(layer.cell_writes_per_step for layer in w.layers) == 80


def test_write_energy_is_the_hand_count_times_the_tables_cell_write_energy(model):
    w = trace(model, [_x(1, 2)])
    table = load_architecture("imc-rram-65nm").params  # the YAML's numbers
    # float32 operands stored with at most max_weight_bits, bits_per_cell per cell
    slices = math.ceil(min(32, table["max_weight_bits"]) / table["bits_per_cell"])
    est = get_estimator("imc")
    p = est.Params.model_validate(table)
    writes = {layer.name: est.layer_energy_pj(layer, w, p, False).get("write", 0.0) for layer in w.layers}
    assert writes["qk"] == pytest.approx(2 * 4 * 5 * slices * table["e_cell_write_pj"])
    assert writes["av"] == pytest.approx(2 * 5 * 4 * slices * table["e_cell_write_pj"])
    assert writes["q"] == 0.0


# ---- the γ sweep ----------------------------------------------------------------------------


def test_write_noise_sweep_at_gamma_zero_gives_the_digital_accuracy_and_collapses_at_large_gamma(model):
    from spikecim.analog.write_sweep import write_noise_sweep
    from spikecim.train.evaluate import ModelInput

    x = _x(64)
    with torch.no_grad():
        y = model(x).argmax(-1)  # labels the digital model gets all right
    y[:16] = (y[:16] + 1) % 3  # and a quarter wrong: digital accuracy 0.75 by construction
    cfg = load_crossbar_config({"preset": "ideal", "dynamic": {"write_noise_sigma": 1.0}})
    out = write_noise_sweep({"plain": model}, x, y, cfg, [0.0, 50.0], [0, 1], ModelInput(None))
    assert out["gamma"] == [0.0, 50.0]
    off, on = out["curves"]
    assert (off["clipformer"], on["clipformer"]) == (False, True)
    assert off["mean"][0] == pytest.approx(0.75)
    assert off["mean"][1] < 0.75  # γ·σ = 50: the written K and V are mostly noise


def test_the_sweep_refuses_a_model_without_a_product_of_activations():
    from spikecim.analog.write_sweep import write_noise_sweep
    from spikecim.train.evaluate import ModelInput

    with pytest.raises(SpikecimError, match="has no MatMul"):
        write_noise_sweep(
            {"plain": nn.Linear(8, 3)},
            _x(2)[:, 0],
            torch.zeros(2),
            load_crossbar_config("ideal"),
            [1.0],
            [0],
            ModelInput(None),
        )


def test_softmax_is_traced_as_digital_work_with_its_element_count(model):
    """2 heads × 5 queries × 5 keys = 50 softmax outputs per sample, rows of 5 keys."""
    w = trace(model, [_x(1, 2)])
    (sm,) = w.digital
    assert (sm.name, sm.kind, sm.elements, sm.row_length, sm.timesteps) == ("softmax", "softmax", 50, 5, 1)


def test_layernorm_and_gelu_are_traced_with_their_rows_at_every_step():
    net = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU())
    w = trace(net, [torch.randn(2, 3, 5, 8)])  # T = 2 steps, 5 tokens of 8 features
    ln, gelu = w.digital
    assert (ln.kind, ln.elements, ln.row_length, ln.timesteps) == ("layernorm", 40, 8, 2)
    assert (gelu.kind, gelu.elements, gelu.row_length, gelu.timesteps) == ("gelu", 40, 1, 2)


def _units_table() -> dict:
    from spikecim.hw.exit_unit import UNITS_DIR
    from spikecim.readers import read_mapping

    return read_mapping(UNITS_DIR / "digital-unit-45nm.yaml", "unit")["params"]


def test_softmax_energy_on_the_digital_unit_is_the_hand_count_times_the_tables_energies(model):
    from spikecim.hw.estimate import estimate

    u = _units_table()
    # 10 rows of 5: max 4 compares per row, 5 subtractions + 4 adds of the sum per row,
    # 50 exp, 50 scalings, 10 reciprocals
    hand = (
        40 * u["e_compare_pj"]
        + 90 * u["e_add_pj"]
        + 50 * u["e_exp_pj"]
        + 50 * u["e_mult_pj"]
        + 10 * u["e_div_pj"]
    )
    report = estimate(trace(model, [_x(1, 2)]), "imc-rram-65nm")
    (row,) = [r for r in report.layers if r.kind == "softmax"]
    assert row.energy_pj == {"digital_unit": pytest.approx(hand)}


def test_written_cells_wear_once_per_step_and_the_lifetime_follows_the_tables_endurance(model):
    from spikecim.hw.estimate import estimate

    table = load_architecture("imc-rram-65nm").params
    report = estimate(trace(model, [_x(2, 2)]), "imc-rram-65nm")  # T = 2 steps
    assert report.extras["writes_per_cell_per_inference"] == 2
    assert report.extras["cell_writes_per_inference"] == 2 * 80 * 8  # 80 entries, 8 one-bit slices
    assert report.extras["lifetime_s"] == pytest.approx(
        table["endurance_cycles"] / (2 * table["inference_rate_hz"])
    )


def test_dynamic_products_on_sram_cim_cost_sram_writes_and_never_wear_out(model):
    from spikecim.hw.estimate import estimate

    sram = load_architecture("imc-sram-65nm").params
    arch = load_architecture("imc-rram-65nm").model_copy(update={"dynamic_products": "imc-sram-65nm"})
    report = estimate(trace(model, [_x(1, 2)]), arch)
    rows = {r.name: r for r in report.layers}
    slices = math.ceil(min(8, sram["max_weight_bits"]) / sram["bits_per_cell"])
    assert rows["qk"].energy_pj["write"] == pytest.approx(40 * slices * sram["e_cell_write_pj"])
    assert "lifetime_s" not in report.extras  # SRAM: no endurance limit


def test_dynamic_products_on_a_table_whose_estimator_has_no_matmul_are_listed_as_not_costed(model):
    from spikecim.hw.estimate import estimate

    workload = trace(model, [_x(1, 2)])
    arch = load_architecture("imc-rram-65nm").model_copy(update={"dynamic_products": "spikesim-rram-65nm"})
    report = estimate(workload, arch)
    rows = {r.name: r for r in report.layers}
    for name in ("qk", "av"):  # the SpikeSim script has no product of two activations
        assert rows[name].skipped and rows[name].total_energy_pj == 0 and rows[name].latency_ns == 0
    assert any(n.endswith("its estimator spikesim does not model them: not costed") for n in report.notes)
    assert not any(k.startswith("dynamic_") for k in report.extras)
    alone = {r.name: r for r in estimate(workload, "imc-rram-65nm").layers}
    others = [n for n in alone if n not in ("qk", "av")]
    assert report.energy_pj == pytest.approx(sum(alone[n].total_energy_pj for n in others))


def test_dynamic_products_on_the_digital_unit_cost_a_multiply_and_an_add_per_mac(model):
    from spikecim.hw.estimate import estimate

    u = _units_table()
    arch = load_architecture("imc-rram-65nm").model_copy(update={"dynamic_products": "digital"})
    rows = {r.name: r for r in estimate(trace(model, [_x(1, 2)]), arch).layers}
    macs = 2 * 5 * 4 * 5  # heads × queries × d × keys
    assert rows["qk"].energy_pj == {"digital_unit": pytest.approx(macs * (u["e_mult_pj"] + u["e_add_pj"]))}


def test_the_cost_by_part_puts_each_row_in_its_part_and_writes_apart(model, tmp_path):
    from spikecim.hw.estimate import estimate
    from spikecim.pipeline.results import HardwareResult
    from spikecim.pipeline.stage_hardware import hardware_parts_section

    report = estimate(trace(model, [_x(1, 2)]), "imc-rram-65nm")
    parts = report.by_part()
    rows = {r.name: r for r in report.layers}
    assert list(parts) == ["projections", "dynamic products", "writes", "softmax/LN/GELU", "other"]
    proj = sum(rows[n].total_energy_pj for n in ("q", "k", "v", "o"))
    assert parts["projections"]["energy_pj"] == pytest.approx(proj)
    writes = rows["qk"].energy_pj["write"] + rows["av"].energy_pj["write"]
    assert parts["writes"]["energy_pj"] == pytest.approx(writes)
    dyn = rows["qk"].total_energy_pj + rows["av"].total_energy_pj - writes
    assert parts["dynamic products"]["energy_pj"] == pytest.approx(dyn)
    assert parts["other"]["energy_pj"] == pytest.approx(rows["head"].total_energy_pj)
    report.save(tmp_path / "hardware" / "ann_imc.json")
    result = HardwareResult(files={"reports": {"ann": {"imc": "hardware/ann_imc.json"}}})
    html = hardware_parts_section(result, tmp_path)
    assert "<td>writes</td>" in html and "days" in html


def test_mlp_and_attention_linear_layers_are_told_apart_by_name():
    from spikecim.hw.breakdown import part_of

    assert part_of("blocks.0.mlp.fc1", "linear") == "MLP"
    assert part_of("blocks.0.attn.qkv", "linear") == "projections"
    assert part_of("blocks.0.attn.qk", "matmul") == "dynamic products"
    assert part_of("patch_embed.proj", "conv2d") == "other"


def test_one_written_cell_per_entry_equals_the_differential_pair():
    """Where the idle cell of a pair sits at G_min (which no write noise, ClipFormer or read
    noise there moves), the forward writes one cell with the entry's sign: G+ − G− of the
    full pair, here with ClipFormer and 8-bit weights in 2-bit slices."""
    cfg = load_crossbar_config(
        {
            "g_min_us": 0.5,
            "g_max_us": 10.0,
            "weight_bits": 8,
            "bits_per_cell": 2,
            "dynamic": {"unit": "crossbar", "clipformer": {"enabled": True, "alpha": 2.0, "beta": 0.5}},
        }
    )
    layer = AnalogMatMul(cfg, "crossbar")
    assert layer._idle_cell_exact()
    b = torch.randn(3, 6, 5)
    pair, _, _, _ = layer._written(b)
    one, _, _, sign = layer._written(b, signed=True)
    assert torch.allclose(one[0] * sign, pair[0] - pair[1], atol=1e-6)


def test_the_analog_stage_sweeps_gamma_for_a_model_with_attention_and_reports_it(model, tmp_path):
    """The stage's per-variant pass with only the γ sweep on: the curves land in the
    result, the plot is written and the report section shows the table."""
    from types import SimpleNamespace

    from spikecim.analog.stage_config import AnalogStageConfig
    from spikecim.pipeline.results import AnalogResult
    from spikecim.pipeline.stage_analog import _Ticker, _variant, _write_noise_plots, analog_section
    from spikecim.progress import progress_bar
    from spikecim.train.evaluate import ModelInput

    x = _x(32)
    with torch.no_grad():
        y = model(x).argmax(-1)
    data = SimpleNamespace(x_test=x, y_test=y, x_train=x, y_train=y)
    sc = AnalogStageConfig(
        preset="ideal",
        n_seeds=1,
        drift_times_s=[],
        adc_bits_sweep=[],
        hwa=False,
        bn_finetune=False,
        write_noise_gammas=[0.0, 5.0],
    )
    with progress_bar(None) as progress:
        out = _variant(
            model, data, load_crossbar_config("ideal"), sc, ModelInput(None), 0, _Ticker(progress, "ann")
        )
    sweep = out["write_noise"]
    assert sweep["gamma"] == [0.0, 5.0] and len(sweep["curves"]) == 2
    assert sweep["curves"][0]["mean"][0] == 1.0  # γ = 0 on ideal crossbars: the digital labels
    result = {"preset": "ideal", "n_seeds": 1, "t_inference_s": 0.0, "variants": {"ann": out}}
    (tmp_path / "plots").mkdir()
    names = _write_noise_plots(result, tmp_path / "plots")
    assert names == ["analog_write_noise_ann.png"] and (tmp_path / "plots" / names[0]).exists()
    html = analog_section(AnalogResult.model_validate({**result, "plots": names}), tmp_path)
    assert "γ = 5" in html and "ClipFormer" in html


def test_a_negative_gamma_in_the_run_config_is_refused_naming_the_field():
    from spikecim.config import load_config

    with pytest.raises(SpikecimError, match="analog.write_noise_gammas") as e:
        load_config(None, ["analog.write_noise_gammas=[0, -3]"])
    assert "\n" not in str(e.value)
