"""Reading the user's files, with one-line errors.

Every user-supplied file (run config, crossbar description, architecture table, layer list,
workload, a run folder's ``config.yaml`` and ``metrics.json``, a checkpoint's training
state, NIR import metadata) goes through this module, so a missing file, a file that is not
UTF-8 text, a parse error and a non-mapping document read the same everywhere:
``<field>: file not found: PATH``, ``<field>: PATH is a folder, not a file``, ``<field>: PATH is not UTF-8 text (byte 0xff at offset 12)``,
``<field>: PATH is not valid YAML (first line)``, ``<field>: PATH must hold a mapping <of what>``.
A settings file the user gives is read by :func:`read_settings`, which also refuses an empty
one (``<field>: PATH is empty; ...``) rather than read it as the defaults.
A run folder's ``metrics.json`` is read by :func:`read_metrics`, which also refuses a number
that is not finite: ``<field>: PATH: evaluate.snn.accuracy is nan, not a finite number``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from spikecim.errors import SpikecimError, first_line

__all__ = [
    "first_non_finite",
    "loads",
    "read_bytes",
    "read_document",
    "read_mapping",
    "read_metrics",
    "read_settings",
    "read_text",
    "replaceable",
]


def read_mapping(path: str | Path, field: str, holds: str = "of settings", empty: str | None = None) -> dict:
    """The mapping in ``path`` (JSON when the suffix is ``.json``, else YAML); an empty file is
    ``{}``, or, with ``empty`` (advice), a one-line error: ``{field}: {path} is empty; {empty}``.

    ``field`` names the setting the file was given for; ``holds`` says what the mapping
    should contain, for the error message."""
    path = Path(path)
    data = read_document(path, field)
    if data is None and empty is not None:
        raise SpikecimError(f"{field}: {path} is empty", advice=empty)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SpikecimError(f"{field}: {path} must hold a mapping {holds}")
    return data


def read_settings(
    path: str | Path, field: str, holds: str = "of settings", advice: str = "write its settings in it"
) -> dict:
    """The mapping of settings in the file ``path`` that the user gave, as :func:`read_mapping`
    reads it, except that an empty file (nothing but blanks, comments or ``null``) is refused:
    read as the defaults it would run something the user did not ask for, and an empty file
    is most often a copy cut short. ``{}`` asks for the defaults. ``advice`` says what to do
    (``{field}: {path} is empty; {advice}``)."""
    return read_mapping(path, field, holds, empty=advice)


def read_metrics(path: str | Path, field: str) -> dict:
    """A run folder's ``metrics.json``: a mapping of stage results whose every number is finite.

    spikecim writes it as strict JSON, so a NaN or an infinity (``NaN``, ``Infinity``, or a
    number too large for a float such as ``1e999``) means the file was edited or damaged: it is
    refused naming the key path, never passed on. An empty file or one that is not a mapping
    is refused too."""
    path = Path(path)
    data = read_document(path, field)
    if not isinstance(data, dict):
        raise SpikecimError(f"{field}: {path} must hold a mapping of stage results")
    for key, value in data.items():
        bad = first_non_finite(value, str(key))
        if bad is not None:
            raise SpikecimError(f"{field}: {path}: {bad[0]} is {bad[1]}, not a finite number")
    return data


def first_non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The first (key path, value) in nested mappings and lists that is NaN or infinite, or None.

    Key paths read ``stage.variant.key`` and ``stage.curve[1]``; anything ``float()`` accepts
    (a 0-d tensor, a numpy number) counts as a number."""
    if isinstance(value, dict):
        items = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    elif value is None or isinstance(value, (str, bool, int)):
        return None
    else:
        try:
            x = float(value)
        except (TypeError, ValueError):
            return None
        return None if math.isfinite(x) else (path, x)
    for p, v in items:
        bad = first_non_finite(v, p)
        if bad is not None:
            return bad
    return None


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
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader
    except yaml.YAMLError as e:
        raise SpikecimError(f"{field}: {path} is not valid YAML ({_yaml_problem(e)})") from None
    except RecursionError:
        raise SpikecimError(f"{field}: {path} is not valid YAML (nested too deeply)") from None


# libyaml's parser (PyYAML's C extension, in its wheels) reads about ten times faster than the
# pure-Python one; both build the same documents with the same safe constructor.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so a setting written twice would be half ignored)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' given twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """``line L, column C: what is wrong`` of a YAML error, on one line."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if not problem:
        problem = first_line(e)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def read_bytes(path: str | Path, field: str) -> bytes:
    """The file's bytes; a missing or unreadable file is one line naming ``field`` and the path."""
    path = Path(path)
    if path.is_dir():
        raise SpikecimError(f"{field}: {path} is a folder, not a file")
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


def replaceable(path: Path, ours: Callable[[Path], bool], field: str, is_folder: str, not_ours: str) -> Path:
    """``path`` where spikecim may write a file: a new one, or one that ``ours`` says spikecim
    wrote (it is replaced). Any other file there is the user's and is never overwritten. A
    folder there is ``{field}: {path} {is_folder}``, another file ``{field}: {path} exists and
    {not_ours}``, each one line."""
    path = Path(path)
    if path.is_dir():
        raise SpikecimError(f"{field}: {path} {is_folder}")
    if path.exists() and not ours(path):
        raise SpikecimError(f"{field}: {path} exists and {not_ours}")
    return path


def loads(load: Callable[[Path], Any]) -> Callable[[Path], bool]:
    """``ours`` for :func:`replaceable`: the file is spikecim's when ``load`` reads it (a
    schema of spikecim's own, such as a CostReport or a Workload)."""

    def ours(path: Path) -> bool:
        try:
            load(path)
        except SpikecimError:
            return False
        return True

    return ours
