"""spikecim's cache folder: what it builds or derives once per machine and reuses.

``$SPIKECIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/spikecim``, else ``~/.cache/spikecim``.
It holds the compiled kernels (``kernels/``, spikecim.nn.kernels.cbuild) and the digits
split (``data/``, spikecim.data.digits). Everything in it can be deleted; it is rebuilt.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (not created)."""
    root = (
        os.environ.get("SPIKECIM_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spikecim"
    )
    return Path(root)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader sees the old
    file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
