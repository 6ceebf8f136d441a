"""Every data file the package reads at run time is declared as package data, so a wheel
(a non-editable install) carries it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "spikecim"


def test_every_non_python_file_of_the_package_matches_a_package_data_pattern():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "spikecim"
    ]
    data = [
        p.relative_to(PACKAGE)
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert data  # tables, presets, the kernel source, the vendored plotly.js
    unmatched = [
        str(p)
        for p in data
        if not any(p.match(pattern) and len(p.parts) == len(Path(pattern).parts) for pattern in patterns)
    ]
    assert unmatched == []
