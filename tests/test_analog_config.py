"""CrossbarConfig, presets and one-line errors for bad input."""

import pytest
import torch

from spikecim.analog import CrossbarConfig, list_presets, load_crossbar_config, to_analog
from spikecim.analog.stage_config import AnalogStageConfig
from spikecim.config import load_config
from spikecim.errors import SpikecimError


def test_all_four_named_presets_exist_and_load():
    assert {"ideal", "pcm-aihwkit", "rram-65nm", "sram-digital"} <= set(list_presets())
    for name in list_presets():
        assert isinstance(load_crossbar_config(name), CrossbarConfig)
    # "ideal": a perfect crossbar, every non-ideality off
    c = load_crossbar_config("ideal")
    assert c.device.name == "ideal" and not (c.dac.enabled or c.adc.enabled or c.ir_drop.enabled)
    assert not (c.variation.enabled or c.faults.enabled) and c.out_noise_std == 0.0
    # "sram-digital": 8-bit weights one bit per cell, exact digital sums (no ADC, no noise)
    c = load_crossbar_config("sram-digital")
    assert c.device.name == "sram" and (c.weight_bits, c.bits_per_cell) == (8, 1)
    assert not c.adc.enabled and c.out_noise_std == 0.0


def test_pcm_aihwkit_preset_holds_the_aihwkit_defaults_of_reference_section_3():
    c = load_crossbar_config("pcm-aihwkit")
    assert (c.tile_rows, c.tile_cols) == (512, 512)
    assert c.device.name == "pcm" and c.device.t0_s == 20.0 and c.device.t_read_s == 250e-9
    assert (c.g_min_us, c.g_max_us) == (0.0, 25.0)
    assert c.dac.enabled and c.dac.bits == 7
    assert c.adc.enabled and c.adc.bits == 9 and c.adc.range == 12.0
    assert c.out_noise_std == 0.06 and c.drift_compensation.enabled


def test_on_off_resistance_converts_to_conductance_in_microsiemens():
    c = load_crossbar_config("rram-65nm")
    assert c.g_max_us == pytest.approx(1e6 / 100e3)  # R_on = 100 kΩ (NeuroSim, docs/references.md#rram)
    assert c.g_min_us == pytest.approx(1e6 / 1.7e6)  # R_off = 1.7 MΩ


def test_yaml_file_can_start_from_a_preset_and_override_fields(tmp_path):
    p = tmp_path / "xbar.yaml"
    p.write_text("preset: pcm-aihwkit\ntile_rows: 64\nadc:\n  bits: 6\n")
    c = load_crossbar_config(p)
    assert c.tile_rows == 64 and c.adc.bits == 6 and c.adc.range == 12.0 and c.device.name == "pcm"


def test_flat_spellings_of_the_issue_equal_the_nested_fields():
    """``dac_bits``, ``adc_bits``, ``adc_range``, ``out_noise``, ``r_on_ohm`` mean the nested
    fields they name, written out by hand; a flat field overrides a preset's value."""
    flat = load_crossbar_config(
        {"dac_bits": 6, "adc_bits": 8, "adc_range": 10.0, "out_noise": 0.05, "r_on_ohm": 4e4}
    )
    nested = load_crossbar_config(
        {
            "dac": {"enabled": True, "bits": 6},
            "adc": {"enabled": True, "bits": 8, "range": 10.0},
            "out_noise_std": 0.05,
            "g_max_us": 25.0,  # 1 / 40 kΩ
        }
    )
    assert flat == nested
    c = load_crossbar_config({"preset": "pcm-aihwkit", "adc_bits": 6, "out_noise": 0.0})
    assert (c.adc.bits, c.adc.range, c.out_noise_std, c.dac.bits) == (6, 12.0, 0.0, 7)


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"adc_bits": 6, "adc": {"bits": 7}}, "adc.bits is given twice"),
        ({"out_noise": 0.1, "out_noise_std": 0.2}, "out_noise_std is given twice"),
        ({"adc_bits": 17}, "adc.bits"),
        ({"dac_bits": 4, "dac": 3}, "dac must be a mapping"),
        ({"r_on_ohm": -1.0}, "r_on_ohm must be a number > 0"),
    ],
)
def test_flat_spelling_conflicts_and_bad_values_are_one_line_errors(fields, match):
    with pytest.raises(SpikecimError, match=match) as e:
        load_crossbar_config(fields)
    assert "\n" not in str(e.value)


def test_config_round_trips_through_its_dump():
    c = load_crossbar_config("pcm-aihwkit")
    assert CrossbarConfig.model_validate(c.model_dump()) == c


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"tile_rows": 0}, "tile_rows"),
        ({"tile_cols": -4}, "tile_cols"),
        ({"adc": {"bits": 17}}, "adc.bits"),
        ({"adc": {"bits": 0}}, "adc.bits"),
        ({"dac": {"bits": 20}}, "dac.bits"),
        ({"device": "flash"}, "device.*unknown device 'flash'.*allowed: ideal"),
        ({"mapping": "triple"}, "mapping"),
        ({"g_min_us": 30.0}, "g_min_us"),
        ({"bits_per_cell": 2}, "weight_bits"),
        ({"faults": {"stuck_on_rate": 0.7, "stuck_off_rate": 0.5}}, "stuck"),
        ({"tile_row": 3}, "tile_row: unknown key"),
    ],
)
def test_bad_crossbar_fields_fail_with_one_line_naming_the_field(fields, match):
    with pytest.raises(SpikecimError, match=match) as e:
        load_crossbar_config(fields)
    assert "\n" not in str(e.value)


def test_unknown_preset_is_a_one_line_error_listing_presets():
    with pytest.raises(SpikecimError, match="unknown preset 'pcm-foo'.*pcm-aihwkit") as e:
        load_crossbar_config("pcm-foo")
    assert "\n" not in str(e.value)


def test_non_finite_weights_are_refused_with_the_parameter_named():
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(SpikecimError, match="weight.*non-finite"):
        to_analog(lin, "ideal")


def test_stage_config_validates_preset_and_sweeps_in_run_config():
    assert AnalogStageConfig().preset == "pcm-aihwkit"
    for bad, match in [
        ("analog.preset=nope", "analog.preset"),
        ("analog.adc_bits_sweep=[4,20]", "adc_bits_sweep"),
        ("analog.n_seeds=0", "n_seeds"),
    ]:
        with pytest.raises(SpikecimError, match=match):
            load_config(None, [bad])


def test_an_on_off_ratio_below_1_1_is_refused_and_1_1_still_computes_the_digital_product():
    """The weights are differences of float32 conductances: with g_min = 25 − 1e-9 µS the
    ideal crossbar's products were off by ~1 (the weights lost), with g_max = 1e-300 µS NaN."""
    for fields, message in [
        (
            {"g_min_us": 24.999999999, "g_max_us": 25.0},
            (
                "analog: g_min_us must be at most g_max_us / 1.1 (an on/off ratio of at least 1.1), "
                "got g_min_us=24.999999999, g_max_us=25.0"
            ),
        ),
        ({"g_max_us": 1e-300}, "analog: g_max_us: Input should be greater than or equal to 0.000001"),
    ]:
        with pytest.raises(SpikecimError) as e:
            load_crossbar_config(fields)
        assert str(e.value) == message
    # an on/off ratio of 1.1 still computes the digital product (ideal device, no converters)
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 16)
    x = torch.randn(8, 64)
    for mapping in ("differential", "offset"):
        am = to_analog(lin, {"g_min_us": 25.0 / 1.1, "g_max_us": 25.0, "mapping": mapping})
        torch.testing.assert_close(am(x), lin(x), rtol=0, atol=1e-5)


def test_adc_range_true_is_not_read_as_one():
    with pytest.raises(SpikecimError) as e:
        load_crossbar_config({"adc": {"enabled": True, "range": True}})
    assert str(e.value) == "analog: adc.range: must be 'max', 'calibrated' or a number, got true"


@pytest.mark.parametrize("device", [{"t0_s": 1e-7}, {"t_read_s": 100.0}])
def test_pcm_reference_time_below_the_read_pulse_is_a_one_line_error(device):
    """σ_read ∝ √ln((t0 + t + t_read)/(2·t_read)) is real only for t0 + t ≥ t_read: before,
    t0_s = 1e-7 s reached math.sqrt of a negative number (a traceback) at the first drift."""
    with pytest.raises(SpikecimError) as e:
        load_crossbar_config({"preset": "pcm-aihwkit", "device": {"name": "pcm", **device}})
    t0, t_read = device.get("t0_s", 20.0), device.get("t_read_s", 2.5e-7)
    assert str(e.value) == (
        f"analog: device: t0_s must be at least t_read_s (the read noise needs t0 + t >= t_read), "
        f"got t0_s={t0}, t_read_s={t_read}"
    )


def test_run_config_overrides_take_the_flat_spellings():
    """``--set analog.overrides.adc_bits=6`` was refused as 'given twice' against the preset's
    own adc.bits; it means adc.bits = 6 with the ADC on, as in a crossbar file."""
    cfg = load_config(
        None,
        ["analog.overrides.adc_bits=6", "analog.overrides.r_on_ohm=50000", "analog.overrides.out_noise=0.01"],
    )
    c = load_crossbar_config(cfg.analog.preset).with_updates(**cfg.analog.overrides)
    assert (c.adc.enabled, c.adc.bits, c.adc.range) == (True, 6, 12.0)  # range kept from pcm-aihwkit
    assert c.g_max_us == pytest.approx(1e6 / 50e3)  # G = 1/R: 20 µS
    assert c.out_noise_std == 0.01
    with pytest.raises(SpikecimError, match="adc.bits is given twice"):
        load_crossbar_config("ideal").with_updates(adc_bits=4, adc={"bits": 5})
