"""The ``analog`` run stage, the report section, evaluate_analog and the mitigation tools."""

import json

import pytest
import torch
from torch import nn

from spikecim.analog import (
    WeightModifier,
    bn_finetune,
    evaluate_analog,
    hwa_train,
    modify_weight,
    to_analog,
)
from spikecim.analog.devices import PCMDevice
from spikecim.config import RunConfig
from spikecim.data import Dataset
from spikecim.models import create_model
from spikecim.pipeline.results import AnalogResult, result_json
from spikecim.pipeline.stage_analog import analog_section
from spikecim.pipeline.stages import RunContext, get_stage


def tiny_dataset(n_train=64, n_test=40):
    """Two separable classes on 8x8 images: bright top half vs bright bottom half."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.arange(n) % 2
        x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
        x[y == 0, :, :4] += 0.8
        x[y == 1, :, 4:] += 0.8
        return x, y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return Dataset("tiny", xtr, ytr, xte, yte, 2)


def trained_mlp(spiking, data, timesteps):
    torch.manual_seed(0)
    m = create_model("mlp", spiking=spiking, num_classes=2, hidden=(16,))
    m = hwa_train(
        m,
        data.x_train,
        data.y_train,
        WeightModifier(kind="add_normal", std=0.0),
        epochs=15,
        lr=1e-2,
        timesteps=timesteps,
    )
    return m


def test_analog_stage_reports_accuracies_sweeps_and_plots(tmp_path):
    data = tiny_dataset()
    cfg = RunConfig(
        data={"timesteps": 2},
        analog={
            "n_seeds": 2,
            "drift_times_s": [1.0, 3.15e7],
            "adc_bits_sweep": [2, 8],
            "hwa_epochs": 1,
            "bn_epochs": 1,
            "calibration_samples": 32,
        },
    )
    models = {"snn": trained_mlp(True, data, 2), "ann": trained_mlp(False, data, 1)}
    ctx = RunContext(config=cfg, run_dir=tmp_path, data=data, models=models)
    out = result_json(get_stage("analog").fn(ctx))
    json.dumps(out)  # goes into metrics.json
    for v in ("snn", "ann"):
        m = out["variants"][v]
        assert m["ideal"] == 1.0  # the task is separable; both variants learn it
        accs = m["analog"]["accuracies"]
        assert len(accs) == 2
        # each seed's accuracy is a count of the 40 test samples; mean and sample std of two values
        assert all(0 <= a <= 1 and abs(a * 40 - round(a * 40)) < 1e-9 for a in accs)
        assert m["analog"]["mean"] == pytest.approx((accs[0] + accs[1]) / 2)
        assert m["analog"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
        assert m["drift"]["t_s"] == [1.0, 3.15e7] and len(m["drift"]["mean"]) == 2
        assert m["adc_bits"]["bits"] == [2, 8]
        assert "hwa" in m
    assert out["variants"]["snn"]["timesteps"] == 2 and out["variants"]["ann"]["timesteps"] == 1
    assert sorted(out["plots"]) == ["analog_adc_bits.png", "analog_drift.png"]
    assert all((tmp_path / "plots" / p).stat().st_size > 0 for p in out["plots"])
    page = analog_section(AnalogResult.model_validate(out), tmp_path)
    assert "pcm-aihwkit" in page
    # the accuracy over seeds, the drift and the ADC sweeps; the sweeps with their PNG for report.md
    assert page.count('<figure class="chart"') == 3
    assert 'data-file="plots/analog_drift.png"' in page and 'data-file="plots/analog_adc_bits.png"' in page
    assert analog_section(None, tmp_path) == ""


def test_evaluate_analog_ideal_preset_reproduces_digital_accuracy_with_zero_spread():
    data = tiny_dataset()
    m = trained_mlp(False, data, 1)
    r = evaluate_analog(m, data, "ideal", timesteps=1, n_seeds=3)
    assert r["accuracies"] == [r["ideal"]] * 3 and r["std"] == 0.0


def test_pcm_weight_modifier_noise_std_follows_programming_polynomial():
    w = torch.full((100_000,), 0.5, dtype=torch.float64)
    w[0] = 1.0  # max|W| = 1 -> g = 0.5·g_max
    noisy = modify_weight(w, WeightModifier(kind="pcm", std=1.0), torch.Generator().manual_seed(0))
    g_rel = 0.5
    # σ_prog/g_max·25/25 (docs/references.md#pcm-programming-noise), weight units
    sigma_w = 0.26348 + 1.9650 * g_rel - 1.1731 * g_rel**2
    assert float((noisy - w)[1:].std()) == pytest.approx(sigma_w / 25.0, rel=0.03)


def test_default_weight_modifier_is_the_run_configs_pcm_noise_as_is():
    """``hwa_train(model, x, y)`` injects what ``spikecim run`` does by default: the PCM
    programming noise at scale 1 (docs/references.md#pcm-programming-noise)."""
    analog = RunConfig().analog
    assert (analog.hwa_modifier, analog.hwa_noise_std) == ("pcm", 1.0)
    w = torch.full((100_000,), 0.5, dtype=torch.float64)
    w[0] = 1.0
    noisy = modify_weight(w, WeightModifier(), torch.Generator().manual_seed(0))
    sigma_w = 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.5**2
    assert float((noisy - w)[1:].std()) == pytest.approx(sigma_w / 25.0, rel=0.03)


def test_additive_and_multiplicative_modifiers_have_configured_std():
    w = torch.full((100_000,), 0.5, dtype=torch.float64)
    w[0] = 2.0
    add = modify_weight(w, WeightModifier(kind="add_normal", std=0.1), torch.Generator().manual_seed(1))
    mul = modify_weight(w, WeightModifier(kind="mult_normal", std=0.1), torch.Generator().manual_seed(2))
    assert float((add - w)[1:].std()) == pytest.approx(0.1 * 2.0, rel=0.03)
    assert float((mul - w)[1:].std()) == pytest.approx(0.1 * 0.5, rel=0.03)


def test_bn_finetune_changes_only_batchnorm_and_keeps_crossbar_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    am = to_analog(model, {"device": "pcm"})
    before = {k: v.clone() for k, v in am.state_dict().items()}
    g_before = am[0].tiles.g_prog_us.clone()
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    bn_finetune(am, x, y, epochs=2, lr=0.05, timesteps=None)
    after = am.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("1.") for k in changed)
    assert torch.equal(am[0].tiles.g_prog_us, g_before)
    assert all(p.requires_grad for p in am.parameters())


def test_pcm_device_polynomial_helper_equals_reference_formula():
    g = torch.tensor([0.0, 5.0, 25.0], dtype=torch.float64)
    ref = torch.tensor([0.26348 + 1.9650 * r - 1.1731 * r * r for r in (0.0, 0.2, 1.0)], dtype=torch.float64)
    torch.testing.assert_close(PCMDevice().prog_noise_std_us(g, 25.0), ref)


def test_evaluate_run_analog_covers_every_variant_with_its_own_timesteps(tmp_path):
    from spikecim.pipeline.stage_analog import evaluate_run_analog

    data = tiny_dataset()
    cfg = RunConfig(data={"timesteps": 3})
    models = {"snn": trained_mlp(True, data, 3), "ann": trained_mlp(False, data, 1)}
    ctx = RunContext(config=cfg, run_dir=tmp_path, data=data, models=models)
    out = evaluate_run_analog(ctx, "ideal", n_seeds=2)
    assert set(out) == {"snn", "ann"}
    for r in out.values():
        assert r["accuracies"] == [r["ideal"]] * 2 and r["t_inference_s"] == cfg.analog.t_inference_s


@pytest.mark.parametrize("method", [{"name": "prune", "sparsity": 0.0}, {"name": "weight-qat", "bits": 16}])
def test_hardware_aware_training_puts_its_noise_into_a_parametrised_weight_as_into_a_plain_one(method):
    """A mask of ones (pruning at sparsity 0) and 16-bit fake quantisation leave the weight
    as it is (to 1e-4 of its range): trained with the same noise draws, the parametrised model
    ends where the plain one does."""
    import copy

    from spikecim.methods import apply_methods
    from spikecim.variants import MethodConfig

    data = tiny_dataset()
    torch.manual_seed(0)
    plain = create_model("mlp", spiking=False, num_classes=2, hidden=(16,))
    wrapped = apply_methods(copy.deepcopy(plain), [MethodConfig(**method)])
    noise = WeightModifier(kind="add_normal", std=0.5)
    a = hwa_train(plain, data.x_train, data.y_train, noise, epochs=2, lr=1e-2, seed=3)
    b = hwa_train(wrapped, data.x_train, data.y_train, noise, epochs=2, lr=1e-2, seed=3)
    without = hwa_train(
        plain,
        data.x_train,
        data.y_train,
        WeightModifier(kind="add_normal", std=0.0),
        epochs=2,
        lr=1e-2,
        seed=3,
    )
    for la, lb, lw in zip(_linears(a), _linears(b), _linears(without), strict=True):
        torch.testing.assert_close(lb.weight, la.weight, atol=1e-3, rtol=0)
        assert (la.weight - lw.weight).abs().max() > 1e-2  # the noise did change the training


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_hardware_aware_training_puts_noise_on_the_pruned_weights_as_the_crossbar_programs_them():
    """aihwkit's modifiers perturb every programmed weight; a pruned weight is programmed too
    (two devices at zero conductance), so inside a step it carries add_normal's σ·max|W|·N and
    after the step it is zero again."""
    from spikecim.analog.mitigation import hwa_step
    from spikecim.methods import get_method
    from spikecim.nn.prune import prune_at
    from spikecim.train.evaluate import ModelInput

    torch.manual_seed(0)
    model = get_method("prune")(create_model("mlp", spiking=False, hidden=(64,)), sparsity=0.5, end_epoch=0)
    prune_at(model, 0, epochs=1)
    layer = model[1]
    pruned = layer.weight.detach() == 0
    w_max = float(layer.weight.detach().abs().max())
    seen = []
    layer.register_forward_pre_hook(lambda m, args: seen.append(m.weight.detach().clone()))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    noise = WeightModifier(kind="add_normal", std=0.5)
    hwa_step(model, opt, x, y, noise, ModelInput.from_encoder(1, "direct"), torch.Generator().manual_seed(1))
    during = seen[0][pruned]
    assert during.numel() == 64 * 64 // 2 and bool((during != 0).all())
    assert float(during.std()) == pytest.approx(0.5 * w_max, rel=0.1)
    assert torch.equal(layer.weight.detach() == 0, pruned)
    assert len(layer.parametrizations["weight"]) == 1
