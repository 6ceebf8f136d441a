"""Work tensors an analog layer keeps from call to call in inference.

A fresh tensor of a few MB or more is new memory to the operating system: its first write
costs a page fault per 4 KiB page, often more than the arithmetic that fills it (a noisy
read of VGG-9's largest layer takes about 3× as long with fresh tensors; BENCHMARKS.md,
"Fresh memory"). The layer keeps its patches, read-noise draw, read matrix and
output-noise draw here instead. Only for inference: a tensor autograd saves for the
backward pass must not be overwritten by the next call.
"""

from __future__ import annotations

import torch

__all__ = ["Scratch"]


class Scratch:
    """Named work tensors, each one flat buffer that grows when a larger shape is asked for.

    ``take`` hands out the buffer's memory again on every call, so what it returns is valid
    until the next ``take`` of the same name: never return it to the layer's caller."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device."""
        numel = 1
        for n in shape:
            numel *= n
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffers[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)

    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())
