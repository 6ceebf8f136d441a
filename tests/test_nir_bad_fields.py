"""NIR files and ``nir import`` folders with a field of the wrong kind, read by the CLI.

Each case starts from a real file of the NIR paper (copied, one dataset replaced with h5py)
or from a folder written by ``spikecim nir import`` (its ``nir.yaml`` edited), and checks what
a user sees: exit code 2, one ``error:`` line that names the node (or ``nir.yaml``) and the
field, and nothing written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import yaml

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.interop import from_nir
from spikecim.interop.loader import NIR_META
from test_fuzz_nir import _folder

DATA = Path(__file__).parents[2] / "shared" / "data" / "nir-paper"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"NIR paper data not found at {DATA}")

CNN = "cnn_sinabs.nir"  # Conv2d '0' (stride 2, dilation 1, groups 1), SumPool2d '4', Affine '11'
BRAILLE = "braille_noDelay_bias_zero.nir"  # Affine 'fc1' (38 x 12), CubaLIF 'lif2'
LIF = "lif_norse.nir"  # Input 'input' [1], Affine '0', LIF '1'


def _mutated(tmp_path: Path, source: str, dataset: str, value) -> Path:
    """A copy of the paper's ``source`` with ``node/nodes/<dataset>`` replaced by ``value``."""
    path = tmp_path / f"bad-{source}"
    shutil.copyfile(DATA / source, path)
    with h5py.File(path, "r+") as f:
        del f[f"node/nodes/{dataset}"]
        f[f"node/nodes/{dataset}"] = value
    return path


def _refused(capsys, *argv: str) -> str:
    """Run the CLI; it must exit 2 with exactly one ``error:`` line, which is returned."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert code == 2, (code, out.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.out + out.err
    return lines[0]


def _refused_everywhere(capsys, tmp_path: Path, path: Path) -> list[str]:
    """``nir inspect``, ``nir import`` and ``hw estimate`` all refuse ``path``; import writes nothing."""
    lines = [_refused(capsys, "nir", "inspect", path)]
    lines.append(_refused(capsys, "nir", "import", path, "-o", tmp_path / "imported"))
    assert not (tmp_path / "imported").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary folder left either
    lines.append(_refused(capsys, "hw", "estimate", path))
    return lines


# ---- text, complex, true/false where numbers are expected --------------------------------


@pytest.mark.parametrize(
    ("source", "node", "kind", "field"),
    [(CNN, "11", "Affine", "weight"), (BRAILLE, "lif2", "CubaLIF", "tau_mem"), (LIF, "1", "LIF", "tau")],
)
def test_text_in_place_of_a_parameter_array_is_refused_naming_node_and_field(
    tmp_path, capsys, source, node, kind, field
):
    path = _mutated(tmp_path, source, f"{node}/{field}", b"abc")
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert f"node '{node}' ({kind}): {field}: must be numbers, got the text 'abc'" in line, line


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (np.ones((38, 12), np.complex128), "must be real numbers, got complex"),
        (np.ones((38, 12), bool), "must be numbers, got true/false values"),
        (np.full((38, 12), b"1.0"), "must be numbers, got text"),
        (np.array([["1"] * 12] * 38, dtype=h5py.string_dtype()), "must be numbers, got"),
    ],
    ids=["complex", "bool", "fixed-length text", "variable-length text"],
)
def test_weights_that_are_not_real_numbers_are_refused_not_cast(tmp_path, capsys, value, says):
    path = _mutated(tmp_path, BRAILLE, "fc1/weight", value)
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert f"node 'fc1' (Affine): weight: {says}" in line, line


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (np.ones((4, 3), np.complex64), "must be real numbers, got complex"),
        (np.ones((4, 3), bool), "must be numbers, got true/false values"),
        (np.full((4, 3), "1"), "must be numbers, got text"),
    ],
    ids=["complex", "bool", "text"],
)
def test_a_graph_built_in_python_with_weights_that_are_not_real_numbers_is_refused(value, says):
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "fc": nir.Linear(weight=value),
            "output": nir.Output(output_type=np.array([4])),
        },
        edges=[("input", "fc"), ("fc", "output")],
        type_check=False,
    )
    with pytest.raises(SpikecimError) as err:
        from_nir(graph)
    assert str(err.value) == f"node 'fc' (Linear): weight: {says}"


# ---- convolution and pooling counts --------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "kind", "field", "value", "says"),
    [
        ("0", "Conv2d", "stride", np.array([0, 0]), "stride: must be integers >= 1, got [0, 0]"),
        ("0", "Conv2d", "stride", np.array([2, -1]), "stride: must be integers >= 1, got [2, -1]"),
        ("0", "Conv2d", "stride", np.array([1.5, 1.5]), "stride: must be integers >= 1, got [1.5, 1.5]"),
        ("0", "Conv2d", "stride", np.array([1e300, 1]), "stride: must be integers >= 1 and <= 2**63-1, got"),
        ("0", "Conv2d", "dilation", np.array([0, 0]), "dilation: must be integers >= 1, got [0, 0]"),
        ("0", "Conv2d", "padding", np.array([1.5, 1.5]), "padding: must be integers >= 0 or 'same' or"),
        ("0", "Conv2d", "padding", b"abc", "padding: must be integers >= 0 or 'same' or 'valid', got 'abc'"),
        ("4", "SumPool2d", "kernel_size", np.array([0, 0]), "kernel_size: must be integers >= 1, got [0, 0]"),
        ("4", "SumPool2d", "kernel_size", np.array([1.5, 1.5]), "kernel_size: must be integers >= 1, got"),
        ("4", "SumPool2d", "kernel_size", b"x", "kernel_size: must be integers >= 1, got 'x'"),
        ("4", "SumPool2d", "padding", b"same", "padding: must be integers >= 0, got 'same'"),
    ],
)
def test_convolution_and_pooling_counts_outside_their_range_are_refused_naming_the_field(
    tmp_path, capsys, node, kind, field, value, says
):
    path = _mutated(tmp_path, CNN, f"{node}/{field}", value)
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert f"node '{node}' ({kind}): {says}" in line, line


@pytest.mark.parametrize(
    ("value", "shown"), [(b"x", "'x'"), (np.int64(0), "0"), (np.array([1, 1]), "[1, 1]"), (2.5, "2.5")]
)
def test_conv_groups_that_is_not_one_integer_of_at_least_one_is_refused(tmp_path, capsys, value, shown):
    path = _mutated(tmp_path, CNN, "0/groups", value)
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert line == f"error: node '0' (Conv2d): groups: must be an integer >= 1, got {shown}", line


def test_conv_groups_given_as_text_in_python_is_refused_naming_the_node():
    conv = nir.Conv2d(
        input_shape=np.array([4, 4]), weight=np.ones((2, 1, 3, 3)), stride=1, padding=1, dilation=1,
        groups=1, bias=np.zeros(2),
    )  # fmt: skip
    conv.groups = "x"
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1, 4, 4])), "conv": conv,
               "output": nir.Output(output_type=np.array([2, 4, 4]))},
        edges=[("input", "conv"), ("conv", "output")], type_check=False,
    )  # fmt: skip
    with pytest.raises(SpikecimError) as err:
        from_nir(graph)
    assert str(err.value) == "node 'conv' (Conv2d): groups: must be an integer >= 1, got 'x'"


# ---- the Input node's shape ----------------------------------------------------------------


def test_input_with_an_empty_shape_is_refused_by_import_as_by_hw_estimate(tmp_path, capsys):
    path = _mutated(tmp_path, LIF, "input/shape", np.array([], np.int64))
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert "node 'input' (Input): shape: must list the sizes of one sample, got []" in line, line


# ---- nir import folders: nir.yaml ----------------------------------------------------------


def test_inspect_of_an_import_folder_uses_the_dt_chosen_at_import(tmp_path, capsys):
    folder = tmp_path / "lif"
    assert main(["nir", "import", str(DATA / LIF), "-o", str(folder), "--dt", "0.002"]) == 0
    capsys.readouterr()
    assert main(["nir", "inspect", str(folder)]) == 0
    assert "(dt = 0.002 s)" in capsys.readouterr().out
    assert main(["nir", "inspect", str(folder), "--dt", "0.0005"]) == 0  # the option still wins
    assert "(dt = 0.0005 s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        (b"dt: .nan\n", "dt: must be one number in (0, 1000] seconds, got nan"),
        (b"dt: [0.001\n", "is not valid YAML"),
        (b"convention: 3\n", "convention: must be one of euler, snntorch, got 3"),
        (b"colour: red\n", "colour: unknown key"),
        (b"input_shape: [5, -1]\n", "input_shape.1:"),
        (b"input_shape: []\n", "input_shape:"),
    ],
    ids=["nan dt", "broken YAML", "convention 3", "unknown key", "negative size", "empty shape"],
)
def test_a_folder_whose_nir_yaml_is_bad_is_refused_by_inspect_export_and_hw_estimate(
    tmp_path, capsys, meta, says
):
    folder = _folder(meta)
    where = str(folder / NIR_META)
    for argv in (
        ["nir", "inspect", folder],
        ["nir", "export", folder, "-o", tmp_path / "out.nir"],
        ["hw", "estimate", folder],
    ):
        line = _refused(capsys, *argv)
        assert where in line and says in line, line
    assert not (tmp_path / "out.nir").exists()


def test_nir_yaml_as_import_writes_it_is_read_back(tmp_path, capsys):
    folder = tmp_path / "braille"
    assert main(["nir", "import", str(DATA / BRAILLE), "-o", str(folder), "--convention", "snntorch"]) == 0
    assert set(yaml.safe_load((folder / NIR_META).read_text())) == {
        "source", "dt", "convention", "input_shape", "output_shape",
    }  # fmt: skip
    capsys.readouterr()
    assert main(["nir", "inspect", str(folder)]) == 0
    assert main(["nir", "export", str(folder), "-o", str(tmp_path / "again.nir")]) == 0
    assert (tmp_path / "again.nir").is_file()


@pytest.mark.parametrize(
    ("field", "value", "other"), [("start_dim", 5, -1), ("end_dim", 3, 0), ("start_dim", -4, -1)]
)
def test_flatten_dimension_outside_its_input_is_refused_naming_the_field(
    tmp_path, capsys, field, value, other
):
    # cnn_sinabs.nir's Flatten '8' takes [8, 4, 4] (from 0 to 2, or -3 to -1)
    path = _mutated(tmp_path, CNN, f"8/{field}", value)
    with h5py.File(path, "r+") as f:
        name = "end_dim" if field == "start_dim" else "start_dim"
        del f[f"node/nodes/8/{name}"]
        f[f"node/nodes/8/{name}"] = other
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert line == (
            f"error: node '8' (Flatten): {field}: {value} is not a dimension of the input [8, 4, 4] "
            "(allowed: -3 to 2)"
        )


@pytest.mark.parametrize(("value", "shown"), [(1.5, "1.5"), (np.nan, "nan"), (np.array([0, 1]), "[0, 1]")])
def test_flatten_dimension_that_is_not_one_whole_number_is_refused_naming_the_field(
    tmp_path, capsys, value, shown
):
    path = _mutated(tmp_path, CNN, "8/start_dim", value)  # cnn_sinabs.nir's Flatten '8'
    for line in _refused_everywhere(capsys, tmp_path, path):
        assert line == (
            "error: node '8' (Flatten): start_dim: must be one whole number (a dimension; negative "
            f"counts from the end), got {shown}"
        )
