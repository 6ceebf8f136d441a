"""Bad NIR input: one-line errors that name the file, node or field; nothing half-loaded."""

import itertools
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from spikecim.errors import SpikecimError
from spikecim.interop import from_nir, read_graph
from spikecim.interop.loader import import_run

DATA = Path(__file__).parents[2] / "shared" / "data" / "nir-paper"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"NIR paper data not found at {DATA}")


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _lif(n: int) -> nir.LIF:
    one = np.ones(n)
    return nir.LIF(tau=one * 1e-3, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one)


def _graph(*nodes) -> nir.NIRGraph:
    named = {"input": nir.Input(input_type=np.array([3]))}
    named.update({f"n{i}": n for i, n in enumerate(nodes)})
    named["output"] = nir.Output(output_type=np.array([4]))
    names = list(named)
    return nir.NIRGraph(nodes=named, edges=list(itertools.pairwise(names)), type_check=False)


def test_random_bytes_file_is_not_a_nir_file(tmp_path):
    bad = tmp_path / "noise.nir"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SpikecimError) as e:
        from_nir(bad)
    assert "noise.nir: not a readable NIR file" in _one_line(e)


@needs_data
def test_truncated_file_is_reported_as_corrupt(tmp_path):
    data = (DATA / "cnn_sinabs.nir").read_bytes()
    bad = tmp_path / "cut.nir"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpikecimError) as e:
        from_nir(bad)
    assert "cut.nir" in _one_line(e) and "corrupt or truncated" in str(e.value)


@needs_data
def test_csv_is_not_a_nir_file():
    with pytest.raises(SpikecimError, match="lif_norse.csv: not a readable NIR file"):
        read_graph(DATA / "lif_norse.csv")


def test_hdf5_without_a_graph_is_not_a_nir_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(SpikecimError, match="not a NIR file \\(no 'node' group"):
        from_nir(path)


def test_missing_file_is_named():
    with pytest.raises(SpikecimError, match="nowhere.nir: no such NIR file"):
        from_nir("/nowhere.nir")


def test_unknown_node_type_in_a_file_names_the_node(tmp_path):
    path = tmp_path / "g.nir"
    nir.write(path, _graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), _lif(4)))
    with h5py.File(path, "r+") as f:
        del f["node/nodes/n1/type"]
        f["node/nodes/n1"].create_dataset("type", data="Quantum", dtype=h5py.string_dtype())
    with pytest.raises(SpikecimError) as e:
        from_nir(path)
    assert _one_line(e).startswith("node 'n1': unsupported type 'Quantum'")


def test_missing_parameter_in_a_file_names_the_node(tmp_path):
    path = tmp_path / "g.nir"
    nir.write(path, _graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), _lif(4)))
    with h5py.File(path, "r+") as f:
        del f["node/nodes/n1/tau"]
    with pytest.raises(SpikecimError) as e:
        from_nir(path)
    assert _one_line(e).startswith("node 'n1' (LIF)")


def test_neuron_size_that_does_not_fit_the_layer_names_the_node():
    with pytest.raises(SpikecimError) as e:
        from_nir(_graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), _lif(5)))
    assert _one_line(e).startswith("node 'n1' (LIF)")


def test_weight_that_does_not_fit_its_input_names_the_node():
    with pytest.raises(SpikecimError) as e:
        from_nir(_graph(nir.Affine(weight=np.ones((4, 2)), bias=np.zeros(4)), _lif(4)))
    assert _one_line(e).startswith("node 'n0' (Affine): input shape (3,) does not fit")


def test_declared_output_shape_that_differs_names_the_node():
    g = _graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), _lif(4))
    g.nodes["output"] = nir.Output(output_type=np.array([6]))
    with pytest.raises(SpikecimError, match="node 'output' \\(Output\\): declared input shape \\(6,\\)"):
        from_nir(g)


def test_edge_to_a_missing_node_is_named():
    g = _graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)))
    g.edges.append(("n0", "ghost"))
    with pytest.raises(SpikecimError, match="edge \\(n0, ghost\\): node 'ghost' does not exist"):
        from_nir(g)


def test_tau_shorter_than_dt_is_refused_naming_the_field():
    node = _lif(4)
    node.tau = np.full(4, 1e-5)
    with pytest.raises(SpikecimError, match="node 'n1' \\(LIF\\): LIF.tau: .*shorter than dt"):
        from_nir(_graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), node), dt=1e-4)


def test_unknown_convention_names_the_allowed_values():
    with pytest.raises(SpikecimError, match="convention: must be one of euler, snntorch"):
        from_nir(_graph(nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4))), convention="norse")


def test_failed_import_leaves_no_run_folder(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    out = tmp_path / "run"
    with pytest.raises(SpikecimError):
        import_run(bad, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.nir"]
