"""Finding and reading a data set's published files under ``root`` (never downloading).

A data set's files are looked for in ``root`` itself and then in the conventional
sub-folders its archive or other tools create (``MNIST/raw``, ``cifar-10-batches-bin``...).
Every file may also be stored gzip-compressed as ``<name>.gz``; compression is recognised
by the gzip magic bytes ``1f 8b`` (RFC 1952, section 2.3.1), not by the file name.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

from spikecim.errors import SpikecimError

__all__ = ["find_file", "find_folder", "read_bytes", "require_root"]

_GZIP_MAGIC = b"\x1f\x8b"


def require_root(root: str | Path | None, dataset: str, wanted: str) -> Path:
    """``root`` as a Path, or a one-line error saying what to place where."""
    if root is None:
        raise SpikecimError(
            f"data.root: {dataset} is read from local files; set data.root to the folder holding {wanted}"
        )
    path = Path(root).expanduser()
    if path.is_file():
        raise SpikecimError(
            f"data.root: {path} is a file; set data.root to the folder that holds the {dataset} files"
        )
    if not path.is_dir():
        raise SpikecimError(
            f"data.root: folder {path} does not exist; it must hold the {dataset} files {wanted}"
        )
    return path


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (each also tried with ``.gz``) present in ``folder``."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def find_folder(
    root: Path, subfolders: Sequence[str], files: Sequence[Sequence[str]], dataset: str
) -> list[Path]:
    """Locate every file of ``files`` in ``root`` or one of its ``subfolders``.

    ``files`` holds, per required file, its accepted spellings (the first is the published
    one). All files must sit in the same folder. Returns their paths in order, or raises a
    one-line :class:`SpikecimError` naming the files and the folder to put them in.
    """
    for folder in [root, *(root / s for s in subfolders)]:
        found = [find_file(folder, names) for names in files]
        if all(p is not None for p in found):
            return found  # type: ignore[return-value]
    missing = _missing(root, subfolders, files)
    where = f"{root}" + (f" (or {root}/{subfolders[0]})" if subfolders else "")
    raise SpikecimError(
        f"data.root: {dataset} file(s) {', '.join(missing)} not found; place them (plain or .gz) in {where}"
    )


def _missing(root: Path, subfolders: Sequence[str], files: Sequence[Sequence[str]]) -> list[str]:
    # Report against the folder that holds the most files, so the message names what is really absent.
    best: list[str] = [names[0] for names in files]
    for folder in [root, *(root / s for s in subfolders)]:
        absent = [names[0] for names in files if find_file(folder, names) is None]
        if len(absent) < len(best):
            best = absent
    return best


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    raw = Path(path).read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise SpikecimError(
            f"data: {path} is a damaged gzip file ({e}); replace it with a fresh copy"
        ) from None
