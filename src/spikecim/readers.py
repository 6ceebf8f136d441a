"""Reading the user's files, with one-line errors.

Every user-supplied file (run config, crossbar description, architecture table, layer list,
workload, a run folder's ``config.yaml`` and ``metrics.json``, a checkpoint's training
state, NIR import metadata) goes through this module, so a missing file, a file that is not
UTF-8 text, a parse error and a non-mapping document read the same everywhere:
``<field>: file not found: PATH``, ``<field>: PATH is not UTF-8 text (byte 0xff at offset 12)``,
``<field>: PATH is not valid YAML (first line)``, ``<field>: PATH must hold a mapping <of what>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from spikecim.errors import SpikecimError

__all__ = ["read_bytes", "read_document", "read_mapping", "read_text"]


def read_mapping(path: str | Path, field: str, holds: str = "of settings") -> dict:
    """The mapping in ``path`` (JSON when the suffix is ``.json``, else YAML); an empty file is ``{}``.

    ``field`` names the setting the file was given for; ``holds`` says what the mapping
    should contain, for the error message."""
    path = Path(path)
    data = read_document(path, field)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SpikecimError(f"{field}: {path} must hold a mapping {holds}")
    return data


def read_document(path: str | Path, field: str) -> Any:
    """The parsed content of ``path``: JSON when the suffix is ``.json``, else YAML; empty is ``None``."""
    path = Path(path)
    text = read_text(path, field)
    if path.suffix == ".json":
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError as e:
            raise SpikecimError(f"{field}: {path} is not valid JSON ({e.msg}, line {e.lineno})") from None
        except RecursionError:
            raise SpikecimError(f"{field}: {path} is not valid JSON (nested too deeply)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SpikecimError(f"{field}: {path} is not valid YAML ({first})") from None
    except RecursionError:
        raise SpikecimError(f"{field}: {path} is not valid YAML (nested too deeply)") from None


def read_bytes(path: str | Path, field: str) -> bytes:
    """The file's bytes; a missing or unreadable file is one line naming ``field`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise SpikecimError(f"{field}: file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise SpikecimError(f"{field}: cannot read {path} ({e.strerror or e.__class__.__name__})") from None


def read_text(path: str | Path, field: str) -> str:
    """The file's text, decoded as UTF-8 (a leading byte-order mark is dropped)."""
    path = Path(path)
    raw = read_bytes(path, field)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpikecimError(
            f"{field}: {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None
