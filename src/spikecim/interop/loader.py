"""A NIR file wherever a model is expected, and NIR run folders.

``load_model(path)`` accepts

- a ``.nir`` file: built with :func:`~spikecim.interop.from_nir` (dt from the file's
  metadata, else 1e-4 s; forward Euler);
- a folder written by ``spikecim nir import``: ``model.nir`` plus ``nir.yaml`` (the dt and
  convention chosen at import; :class:`NirMeta`, read by :func:`read_meta`);
- a run folder written by ``spikecim run``: its first spiking variant, loaded by
  :func:`spikecim.pipeline.run.load_run` (``input_shape`` set from the data set).

``import_run(file, run_dir)`` writes such a NIR folder: the graph is built and checked first,
then the files are written to a temporary folder that is renamed into place, so a bad file
leaves nothing behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import torch
import yaml
from pydantic import Field, ValidationError, field_validator
from torch import nn

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.interop.discretise import CONVENTIONS
from spikecim.interop.importer import MAX_DT, check_dt, from_nir
from spikecim.readers import read_settings
from spikecim.schema import Schema

__all__ = [
    "NIR_FILE", "NIR_META", "NirMeta", "import_run", "load_model", "load_run_model", "nir_source", "read_meta",
]  # fmt: skip

NIR_FILE = "model.nir"
NIR_META = "nir.yaml"


Size = Annotated[int, Field(strict=True, ge=1)]


class NirMeta(Schema):
    """``nir.yaml`` of a ``nir import`` folder: what the graph is built with (``dt``,
    ``convention``) and, for the reader, where it came from and its shapes."""

    source: str | None = Field(None, description="the .nir file it was imported from")
    dt: float | None = Field(None, description=f"step in seconds, in (0, {MAX_DT:g}]")
    convention: str | None = Field(None, description=f"discretisation: {' or '.join(CONVENTIONS)}")
    input_shape: list[Size] | None = Field(None, min_length=1, description="one input sample's sizes")
    output_shape: list[Size] | None = Field(None, description="one output sample's sizes")

    @field_validator("dt", mode="before")
    @classmethod
    def _seconds(cls, v):
        try:
            return None if v is None else check_dt(v, "dt")
        except SpikecimError as e:  # the message without its field (pydantic adds it)
            raise ValueError(str(e).removeprefix("dt: ")) from None

    @field_validator("convention", mode="before")
    @classmethod
    def _known(cls, v):
        if v is not None and (not isinstance(v, str) or v not in CONVENTIONS):
            raise ValueError(f"must be one of {', '.join(CONVENTIONS)}, got {v!r}")
        return v


def load_model(
    path: str | Path,
    dt: float | None = None,
    convention: str | None = None,
    allow_partial: bool = False,
    variant: str | None = None,
) -> nn.Module:
    """A time-major model from a ``.nir`` file, a NIR run folder or a ``spikecim run`` folder.

    ``allow_partial`` accepts a run folder whose training was interrupted, ``variant`` names
    one of its variants (see :func:`load_run_model`)."""
    path = Path(path)
    if variant is not None and not (path.is_dir() and (path / "config.yaml").is_file()):
        raise SpikecimError(f"variant: names a variant of a run folder; {path} is not one (no config.yaml)")
    if path.is_dir():
        if (path / NIR_FILE).is_file():
            nir_file, dt, convention = nir_source(path, dt, convention)
            return from_nir(nir_file, dt=dt, convention=convention)
        if (path / "config.yaml").is_file():
            return load_run_model(path, variant, allow_partial=allow_partial)
        raise SpikecimError(f"{path}: neither a NIR folder ({NIR_FILE}) nor a run folder (config.yaml)")
    if not path.exists() and path.suffix != ".nir":
        raise SpikecimError(f"{path}: not found (expected a run folder, a NIR folder or a .nir file)")
    return from_nir(path, dt=dt, convention=convention or "euler")


def nir_source(
    path: str | Path, dt: float | None = None, convention: str | None = None
) -> tuple[Path, float | None, str]:
    """The ``.nir`` file of ``path`` (a file, or a ``nir import`` folder) and the dt and
    convention to build it with: the ones given, else the folder's ``nir.yaml``, else the
    file's dt (None) and ``"euler"``."""
    path = Path(path)
    if path.is_dir() and (path / NIR_FILE).is_file():
        meta = read_meta(path)
        dt = meta.dt if dt is None else dt
        return path / NIR_FILE, dt, convention or meta.convention or "euler"
    return path, dt, convention or "euler"


def read_meta(run_dir: str | Path) -> NirMeta:
    """``nir.yaml`` of a NIR folder (:class:`NirMeta`; all None when there is none): an
    unknown key, a dt outside (0, 1000] s, an unknown convention or a size below 1 is one line
    naming the file and the key."""
    meta_path = Path(run_dir) / NIR_META
    if not meta_path.is_file():
        return NirMeta()
    try:
        meta = read_settings(
            meta_path,
            "nir import metadata",
            advice="write dt and convention in it, or delete it to use the .nir file's",
        )
        return NirMeta.model_validate(meta)
    except ValidationError as e:
        raise SpikecimError(f"{meta_path}: {one_line_validation_error(e)}") from None


def load_run_model(run_dir: str | Path, variant: str | None = None, allow_partial: bool = False) -> nn.Module:
    """The trained model of one variant (None: the first spiking one) of a ``spikecim run``
    folder, loaded by :func:`spikecim.pipeline.run.load_run`, with ``input_shape`` set to one
    sample's shape without time (a frame data set's ``[T, C, H, W]`` samples give ``[C, H, W]``).

    A variant trained for fewer epochs than ``train.epochs`` (an interrupted run) is refused
    unless ``allow_partial``; then a warning names it.
    """
    from spikecim.pipeline.run import load_run, run_config

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if variant is None:
        variant = next((v.name for v in cfg.variants if v.spiking), cfg.variants[0].name)
    names = [v.name for v in cfg.variants]
    if variant not in names:
        raise SpikecimError(f"variant: {run_dir} has no '{variant}' model, allowed: {', '.join(names)}")
    ctx = load_run(run_dir, variants=[variant], allow_partial=allow_partial)
    model = ctx.models[variant]
    shape = tuple(ctx.data.sample_shape)
    model.input_shape = shape[1:] if ctx.data.frames else shape
    return model.eval()


def import_run(
    nir_file: str | Path, run_dir: str | Path, dt: float | None = None, convention: str = "euler"
) -> nn.Module:
    """Check ``nir_file`` by building it, then write ``run_dir/model.nir`` and ``nir.yaml``."""
    nir_file, run_dir = Path(nir_file), Path(run_dir)
    model = from_nir(nir_file, dt=dt, convention=convention)
    if run_dir.exists() and not run_dir.is_dir():
        raise SpikecimError(f"-o: {run_dir} is a file; give the name of a folder to create")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SpikecimError(f"-o: {run_dir} exists and is not empty; choose another folder")
    meta = NirMeta(
        source=str(nir_file),
        dt=model.nir_dt,
        convention=model.nir_convention,
        input_shape=list(model.input_shape),
        output_shape=list(_output_shape(model)),
    )
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        shutil.copyfile(nir_file, tmp / NIR_FILE)
        (tmp / NIR_META).write_text(yaml.safe_dump(meta.model_dump(), sort_keys=False))
        if run_dir.exists():
            run_dir.rmdir()
        tmp.rename(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model


def _output_shape(model: nn.Module) -> tuple[int, ...]:
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None else torch.get_default_dtype()
    with torch.no_grad():
        return tuple(model(torch.zeros((1, 1, *model.input_shape), dtype=dtype)).shape[2:])
