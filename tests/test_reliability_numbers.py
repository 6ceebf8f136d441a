"""Numbers, sizes and paths users give: refused in one line naming the field, never NaN, inf,
a traceback or a huge allocation.

The field lists are enumerated from the pydantic models (``model_fields``, recursively), so
a numeric field added later is tested without touching this file.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import types
import typing
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ValidationError

import spikecim
import spikecim.analog.mitigation
import spikecim.hw.cost
import spikecim.trace.workload
import spikecim.train.checkpoint
from spikecim.analog.circuit import effective_conductance
from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.devices import DEVICES
from spikecim.analog.hwa_config import HwaConverters
from spikecim.analog.mitigation import WeightModifier
from spikecim.cli.main import main
from spikecim.config import RunConfig, load_config
from spikecim.dse.space import Space
from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.hw import exit_unit, load_architecture, spikesim_from_spec, workload_from_layers
from spikecim.hw.arch import TABLES_DIR, Architecture, list_architectures
from spikecim.hw.digital_unit import DigitalUnitParams, load_digital_unit
from spikecim.hw.estimators import get_estimator, list_estimators
from spikecim.hw.exit_unit import ExitUnitParams
from spikecim.hw.layers import LayerSpec, NetworkSpec, SpikeSimLayer, SpikeSimSpec
from spikecim.interop import from_nir, read_graph
from spikecim.interop.loader import NirMeta
from spikecim.nn.prune import PruneOptions
from spikecim.nn.tt_method import TTOptions
from spikecim.pipeline.stage_analog import analog_stage
from spikecim.pipeline.stages import RunContext
from spikecim.schema import Schema
from spikecim.security.config import SecurityConfig

BAD = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "1e308": 1e308}
YAML_BAD = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf", "1e308": "1.0e+308"}


# ---- enumerating the numeric fields -------------------------------------------------------


def _strip(ann):
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _members(ann) -> list:
    ann = _strip(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [_strip(a) for a in typing.get_args(ann)]
    return [ann]


def _is_number(t) -> bool:
    return t in (int, float)


def _numeric_kind(ann) -> str | None:
    """'scalar' when the field takes a number, 'list' when it takes a list/tuple of numbers."""
    members = _members(ann)
    if any(_is_number(m) for m in members):
        return "scalar"
    for m in members:
        if typing.get_origin(m) in (list, tuple) and any(_is_number(_strip(a)) for a in typing.get_args(m)):
            return "list"
    return None


def _sub_models(ann) -> list[tuple[str, type[BaseModel]]]:
    """Nested models of a field: ('', Model) for a model, ('0.', Model) for a list of models."""
    out = []
    for m in _members(ann):
        if isinstance(m, type) and issubclass(m, BaseModel):
            out.append(("", m))
        elif typing.get_origin(m) is list:
            (item,) = typing.get_args(m)
            item = _strip(item)
            if isinstance(item, type) and issubclass(item, BaseModel):
                out.append(("0.", item))
    return out


def numeric_fields(
    model: type[BaseModel], prefix: str = "", seen: set | None = None
) -> list[tuple[str, str]]:
    """(dotted path, kind) of every numeric field of ``model`` and its nested models."""
    if seen is not None:
        seen.add(model)
    out = []
    for name, info in model.model_fields.items():
        kind = _numeric_kind(info.annotation)
        if kind:
            out.append((prefix + name, kind))
        for index, sub in _sub_models(info.annotation):
            out += numeric_fields(sub, f"{prefix}{name}.{index}", seen)
    return out


def _set(data: dict, path: str, value) -> dict:
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value
    return data


def _refusal(fn, data) -> str:
    """The one-line message ``fn(data)`` refuses ``data`` with."""
    try:
        fn(data)
    except SpikecimError as e:
        return str(e)
    except ValidationError as e:
        return one_line_validation_error(e)
    raise AssertionError(f"accepted: {data}")


def _table_params(estimator: str) -> tuple[str, dict]:
    for name in list_architectures():
        arch = load_architecture(name)
        if arch.estimator == estimator:
            return name, dict(arch.p.model_dump())
    raise AssertionError(f"no shipped table for {estimator}")


def _layers() -> dict:
    return {"in_hw": 8, "layers": [{"kind": "conv2d", "in_ch": 2, "out_ch": 4, "kernel": 3}]}


def _spikesim() -> dict:
    return {"layers": [{"in_ch": 2, "out_ch": 4, "in_dim": 8, "out_dim": 8}]}


REACHED: set = set()


def _exit_unit() -> dict:
    """The shipped exit-unit table's params: a valid base for its number checks."""
    return dict(exit_unit.load_exit_unit("exit-unit-45nm").model_dump())


def _roots():
    """(root label, base data, validate function, fields) for every input schema."""
    roots = [
        (
            "run",
            {"variants": [{"name": "snn"}, {"name": "ann", "spiking": False}]},
            RunConfig.model_validate,
            numeric_fields(RunConfig, seen=REACHED),
        ),
        ("crossbar", {}, load_crossbar_config, numeric_fields(CrossbarConfig, seen=REACHED)),
        ("weight-modifier", {}, WeightModifier.model_validate, numeric_fields(WeightModifier, seen=REACHED)),
        ("hwa-converters", {}, HwaConverters.model_validate, numeric_fields(HwaConverters, seen=REACHED)),
        (
            "architecture",
            {"name": "chip", "estimator": "imc"},
            Architecture.model_validate,
            numeric_fields(Architecture, seen=REACHED),
        ),
        ("layer-list", _layers(), workload_from_layers, numeric_fields(NetworkSpec, seen=REACHED)),
        ("spikesim", _spikesim(), spikesim_from_spec, numeric_fields(SpikeSimSpec, seen=REACHED)),
        ("method-tt", {"rank": 2}, TTOptions.model_validate, numeric_fields(TTOptions, seen=REACHED)),
        (
            "method-prune",
            {"sparsity": 0.5},
            PruneOptions.model_validate,
            numeric_fields(PruneOptions, seen=REACHED),
        ),
        (
            "exit-unit",
            _exit_unit(),
            ExitUnitParams.model_validate,
            numeric_fields(ExitUnitParams, seen=REACHED),
        ),
        (
            "digital-unit",
            dict(load_digital_unit("digital-unit-45nm").model_dump()),
            DigitalUnitParams.model_validate,
            numeric_fields(DigitalUnitParams, seen=REACHED),
        ),
        (
            "exit-unit-table",
            {"name": "unit", "params": {}},
            exit_unit._UnitTable.model_validate,
            numeric_fields(exit_unit._UnitTable, seen=REACHED),
        ),
        (
            "dse-space",
            {
                "knobs": [{"path": "analog.adc_bits", "low": 4, "high": 8}],
                "objectives": [{"metric": "energy_pj"}],
                "constraints": [{"metric": "area_um2", "op": "<=", "bound": 1.0}],
            },
            Space.model_validate,
            numeric_fields(Space, seen=REACHED),
        ),
        ("security", {}, SecurityConfig.model_validate, numeric_fields(SecurityConfig, seen=REACHED)),
        ("nir-yaml", {"dt": 1e-4}, NirMeta.model_validate, numeric_fields(NirMeta, seen=REACHED)),
    ]
    for name, cls in DEVICES.items():
        fields = numeric_fields(cls, "device.", seen=REACHED)
        roots.append((f"device-{name}", {"device": {"name": name}}, load_crossbar_config, fields))
    for est in list_estimators():
        table, _ = _table_params(est)
        arch = load_architecture(table)
        fields = numeric_fields(get_estimator(est).Params, "params.", seen=REACHED)

        def validate(data, arch=arch):
            return arch.with_params(**data.get("params", {}))

        roots.append((f"params-{est}", {"params": {}}, validate, fields))
    return roots


ROOTS = _roots()
CASES = [
    pytest.param(label, base, fn, path, kind, value, id=f"{label}:{path}={vname}")
    for label, base, fn, fields in ROOTS
    for path, kind in fields
    for vname, value in BAD.items()
]


def test_every_input_schema_and_numeric_field_is_enumerated():
    """Every Schema subclass is reached from a root, and every pydantic model that reads user
    input is a Schema (outputs, the Workload and the checkpoint state are checked elsewhere:
    tests/test_workload_schema.py, tests/test_reliability_files.py)."""

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for module in pkgutil.walk_packages(spikecim.__path__, "spikecim."):  # every schema defined
        if "triton" not in module.name:  # the optional GPU kernels need triton
            importlib.import_module(module.name)
    schemas = {c for c in subclasses(Schema) if c.__module__.startswith("spikecim.")}
    missing = {c.__name__ for c in schemas if c not in REACHED and not c.__subclasses__()}  # bases aside
    assert not missing
    outputs = {
        spikecim.hw.cost.__name__,
        spikecim.trace.workload.__name__,
        spikecim.train.checkpoint.__name__,
        "spikecim.pipeline.results",  # stage results: outputs
        "spikecim.pipeline.trex_search",  # trex.json: the search's output
        "spikecim.report.study",  # dse.json read back (finite numbers checked there)
        "spikecim.pipeline.folder",  # a run folder's manifest: written by spikecim, read back
    }
    plain = {
        c.__qualname__
        for c in subclasses(BaseModel)
        if c.__module__.startswith("spikecim.") and c.__module__ not in outputs and not issubclass(c, Schema)
    }
    assert not plain
    assert len(CASES) > 400  # every root holds numeric fields; 4 values each
    assert {LayerSpec, SpikeSimLayer} <= REACHED


@pytest.mark.parametrize(("label", "base", "fn", "path", "kind", "value"), CASES)
def test_non_finite_or_huge_number_is_refused_naming_the_field(label, base, fn, path, kind, value):
    data = _set(yaml.safe_load(yaml.safe_dump(base)), path, [value] if kind == "list" else value)
    msg = _refusal(fn, data)
    assert "\n" not in msg
    assert path.split(".0.")[-1] in msg or path in msg, msg


# ---- through the CLI ---------------------------------------------------------------------


def _cli(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    return err


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("train.lr=.inf", "train.lr"),
        ("train.lr=1e300", "train.lr"),
        ("train.lr=1.0e+300", "train.lr"),
        ("train.lr=11", "train.lr"),
        ("seed=1e23", "seed"),
        ("seed=1.0e+23", "seed"),
        ("seed=9223372036854775808", "seed"),
        ("analog.t_inference_s=.inf", "t_inference_s"),
        ("analog.overrides={g_max_us: .inf}", "g_max_us"),
        ("analog.overrides={out_noise_std: .inf}", "out_noise_std"),
        ("analog.overrides={adc: {range: .inf}}", "adc.range"),
        ("analog.overrides={ir_drop: {r_wire_ohm: 1.0e+30}}", "ir_drop.r_wire_ohm"),
        ("analog.drift_times_s=[1, .nan]", "drift_times_s"),
        ("data.timesteps=-.inf", "data.timesteps"),
        ("model.neuron.beta=.nan", "model.neuron.beta"),
        ("model.kwargs={width: .inf}", "width"),
    ],
)
def test_run_with_a_bad_number_exits_2_with_one_line(setting, field, tmp_path, capsys):
    err = _cli(["run", "--set", setting, "--set", f"output_dir={tmp_path}"], capsys)
    assert field in err
    assert not any(tmp_path.iterdir())  # refused before the run folder was written


@pytest.fixture
def layer_file(tmp_path) -> Path:
    path = tmp_path / "layers.yaml"
    path.write_text(yaml.safe_dump(_layers()))
    return path


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "1e308", "20000"])
def test_hw_node_nm_out_of_range_exits_2(value, layer_file, capsys):
    assert "node_nm" in _cli(["hw", "estimate", str(layer_file), "--node-nm", value], capsys)


@pytest.mark.parametrize("value", [".inf", ".nan", "1e308", "1.0e+308", "-.inf"])
def test_hw_table_entry_not_finite_exits_2(value, layer_file, tmp_path, capsys):
    text = (TABLES_DIR / "imc-rram-65nm.yaml").read_text()
    lines = [
        f"  e_mux_pj: {value}" if line.strip().startswith("e_mux_pj:") else line for line in text.splitlines()
    ]
    table = tmp_path / "chip.yaml"
    table.write_text("\n".join(lines))
    assert "e_mux_pj" in _cli(["hw", "estimate", str(layer_file), "--arch", str(table)], capsys)
    assert "e_mux_pj" in _cli(["hw", "estimate", str(layer_file), "--set", f"e_mux_pj={value}"], capsys)


def test_hw_estimate_timesteps_beyond_range_exits_2(layer_file, capsys):
    assert "--timesteps" in _cli(["hw", "estimate", str(layer_file), "--timesteps", "0"], capsys)


def test_largest_allowed_numbers_give_finite_costs(layer_file):
    """At the bounds (1e12 pJ per access, 2**24-wide layers) totals stay finite."""
    arch = load_architecture("imc-rram-65nm", e_mux_pj=1e12, e_cell_read_pj=1e12)
    spec = {"timesteps": 10000, "in_hw": 1, "layers": [{"kind": "linear", "in_ch": 2**24, "out_ch": 2**24}]}
    from spikecim.hw import estimate

    report = estimate(workload_from_layers(spec), arch)
    assert math.isfinite(report.energy_pj) and report.energy_pj > 0
    assert math.isfinite(report.latency_ns) and math.isfinite(report.area_um2)


# ---- IR drop: the solve refuses what it cannot do ------------------------------------------


@pytest.mark.parametrize("r_wire", [1e30, 1e-300, math.inf, -1.0])
def test_ir_drop_solve_out_of_range_names_r_wire(r_wire):
    G = np.full((4, 3), 25e-6)
    with pytest.raises(SpikecimError, match=r"ir_drop\.r_wire_ohm") as e:
        effective_conductance(G, r_wire)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("solver", ["block", "splu"])
def test_ir_drop_at_the_range_ends_is_finite_and_near_ideal_for_small_wires(solver):
    G = np.random.default_rng(0).uniform(0, 25e-6, (8, 6))
    small = effective_conductance(G, 1e-6, solver=solver)
    np.testing.assert_allclose(small, G, rtol=1e-6, atol=1e-15)  # ideal wires: G itself
    large = effective_conductance(G, 1e4, solver=solver)
    assert np.all(np.isfinite(large)) and large.sum() < G.sum()  # wires only lose current


def test_crossbar_wire_resistance_between_0_and_1e_minus_6_is_refused():
    with pytest.raises(SpikecimError, match=r"ir_drop\.r_wire_ohm"):
        load_crossbar_config({"ir_drop": {"enabled": True, "r_wire_ohm": 1e-9}})
    assert load_crossbar_config({"ir_drop": {"r_wire_ohm": 0.0}}).ir_drop.r_wire_ohm == 0.0


# ---- layer lists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stride": 0}, "layers.0.stride"),
        ({"stride": [1, 0]}, "layers.0.stride"),
        ({"padding": -5}, "layers.0.padding"),
        ({"kernel": -3}, "layers.0.kernel"),
        ({"kernel": [3]}, "layers.0.kernel"),
        ({"kernel": 1.5}, "layers.0.kernel"),
        ({"kernel": True}, "layers.0.kernel"),
        ({"in_hw": [0, 0]}, "layers.0.in_hw"),
        ({"in_hw": -4}, "layers.0.in_hw"),
        ({"groups": 3}, "layers.0.groups"),
        ({"in_ch": 2**30}, "layers.0.in_ch"),
        ({"kernel": 20}, "layers.0.kernel"),
        ({"pool": 20}, "layers.0.pool"),
    ],
)
def test_layer_list_bad_geometry_is_named(change, field, tmp_path, capsys):
    spec = _layers()
    spec["layers"][0].update(change)
    with pytest.raises(SpikecimError, match=field.replace(".", r"\.")) as e:
        workload_from_layers(spec)
    assert "\n" not in str(e.value)
    path = tmp_path / "layers.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert field in _cli(["hw", "estimate", str(path)], capsys)


def test_layer_list_network_in_hw_zero_is_named():
    spec = _layers()
    spec["in_hw"] = [0, 0]
    with pytest.raises(SpikecimError, match="in_hw"):
        workload_from_layers(spec)


def test_layer_list_geometry_gives_the_convolution_formula():
    spec = {
        "in_hw": [9, 7],
        "layers": [{"in_ch": 4, "out_ch": 6, "kernel": [3, 1], "stride": 2, "padding": [1, 0], "groups": 2}],
    }
    layer = workload_from_layers(spec).layers[0]
    assert layer.out_hw == ((9 + 2 - 3) // 2 + 1, (7 - 1) // 2 + 1)
    assert layer.macs == 6 * (4 // 2) * 3 * 1 * 5 * 4


# ---- calibrated ADC with no calibration data --------------------------------------------


def test_calibrated_adc_without_calibration_samples_is_refused_at_validation(tmp_path, capsys):
    with pytest.raises(SpikecimError) as e:
        load_config(None, ["analog.preset=rram-65nm", "analog.calibration_samples=0"])
    assert "calibration_samples" in str(e.value) and "adc.range" in str(e.value)
    err = _cli(
        [
            "run",
            "--set",
            "analog.preset=rram-65nm",
            "--set",
            "analog.calibration_samples=0",
            "--set",
            f"output_dir={tmp_path}",
        ],
        capsys,
    )
    assert "calibration_samples" in err


@pytest.mark.parametrize(
    "settings",
    [
        ["analog.preset=rram-65nm", "analog.calibration_samples=1"],
        ["analog.preset=pcm-aihwkit", "analog.calibration_samples=0"],  # a fixed range
        [
            "analog.preset=rram-65nm",
            "analog.calibration_samples=0",
            "analog.adc_bits_sweep=[]",
            "analog.overrides={adc: {enabled: false}}",
        ],
        ["analog.preset=rram-65nm", "analog.calibration_samples=0", "analog.overrides={adc: {range: max}}"],
    ],
)
def test_calibration_samples_zero_is_fine_where_no_adc_range_is_calibrated(settings):
    load_config(None, settings)


def test_analog_stage_refuses_a_calibrated_adc_left_uncalibrated(tmp_path):
    cfg = load_config(None, ["analog.preset=rram-65nm"])
    cfg.analog.calibration_samples = 0  # changed after validation, as a library user can
    with pytest.raises(SpikecimError, match=r"analog\.calibration_samples"):
        analog_stage(RunContext(config=cfg, run_dir=tmp_path))


# ---- paths inside a config file ---------------------------------------------------------


@pytest.fixture
def config_folder(tmp_path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "xbar.yaml").write_text("preset: ideal\ntile_rows: 48\n")
    arch = yaml.safe_load((TABLES_DIR / "naive-45nm.yaml").read_text())
    (folder / "chip.yaml").write_text(yaml.safe_dump(arch))
    (folder / "run.yaml").write_text(
        yaml.safe_dump(
            {"analog": {"preset": "xbar.yaml"}, "hardware": {"archs": ["chip.yaml", "naive-45nm"]}}
        )
    )
    return folder


def test_paths_in_a_config_file_are_read_from_its_folder(config_folder, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "configs" / "run.yaml")
    from spikecim.pipeline.stage_analog import crossbar_config_for_run

    assert crossbar_config_for_run(cfg.analog).tile_rows == 48  # the value written in xbar.yaml
    assert Path(cfg.analog.preset).resolve() == (config_folder / "xbar.yaml").resolve()
    assert Path(cfg.hardware.archs[0]).resolve() == (config_folder / "chip.yaml").resolve()
    assert cfg.hardware.archs[1] == "naive-45nm"
    again = load_config(Path("..") / "configs" / "run.yaml")
    written = elsewhere / "config.yaml"
    written.write_text(again.to_yaml())  # a run folder's config.yaml reads back the same
    assert load_config(written).analog.preset == again.analog.preset


def test_paths_given_with_set_stay_relative_to_the_current_folder(config_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpikecimError, match="xbar.yaml"):
        load_config(config_folder / "run.yaml", ["analog.preset=xbar.yaml"])
    (tmp_path / "xbar.yaml").write_text("preset: ideal\ntile_rows: 40\n")
    cfg = load_config(config_folder / "run.yaml", ["analog.preset=xbar.yaml"])
    from spikecim.pipeline.stage_analog import crossbar_config_for_run

    assert crossbar_config_for_run(cfg.analog).tile_rows == 40


# ---- NIR sizes ------------------------------------------------------------------------------


def _graph(shape, nodes=None, edges=None) -> nir.NIRGraph:
    shape = np.array(shape)
    nodes = {
        "in": nir.Input(input_type={"input": shape}),
        **(nodes or {}),
        "out": nir.Output(output_type={"output": shape}),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges or [("in", "out")], type_check=False)


def test_nir_huge_declared_input_is_refused_before_allocating(tmp_path, capsys):
    path = tmp_path / "huge.nir"
    nir.write(str(path), _graph([100000, 100000, 100]))
    assert path.stat().st_size < 100_000
    err = _cli(["nir", "inspect", str(path)], capsys)
    assert "SPIKECIM_MAX_ELEMENTS" in err and "100000, 100000, 100" in err


def test_nir_conv_on_a_huge_input_is_refused(tmp_path, capsys):
    w = np.zeros((2, 1, 3, 3), dtype=np.float32)
    conv = nir.Conv2d(
        input_shape=(60000, 60000), weight=w, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(2)
    )
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([1, 60000, 60000])}),
            "conv": conv,
            "out": nir.Output(output_type={"output": np.array([2, 59998, 59998])}),
        },
        edges=[("in", "conv"), ("conv", "out")],
        type_check=False,
    )
    path = tmp_path / "conv.nir"
    nir.write(str(path), g)
    assert "SPIKECIM_MAX_ELEMENTS" in _cli(["nir", "inspect", str(path)], capsys)


def test_nir_padding_that_blows_up_an_activation_is_refused_from_metadata():
    w = np.zeros((4, 1, 1, 1), dtype=np.float32)
    conv = nir.Conv2d(
        input_shape=None, weight=w, stride=1, padding=20000, dilation=1, groups=1, bias=np.zeros(4)
    )
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([1, 2, 2])}),
            "conv": conv,
            "out": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("in", "conv"), ("conv", "out")],
        type_check=False,
    )
    with pytest.raises(SpikecimError, match=r"node 'conv'.*4, 40002, 40002"):
        from_nir(g)


def test_nir_compressed_huge_dataset_is_refused_before_reading(tmp_path):
    path = tmp_path / "zip.nir"
    nir.write(str(path), _graph([4]))
    with h5py.File(path, "a") as f:  # a 2**29-element weight of zeros, compressed to bytes
        f["node"].create_dataset(
            "extra", shape=(2**15, 2**14), dtype="f4", compression="gzip", chunks=(256, 256)
        )
    assert path.stat().st_size < 1_000_000
    with pytest.raises(SpikecimError, match="dataset 'extra'"):
        read_graph(path)


def test_nir_element_limit_is_set_by_the_environment(tmp_path, monkeypatch):
    g = _graph([16])
    monkeypatch.setenv("SPIKECIM_MAX_ELEMENTS", "15")
    with pytest.raises(SpikecimError, match="above the limit of 15"):
        from_nir(g)
    monkeypatch.setenv("SPIKECIM_MAX_ELEMENTS", "16")
    assert from_nir(g).input_shape == (16,)
    monkeypatch.setenv("SPIKECIM_MAX_ELEMENTS", "lots")
    with pytest.raises(SpikecimError, match="SPIKECIM_MAX_ELEMENTS: must be a positive integer"):
        from_nir(g)


@pytest.mark.parametrize("shape", [[0, 4], [-5], [2.5]])
def test_nir_input_sizes_must_be_positive_integers(shape):
    with pytest.raises(SpikecimError, match="positive integers"):
        from_nir(_graph(shape))


@pytest.mark.parametrize("dt", [math.inf, math.nan, 0.0, 1e4])
def test_nir_dt_out_of_range_is_refused(dt):
    with pytest.raises(SpikecimError, match="dt: must be"):
        from_nir(_graph([4]), dt=dt)


@pytest.mark.parametrize("command", [["trace"], ["hw", "estimate"]])
def test_nir_graph_without_synaptic_layer_is_one_line(command, tmp_path, capsys):
    lif = nir.LIF(tau=np.full(4, 1e-3), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
    path = tmp_path / "nosyn.nir"
    nir.write(str(path), _graph([4], {"lif": lif}, [("in", "lif"), ("lif", "out")]))
    assert "no synaptic layer" in _cli([*command, str(path)], capsys)


def test_monte_carlo_refuses_a_calibrated_adc_without_calibration_data():
    import torch

    from spikecim.analog import evaluate
    from spikecim.analog.convert import to_analog

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x, y = torch.rand(8, 4), torch.zeros(8, dtype=torch.long)
    am = to_analog(model, load_crossbar_config("rram-65nm"))
    with pytest.raises(SpikecimError, match="calibration_samples.*adc.range"):
        evaluate.monte_carlo(am, x, y, [0], timesteps=None)
    accs = evaluate.monte_carlo(am, x, y, [0], timesteps=None, calibration_x=x)
    assert len(accs) == 1 and 0.0 <= accs[0] <= 1.0


@pytest.mark.parametrize("dt", [math.inf, math.nan, 0.0, 1e4])
def test_nir_export_dt_out_of_range_is_refused(dt):
    import torch

    from spikecim.interop import to_nir

    with pytest.raises(SpikecimError, match="dt: must be"):
        to_nir(torch.nn.Sequential(torch.nn.Linear(3, 2)), dt=dt)
