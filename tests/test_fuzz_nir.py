"""Property-based fuzzing of the NIR loaders: ``nir import`` folders (``nir.yaml``), ``.nir``
files of random bytes, and NIR graphs built with the ``nir`` package from random small
shapes and parameters (nan, inf, negative and zero values included), written to files.

Each case either loads, and then the model's output on random spikes is finite, or is refused
with a one-line :class:`SpikecimError`; any other exception (a traceback) fails the test.
``spikecim nir inspect`` on the same files answers 0, or 2 with one error line.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import nir
import numpy as np
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.interop import from_nir, write_graph
from spikecim.interop.loader import NIR_FILE, NIR_META, load_model, read_meta

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)

_TMP = Path(tempfile.mkdtemp(prefix="spikecim-fuzz-nir-"))

# Numbers a hostile or careless file holds: nan, ±inf, zero, negative, huge, tiny.
# 3.5e38 is finite in the file (float64) but overflows float32, the model's dtype.
NUMBERS = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, -1e-3, 1e3, 1e-30, 0.5, 2.0, 3.5e38]
) | st.floats(-10, 10, allow_nan=False)


def _array(shape: tuple[int, ...]) -> st.SearchStrategy:
    """A float32 array of ``shape``: one value everywhere, or values drawn element by element."""
    n = math.prod(shape)
    every = st.lists(NUMBERS, min_size=n, max_size=n).map(lambda v: np.asarray(v, np.float32).reshape(shape))
    same = NUMBERS.map(lambda v: np.full(shape, v, np.float32))
    return same | every


def _one_line(err: SpikecimError) -> None:
    assert "\n" not in str(err) and str(err), repr(err)


def _check_model(model) -> None:
    """The model runs on random spikes and gives finite values."""
    shape = tuple(model.input_shape)
    x = torch.bernoulli(torch.full((3, 2, *shape), 0.5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    assert torch.isfinite(out).all(), "non-finite output"


def _loads_or_one_line(load) -> None:
    try:
        model = load()
    except SpikecimError as e:
        _one_line(e)
        return
    _check_model(model)


def _inspect_answers(path: Path, capsys) -> None:
    capsys.readouterr()
    code = main(["nir", "inspect", str(path)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    if code == 2:
        errors = [line for line in out.err.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error"), out.err
    else:
        assert code == 0, out.err


# ---- graphs from the nir package ---------------------------------------------------------


@st.composite
def synapse(draw, n_in: int):
    """An Affine or Linear node from ``n_in`` features, with random weights."""
    n_out = draw(st.integers(1, 4))
    w = draw(_array((n_out, n_in)))
    if draw(st.booleans()):
        return nir.Affine(weight=w, bias=draw(_array((n_out,)))), n_out
    return nir.Linear(weight=w), n_out


@st.composite
def neuron(draw, n: int):
    """A neuron node of size ``n`` with random parameters."""
    kind = draw(st.sampled_from(["LIF", "IF", "LI", "I", "CubaLIF", "CubaLI", "Threshold", "Scale", "Delay"]))
    p = lambda: draw(_array((n,)))
    if kind == "LIF":
        return nir.LIF(tau=p(), r=p(), v_leak=p(), v_threshold=p(), v_reset=p())
    if kind == "IF":
        return nir.IF(r=p(), v_threshold=p(), v_reset=p())
    if kind == "LI":
        return nir.LI(tau=p(), r=p(), v_leak=p())
    if kind == "I":
        return nir.I(r=p())
    if kind == "CubaLIF":
        return nir.CubaLIF(
            tau_syn=p(), tau_mem=p(), r=p(), v_leak=p(), v_threshold=p(), v_reset=p(), w_in=p()
        )
    if kind == "CubaLI":
        return nir.CubaLI(tau_syn=p(), tau_mem=p(), r=p(), v_leak=p(), w_in=p())
    if kind == "Threshold":
        return nir.Threshold(threshold=p())
    if kind == "Scale":
        return nir.Scale(scale=p())
    return nir.Delay(delay=p())


@st.composite
def dense_graphs(draw):
    n_in = draw(st.integers(1, 4))
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges, prev, n = [], "input", n_in
    for i in range(draw(st.integers(1, 3))):
        syn, n = draw(synapse(n))
        nodes[f"fc{i}"], nodes[f"n{i}"] = syn, draw(neuron(n))
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"n{i}")]
        prev = f"n{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([n])})
    edges.append((prev, "output"))
    dt = draw(st.sampled_from([None, 1e-4, 1e-3, 0.0, -1.0, float("nan"), float("inf"), 1e9]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={} if dt is None else {"dt": dt}, type_check=False)


@st.composite
def conv_graphs(draw):
    c_in, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c_out, k = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    stride, padding, dilation = draw(st.integers(-1, 3)), draw(st.integers(-2, 2)), draw(st.integers(0, 2))
    declared = draw(st.sampled_from([(h, w), (h + 1, w), (0, w), (-3, -3)]))
    try:
        conv = nir.Conv2d(
            input_shape=np.array(declared), weight=draw(_array((c_out, c_in, k, k))), stride=stride,
            padding=padding, dilation=dilation, groups=1, bias=draw(_array((c_out,))),
        )  # fmt: skip
    except (ValueError, ZeroDivisionError, OverflowError, AssertionError):  # nir refuses to build it
        assume(False)
    nodes = {"input": nir.Input(input_type={"input": np.array([c_in, h, w])}), "conv": conv}
    edges = [("input", "conv")]
    if draw(st.booleans()):
        kp = draw(st.integers(0, 3))
        cls = draw(st.sampled_from([nir.SumPool2d, nir.AvgPool2d]))
        nodes["pool"] = cls(
            kernel_size=np.array([kp, kp]), stride=np.array([kp, kp]), padding=np.array([0, 0])
        )
        edges.append(("conv", "pool"))
    nodes["output"] = nir.Output(output_type={"output": np.array([c_out, 1, 1])})
    edges.append((edges[-1][1], "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


def _written(graph: nir.NIRGraph) -> Path:
    path = Path(tempfile.mkstemp(suffix=".nir", dir=_TMP)[1])
    try:
        write_graph(graph, path)
    except (SpikecimError, TypeError, ValueError) as e:  # nir cannot write it: not a file a user has
        path.unlink()
        assume(False)
        raise AssertionError from e
    return path


@settings(FUZZ, max_examples=400)
@given(graph=dense_graphs() | conv_graphs())
def test_random_graphs_load_finite_or_are_refused_in_one_line(graph):
    _loads_or_one_line(lambda: from_nir(graph))


@settings(FUZZ, max_examples=150)
@given(graph=dense_graphs() | conv_graphs())
def test_random_graph_files_load_finite_or_are_refused_in_one_line(graph):
    path = _written(graph)
    _loads_or_one_line(lambda: from_nir(path))
    path.unlink()


@settings(FUZZ, max_examples=10)
@given(graph=dense_graphs() | conv_graphs())
def test_nir_inspect_of_random_graph_files_answers_0_or_one_error_line(graph, capsys):
    path = _written(graph)
    _inspect_answers(path, capsys)
    path.unlink()


@settings(FUZZ, max_examples=500)
@given(raw=st.binary(max_size=600), keep=st.integers(0, 4000))
def test_random_bytes_as_a_nir_file_are_refused_in_one_line(raw, keep):
    path = Path(tempfile.mkstemp(suffix=".nir", dir=_TMP)[1])
    # Random bytes alone, or after a prefix of a real file (an HDF5 header, then junk).
    path.write_bytes(_valid_nir()[:keep] + raw)
    _loads_or_one_line(lambda: from_nir(path))
    path.unlink()


# ---- nir import folders ------------------------------------------------------------------

_META_KEYS = ["dt", "convention", "source", "input_shape", "output_shape"]
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 1e-4, 1e308, "euler", "snntorch", "", "1e-4"])
    | st.text(max_size=8)
)
_STRUCTURES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_META_KEYS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


_VALID: list[bytes] = []


def small_graph() -> nir.NIRGraph:
    """Input [3] -> Affine (2 x 3) -> LIF -> Output [2], valid."""
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)),
            "lif": nir.LIF(
                tau=np.full(2, 1e-3, np.float32),
                r=np.ones(2, np.float32),
                v_leak=np.zeros(2, np.float32),
                v_threshold=np.ones(2, np.float32),
                v_reset=np.zeros(2, np.float32),
            ),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )


def _valid_nir() -> bytes:
    """The bytes of a small valid NIR file (Input -> Affine -> LIF -> Output)."""
    if _VALID:
        return _VALID[0]
    graph = small_graph()
    path = _TMP / "valid.nir"
    write_graph(graph, path)
    _VALID.append(path.read_bytes())
    return _VALID[0]


def _folder(meta: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(dir=_TMP))
    (folder / NIR_FILE).write_bytes(_valid_nir())
    (folder / NIR_META).write_bytes(meta)
    return folder


_METAS = (
    st.dictionaries(st.sampled_from(_META_KEYS) | st.text(max_size=4), _STRUCTURES, max_size=6) | _STRUCTURES
)


def _yaml(meta) -> bytes:
    try:
        return yaml.safe_dump(meta).encode()
    except (yaml.YAMLError, ValueError):
        assume(False)
        raise


@settings(FUZZ, max_examples=500)
@given(meta=_METAS)
def test_random_nir_yaml_structures_read_as_valid_settings_or_one_line(meta):
    path = Path(tempfile.mkdtemp(dir=_TMP))
    (path / NIR_META).write_bytes(_yaml(meta))
    try:
        read = read_meta(path)
    except SpikecimError as e:
        _one_line(e)
        return
    # What is read is usable as it is: dt a number of seconds, a known convention, sizes >= 1.
    assert read.dt is None or (isinstance(read.dt, float) and 0 < read.dt <= 1e3)
    assert read.convention in (None, "euler", "snntorch")
    for shape in (read.input_shape, read.output_shape):
        assert shape is None or all(type(s) is int and s >= 1 for s in shape)
    assert read.input_shape is None or len(read.input_shape) >= 1


@settings(FUZZ, max_examples=120)
@given(meta=_METAS)
def test_nir_folders_with_random_nir_yaml_load_finite_or_are_refused_in_one_line(meta):
    folder = _folder(_yaml(meta))
    _loads_or_one_line(lambda: load_model(folder))


@settings(FUZZ, max_examples=150)
@given(raw=st.binary(max_size=300))
def test_random_bytes_as_nir_yaml_load_or_are_refused_in_one_line(raw):
    folder = _folder(raw)
    _loads_or_one_line(lambda: load_model(folder))


def test_nir_inspect_and_trace_of_a_folder_with_a_hostile_nir_yaml_answer_0_or_one_error_line(capsys):
    for meta in (b"dt: .inf\n", b"dt: [1, 2]\n", b"convention: {a: 1}\n", b"\xff\xfe", b"- 1\n- 2\n"):
        folder = _folder(meta)
        _inspect_answers(folder, capsys)
        capsys.readouterr()
        assert main(["trace", str(folder)]) == 2  # trace builds the model with nir.yaml's settings
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().count("\n") == 0 and str(folder / NIR_META) in err, err
