"""The IDX file format of MNIST and Fashion-MNIST, read with one ``np.frombuffer``.

Format (LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``0x08`` = unsigned byte,
``DD`` the number of dimensions), then ``DD`` big-endian uint32 sizes, then the elements
in row-major order. Image files are ``0x00000803`` (idx3-ubyte: N x rows x cols), label
files ``0x00000801`` (idx1-ubyte: N).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from spikecim.data._files import read_bytes
from spikecim.errors import SpikecimError

__all__ = ["IDX_IMAGES", "IDX_LABELS", "read_idx"]

IDX_IMAGES = 0x00000803
IDX_LABELS = 0x00000801

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file whose magic number must be ``magic``; errors name the file."""
    buf = read_bytes(path)
    if len(buf) < 4:
        raise SpikecimError(
            f"data: {path} is truncated: {len(buf)} bytes, shorter than the 4-byte IDX header"
        )
    (found,) = struct.unpack(">I", buf[:4])
    if found != magic:
        raise SpikecimError(
            f"data: {path} has magic number 0x{found:08x}, expected 0x{magic:08x}; it is not this IDX file or is corrupt"
        )
    ndim = magic & 0xFF
    dtype = np.dtype(_TYPES[(magic >> 8) & 0xFF])
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise SpikecimError(
            f"data: {path} is truncated: {len(buf)} bytes, shorter than its {header}-byte header"
        )
    shape = struct.unpack(f">{ndim}I", buf[4:header])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: 3 sizes of 2**32 - 1 do not wrap
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "too long"
        dims = " x ".join(map(str, shape))
        raise SpikecimError(
            f"data: {path} is {what}: header says {dims}, i.e. {expected} bytes, file holds {len(buf)}"
        )
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
