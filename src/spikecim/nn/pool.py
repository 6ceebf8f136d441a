"""Pooling layers of the built-in models: ``torch.nn``'s, with a faster CPU kernel.

:class:`AvgPool2d` and :class:`MaxPool2d` are ``nn.AvgPool2d`` and ``nn.MaxPool2d`` (same
arguments, state and ``isinstance``), whose forward runs
:mod:`spikecim.nn.kernels.pool_cpu` where it applies (CPU, default layout, kernel =
stride, no padding) and torch's pooling everywhere else. The values and gradients are
torch's bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.nn.kernels import pool_cpu

__all__ = ["AvgPool2d", "MaxPool2d"]


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` on spikecim's CPU pooling kernel where it applies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_cpu.avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` on spikecim's CPU pooling kernel where it applies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_cpu.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )
