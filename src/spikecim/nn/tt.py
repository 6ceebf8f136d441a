"""Tensor-train convolutions (TT-SNN, docs/references.md#tt-snn).

A ``C_in -> C_out``, ``kh x kw`` convolution becomes four cores, each a plain ``nn.Conv2d``
(so the operator registry, the tracer, ``to_analog`` and the hardware estimators see every
core as the convolution it is)::

    g1: 1x1,     C_in -> r      stride 1, padding 0
    g2: kh x 1,  r    -> r
    g3: 1 x kw,  r    -> r
    g4: 1x1,     r    -> C_out  stride 1, padding 0 (the bias of the dense layer, if any)

and the layer runs them in one of three pipelines (Lee et al., DATE 2024):

- ``stt`` (sequential): ``g4(g3(g2(g1 x)))``. The dense stride ``s`` and padding ``p`` are
  split by axis: ``g2`` has stride ``(s_h, 1)`` and padding ``(p_h, 0)``, ``g3`` stride
  ``(1, s_w)`` and padding ``(0, p_w)``. This is exactly the dense convolution when the
  cores are its TT-SVD at full rank.
- ``ptt`` (parallel): ``g4((g2(g1 x) + g3(g1 x)) / 2)``. Both middle cores give the dense
  output shape on their own: ``g2`` has stride ``(s_h, s_w)`` and padding
  ``(p_h, p_w - (kw-1)/2)``, i.e. its single column sits on the centre column of the dense
  window (``g3`` likewise with the axes swapped). This needs odd kernels and
  ``p >= (k-1)/2`` (``same`` padding or more).
- ``htt`` (hybrid): ``ptt`` at the steps ``t < ceil(T/2)``, then ``g4(g1 x)`` sampled at the
  dense window centres (rows ``s_h·i + (kh-1)/2 - p_h``, likewise columns) at the other
  steps; T = 4 gives the public code's split (``ptt`` at t = 0, 1). The middle cores run step
  by step inside :func:`~spikecim.trace.steps.at_step`, so a trace charges them to the steps
  they run on; the layer needs time-major input ``[T, B, C, H, W]`` to know the step.

``stt`` and ``ptt`` also take time-folded ``[N, C, H, W]`` input (a residual block calls its
convolutions so). TT-SVD (:func:`tt_svd`) follows the public code ``donghyunli/TT-SNN``: the
weight permuted to ``[C_in, kh, kw, C_out]`` and split by three truncated SVDs into
``G1 [C_in, r]``, ``G2 [r, kh, r]``, ``G3 [r, kw, r]``, ``G4 [r, C_out]``; a rank the weight
does not have is filled with zero slices, so a large enough rank reproduces the weight.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn.container import fold, unfold
from spikecim.nn.neurons import TemporalModule

__all__ = ["MODES", "TTConv2d", "full_rank", "hybrid_split", "tt_svd"]

Mode = Literal["stt", "ptt", "htt"]
MODES: tuple[str, ...] = ("stt", "ptt", "htt")


def hybrid_split(steps: int) -> int:
    """The steps ``t < ceil(T/2)`` that run ``ptt`` in ``htt`` mode: ``ceil(T/2)``."""
    return math.ceil(steps / 2)


def full_rank(in_ch: int, out_ch: int, kernel: tuple[int, int]) -> int:
    """The smallest single rank at which TT-SVD reproduces every ``C_out x C_in x kh x kw``
    weight: the largest rank of the three unfoldings ``[C_in, kh·kw·C_out]``,
    ``[C_in·kh, kw·C_out]`` and ``[C_in·kh·kw, C_out]``."""
    kh, kw = kernel
    return max(min(in_ch, kh * kw * out_ch), min(in_ch * kh, kw * out_ch), min(in_ch * kh * kw, out_ch))


def tt_svd(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, ...]:
    """TT-SVD of a ``[C_out, C_in, kh, kw]`` weight at ``rank``: ``(G1 [C_in, r], G2 [r, kh, r],
    G3 [r, kw, r], G4 [r, C_out])`` with ``W[o, i, a, b] = Σ G1[i, p] G2[p, a, q] G3[q, b, u] G4[u, o]``.

    Each step keeps the ``rank`` largest singular values (computed in float64); ranks the
    unfolding does not have are zero slices. Returned in the weight's dtype.
    """
    if weight.dim() != 4:
        raise SpikecimError(f"tt_svd: weight must be [C_out, C_in, kh, kw], got shape {list(weight.shape)}")
    if int(rank) < 1:
        raise SpikecimError(f"tt_svd: rank must be an integer >= 1, got {rank}")
    _, c_in, kh, kw = weight.shape
    w = weight.detach().to(torch.float64).permute(1, 2, 3, 0)  # [C_in, kh, kw, C_out]
    cores = []
    left, rest = 1, w
    for size in (c_in, kh, kw):
        mat = rest.reshape(left * size, -1)
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        k = min(rank, s.numel())
        cores.append(_pad(u[:, :k].reshape(left, size, k), 2, rank))
        rest = _pad(s[:k, None] * vh[:k], 0, rank)
        left = rank
    g1, g2, g3 = cores
    return tuple(g.to(weight.dtype) for g in (g1[0], g2, g3, rest))  # rest: [r, C_out]


def _pad(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``t`` with zero slices appended along ``dim`` up to ``size``."""
    missing = size - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim)


class TTConv2d(TemporalModule):
    """A convolution as four tensor-train cores (see the module docstring).

    ``rank``: the TT rank ``r`` of every core; ``mode``: ``stt``, ``ptt`` or ``htt``.
    Cores start from PyTorch's default initialisation; :meth:`from_conv` starts them from a
    trained convolution instead.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        rank: int = 8,
        mode: Mode = "stt",
    ) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size, "kernel_size", 1)
        sh, sw = _pair(stride, "stride", 1)
        ph, pw = _pair(padding, "padding", 0)
        if mode not in MODES:
            raise SpikecimError(f"TTConv2d.mode: must be one of {', '.join(MODES)}, got {mode!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise SpikecimError(f"TTConv2d.rank: must be an integer >= 1, got {rank!r}")
        if mode != "stt":
            for axis, k, p in (("height", kh, ph), ("width", kw, pw)):
                if k % 2 == 0 or p < (k - 1) // 2:
                    raise SpikecimError(
                        f"TTConv2d.mode: {mode} needs odd kernels and padding >= (k-1)/2 on each axis, "
                        f"got kernel {k} and padding {p} in {axis}; use mode stt"
                    )
        self.in_channels, self.out_channels, self.rank, self.mode = in_channels, out_channels, rank, mode
        self.kernel_size, self.stride, self.padding = (kh, kw), (sh, sw), (ph, pw)
        # the centre of the dense window minus the padding: where a 1-wide core reads
        self._centre = ((kh - 1) // 2 - ph, (kw - 1) // 2 - pw)
        # (kernel, stride, padding) of g2 and g3
        if mode == "stt":
            g2, g3 = ((kh, 1), (sh, 1), (ph, 0)), ((1, kw), (1, sw), (0, pw))
        else:
            g2 = ((kh, 1), (sh, sw), (ph, -self._centre[1]))
            g3 = ((1, kw), (sh, sw), (-self._centre[0], pw))
        self.g1 = nn.Conv2d(in_channels, rank, 1, bias=False)
        self.g2 = nn.Conv2d(rank, rank, *g2, bias=False)
        self.g3 = nn.Conv2d(rank, rank, *g3, bias=False)
        self.g4 = nn.Conv2d(rank, out_channels, 1, bias=bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, mode: Mode = "stt") -> TTConv2d:
        """The TT-SVD of a (trained) ``conv`` at ``rank``; with ``rank >= full_rank(...)`` in
        ``stt`` mode it computes the same function."""
        if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
            raise SpikecimError(
                f"TTConv2d.from_conv: needs groups 1, dilation 1 and zero padding, got groups {conv.groups}, "
                f"dilation {tuple(conv.dilation)}, padding_mode {conv.padding_mode!r}"
            )
        if isinstance(conv.padding, str):
            raise SpikecimError(f"TTConv2d.from_conv: needs numeric padding, got {conv.padding!r}")
        layer = cls(
            conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.stride),
            tuple(conv.padding), conv.bias is not None, rank, mode,
        )  # fmt: skip
        g1, g2, g3, g4 = tt_svd(conv.weight, rank)
        with torch.no_grad():
            layer.g1.weight.copy_(g1.T[:, :, None, None])
            layer.g2.weight.copy_(g2.permute(2, 0, 1)[:, :, :, None])
            layer.g3.weight.copy_(g3.permute(2, 0, 1)[:, :, None, :])
            layer.g4.weight.copy_(g4.T[:, :, None, None])
            if conv.bias is not None:
                layer.g4.bias.copy_(conv.bias)
        return layer.to(device=conv.weight.device, dtype=conv.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            return unfold(self._cores(fold(x), x.shape[0]), x.shape[0])
        if x.dim() == 4 and self.mode != "htt":
            return self._cores(x, None)
        raise SpikecimError(
            f"TTConv2d ({self.mode}): input must be [T, B, C, H, W]"
            + (" or [N, C, H, W]" if self.mode != "htt" else " (htt needs the step index)")
            + f", got shape {list(x.shape)}"
        )

    def _cores(self, x: torch.Tensor, steps: int | None) -> torch.Tensor:
        """The pipeline on ``x[N, C, H, W]`` (``N = T·B`` with ``steps = T`` for htt)."""
        h = self.g1(x)
        if self.mode == "stt":
            return self.g4(self.g3(self.g2(h)))
        if self.mode == "ptt":
            return self.g4((self.g2(h) + self.g3(h)) / 2)
        from spikecim.trace.steps import at_step

        h = unfold(h, steps)
        split = hybrid_split(steps)
        mid = []
        for t in range(split):
            with at_step(t):
                mid.append((self.g2(h[t]) + self.g3(h[t])) / 2)
        parts = [torch.stack(mid)] + ([self._centres(h[split:], mid[0].shape[-2:])] if split < steps else [])
        return self.g4(fold(torch.cat(parts)))

    def _centres(self, h: torch.Tensor, out_hw: torch.Size) -> torch.Tensor:
        """``h[..., H, W]`` at the dense window centres: rows ``s_h·i + c_h``, columns likewise."""
        (ch, cw), (sh, sw) = self._centre, self.stride
        h = F.pad(h, (-cw, -cw, -ch, -ch)) if (ch, cw) != (0, 0) else h
        return h[..., ::sh, ::sw][..., : out_hw[0], : out_hw[1]]

    def core_macs(self, in_hw: tuple[int, int], steps: int = 1) -> dict[str, int]:
        """Multiply-accumulates of each core for one sample over ``steps`` steps (dense input):
        ``out_ch · in_ch · kh · kw · H_out · W_out`` per core and step it runs on."""
        h, w = in_hw
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        r = self.rank
        if self.mode == "stt":
            per = {"g1": r * self.in_channels * h * w, "g2": r * r * kh * ho * w,
                   "g3": r * r * kw * ho * wo, "g4": self.out_channels * r * ho * wo}  # fmt: skip
            return {k: v * steps for k, v in per.items()}
        mid_steps = hybrid_split(steps) if self.mode == "htt" else steps
        return {
            "g1": r * self.in_channels * h * w * steps,
            "g2": r * r * kh * ho * wo * mid_steps,
            "g3": r * r * kw * ho * wo * mid_steps,
            "g4": self.out_channels * r * ho * wo * steps,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, rank={self.rank}, mode={self.mode}"
        )


def _pair(v, what: str, low: int) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) and i >= low for i in t):
        raise SpikecimError(f"TTConv2d.{what}: must be an integer >= {low} or a pair of them, got {v!r}")
    return int(t[0]), int(t[1])
