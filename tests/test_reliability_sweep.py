"""The reliability issue's reproductions, each typed as a user would, checked in one place.

Every bad input exits 2 (Ctrl-C: 130) with one error line on stderr naming the field or
file, no traceback; where data could be lost every file that was there before is still
there byte for byte. Most cases also have a dedicated test beside the code they exercise;
this file is the issue's list. One tiny trained run (mlp, 128 digits, 1 epoch) is shared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from spikecim.cli.main import main
from spikecim.hw.arch import TABLES_DIR
from spikecim.hw.layers import workload_from_layers

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "mlp", "--epochs", "1", "--set", "data.limit=128"]


def error_line(capsys, code: int, argv: list[str]) -> str:
    """Run ``spikecim argv`` in-process: the exit code is ``code`` and stderr ends with the one
    error line (after any stage headings); no traceback anywhere."""
    capsys.readouterr()
    got = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert got == code, out.err[-2000:]
    errors = [line for line in out.err.splitlines() if line.startswith(("error", "interrupted"))]
    assert len(errors) == 1 and out.err.rstrip().endswith(errors[0]), out.err
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_args(out: Path, name: str = "tiny", stages: str = "train") -> list[str]:
    return ["run", *TINY, "--stages", stages, "--name", name, "--set", f"output_dir={out}"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The output folder of a finished tiny run (``tiny/`` inside)."""
    out = tmp_path_factory.mktemp("sweep")
    assert main(run_args(out)) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "out")
    return tmp_path / "out"


# ---- run folders that are not spikecim's ---------------------------------------------------


@pytest.mark.parametrize("name", ["..", "."])
def test_fresh_run_named_dot_or_dotdot_touches_nothing(name, tmp_path, monkeypatch, capsys):
    (tmp_path / "important.txt").write_text("thesis")
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "x.bin").write_bytes(b"\x00\x01")
    (tmp_path / "runs").mkdir()
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, 2, ["run", "--name", name, "--fresh", "--stages", "train", "--epochs", "1"])
    assert "name" in line
    assert snapshot(tmp_path) == before


def test_fresh_run_over_a_folder_holding_only_a_user_file_touches_nothing(tmp_path, capsys):
    (tmp_path / "D" / "keep").mkdir(parents=True)
    (tmp_path / "D" / "keep" / "notes.md").write_text("mine")
    before = snapshot(tmp_path)
    line = error_line(
        capsys, 2, ["run", "--set", f"output_dir={tmp_path / 'D'}", "--name", "keep", "--fresh"]
    )
    assert str(tmp_path / "D" / "keep") in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("setting", ["train.device=cuda", "data.encoder=frames"])
def test_fresh_with_a_bad_setting_keeps_the_finished_run_and_the_corrected_command_runs(
    setting, run_copy, capsys
):
    if setting == "train.device=cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    before = snapshot(run_copy)
    line = error_line(capsys, 2, [*run_args(run_copy), "--fresh", "--set", setting])
    assert setting.split("=")[0] in line
    assert snapshot(run_copy) == before  # checkpoint, metrics.json and config.yaml as they were
    assert main([*run_args(run_copy), "--fresh"]) == 0


# ---- numbers that are not finite or overflow -------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("train.lr=.inf", "train.lr"),
        ("train.lr=1e300", "train.lr"),
        ("seed=1e23", "seed"),
        ("analog.t_inference_s=.inf", "t_inference_s"),
    ],
)
def test_non_finite_or_huge_setting_with_set_exits_2_naming_it(setting, field, tmp_path, capsys):
    assert field in error_line(capsys, 2, ["run", "--set", setting, "--set", f"output_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value", [".inf", "1e300"])
def test_non_finite_or_huge_learning_rate_in_a_config_file_exits_2(value, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"train:\n  lr: {value}\n")
    assert "train.lr" in error_line(capsys, 2, ["run", str(config), "--set", f"output_dir={tmp_path / 'o'}"])


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("g_max_us: .inf\n", "g_max_us"),
        ("out_noise_std: .inf\n", "out_noise_std"),
        ("adc: {range: .inf}\n", "adc.range"),
        ("ir_drop: {enabled: true, r_wire_ohm: 1e30}\n", "r_wire_ohm"),
    ],
)
def test_non_finite_crossbar_file_exits_2_naming_the_field(text, field, tmp_path, capsys):
    xbar = tmp_path / "xbar.yaml"
    xbar.write_text("preset: ideal\n" + text)
    argv = ["run", "--set", f"analog.preset={xbar}", "--set", f"output_dir={tmp_path / 'o'}"]
    assert field in error_line(capsys, 2, argv)


@pytest.fixture
def layer_file(tmp_path) -> Path:
    spec = {
        "timesteps": 4,
        "in_hw": [8, 8],
        "layers": [
            {"kind": "conv2d", "in_ch": 1, "out_ch": 4, "kernel": 3, "padding": 1, "activity": 0.2},
            {"kind": "linear", "in_ch": 256, "out_ch": 10, "activity": 0.1},
        ],
    }
    path = tmp_path / "layers.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("value", [".inf", "1e308"])
def test_architecture_table_entry_not_finite_or_huge_exits_2(value, layer_file, tmp_path, capsys):
    text = (TABLES_DIR / "imc-rram-65nm.yaml").read_text()
    lines = [f"  e_mux_pj: {value}" if ln.strip().startswith("e_mux_pj:") else ln for ln in text.splitlines()]
    (tmp_path / "chip.yaml").write_text("\n".join(lines))
    argv = ["hw", "estimate", str(layer_file), "--arch", str(tmp_path / "chip.yaml")]
    assert "e_mux_pj" in error_line(capsys, 2, argv)


def test_hw_estimate_node_nm_inf_exits_2(layer_file, capsys):
    assert "node_nm" in error_line(capsys, 2, ["hw", "estimate", str(layer_file), "--node-nm", "inf"])


def test_metrics_json_of_a_finished_run_is_strict_json(finished):
    def refuse(constant):
        raise AssertionError(f"metrics.json holds {constant}")

    json.loads((finished / "tiny" / "metrics.json").read_text(), parse_constant=refuse)


# ---- workload files and layer lists ---------------------------------------------------------


def _workload(tmp_path, layer_file) -> dict:
    path = tmp_path / "w.json"
    workload_from_layers(yaml.safe_load(layer_file.read_text())).save(path)
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("in_nonzero_per_step", [float("nan")] * 4),
        ("in_nonzero_per_step", [float("inf")] * 4),
        ("in_hw", [0, 0]),
        ("stride", [0, 0]),
        ("kernel", [-3, -3]),
        ("out_hw", [-8, -8]),
        ("groups", 3),
        ("in_nonzero_per_step", [1e9] * 4),  # activity above 1: more nonzeros than inputs
    ],
)
def test_bad_workload_file_exits_2_naming_the_field(field, value, tmp_path, layer_file, capsys):
    doc = _workload(tmp_path, layer_file)
    doc["layers"][0][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))  # json writes NaN and Infinity as a careless tool would
    assert field in error_line(capsys, 2, ["hw", "estimate", str(path)])


@pytest.mark.parametrize(("change", "field"), [({"stride": 0}, "stride"), ({"padding": -5}, "padding")])
def test_bad_layer_list_exits_2_naming_the_field(change, field, layer_file, tmp_path, capsys):
    spec = yaml.safe_load(layer_file.read_text())
    spec["layers"][0].update(change)
    (tmp_path / "l.yaml").write_text(yaml.safe_dump(spec))
    assert f"layers.0.{field}" in error_line(capsys, 2, ["hw", "estimate", str(tmp_path / "l.yaml")])


# ---- NIR -------------------------------------------------------------------------------------


def _nir(path: Path, shape, nodes=None, edges=None) -> Path:
    shape = np.array(shape)
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": shape}),
            **(nodes or {}),
            "out": nir.Output(output_type={"output": shape}),
        },
        edges=edges or [("in", "out")],
        type_check=False,
    )
    nir.write(str(path), graph)
    return path


def test_nir_inspect_of_a_tiny_file_declaring_a_huge_input_exits_2(tmp_path, capsys):
    path = _nir(tmp_path / "huge.nir", [100000, 100000, 100])
    assert path.stat().st_size < 100_000
    assert "100000, 100000, 100" in error_line(capsys, 2, ["nir", "inspect", str(path)])


def test_nir_conv_on_a_60000_square_input_exits_2(tmp_path, capsys):
    conv = nir.Conv2d(
        input_shape=(60000, 60000), weight=np.zeros((2, 1, 3, 3), np.float32), stride=1, padding=0,
        dilation=1, groups=1, bias=np.zeros(2),
    )  # fmt: skip
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([1, 60000, 60000])}),
            "conv": conv,
            "out": nir.Output(output_type={"output": np.array([2, 59998, 59998])}),
        },
        edges=[("in", "conv"), ("conv", "out")],
        type_check=False,
    )
    nir.write(str(tmp_path / "conv.nir"), graph)
    assert "conv" in error_line(capsys, 2, ["nir", "inspect", str(tmp_path / "conv.nir")])


@pytest.mark.parametrize("command", [["trace"], ["hw", "estimate"]])
def test_nir_graph_without_a_synaptic_layer_exits_2(command, tmp_path, capsys):
    lif = nir.LIF(tau=np.full(4, 1e-3), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
    path = _nir(tmp_path / "nosyn.nir", [4], {"lif": lif}, [("in", "lif"), ("lif", "out")])
    assert "no synaptic layer" in error_line(capsys, 2, [*command, str(path)])


# ---- damaged checkpoints --------------------------------------------------------------------


def _named(folder: Path, role: str) -> Path:
    return folder / json.loads((folder / "snn.state.json").read_text())["files"][role]["name"]


def _edit_state(edit):
    def damage(folder: Path) -> Path:
        path = folder / "snn.state.json"
        state = json.loads(path.read_text())
        edit(state)
        path.write_text(json.dumps(state))
        return path

    return damage


def _truncated_optimizer(folder: Path) -> Path:
    path = _named(folder, "optimizer")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _state_bytes(data: bytes):
    def damage(folder: Path) -> Path:
        (folder / "snn.state.json").write_bytes(data(folder / "snn.state.json"))
        return folder / "snn.state.json"

    return damage


def _edit_weights(edit):
    def damage(folder: Path) -> Path:
        path = _named(folder, "weights")
        tensors = load_file(str(path))
        key = min(k for k in tensors if k.endswith("weight"))
        tensors[key] = edit(tensors[key])
        save_file(tensors, str(path))
        return path

    return damage


CHECKPOINT_DAMAGE = {
    "truncated optimizer": (_truncated_optimizer, "not a readable safetensors"),
    "empty state.json": (_state_bytes(lambda p: b""), "state.json"),
    "truncated state.json": (_state_bytes(lambda p: p.read_bytes()[:40]), "not valid JSON"),
    "missing key": (_edit_state(lambda s: s.pop("history")), "history"),
    "weight of the wrong shape": (
        _edit_weights(lambda t: torch.zeros(t.shape[0] + 1, *t.shape[1:])),
        "shape",
    ),
    "epoch 999": (_edit_state(lambda s: s.__setitem__("epoch", 999)), "epoch 999"),
    "epoch -3": (_edit_state(lambda s: s.__setitem__("epoch", -3)), "epoch"),
    "NaN weights": (_edit_weights(lambda t: t * float("nan")), "NaN"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_exits_2_naming_the_file(case, run_copy, capsys):
    damage, expected = CHECKPOINT_DAMAGE[case]
    path = damage(run_copy / "tiny" / "checkpoint")
    line = error_line(capsys, 2, run_args(run_copy))
    assert str(path) in line and expected in line, line


# ---- two runs into one folder ----------------------------------------------------------------

_WAITING_RUN = """
import sys, time
from spikecim.cli.main import main
from spikecim.pipeline.stages import register_stage

register_stage("test_wait")(lambda ctx: time.sleep(3600))
sys.exit(main(sys.argv[1:]))
"""


def test_second_run_into_a_busy_folder_is_refused_and_runs_after_kill_9_of_the_first(tmp_path, capsys):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WAITING_RUN, *run_args(tmp_path, stages="train,test_wait")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and not (tmp_path / "tiny" / "metrics.json").exists():
            time.sleep(0.01)
        before = snapshot(tmp_path / "tiny")
        assert "in use by another spikecim run" in error_line(capsys, 2, run_args(tmp_path))
        assert snapshot(tmp_path / "tiny") == before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert main(run_args(tmp_path)) == 0


# ---- zero epochs, non-UTF-8 files, data sets that do not fit ------------------------------


def test_zero_epochs_exits_0_with_a_summary(tmp_path, capsys):
    capsys.readouterr()
    argv = ["run", "--model", "mlp", "--epochs", "0", "--set", "data.limit=128", "--stages", "train"]
    assert main([*argv, "--set", f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "train" in out.out


_NOT_UTF8 = b"name: r\n\x89PNG binary\xff"


@pytest.mark.parametrize("which", ["config", "crossbar", "architecture", "workload", "run config.yaml"])
def test_non_utf8_file_exits_2_naming_it(which, tmp_path, layer_file, run_copy, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(_NOT_UTF8)
    argv = {
        "config": ["run", str(bad), "--set", f"output_dir={tmp_path / 'o'}"],
        "crossbar": ["run", "--set", f"analog.preset={bad}", "--set", f"output_dir={tmp_path / 'o'}"],
        "architecture": ["hw", "estimate", str(layer_file), "--arch", str(bad)],
        "workload": ["hw", "estimate", str(bad)],
        "run config.yaml": ["evaluate", str(run_copy / "tiny")],
    }[which]
    if which == "run config.yaml":
        bad = run_copy / "tiny" / "config.yaml"
        bad.write_bytes(_NOT_UTF8)
    line = error_line(capsys, 2, argv)
    assert str(bad) in line and "not UTF-8" in line, line


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as the format defines it: 00 00 08 ndim, big-endian sizes, unsigned bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist(folder: Path, n_train: int, train_hw: tuple[int, int]) -> Path:
    folder.mkdir(parents=True)
    for prefix, n, hw in (("train", n_train, train_hw), ("t10k", 3, (28, 28))):
        _idx(folder / f"{prefix}-images-idx3-ubyte", np.full((n, *hw), 7))
        _idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return folder / "train-images-idx3-ubyte"


@pytest.mark.parametrize(("n_train", "hw", "expected"), [(4, (10, 10), "28"), (0, (28, 28), "no samples")])
def test_mnist_files_that_do_not_fit_exit_2_naming_the_file(n_train, hw, expected, tmp_path, capsys):
    train = _mnist(tmp_path / "mnist", n_train, hw)
    argv = ["run", "--dataset", "mnist", "--epochs", "1", "--set", f"data.root={tmp_path / 'mnist'}"]
    line = error_line(capsys, 2, [*argv, "--set", f"output_dir={tmp_path / 'o'}"])
    assert str(train) in line and expected in line, line


# ---- settings and paths ------------------------------------------------------------------------


def test_rram_with_zero_calibration_samples_is_refused(tmp_path, capsys):
    argv = ["run", "--set", "analog.preset=rram-65nm", "--set", "analog.calibration_samples=0"]
    assert "calibration_samples" in error_line(capsys, 2, [*argv, "--set", f"output_dir={tmp_path}"])


def test_crossbar_file_named_in_a_config_file_is_found_beside_it_from_another_folder(tmp_path, monkeypatch):
    from spikecim.config import load_config
    from spikecim.pipeline.stage_analog import crossbar_config_for_run

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "my_xbar.yaml").write_text("preset: ideal\ntile_rows: 48\n")
    (tmp_path / "configs" / "run.yaml").write_text("analog:\n  preset: my_xbar.yaml\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(Path("..") / "configs" / "run.yaml")
    assert crossbar_config_for_run(cfg.analog).tile_rows == 48  # the value written in my_xbar.yaml


def test_report_md_escapes_a_hostile_preset_name(run_copy):
    from spikecim.report.render import write_markdown

    hostile = "<img src=x onerror=alert(1)>"
    metrics = json.loads((run_copy / "tiny" / "metrics.json").read_text())
    metrics["analog"] = {
        "enabled": True,
        "preset": hostile,
        "t_inference_s": 1.0,
        "n_seeds": 1,
        "variants": {},
        "plots": [],
    }
    (run_copy / "tiny" / "metrics.json").write_text(json.dumps(metrics))
    text = write_markdown(run_copy / "tiny").read_text()
    assert hostile not in text and "img src=x" in text  # shown, but not as HTML


# ---- the command line --------------------------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert version("spikecim") in capsys.readouterr().out


def test_boolean_options_show_as_flags_in_help(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--fresh" in text and "--no-fresh" not in text and "--fresh BOOLEAN" not in text


def test_default_run_name_holds_the_model_and_the_data_set(tmp_path):
    assert main(["run", *TINY, "--stages", "train", "--set", f"output_dir={tmp_path}"]) == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert "mlp" in folder.name and "digits" in folder.name


def test_make_clean_leaves_runs_alone():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert dry.strip() and "runs" not in dry


@pytest.mark.parametrize("command", [["evaluate"], ["nir", "export"]])
def test_commands_on_an_interrupted_run_name_the_variants_not_trained(command, run_copy, tmp_path, capsys):
    ckpt = run_copy / "tiny" / "checkpoint"
    for f in ckpt.glob("snn.*"):  # killed before the snn's first epoch was saved
        f.unlink()
    argv = [*command, str(run_copy / "tiny")] + (
        ["-o", str(tmp_path / "m.nir")] if command[0] == "nir" else []
    )
    line = error_line(capsys, 2, argv)
    assert "the snn trained 0 of 1 epochs" in line, line
