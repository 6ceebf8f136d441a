"""Malformed tables and layer lists get one line that names the field."""

import pytest
import yaml

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.hw import load_architecture, load_workload, spikesim_from_spec, workload_from_layers
from spikecim.hw.arch import TABLES_DIR


def user_table(tmp_path, mutate):
    data = yaml.safe_load((TABLES_DIR / "spikesim-rram-65nm.yaml").read_text())
    mutate(data)
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_table_missing_constant_names_it(tmp_path):
    path = user_table(tmp_path, lambda d: d["params"].pop("e_adc_pj"))
    with pytest.raises(SpikecimError) as e:
        load_architecture(path)
    assert "params.e_adc_pj" in one_line(e) and "required" in one_line(e).lower()


def test_table_negative_size_names_it(tmp_path):
    path = user_table(tmp_path, lambda d: d["params"].update(xbar_size=-64))
    with pytest.raises(SpikecimError) as e:
        load_architecture(path)
    assert "params.xbar_size" in one_line(e) and "greater than 0" in one_line(e)


def test_table_unknown_unit_names_the_key_and_allowed_units(tmp_path):
    def mutate(d):
        d["params"]["e_adc_mj"] = d["params"].pop("e_adc_pj")

    with pytest.raises(SpikecimError) as e:
        load_architecture(user_table(tmp_path, mutate))
    msg = one_line(e)
    assert "e_adc_mj" in msg and "unknown unit 'mj'" in msg and "pj" in msg


def test_table_value_in_another_unit_is_converted(tmp_path):
    def mutate(d):
        d["params"]["e_adc_fj"] = d["params"].pop("e_adc_pj") * 1000  # 2030.84 fJ

    assert load_architecture(user_table(tmp_path, mutate)).p.e_adc_pj == pytest.approx(2.03084)


def test_table_unknown_key_and_unknown_estimator_are_named(tmp_path):
    with pytest.raises(SpikecimError) as e:
        load_architecture(user_table(tmp_path, lambda d: d["params"].update(flux_capacitor=1)))
    assert "params.flux_capacitor: unknown key" in one_line(e)
    with pytest.raises(SpikecimError) as e:
        load_architecture(user_table(tmp_path, lambda d: d.update(estimator="magic")))
    assert "unknown estimator 'magic'" in one_line(e) and "imc" in one_line(e)


def test_unknown_architecture_name_lists_the_shipped_ones():
    with pytest.raises(SpikecimError) as e:
        load_architecture("tpu-v9")
    assert "tpu-v9" in one_line(e) and "imc-rram-65nm" in one_line(e)


def test_layer_list_missing_field_and_negative_size_are_named():
    with pytest.raises(SpikecimError) as e:
        workload_from_layers({"timesteps": 2, "layers": [{"kind": "conv2d", "in_ch": 3}]})
    assert "layers.0.out_ch" in one_line(e)
    with pytest.raises(SpikecimError) as e:
        workload_from_layers({"timesteps": 2, "layers": [{"in_ch": -3, "out_ch": 4}]})
    assert "layers.0.in_ch" in one_line(e) and "greater than 0" in one_line(e)
    with pytest.raises(SpikecimError) as e:
        workload_from_layers({"timesteps": 2, "layers": [{"in_ch": 3, "out_ch": 4, "colour": "red"}]})
    assert "layers.0.colour: unknown key" in one_line(e)
    with pytest.raises(SpikecimError) as e:
        workload_from_layers({"timesteps": 2, "in_hw": 4, "layers": [{"in_ch": 3, "out_ch": 4, "kernel": 7}]})
    assert "layers.0.kernel" in one_line(e)


def test_spikesim_spec_bad_device_is_named():
    with pytest.raises(SpikecimError) as e:
        spikesim_from_spec(
            {"device": "pcm", "layers": [{"in_ch": 3, "out_ch": 4, "in_dim": 8, "out_dim": 8}]}
        )
    assert "device" in one_line(e) and "rram" in one_line(e)


def test_workload_file_missing(tmp_path):
    with pytest.raises(SpikecimError) as e:
        load_workload(tmp_path / "nope.yaml")
    assert "file not found" in one_line(e)


def test_cli_bad_input_prints_one_line_and_exits_2(tmp_path, capsys):
    layers = tmp_path / "l.yaml"
    layers.write_text(yaml.safe_dump({"timesteps": 2, "layers": [{"in_ch": 3, "out_ch": 0}]}))
    assert main(["hw", "estimate", str(layers)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "layers.0.out_ch" in err
    assert main(["hw", "estimate", str(layers), "--arch", "nope"]) == 2
    assert main(["hw", "spikesim", str(tmp_path / "missing.yaml"), "--json"]) == 2


def test_stage_config_refuses_unknown_architecture():
    from pydantic import ValidationError

    from spikecim.hw.stage_config import HardwareStageConfig

    with pytest.raises(ValidationError, match="unknown architecture 'nope'"):
        HardwareStageConfig(archs=["nope"])
    with pytest.raises(ValidationError, match="file not found"):
        HardwareStageConfig(archs=["missing/chip.yaml"])
    with pytest.raises(ValidationError, match="estimators"):
        HardwareStageConfig(estimators=["imc"])  # extra keys are forbidden


def test_run_config_names_the_hardware_field():
    from spikecim.config import load_config

    with pytest.raises(SpikecimError) as e:
        load_config(overrides=["hardware.archs=[tpu]"])
    assert "config.hardware.archs" in one_line(e) and "unknown architecture 'tpu'" in one_line(e)
