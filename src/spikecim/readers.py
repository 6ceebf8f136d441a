"""Reading a YAML or JSON file that must hold a mapping, with one-line errors.

Every user-supplied file (run config, crossbar description, architecture table, layer list,
workload, NIR import metadata) goes through :func:`read_mapping`, so a missing file, a
parse error and a non-mapping document read the same everywhere:
``<field>: file not found: PATH``, ``<field>: PATH is not valid YAML (first line)``,
``<field>: PATH must hold a mapping <of what>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from spikecim.errors import SpikecimError

__all__ = ["read_mapping"]


def read_mapping(path: str | Path, field: str, holds: str = "of settings") -> dict:
    """The mapping in ``path`` (JSON when the suffix is ``.json``, else YAML); an empty file is ``{}``.

    ``field`` names the setting the file was given for; ``holds`` says what the mapping
    should contain, for the error message."""
    path = Path(path)
    if not path.is_file():
        raise SpikecimError(f"{field}: file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpikecimError(f"{field}: {path} is not UTF-8 text (byte {e.start})") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise SpikecimError(f"{field}: {path} is not valid JSON ({e.msg}, line {e.lineno})") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpikecimError(f"{field}: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SpikecimError(f"{field}: {path} must hold a mapping {holds}")
    return data
