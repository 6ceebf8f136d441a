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
