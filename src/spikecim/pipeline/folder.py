"""The run folder as spikecim owns it: a marker, a lock, and a safe ``--fresh``.

``spikecim run`` writes ``.spikecim-run`` (a small JSON) into every run folder it creates;
only a folder with that marker, holding only files spikecim writes there, is ever cleared
by ``--fresh``. ``.spikecim-lock`` is locked (``flock``) for the whole run, so a second run
into the same folder is refused while the first is alive; the kernel drops the lock when the
process ends, however it ends. ``--fresh`` moves the previous run's files aside to a hidden
sibling folder and deletes them only once the new run's first stage has finished; until then
a failure or Ctrl-C puts them back.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from spikecim.errors import SpikecimError, interrupts_deferred

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK", "MARKER", "Aside", "check_owned", "first_unknown", "is_empty", "locked", "mark"]

MARKER = ".spikecim-run"
LOCK = ".spikecim-lock"

# What spikecim writes in a run folder: top-level names, and the files of each sub-folder.
_TOP = ("config.yaml", "metrics.json", "report.html", "report.md", "workload*.json", "*.tmp", MARKER, LOCK)
_SUB = {
    "checkpoint": ("*.safetensors", "*.state.json", "*.tmp"),
    "plots": ("*.png",),
    "hardware": ("*.json", "*.tmp"),
}


def first_unknown(run_dir: Path) -> str | None:
    """The first entry (relative path) of ``run_dir`` that spikecim does not write, or None."""
    for entry in sorted(run_dir.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            if entry.name not in _SUB:
                return f"{entry.name}/"
            for sub in sorted(entry.iterdir()):
                if not _is_file(sub) or not _matches(sub.name, _SUB[entry.name]):
                    return f"{entry.name}/{sub.name}" + ("/" if sub.is_dir() else "")
        elif not _is_file(entry) or not _matches(entry.name, _TOP):
            return entry.name
    return None


def check_owned(run_dir: Path, fresh: bool) -> None:
    """Refuse a folder spikecim may not write into (or, with ``fresh``, may not clear)."""
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if not run_dir.is_dir():
        raise SpikecimError(f"run: {run_dir} exists and is not a folder; choose another --name")
    if is_empty(run_dir):
        return
    marked = (run_dir / MARKER).is_file()
    if fresh:
        if run_dir.is_symlink() or not marked:
            raise SpikecimError(
                f"--fresh: {run_dir} was not created by spikecim run (no {MARKER}), so it is not "
                "cleared; delete it yourself or choose another --name"
            )
        unknown = first_unknown(run_dir)
        if unknown is not None:
            raise SpikecimError(
                f"--fresh: {run_dir} holds {unknown}, which spikecim did not write, so it is not "
                "cleared; move that out or choose another --name"
            )
    elif not marked and not (run_dir / "config.yaml").is_file():
        raise SpikecimError(
            f"run: {run_dir} exists and is not a run folder (no config.yaml); choose another --name or output_dir"
        )


def is_empty(run_dir: Path) -> bool:
    """``run_dir`` holds nothing but, perhaps, the lock: a run killed between creating the
    folder and marking it leaves only that."""
    return all(entry.name == LOCK for entry in run_dir.iterdir())


@contextmanager
def locked(run_dir: Path, command: str = "run", advice: str = "or choose another --name") -> Iterator[None]:
    """Create ``run_dir`` if needed and hold its lock until the block ends; a folder another
    spikecim process holds is one line from ``command`` (``advice`` after "wait for it to finish")."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            holder = f" (pid {pid})" if pid.isdigit() else ""
            raise SpikecimError(
                f"{command}: {run_dir} is in use by another spikecim run{holder}; wait for it to finish {advice}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def mark(run_dir: Path) -> None:
    """Write the marker that says spikecim created ``run_dir`` (kept if already there)."""
    path = run_dir / MARKER
    if not path.exists():
        from spikecim import __version__

        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        path.write_text(json.dumps({"spikecim": __version__, "created": stamp}) + "\n")


class Aside:
    """The previous run's files, moved to a hidden sibling folder while a ``--fresh`` run starts.

    ``move()`` empties the run folder (marker and lock stay); ``restore()`` removes what the
    new run wrote and puts the previous files back; ``discard()`` deletes them. Each is done
    whole: Ctrl-C waits until it is (a hidden folder holding part of the previous run would
    be left otherwise).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.names = sorted(n for n in os.listdir(run_dir) if n not in (MARKER, LOCK))
        self.path: Path | None = None

    def move(self) -> None:
        with interrupts_deferred():
            self._move()

    def restore(self) -> None:
        with interrupts_deferred():
            self._restore()

    def discard(self) -> None:
        with interrupts_deferred():
            if self.path is not None:
                shutil.rmtree(self.path)
                self.path = None

    def _move(self) -> None:
        if not self.names:
            return
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.run_dir.name}.previous-", dir=self.run_dir.parent))
        for name in self.names:
            os.rename(self.run_dir / name, self.path / name)

    def _restore(self) -> None:
        for name in os.listdir(self.run_dir):
            if name not in (MARKER, LOCK) and name not in self.names:
                _remove(self.run_dir / name)
        if self.path is None:
            return
        for name in os.listdir(self.path):
            if os.path.lexists(self.run_dir / name):
                _remove(self.run_dir / name)
            os.rename(self.path / name, self.run_dir / name)
        self.path.rmdir()
        self.path = None


def _is_file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()
