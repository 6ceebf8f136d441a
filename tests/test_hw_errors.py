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


def naive_table(tmp_path, params: dict):
    path = tmp_path / "naive.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "chip", "estimator": "naive", "technology_nm": 45, "params": params}, sort_keys=False
        )
    )
    return path


def test_node_scaling_scales_a_constant_written_in_another_unit(tmp_path):
    path = naive_table(tmp_path, {"e_mac_fj": 4600.0, "e_ac_pj": 0.9})
    p = load_architecture(path, node_nm=90).p
    assert p.e_mac_pj == pytest.approx(4.6 * 90 / 45)  # first order: energy × node / table node
    assert p.e_ac_pj == pytest.approx(0.9 * 90 / 45)


def test_table_giving_one_constant_in_two_units_is_refused(tmp_path):
    path = naive_table(tmp_path, {"e_mac_pj": 4.6, "e_mac_fj": 9000.0, "e_ac_pj": 0.9})
    with pytest.raises(SpikecimError) as e:
        load_architecture(path)
    assert one_line(e) == "chip: params.e_mac_fj: e_mac_pj is given twice (e_mac_pj and e_mac_fj); keep one"


def test_table_constant_without_its_unit_is_named_with_the_units_allowed(tmp_path):
    path = naive_table(tmp_path, {"e_mac": 4.6, "e_ac_pj": 0.9})
    with pytest.raises(SpikecimError) as e:
        load_architecture(path)
    assert one_line(e) == (
        "chip: params.e_mac: the unit is missing, write it as e_mac_pj (or another energy unit: fj, nj, pj, uj)"
    )


def test_set_in_another_unit_replaces_the_table_constant():
    assert load_architecture("naive-45nm", e_mac_fj=9000.0).p.e_mac_pj == pytest.approx(9.0)
    assert load_architecture("naive-45nm", node_nm=90, e_mac_fj=4600.0).p.e_mac_pj == pytest.approx(4.6)


def test_estimate_out_never_overwrites_a_file_spikecim_did_not_write(tmp_path, capsys):
    layers = tmp_path / "l.yaml"
    layers.write_text(
        yaml.safe_dump({"timesteps": 2, "layers": [{"kind": "linear", "in_ch": 4, "out_ch": 2}]})
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert main(["hw", "estimate", str(layers), "--out", str(notes)]) == 2
    assert capsys.readouterr().err == (
        f"error: --out: {notes} exists and is not a CostReport JSON; spikecim replaces only its "
        "own reports (choose a new file name)\n"
    )
    assert notes.read_text() == "my notes\n"
    assert main(["hw", "estimate", str(layers), "--out", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --out: {tmp_path} is a folder; give the CostReport JSON's file name\n"
    )
    report = tmp_path / "cost.json"
    for arch in ("naive-45nm", "imc-rram-65nm"):  # a report spikecim saved is replaced
        assert main(["hw", "estimate", str(layers), "--arch", arch, "--out", str(report)]) == 0
    assert yaml.safe_load(report.read_text())["architecture"] == "imc-rram-65nm"


@pytest.mark.parametrize("name", ["sram-unit", "exit-unit-45nm"])  # exit-unit-45nm is the exit test's table
def test_an_unknown_digital_unit_lists_only_the_digital_unit_tables(name):
    from spikecim.hw.digital_unit import load_digital_unit

    with pytest.raises(SpikecimError) as e:
        load_digital_unit(name)
    assert one_line(e) == f"digital_unit: unknown unit '{name}', allowed: digital-unit-45nm or a YAML file"
