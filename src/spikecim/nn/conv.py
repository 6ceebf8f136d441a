"""The convolution of the built-in models: ``torch.nn.Conv2d``, event-driven on spikes.

:class:`Conv2d` is ``nn.Conv2d`` (same arguments, state, ``forward`` and ``isinstance``)
whose product runs :mod:`spikecim.nn.kernels.spike_conv_cpu` where its input turns out to
be sparse binary spikes on a CPU (any stride, one group; the kernel's docstring lists the
conditions) and torch's convolution everywhere else: the values agree to float rounding,
the gradients too. A 3×3 convolution of stride 1 with 64 channels or more in and out computes
its input gradient, and where its input is dense and needs a gradient also its forward and
weight gradient, by Winograd's algorithm (:mod:`spikecim.nn.kernels.winograd`). A 1×1
convolution of stride s without padding (a ResNet's projection shortcut) convolves the
positions the stride lands on at stride 1. In a spiking VGG or ResNet every convolution
after the first reads the spikes of a LIF layer.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.nn.kernels import spike_conv_cpu

__all__ = ["Conv2d"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose product of spikes adds the weights under each spike."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(x, weight, bias)
        return spike_conv_cpu.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
