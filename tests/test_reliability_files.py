"""Damaged or hostile files: checkpoints, user files that are not UTF-8, data sets that do not
fit together, a damaged kernel cache, and user strings in the Markdown report.

Each bad file gives exit code 2 and one line naming the file and what is wrong, never a
traceback; the kernel cache is rebuilt instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.interop.loader import NIR_META


def _one_error_line(capsys) -> str:
    """The CLI's error line: one, the last thing on stderr (after any stage headings), no traceback."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and captured.err.rstrip().endswith(errors[0]), captured.err
    return errors[0]


# ---- checkpoints -----------------------------------------------------------------------------
def _run_args(out: Path, epochs: int = 1) -> list[str]:
    return [
        "run",
        "--epochs",
        str(epochs),
        "--model",
        "mlp",
        "--stages",
        "train",
        "--name",
        "r",
        "--set",
        f"output_dir={out}",
        "--set",
        "data.limit=32",
        "--set",
        "train.ann_twin=false",
        "--set",
        "model.kwargs.hidden=[8]",
        "--set",
        "data.timesteps=2",
    ]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """The output folder of a real 1-epoch run of a tiny MLP (its checkpoint under r/checkpoint)."""
    out = tmp_path_factory.mktemp("trained")
    assert main(_run_args(out)) == 0
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    return out


STATE, WEIGHTS, OPTIM = "snn.state.json", "weights", "optimizer"


def _file(folder: Path, name: str) -> Path:
    """``state.json``, or the weights or optimizer file that the state names."""
    if name == STATE:
        return folder / STATE
    return folder / json.loads((folder / STATE).read_text())["files"][name]["name"]


def _truncate(fraction: float):
    def corrupt(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return corrupt


def _edit_state(edit):
    def corrupt(path: Path) -> None:
        state = json.loads(path.read_text())
        edit(state)
        path.write_text(json.dumps(state))

    return corrupt


def _edit_tensors(edit):
    def corrupt(path: Path) -> None:
        tensors = load_file(str(path))
        edit(tensors)
        save_file(tensors, str(path))

    return corrupt


def _first_key(tensors: dict, suffix: str = "") -> str:
    return min(k for k in tensors if k.endswith(suffix))


def _set(key, value):
    return lambda s: s.__setitem__(key, value)


def _nan_weight(t):
    k = _first_key(t, "weight")
    t[k] = t[k].clone().index_fill_(0, torch.tensor([0]), float("nan"))


def _wrong_shape(t):
    k = _first_key(t, "weight")
    t[k] = torch.zeros(t[k].shape[0] + 1, *t[k].shape[1:])


def _drop(suffix):
    return lambda t: t.pop(_first_key(t, suffix))


CORRUPTIONS = {
    **{
        f"{name}-truncated-{f}": (name, _truncate(f), "")
        for name in (STATE, WEIGHTS, OPTIM)
        for f in (0.0, 0.01, 0.5, 0.99)
    },
    "state-junk-json": (STATE, lambda p: p.write_text('{"epoch": 1, "history": [}'), "not valid JSON"),
    "state-not-a-mapping": (STATE, lambda p: p.write_text("[1, 2]"), "must hold a mapping"),
    "state-not-utf8": (
        STATE,
        lambda p: p.write_bytes(b'{"epoch": \xff}'),
        "not UTF-8 text (byte 0xff at offset 10)",
    ),
    "state-epoch-999": (STATE, _edit_state(_set("epoch", 999)), "epoch 999 is past train.epochs = 1"),
    "state-epoch-minus-3": (STATE, _edit_state(_set("epoch", -3)), "epoch"),
    "state-epoch-text": (STATE, _edit_state(_set("epoch", "1")), "epoch"),
    "state-missing-history": (STATE, _edit_state(lambda s: s.pop("history")), "history"),
    "state-missing-optimizer": (STATE, _edit_state(lambda s: s.pop("optimizer")), "optimizer"),
    "state-nan-loss": (
        STATE,
        lambda p: p.write_text(p.read_text().replace('"loss": ', '"loss": NaN, "x": ', 1)),
        "loss",
    ),
    "state-lr-text": (
        STATE,
        _edit_state(lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", "fast")),
        "lr",
    ),
    "state-scheduler-junk": (STATE, _edit_state(_set("scheduler", {"last_epoch": 1})), "scheduler"),
    "state-adam-betas-changed": (
        STATE,
        _edit_state(lambda s: s["optimizer"]["param_groups"][0].__setitem__("betas", [0.5, 0.5])),
        "optimizer.param_groups.0.betas is [0.5, 0.5], the run's settings give [0.9, 0.999]",
    ),
    "state-adam-maximize": (
        STATE,
        _edit_state(lambda s: s["optimizer"]["param_groups"][0].__setitem__("maximize", True)),
        "optimizer.param_groups.0.maximize is True, the run's settings give False",
    ),
    "state-adam-amsgrad": (
        STATE,
        _edit_state(lambda s: s["optimizer"]["param_groups"][0].__setitem__("amsgrad", True)),
        "optimizer.param_groups.0.amsgrad is True, the run's settings give False",
    ),
    "state-lr-off-the-schedule": (
        STATE,
        _edit_state(lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", 5.0)),
        "optimizer.param_groups.0.lr is 5.0, the scheduler's last learning rate is 0.0",
    ),
    "state-optimizer-scalar-text": (
        STATE,
        _edit_state(lambda s: s["optimizer"]["scalars"].__setitem__("0.step", "abc")),
        "holds '0.step' = 'abc', not a finite number",
    ),
    "weights-nan": (WEIGHTS, _edit_tensors(_nan_weight), "NaN"),
    "weights-wrong-shape": (WEIGHTS, _edit_tensors(_wrong_shape), "shape"),
    "weights-missing-key": (WEIGHTS, _edit_tensors(_drop("weight")), "missing"),
    "weights-garbage": (
        WEIGHTS,
        lambda p: p.write_bytes(b"\x00" * 8 + b"garbage" * 50),
        "not a readable safetensors",
    ),
    "weights-deleted": (WEIGHTS, lambda p: p.unlink(), "missing"),
    "optim-nan": (
        OPTIM,
        _edit_tensors(
            lambda t: t.__setitem__(_first_key(t, "exp_avg"), t[_first_key(t, "exp_avg")] * float("nan"))
        ),
        "NaN",
    ),
    "optim-wrong-shape": (
        OPTIM,
        _edit_tensors(lambda t: t.__setitem__(_first_key(t, "exp_avg"), torch.zeros(3))),
        "shape",
    ),
    "optim-missing-key": (OPTIM, _edit_tensors(_drop("exp_avg")), "lacks"),
    "optim-unknown-key": (
        OPTIM,
        _edit_tensors(lambda t: t.__setitem__("99.exp_avg", torch.zeros(1))),
        "names no parameter",
    ),
    "optim-deleted": (OPTIM, lambda p: p.unlink(), "missing"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_damaged_checkpoint_is_one_line_naming_the_file_and_exit_2(run_copy, capsys, case):
    name, corrupt, expected = CORRUPTIONS[case]
    path = _file(run_copy / "r" / "checkpoint", name)
    corrupt(path)
    capsys.readouterr()
    assert main(_run_args(run_copy)) == 2
    line = _one_error_line(capsys)
    assert str(path) in line or (case.startswith("state-") and "checkpoint" in line), line
    assert expected in line, line
    assert "--fresh" in line and "--name" in line


def test_intact_checkpoint_resumes_and_fresh_replaces_a_damaged_one_once_it_is_moved_out(run_copy, capsys):
    assert main(_run_args(run_copy)) == 0  # resumes: epoch 1 of 1 already done
    state = run_copy / "r" / "checkpoint" / STATE
    state.write_text("")
    assert main(_run_args(run_copy)) == 2
    capsys.readouterr()
    # changed since spikecim wrote it: --fresh does not delete it, it names it
    assert main([*_run_args(run_copy), "--fresh"]) == 2
    assert f"holds checkpoint/{STATE}, which changed since spikecim wrote it" in _one_error_line(capsys)
    assert state.read_text() == ""
    state.rename(run_copy / STATE)
    assert main([*_run_args(run_copy), "--fresh"]) == 0
    assert json.loads(state.read_text())["epoch"] == 1


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "damage"),
    [(STATE, lambda p: p.write_text("")), (WEIGHTS, lambda p: p.unlink()), (WEIGHTS, _flip_last_byte)],
)
@pytest.mark.parametrize("command", ["evaluate", "trace"])
def test_evaluate_and_trace_name_a_damaged_checkpoint_as_run_does(run_copy, capsys, name, damage, command):
    path = _file(run_copy / "r" / "checkpoint", name)
    damage(path)
    capsys.readouterr()
    assert main([command, str(run_copy / "r")]) == 2
    line = _one_error_line(capsys)
    assert str(path) in line and "--fresh" in line and "no checkpoint" not in line, line
    assert main(_run_args(run_copy)) == 2
    assert _one_error_line(capsys) == line


@pytest.mark.parametrize("epoch", [10**30, 10**12])
def test_evaluate_refuses_a_state_json_with_a_huge_epoch_in_one_line(run_copy, capsys, epoch):
    # 10**30 overflowed the history check, 10**12 made it build a list of 10**12 epochs
    state = run_copy / "r" / "checkpoint" / STATE
    _edit_state(_set("epoch", epoch))(state)
    capsys.readouterr()
    assert main(["evaluate", str(run_copy / "r")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(
        f"error: checkpoint: {state}: history must hold one row for each of epochs 1..{epoch}"
    )


@pytest.mark.parametrize("damage", ["nested", "fifo"])
def test_evaluate_refuses_a_state_json_nested_too_deep_or_not_a_file_in_one_line(run_copy, capsys, damage):
    # json's parser recursed past Python's limit on the first; reading a pipe never ended
    state = run_copy / "r" / "checkpoint" / STATE
    state.unlink()
    if damage == "nested":
        state.write_text("[" * 100_000 + "]" * 100_000)
    else:
        os.mkfifo(state)
    capsys.readouterr()
    assert main(["evaluate", str(run_copy / "r")]) == 2
    assert str(state) in _one_error_line(capsys)


def _with_stages(argv: list[str], stages: str) -> list[str]:
    out = list(argv)
    out[out.index("--stages") + 1] = stages
    return out


def test_training_beside_weights_placed_by_hand_is_refused_and_leaves_them_as_they_were(run_copy, capsys):
    ckpt = run_copy / "r" / "checkpoint"
    placed = ckpt / "snn.safetensors"
    _file(ckpt, WEIGHTS).rename(placed)
    for f in ckpt.iterdir():
        if f != placed:
            f.unlink()
    raw = placed.read_bytes()
    capsys.readouterr()
    assert main(_with_stages(_run_args(run_copy), "train,evaluate")) == 2
    line = _one_error_line(capsys)
    assert str(placed) in line and "placed by hand" in line, line
    assert sorted(ckpt.iterdir()) == [placed] and placed.read_bytes() == raw
    assert main(_with_stages(_run_args(run_copy), "evaluate")) == 0  # used as they are
    assert sorted(ckpt.iterdir()) == [placed] and placed.read_bytes() == raw


def test_training_that_diverges_stops_before_saving_the_epoch_and_can_resume(tmp_path, capsys, monkeypatch):
    from spikecim.tasks.classification import Classification
    from spikecim.train import trainer

    epoch_now = []
    real_generator, real_loss = trainer.epoch_generator, Classification.loss

    def generator(seed, epoch):
        epoch_now.append(epoch)
        return real_generator(seed, epoch)

    def loss(self, out, y, mode):  # the second epoch's loss (and so its weights) turn NaN
        value = real_loss(self, out, y, mode)
        return value * float("nan") if epoch_now[-1] == 1 else value

    monkeypatch.setattr(trainer, "epoch_generator", generator)
    monkeypatch.setattr(Classification, "loss", loss)
    assert main(_run_args(tmp_path, epochs=2)) == 2
    line = _one_error_line(capsys)
    assert "the snn diverged in epoch 2 of 2" in line and "train.lr" in line, line
    ckpt = tmp_path / "r" / "checkpoint"
    assert json.loads((ckpt / STATE).read_text(), parse_constant=float)["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(str(_file(ckpt, WEIGHTS))).values())
    monkeypatch.undo()
    assert main(_run_args(tmp_path, epochs=2)) == 0  # the last good epoch resumes
    assert json.loads((ckpt / STATE).read_text())["epoch"] == 2


def test_training_that_diverges_in_its_first_epoch_leaves_no_run_behind(tmp_path, capsys):
    argv = _run_args(tmp_path, epochs=2)
    argv += ["--set", "train.lr=10", "--set", "train.optimizer=sgd", "--set", "train.weight_decay=1e12"]
    argv += ["--set", "data.batch_size=4"]  # 8 steps of x(1 - 1e13): past float32's range
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "the snn diverged in epoch 1 of 2" in line and "train.weight_decay" in line, line
    assert not (tmp_path / "r").exists()


def test_a_run_of_zero_epochs_saves_the_untrained_weights_for_evaluate_and_trace(tmp_path):
    from spikecim.config import load_config
    from spikecim.data import dataset_from_config
    from spikecim.pipeline.run import build_models

    assert main(_run_args(tmp_path, epochs=0)) == 0
    run = tmp_path / "r"
    assert json.loads((run / "checkpoint" / STATE).read_text())["epoch"] == 0
    cfg = load_config(run / "config.yaml")
    untrained = build_models(cfg, dataset_from_config(cfg.data))["snn"].state_dict()
    saved = load_file(str(_file(run / "checkpoint", WEIGHTS)))
    assert saved.keys() == untrained.keys() and all(torch.equal(saved[k], untrained[k]) for k in saved)
    assert main(["evaluate", str(run)]) == 0
    assert main(["trace", str(run)]) == 0


def test_a_damaged_workload_json_stops_a_stage_that_needs_it_but_not_evaluate_or_trace(run_copy, capsys):
    run = run_copy / "r"
    assert main(["trace", str(run)]) == 0
    workload = run / "workload.json"
    workload.write_bytes(workload.read_bytes()[:20])
    assert main(["evaluate", str(run)]) == 0
    capsys.readouterr()
    assert main(_with_stages(_run_args(run_copy), "hardware")) == 2
    line = _one_error_line(capsys)
    assert str(workload) in line and "not valid JSON" in line, line
    # changed since spikecim wrote it: trace does not replace it until it is moved away
    assert main(["trace", str(run)]) == 2
    assert f"trace: {workload} changed since spikecim wrote it" in _one_error_line(capsys)
    workload.unlink()
    assert main(["trace", str(run)]) == 0
    assert json.loads(workload.read_text())["layers"]


# ---- user files that are not UTF-8 text ---------------------------------------------------
_GARBAGE = b"name: r\n\x89PNG\r\n\x1a\n\xff\xfe binary"  # 0x89 is the first byte that is not UTF-8
_BAD_OFFSET = _GARBAGE.index(b"\x89")


def _report_of(path: Path):
    # config.yaml and metrics.json of a run folder are read when its report is written.
    from spikecim.report import write_report

    if not path.with_name("metrics.json").exists():
        path.with_name("metrics.json").write_text("{}")
    return write_report(path.parent)


def _layer_list(path: Path):
    from spikecim.hw.layers import load_workload

    return load_workload(path)


def _nir_meta(path: Path):
    from spikecim.interop.loader import read_meta

    return read_meta(path.parent)


def _loaders():
    from spikecim.analog import load_crossbar_config
    from spikecim.config import load_config
    from spikecim.hw import load_architecture
    from spikecim.hw.cost import CostReport
    from spikecim.trace import Workload

    return {
        "run config": ("run.yaml", "config", load_config),
        "crossbar YAML": ("xbar.yaml", "analog", load_crossbar_config),
        "architecture table": ("arch.yaml", "arch", load_architecture),
        "workload JSON": ("w.json", "workload", Workload.load),
        "layer list": ("layers.yaml", "workload", _layer_list),
        "cost report": ("cost.json", "cost report", CostReport.load),
        "run folder config.yaml": ("config.yaml", "report", _report_of),
        "run folder metrics.json": ("metrics.json", "report", _report_of),
        "nir import metadata": (NIR_META, "nir import metadata", _nir_meta),
    }


@pytest.mark.parametrize("loader", list(_loaders()))
def test_file_that_is_not_utf8_is_one_line_naming_file_byte_and_offset(tmp_path, loader):
    fname, field, load = _loaders()[loader]
    path = tmp_path / fname
    path.write_bytes(_GARBAGE)
    with pytest.raises(SpikecimError) as err:
        load(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{field}: "), msg
    assert f"{path} is not UTF-8 text (byte 0x89 at offset {_BAD_OFFSET})" in msg, msg


@pytest.mark.parametrize(
    "argv",
    [
        lambda p: ["run", str(p)],
        lambda p: ["hw", "spikesim", str(p)],
        lambda p: ["hw", "estimate", str(p)],
        lambda p: ["report", str(p.parent)],
    ],
    ids=["run", "hw spikesim", "hw estimate", "report"],
)
def test_cli_given_a_binary_file_exits_2_with_one_line(tmp_path, capsys, argv):
    path = tmp_path / "config.yaml"
    path.write_bytes(_GARBAGE)
    (tmp_path / "metrics.json").write_bytes(_GARBAGE)
    assert main(argv(path)) == 2
    line = _one_error_line(capsys)
    assert "is not UTF-8 text (byte 0x89" in line and str(tmp_path) in line, line


# ---- data sets whose splits do not fit together -----------------------------------------
def _write_idx(path: Path, array) -> None:
    """An IDX file as the format defines it: 00 00 08 ndim, big-endian sizes, unsigned bytes."""
    shape = tuple(array.shape)
    header = bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    path.write_bytes(header + bytes(array.astype("uint8").ravel().tolist()))


def _write_mnist(folder: Path, n_train=4, train_hw=(28, 28), n_test=3, test_hw=(28, 28), top_label=9) -> dict:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for prefix, n, hw in (("train", n_train, train_hw), ("t10k", n_test, test_hw)):
        files[prefix] = folder / f"{prefix}-images-idx3-ubyte"
        _write_idx(files[prefix], np.full((n, *hw), 7))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % (top_label + 1))
    return files


def _write_cifar(folder: Path, dataset: str, n_train=4, n_test=3) -> dict:
    label_bytes = 1 if dataset == "cifar10" else 2

    def records(n: int) -> bytes:
        return b"".join(bytes([i % 10] * label_bytes) + bytes([i]) * 3072 for i in range(n))

    if dataset == "cifar10":
        sub = folder / "cifar-10-batches-bin"
        train_names, test_name = [f"data_batch_{i}.bin" for i in range(1, 6)], "test_batch.bin"
    else:
        sub = folder / "cifar-100-binary"
        train_names, test_name = ["train.bin"], "test.bin"
    sub.mkdir(parents=True)
    for name in train_names:
        (sub / name).write_bytes(records(n_train))
    (sub / test_name).write_bytes(records(n_test))
    return {"train": sub / train_names[0], "t10k": sub / test_name}


def _write(dataset: str, folder: Path, **kw) -> dict:
    if dataset.startswith("cifar"):
        return _write_cifar(folder, dataset, **{k: v for k, v in kw.items() if k.startswith("n_")})
    return _write_mnist(folder, **kw)


FILE_DATASETS = ["mnist", "fashion-mnist", "cifar10", "cifar100"]


@pytest.mark.parametrize("dataset", FILE_DATASETS)
@pytest.mark.parametrize("split", ["train", "t10k"])
def test_split_with_no_samples_is_one_line_naming_its_file(tmp_path, dataset, split):
    from spikecim.data import load_dataset

    files = _write(dataset, tmp_path, **{"n_train" if split == "train" else "n_test": 0})
    with pytest.raises(SpikecimError) as err:
        load_dataset(dataset, root=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("data: ") and str(files[split]) in msg, msg


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_train_and_test_images_of_different_sizes_are_one_line_naming_both_files(tmp_path, dataset):
    from spikecim.data import load_dataset

    files = _write_mnist(tmp_path, train_hw=(10, 10), test_hw=(28, 28))
    with pytest.raises(SpikecimError) as err:
        load_dataset(dataset, root=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(files["train"]) in msg and str(files["t10k"]) in msg, msg
    assert "1x28x28" in msg and "1x10x10" in msg, msg


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_label_outside_the_classes_is_one_line(tmp_path, dataset):
    from spikecim.data import load_dataset

    _write_mnist(tmp_path, n_train=12, top_label=11)
    with pytest.raises(SpikecimError, match=r"label 1[01], allowed 0\.\.9"):
        load_dataset(dataset, root=str(tmp_path))


@pytest.mark.parametrize(
    "x_test, y_test, expected",
    [
        (torch.full((2, 3), float("nan")), torch.zeros(2, dtype=torch.int64), "NaN or infinite"),
        (torch.zeros(2, 3), torch.tensor([0, -1]), "label -1, allowed 0..1"),
        (torch.zeros(2, 3), torch.tensor([0, 2]), "label 2, allowed 0..1"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), "holds no samples"),
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.int64), "shape 4 but the train split (a.bin) 3"),
    ],
    ids=["nan", "negative-label", "label-too-large", "empty", "other-shape"],
)
def test_dataset_contract_names_the_split_and_its_file(x_test, y_test, expected):
    from spikecim.data import Dataset

    x = torch.zeros(2, 3)
    y = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(SpikecimError) as err:
        Dataset("toy", x, y, x_test, y_test, 2, sources=("a.bin", "b.bin"))
    msg = str(err.value)
    assert "\n" not in msg and "b.bin" in msg and expected in msg, msg


def test_run_on_an_empty_training_file_exits_2_before_training(tmp_path, capsys):
    files = _write_mnist(tmp_path / "mnist", n_train=0)
    argv = ["run", "--dataset", "mnist", "--epochs", "1", "--set", f"data.root={tmp_path / 'mnist'}"]
    assert main([*argv, "--set", f"output_dir={tmp_path / 'out'}"]) == 2
    line = _one_error_line(capsys)
    assert str(files["train"]) in line and "no samples" in line, line
    assert not list((tmp_path / "out").rglob("metrics.json"))


# ---- the compiled kernel cache ----------------------------------------------------------
_KERNEL_SCRIPT = """
import sys, warnings
import torch
from spikecim.nn.functional import LIFParams, lif
from spikecim.nn.kernels import cpu
warnings.simplefilter("always")
assert cpu.available(torch.float64), "kernel not available"
x = torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
s, m = lif(x, p=LIFParams(beta=0.8, threshold=0.6), backend="cpu")
s_ref, m_ref = lif(x, p=LIFParams(beta=0.8, threshold=0.6), backend="reference")
assert torch.equal(s, s_ref) and torch.equal(m.v, m_ref.v), "kernel differs from the reference loop"
print("ok", float(s.sum()))
"""


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _damage_garbage(path: Path) -> None:
    path.write_bytes(bytes((i * 131 + 7) % 256 for i in range(path.stat().st_size)))


@pytest.fixture(scope="module")
def built_kernel() -> list[Path]:
    """The float64 library and its record, as built (or found verified) in the default cache."""
    from spikecim.nn.kernels import cbuild, cpu

    if not cpu.available(torch.float64):
        pytest.skip("no C compiler: the CPU kernel is not built")
    lib = cbuild.build(cpu._SOURCE, "lif_cpu_double", cbuild.flag_sets("double")[0])
    return [lib, lib.with_suffix(".json")]


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_garbage], ids=["truncated", "garbage"])
def test_damaged_cached_kernel_is_rebuilt_not_loaded(tmp_path, python, subprocess_env, built_kernel, damage):
    import hashlib
    import subprocess

    cache = tmp_path / "cache" / "kernels"
    cache.mkdir(parents=True)
    for f in built_kernel:
        shutil.copy(f, cache / f.name)
    lib = cache / built_kernel[0].name
    built = hashlib.sha256(lib.read_bytes()).hexdigest()
    damage(lib)
    assert hashlib.sha256(lib.read_bytes()).hexdigest() != built
    env = dict(subprocess_env, SPIKECIM_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        [python, "-c", _KERNEL_SCRIPT], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr  # not 135 (bus error)
    assert done.stdout.startswith("ok ")  # the kernel ran and equals the reference loop
    assert "is damaged; rebuilding it" in done.stderr
    data = lib.read_bytes()
    record = json.loads(lib.with_suffix(".json").read_text())
    assert record["size"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()


# ---- user strings in report.md ------------------------------------------------------------
HOSTILE = "<img src=x onerror=alert(1)>|`x`*[a](javascript:b)"


def _hostile_run(run_dir: Path, n_seeds: int = 3) -> Path:
    from spikecim.trace.workload import LayerWorkload, Workload

    run_dir.mkdir(parents=True)
    layer = LayerWorkload(
        name=HOSTILE, kind="linear", in_ch=4, out_ch=2, params=8, macs=8, timesteps=1,
        in_nonzero_per_step=[2.0], acs_per_step=[4.0], spiking_input=True, has_neuron=False,
    )  # fmt: skip
    Workload(model=HOSTILE, spiking=True, timesteps=1, samples=2, layers=[layer]).save(
        run_dir / "workload.json"
    )
    cost = {
        "estimator": HOSTILE,
        "energy_pj": 3.2e6,
        "latency_ns": 10.0,
        "area_um2": 1e6,
        "tops_per_w": 1.0,
        "energy_by_component_pj": {HOSTILE: 1.0},
    }
    variant = {"ideal": 0.9, "analog": {"mean": 0.85, "std": 0.012, "accuracies": [0.85] * n_seeds}}
    metrics = {
        "train": {"snn": {"history": [], "test_acc": None, "epochs": 0}},
        "evaluate": {"snn": {"accuracy": 0.5, "samples": 2, "spike_rates": {HOSTILE: 0.1}}},
        "analog": {
            "enabled": True,
            "preset": HOSTILE,
            "t_inference_s": 1.0,
            "n_seeds": n_seeds,
            "variants": {HOSTILE: variant},
            "plots": [],
        },
        "hardware": {
            "mode": HOSTILE,
            "snn": {HOSTILE: cost, "other": dict(cost, energy_pj=5e4)},
            "snn_over_ann": {HOSTILE: {"energy_pj": 1.0, "latency_ns": 1.0, "edp_pj_ns": 1.0}},
            "files": {"plots": []},
        },
        "timing_s": {HOSTILE: 1.0},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    config = {
        "name": HOSTILE,
        "seed": 0,
        "data": {"name": HOSTILE, "encoder": HOSTILE},
        "model": {"name": HOSTILE, "neuron": {"kind": HOSTILE}, "kwargs": {HOSTILE: HOSTILE}},
        "train": {"epochs": 0, "optimizer": HOSTILE},
    }
    (run_dir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return run_dir


def test_markdown_report_carries_no_raw_html_from_user_strings(tmp_path):
    from spikecim.report import write_markdown, write_report

    run_dir = _hostile_run(tmp_path / "r")
    md = write_markdown(run_dir).read_text(encoding="utf-8")
    assert "```" not in md  # no code block: every line below is Markdown text
    assert "<" not in md, [line for line in md.splitlines() if "<" in line]
    # The strings are still shown, as text: preset, variant, layer, architecture, run name.
    assert md.count("&lt;img src=x onerror=alert(1)&gt;") >= 6
    assert "](javascript:" not in md.replace("\\](", "")
    # Every table row has as many cell separators as its header (no pipe from a string).
    for table in re.findall(r"(?:^\|.*\|$\n?)+", md, flags=re.MULTILINE):
        rows = table.strip().splitlines()
        seps = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
        assert len(seps) == 1, rows
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page


# ---- one format per kind of number ----------------------------------------------------------
@pytest.mark.parametrize("n_seeds", [1, 3])
def test_analog_accuracy_shows_std_only_from_two_seeds_in_html_markdown_and_console(tmp_path, n_seeds):
    from spikecim.pipeline.stages import read_result
    from spikecim.report import write_markdown

    run_dir = _hostile_run(tmp_path / "r", n_seeds)
    md = write_markdown(run_dir).read_text(encoding="utf-8")
    console = " ".join(
        text
        for _, text in read_result(
            "analog", json.loads((run_dir / "metrics.json").read_text())["analog"]
        ).summary_rows()
    )
    # 0.85 mean, 0.012 std: 85.00 % and 1.20 %, two decimals everywhere.
    if n_seeds == 1:
        expected = "85.00% (1 seed)"
        assert "±" not in console and "± 0.00" not in md
    else:
        expected = "85.00% ± 1.20% (3 seeds)"
    assert expected in md and expected in console
    assert "| 90.00% |" in md and "ideal 90.00%" in console


def test_energies_of_one_table_share_one_unit_chosen_from_the_largest(tmp_path):
    from spikecim.pipeline.stages import read_result
    from spikecim.report import write_markdown

    run_dir = _hostile_run(tmp_path / "r")
    md = write_markdown(run_dir).read_text(encoding="utf-8")
    # 3.2e6 pJ and 5e4 pJ: the largest is 3.2 µJ, so both are in µJ: 3.2 and 0.05.
    assert "energy (µJ)" in md
    assert re.search(r"\| 3\.2 \|", md) and re.search(r"\| 0\.05 \|", md)
    (text,) = [
        t
        for v, t in read_result(
            "hardware", json.loads((run_dir / "metrics.json").read_text())["hardware"]
        ).summary_rows()
        if v == "snn"
    ]
    assert text.endswith("3.2 µJ, other: 0.05 µJ")


def test_run_with_zero_epochs_finishes_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--epochs", "0", "--set", "data.limit=64", "--set", f"output_dir={out}"]
    argv += ["--stages", "train,evaluate,trace,report", "--name", "e0", "--model", "mlp"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "spikecim" in captured.out and "accuracy —" in captured.out
    assert json.loads((out / "e0" / "metrics.json").read_text())["train"]["snn"]["epochs"] == 0


# ---- progress of the analog stage -----------------------------------------------------------
def _analog_ctx(tmp_path, console):
    from spikecim.config import RunConfig
    from spikecim.data import Dataset
    from spikecim.models import create_model
    from spikecim.pipeline.stages import RunContext

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 8, 8, generator=g), torch.arange(8) % 2
    data = Dataset("tiny", x, y, x, y, 2)
    cfg = RunConfig(
        data={"timesteps": 2},
        analog={"n_seeds": 2, "drift_times_s": [1.0, 10.0], "adc_bits_sweep": [4], "hwa_epochs": 1},
    )
    torch.manual_seed(0)
    models = {"snn": create_model("mlp", num_classes=2, hidden=(4,))}
    return RunContext(config=cfg, run_dir=tmp_path, data=data, models=models, console=console)


def test_analog_stage_shows_one_step_per_seed_of_every_pass_on_the_console(tmp_path):
    import io

    from rich.console import Console

    from spikecim.pipeline.stages import get_stage

    buf = io.StringIO()
    get_stage("analog").fn(_analog_ctx(tmp_path, Console(file=buf, width=200, force_terminal=False)))
    text = buf.getvalue()
    # 2 seeds x (analog + 2 drift times + 1 ADC setting + after HWA) + the HWA training = 11;
    # no BN fine-tuning (the MLP has no BatchNorm).
    assert "analog snn" in text and "11/11" in text, text


def test_analog_stage_without_a_console_prints_nothing(tmp_path, capsys):
    from spikecim.pipeline.stages import get_stage

    out = get_stage("analog").fn(_analog_ctx(tmp_path, None))
    assert len(out.variants["snn"].analog.accuracies) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---- fuzzing: only SpikecimError, never another exception -----------------------------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fuzz_checkpoint(trained_run, tmp_path_factory):
    """A copy of the trained checkpoint, and a loader that restores it into a fresh model."""
    from spikecim.models import create_model
    from spikecim.train import FitSpec
    from spikecim.train.checkpoint import load_checkpoint
    from spikecim.train.trainer import make_optimizer

    folder = tmp_path_factory.mktemp("fuzz") / "checkpoint"
    shutil.copytree(trained_run / "r" / "checkpoint", folder)
    spec = FitSpec(epochs=1, timesteps=2)
    state = json.loads((folder / STATE).read_text())

    def load() -> None:
        model = create_model("mlp", hidden=(8,))
        opt, sched = make_optimizer(model, spec)
        try:
            load_checkpoint(folder, "snn", model, opt, sched, 1, state["fingerprint"])
        except SpikecimError as e:
            assert "\n" not in str(e)

    paths = {name: _file(folder, name) for name in (STATE, WEIGHTS, OPTIM)}
    originals = {name: path.read_bytes() for name, path in paths.items()}
    return folder, state, load, originals, paths


def _paths(value, prefix=()):
    """Every path into a JSON value (keys of mappings, indices of lists)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


_FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(data=st.data())
def test_fuzzed_state_json_values_are_refused_with_one_line(fuzz_checkpoint, data):
    folder, state, load, originals, _ = fuzz_checkpoint
    paths = list(_paths(state))
    path = data.draw(st.sampled_from(paths))
    broken = _replaced(state, path, data.draw(_JSON))
    (folder / STATE).write_text(json.dumps(broken))
    load()
    (folder / STATE).write_bytes(originals[STATE])


@_FUZZ
@given(doc=_JSON)
def test_fuzzed_state_json_documents_are_refused_with_one_line(fuzz_checkpoint, doc):
    folder, _, load, originals, _ = fuzz_checkpoint
    (folder / STATE).write_text(json.dumps(doc))
    load()
    (folder / STATE).write_bytes(originals[STATE])


@_FUZZ
@given(name=st.sampled_from([STATE, WEIGHTS, OPTIM]), raw=st.binary(max_size=256), keep=st.integers(0, 4096))
def test_fuzzed_checkpoint_bytes_are_refused_with_one_line(fuzz_checkpoint, name, raw, keep):
    _, _, load, originals, paths = fuzz_checkpoint
    # Random bytes, alone or after a prefix of the real file (a valid header, then junk).
    paths[name].write_bytes(originals[name][:keep] + raw)
    load()
    paths[name].write_bytes(originals[name])


@_FUZZ
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".yaml", ".json"]), text=st.booleans())
def test_fuzzed_user_files_read_as_a_mapping_or_a_one_line_error(tmp_path_factory, raw, suffix, text):
    from spikecim.readers import read_mapping

    path = tmp_path_factory.mktemp("f", numbered=True) / f"user{suffix}"
    path.write_bytes(raw.decode("latin-1").encode() if text else raw)
    try:
        assert isinstance(read_mapping(path, "config"), dict)
    except SpikecimError as e:
        assert "\n" not in str(e) and str(e).startswith("config: ")
