"""Property-based fuzzing of the loaders users feed files to: the run config, a crossbar
file, an architecture table and a layer list.

Random structures (nested mappings and lists of None, bools, huge integers, nan/inf and
huge floats, strings; keys mostly real field names so the fuzzing reaches deep) and random
file contents go through the public loader. Each either loads, with every number in the
result finite, or is refused with a one-line :class:`SpikecimError`; anything else (a
traceback) fails the test.
"""

from __future__ import annotations

import math
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.devices import DEVICES
from spikecim.cli.main import main
from spikecim.config import RunConfig, load_config
from spikecim.errors import SpikecimError
from spikecim.hw import load_architecture, load_workload
from spikecim.hw.estimators import get_estimator, list_estimators
from spikecim.hw.layers import NetworkSpec

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def _field_names(model: type[BaseModel], out: set[str]) -> set[str]:
    for name, info in model.model_fields.items():
        out.add(name)
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            for t in (arg, *typing.get_args(arg)):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    _field_names(t, out)
    return out


def _keys(*models: type[BaseModel]) -> list[str]:
    names: set[str] = set()
    for m in models:
        _field_names(m, names)
    return sorted(names)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, -1, 1e308, -1e308, 2**63, 1e-300, 0.5, 3])
    | st.text(max_size=8)
)


def structures(keys: list[str]) -> st.SearchStrategy:
    key = st.sampled_from(keys) | st.text(max_size=6)
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=6),
        max_leaves=24,
    )


def mappings(keys: list[str]) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), structures(keys), max_size=8)


def file_contents() -> st.SearchStrategy:
    """Random text and random bytes (those that decode as UTF-8: refusing the others in one
    line is the job of spikecim.readers, tested there)."""
    raw = st.binary(max_size=200).filter(_decodes)
    return raw | st.text(max_size=200).map(lambda t: t.encode("utf8"))


def _decodes(b: bytes) -> bool:
    try:
        b.decode("utf8")
    except UnicodeDecodeError:
        return False
    return True


def assert_finite(value, where: str = "") -> None:
    """Every float inside ``value`` (a model dump) is finite."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_finite(v, f"{where}.{i}")
    elif isinstance(value, float):
        assert math.isfinite(value), where


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _load(loader, path: Path):
    """The loaded object, or None when refused with one line."""
    try:
        return loader(path)
    except SpikecimError as e:
        assert "\n" not in str(e)
        return None


RUN_KEYS = _keys(RunConfig, CrossbarConfig, *DEVICES.values())
XBAR_KEYS = _keys(CrossbarConfig, *DEVICES.values()) + [
    "preset",
    "r_on_ohm",
    "r_off_ohm",
    "adc_bits",
    "dac_bits",
]
ARCH_KEYS = ["name", "estimator", "description", "technology_nm", "params", *list_estimators()]
ARCH_KEYS += _keys(*(get_estimator(e).Params for e in list_estimators()))
LAYER_KEYS = _keys(NetworkSpec) + ["conv2d", "conv1d", "linear"]


@FUZZ
@given(data=mappings(RUN_KEYS))
def test_run_config_loader_never_raises_a_traceback(data, scratch):
    cfg = _load(load_config, _write(scratch / "run.yaml", data))
    if cfg is not None:
        assert_finite(cfg.model_dump())


@FUZZ
@given(data=mappings(XBAR_KEYS))
def test_crossbar_loader_never_raises_a_traceback(data, scratch):
    cfg = _load(load_crossbar_config, _write(scratch / "xbar.yaml", data))
    if cfg is not None:
        assert_finite(cfg.model_dump())


@FUZZ
@given(
    estimator=st.sampled_from(list_estimators()),
    params=st.dictionaries(st.sampled_from(ARCH_KEYS), SCALARS, max_size=40),
    extra=mappings(ARCH_KEYS),
)
def test_architecture_loader_never_raises_a_traceback(estimator, params, extra, scratch):
    table = {"name": "fuzz", "estimator": estimator, "params": params, **extra}
    arch = _load(load_architecture, _write(scratch / "chip.yaml", table))
    if arch is not None:
        assert_finite(arch.p.model_dump())


@FUZZ
@given(
    network=mappings(LAYER_KEYS),
    layers=st.lists(st.dictionaries(st.sampled_from(LAYER_KEYS), SCALARS, max_size=10), max_size=3),
)
def test_layer_list_loader_never_raises_a_traceback(network, layers, scratch):
    network = {**network, "layers": layers} if layers else network
    wl = _load(load_workload, _write(scratch / "layers.yaml", network))
    if wl is not None:
        assert_finite(wl.model_dump())


LOADERS = {
    "run": load_config,
    "crossbar": load_crossbar_config,
    "architecture": load_architecture,
    "layers": load_workload,
}


@settings(FUZZ, max_examples=150)
@given(content=file_contents())
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_random_file_contents_are_loaded_or_refused_in_one_line(kind, content, scratch):
    path = scratch / f"{kind}.yaml"
    path.write_bytes(content)
    _load(LOADERS[kind], path)


@settings(
    FUZZ,
    max_examples=10,
    suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(data=mappings(LAYER_KEYS))
def test_hw_estimate_cli_on_a_random_layer_file_exits_0_or_2(data, scratch, capsys):
    path = _write(scratch / "cli-layers.yaml", data)
    capsys.readouterr()  # capsys is shared by the examples: start from an empty capture
    code = main(["hw", "estimate", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
