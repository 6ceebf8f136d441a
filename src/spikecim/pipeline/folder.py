"""The run folder as spikecim owns it: a marker holding a manifest, a lock, and a safe ``--fresh``.

``spikecim run`` writes ``.spikecim-run`` (a small JSON) into every run folder it creates,
never into one made by hand. Beside spikecim's version and the creation time it holds the
manifest, ``files``: every file spikecim wrote in the folder, by its path relative to the
folder, with the SHA-256 and size it was written with. Which files are spikecim's is decided
from it, never from a file's name:

- ``--fresh`` clears a marked folder only when every file in it is one the manifest records,
  with the content spikecim wrote; a folder goes with the files in it (an empty
  ``checkpoint/``, ``plots/``, ``hardware/`` or ``security/`` too). Any other file (placed
  by the user, or spikecim's and changed since) is refused in one line naming it;
- a command replaces an existing file of a run folder on the same terms (:func:`write_file`);
  ``report`` and ``trace`` check every file they will replace before they write any, and
  ``security`` those of its analysis before it starts (:func:`all_or_nothing`,
  :func:`check_replaceable`);
- a ``config.yaml`` changed since spikecim wrote it is refused by the commands that read it
  (:func:`check_config`): it no longer describes the run's files.

Every file spikecim writes into a run folder goes through :func:`write_file` (the PNG, JSON,
report and checkpoint writers call it; :func:`remove_file` takes one out again). It checks
the file it replaces, records the new one and writes it all or nothing (a temporary file,
then ``os.replace``). Recording at the one call every writer makes, rather than scanning the
folder after each stage, is what lets a write be refused *before* it replaces a user's file,
and covers the commands that write into a finished run (``report``, ``trace``,
``security``); a test runs the stages and checks that every file they leave is recorded, so
a writer that bypasses it does not go unnoticed. A folder is found from the file's path:
the file's own folder, or that folder's parent, holding ``.spikecim-run``.

The manifest is updated before its file is written, and the entry keeps the hash the file
had (``was``) beside the new one: a process killed in between leaves content spikecim wrote
either way, and a ``<file>.tmp`` left by such a write belongs to the recorded file. The
marker is replaced whole, the same way. A ``durable`` write (a checkpoint's) is flushed to
disk (``fsync``), its manifest first, so a checkpoint save stays the atomic commit
:mod:`spikecim.train.checkpoint` describes. Two processes writing into one folder at once
(``report`` beside a running ``run``) may lose a record: a file spikecim then refuses to
clear or replace, never one it deletes.

A folder written by spikecim before the manifest (a marker without ``files``) keeps the rule
those versions used: the files named as spikecim names them (``_TOP``, ``_SUB``) are taken
for its own, and the first write into the folder records them.

``.spikecim-lock`` is locked (``flock``) for the whole run, so a second run into the same
folder is refused while the first is alive; the kernel drops the lock when the process ends,
however it ends. ``--fresh`` moves the previous run's files aside to a hidden sibling folder
and deletes them only once the new run's first stage has finished; until then a failure or
Ctrl-C puts them back, the manifest with them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from spikecim.errors import SpikecimError, interrupts_deferred

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "CHANGED",
    "LOCK",
    "MARKER",
    "NOT_WRITTEN",
    "Aside",
    "FileRecord",
    "all_or_nothing",
    "check_config",
    "check_owned",
    "check_replaceable",
    "first_foreign",
    "fsync_dir",
    "is_empty",
    "locked",
    "mark",
    "not_ours",
    "remove_file",
    "restore_marker",
    "write_file",
]

MARKER = ".spikecim-run"
LOCK = ".spikecim-lock"

# Why a file is not spikecim's to clear or replace.
NOT_WRITTEN = "was not written by spikecim"
CHANGED = "changed since spikecim wrote it (hash differs)"

_OWN = (MARKER, LOCK, MARKER + ".tmp")  # the folder's own files, never cleared
_FOLDERS = ("checkpoint", "plots", "hardware", "security")  # made by spikecim: cleared when empty

# What spikecim wrote in a run folder before the manifest: the names a folder with a marker
# but no ``files`` is judged by, top-level and in each sub-folder.
_TOP = ("config.yaml", "metrics.json", "report.html", "report.md", "workload*.json", "*.tmp")
_SUB = {
    "checkpoint": ("*.safetensors", "*.state.json", "*.tmp"),
    "plots": ("*.png",),
    "hardware": ("*.json", "*.tmp"),
}

_SHA256 = r"^[0-9a-f]{64}$"


class FileRecord(BaseModel):
    """One file of the manifest: the SHA-256 and size (bytes) spikecim wrote it with, and
    ``was``, the SHA-256 it had before that write (spikecim's too)."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)
    was: str | None = Field(default=None, pattern=_SHA256)


class _Marker(BaseModel):
    model_config = ConfigDict(extra="allow")

    files: dict[str, FileRecord] | None = None  # None: written before the manifest


# The writes an :func:`all_or_nothing` block holds (path -> bytes); None outside one.
_HELD: ContextVar[dict[Path, bytes] | None] = ContextVar("spikecim_held_writes", default=None)


def write_file(path: Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` all or nothing (a temporary file, then ``os.replace``),
    parent folders made; ``durable`` flushes it to disk (``fsync``, the folder too).

    In a marked run folder the file it replaces must be one spikecim wrote, unchanged since
    (else a one-line error naming it, and nothing is written), and the new file is recorded
    in the manifest first. Inside :func:`all_or_nothing` the write is held until the block
    ends (a ``durable`` one is made at once)."""
    path = Path(path)
    held = _HELD.get()
    if held is not None and not durable:
        held[path] = data
        return path
    place = _place(path)
    if place is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace(path, data, durable)
        return path
    run_dir, rel = place
    with _manifest(run_dir, durable) as files:
        was = None
        if os.path.lexists(path):
            was = _content(path)
            why = _why(was, files.get(rel))
            if why is not None:
                raise SpikecimError(_refusal(path, why))
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        files[rel] = FileRecord(sha256=digest, size=len(data), was=None if was == digest else was)
    _replace(path, data, durable)
    return path


def remove_file(path: Path) -> None:
    """Remove ``path``, a file spikecim wrote, and its record. In a marked run folder a file
    that is not spikecim's as recorded (:func:`not_ours`) is left where it is."""
    path = Path(path)
    place = _place(path)
    if place is None:
        path.unlink(missing_ok=True)
        return
    run_dir, rel = place
    if os.path.lexists(path) and not_ours(path) is not None:
        return
    with _manifest(run_dir) as files:
        path.unlink(missing_ok=True)
        files.pop(rel, None)


@contextmanager
def all_or_nothing(command: str) -> Iterator[None]:
    """Hold the files written inside the block (:func:`write_file`) and make them when it
    ends, once every file they replace is checked: one that spikecim may not replace refuses
    them all, in one line from ``command``, and nothing is written. A block inside another
    joins it; a block left by an error writes nothing."""
    if _HELD.get() is not None:
        yield
        return
    held: dict[Path, bytes] = {}
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)
    check_replaceable(held, command)
    for path, data in held.items():
        write_file(path, data)


def check_replaceable(paths: Iterable[Path], command: str) -> None:
    """Refuse, in one line from ``command``, the first of ``paths`` holding a file spikecim may
    not replace (:func:`not_ours`): what a command checks before it writes anything."""
    for path in paths:
        why = not_ours(Path(path))
        if why is not None:
            raise SpikecimError(_refusal(path, why, command))


def not_ours(path: Path) -> str | None:
    """Why the file at ``path`` is not spikecim's to replace: :data:`NOT_WRITTEN` (the manifest
    does not record it, or it is a folder or a link) or :data:`CHANGED`. None when it is:
    absent, outside a marked run folder, or recorded with its present content."""
    path = Path(path)
    place = _place(path)
    if place is None or not os.path.lexists(path):
        return None
    run_dir, rel = place
    return _why_entry(path, rel, _recorded(run_dir)[1])


def check_config(run_dir: Path, command: str) -> None:
    """Refuse, in one line from ``command``, a run folder's ``config.yaml`` that is not the one
    spikecim wrote there (edited or cut short since): it no longer describes the run's files."""
    path = Path(run_dir) / "config.yaml"
    why = not_ours(path)
    if why is not None:
        raise SpikecimError(
            f"{command}: {path} {why}, so it may not describe the run's results; restore it, "
            "or move it out and start the run over with --fresh"
        )


def first_foreign(run_dir: Path) -> tuple[str, str] | None:
    """The first entry of ``run_dir`` that is not spikecim's (its relative path, a folder's
    ending in ``/``) and why (:data:`NOT_WRITTEN` or :data:`CHANGED`); None when all are."""
    return _first_foreign(run_dir, run_dir, _recorded(run_dir)[1])


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
        foreign = first_foreign(run_dir)
        if foreign is not None:
            raise SpikecimError(
                f"--fresh: {run_dir} holds {foreign[0]}, which {foreign[1]}, so it is not "
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
    """Write the marker that says spikecim created ``run_dir``, its manifest empty (kept if
    already there)."""
    path = run_dir / MARKER
    if not path.exists():
        from spikecim import __version__

        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        _write_marker(run_dir, {"spikecim": __version__, "created": stamp}, {})


def restore_marker(run_dir: Path, data: bytes) -> None:
    """Put back the marker, and so the manifest, as it was: ``data``, its bytes read before a
    run that is being undone."""
    _replace(run_dir / MARKER, data)


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, so a rename in it survives a power loss."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


class Aside:
    """The previous run's files, moved to a hidden sibling folder while a ``--fresh`` run starts.

    ``move()`` empties the run folder (marker and lock stay, the manifest emptied);
    ``restore()`` removes what the new run wrote and puts the previous files and manifest
    back; ``discard()`` deletes them. Each is done whole: Ctrl-C waits until it is (a hidden
    folder holding part of the previous run would be left otherwise).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.names = sorted(n for n in os.listdir(run_dir) if n not in (MARKER, LOCK))
        self.path: Path | None = None
        self.marker: bytes | None = None  # the marker as the previous run left it

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
        marker = self.run_dir / MARKER
        if marker.is_file():
            self.marker = marker.read_bytes()
            doc, _ = _recorded(self.run_dir)
            _write_marker(self.run_dir, doc, {})

    def _restore(self) -> None:
        for name in os.listdir(self.run_dir):
            if name not in (MARKER, LOCK) and name not in self.names:
                _remove(self.run_dir / name)
        if self.path is None:
            return
        if self.marker is not None:  # before the files: a record of an absent file is harmless
            restore_marker(self.run_dir, self.marker)
        for name in os.listdir(self.path):
            if os.path.lexists(self.run_dir / name):
                _remove(self.run_dir / name)
            os.rename(self.path / name, self.run_dir / name)
        self.path.rmdir()
        self.path = None


def _place(path: Path) -> tuple[Path, str] | None:
    """The marked run folder ``path`` lies in (the file's folder, or that folder's parent) and
    ``path`` relative to it; None outside one."""
    if (path.parent / MARKER).is_file():
        return path.parent, path.name
    if (path.parent.parent / MARKER).is_file():
        return path.parent.parent, f"{path.parent.name}/{path.name}"
    return None


def _recorded(run_dir: Path) -> tuple[dict, dict[str, FileRecord]]:
    """The marker's JSON and the files its manifest records. For a marker written before the
    manifest: the files named as spikecim then named them, recorded with their present content."""
    path = run_dir / MARKER
    try:
        doc = json.loads(path.read_bytes())
        files = _Marker.model_validate(doc).files
    except (OSError, ValueError, RecursionError):  # a pydantic ValidationError is a ValueError
        raise SpikecimError(
            f"run: {path} is damaged (not the JSON spikecim writes there), so which files of {run_dir} "
            "spikecim wrote is unknown; restore it, or move out what you keep and delete the folder yourself"
        ) from None
    if files is None:
        files = {rel: _record_of(run_dir / rel) for rel in _named_as_before(run_dir)}
    return doc, files


@contextmanager
def _manifest(run_dir: Path, durable: bool = False) -> Iterator[dict[str, FileRecord]]:
    """The manifest of ``run_dir`` to change in the block; written back (whole) when it ends
    without an error."""
    doc, files = _recorded(run_dir)
    yield files
    _write_marker(run_dir, doc, files, durable)


def _write_marker(run_dir: Path, doc: dict, files: dict[str, FileRecord], durable: bool = False) -> None:
    records = {rel: files[rel].model_dump(exclude_none=True) for rel in sorted(files)}
    _replace(run_dir / MARKER, (json.dumps({**doc, "files": records}, indent=1) + "\n").encode(), durable)


def _replace(path: Path, data: bytes, durable: bool = False) -> None:
    """``data`` to ``path`` through ``<path>.tmp`` and ``os.replace``; ``durable``: ``fsync``ed."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def _first_foreign(run_dir: Path, folder: Path, files: dict[str, FileRecord]) -> tuple[str, str] | None:
    for entry in sorted(folder.iterdir()):
        rel = entry.relative_to(run_dir).as_posix()
        if folder == run_dir and entry.name in _OWN:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if any(entry.iterdir()):
                found = _first_foreign(run_dir, entry, files)
                if found is not None:
                    return found
            elif folder != run_dir or entry.name not in _FOLDERS:
                return f"{rel}/", NOT_WRITTEN
            continue
        why = _why_entry(entry, rel, files)
        if why is not None:
            return rel, why
    return None


def _why_entry(path: Path, rel: str, files: dict[str, FileRecord]) -> str | None:
    """Why the entry ``rel`` of a run folder is not spikecim's (see :func:`not_ours`); a
    ``<file>.tmp`` of a recorded file is what a write of it left when it was stopped."""
    if rel not in files and rel.endswith(".tmp") and rel.removesuffix(".tmp") in files:
        return None if _is_file(path) else NOT_WRITTEN
    return _why(_content(path), files.get(rel))


def _why(content: str | None, record: FileRecord | None) -> str | None:
    """Why a file of SHA-256 ``content`` (None: not a plain file) is not the one ``record`` says
    spikecim wrote."""
    if content is None or record is None:
        return NOT_WRITTEN
    return None if content in (record.sha256, record.was) else CHANGED


def _content(path: Path) -> str | None:
    """The SHA-256 of the plain file ``path`` (not a link, a folder or a device), else None."""
    if not _is_file(path):
        return None
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _record_of(path: Path) -> FileRecord:
    return FileRecord(sha256=_content(path), size=path.stat().st_size)


def _named_as_before(run_dir: Path) -> Iterator[str]:
    """The files of ``run_dir`` that spikecim before the manifest took for its own, by name."""
    for entry in sorted(run_dir.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            for sub in sorted(entry.iterdir()) if entry.name in _SUB else ():
                if _is_file(sub) and _matches(sub.name, _SUB[entry.name]):
                    yield f"{entry.name}/{sub.name}"
        elif _is_file(entry) and entry.name not in _OWN and _matches(entry.name, _TOP):
            yield entry.name


def _refusal(path: Path, why: str, command: str = "") -> str:
    return (
        f"{command + ': ' if command else ''}{path} {why}, so it is not replaced; move it away and run again"
    )


def _is_file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()
