"""The compiled-kernel cache: a library is rebuilt when a header it may include changes."""

from __future__ import annotations

import ctypes

import pytest

from spikecim.nn.kernels import cbuild


def test_a_changed_header_beside_the_source_builds_a_new_library(tmp_path, monkeypatch):
    try:
        cbuild.compiler()
    except OSError:
        pytest.skip("no C compiler")
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "k.c").write_text('#include "value.h"\nint value(void) { return VALUE; }\n')
    libs = []
    for value in (3, 7):
        (src / "value.h").write_text(f"#define VALUE {value}\n")
        path = cbuild.build(src / "k.c", "k", cbuild.FLAGS)
        libs.append(path)
        assert ctypes.CDLL(str(path)).value() == value  # the header's value, not a stale build
    assert libs[0] != libs[1]


@pytest.mark.parametrize(
    ("setting", "widest", "runs"),
    [
        (None, 3, 3),  # unset: what the CPU has
        (None, 2, 2),
        ("avx2", 3, 2),  # capped below AVX-512
        ("AVX2", 3, 2),
        ("avx512", 2, 2),  # never above what the CPU has
        ("avx512", 3, 3),
    ],
)
def test_spikecim_isa_caps_the_kernels_at_the_named_instruction_set(monkeypatch, setting, widest, runs):
    if setting is None:
        monkeypatch.delenv("SPIKECIM_ISA", raising=False)
    else:
        monkeypatch.setenv("SPIKECIM_ISA", setting)
    assert cbuild.isa(widest) == runs


def test_an_unknown_spikecim_isa_is_refused_in_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SPIKECIM_ISA", "sse4")
    with pytest.raises(ValueError) as e:
        cbuild.isa(3)
    assert str(e.value) == "SPIKECIM_ISA: 'sse4' is not an instruction set; allowed: avx2, avx512"
