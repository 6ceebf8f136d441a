"""8-bit pixels to float32 in [0, 1] (value / 255), converting only the samples kept."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["bytes_to_unit"]


def bytes_to_unit(pixels: np.ndarray, limit: int | None = None) -> torch.Tensor:
    """``pixels[:limit] / 255`` as a new float32 tensor (the byte buffer is not kept alive)."""
    out = pixels[:limit].astype(np.float32)
    out /= 255.0
    return torch.from_numpy(out)
