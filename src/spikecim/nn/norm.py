"""BatchNorm of the built-in models: ``torch.nn``'s, with a faster CPU training forward.

:class:`BatchNorm2d` is ``nn.BatchNorm2d`` (same arguments, parameters, buffers, state dict
and ``isinstance``) whose forward runs :mod:`spikecim.nn.kernels.bn_cpu` where it applies
(training on batch statistics, a CPU tensor in the default layout) and ``F.batch_norm``
everywhere else. The output, the running statistics and the gradients are torch's.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.nn.kernels import bn_cpu

__all__ = ["BatchNorm2d"]


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` on spikecim's CPU BatchNorm kernel where it applies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.BatchNorm2d.forward, with bn_cpu.batch_norm in place of F.batch_norm
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        tracked = not self.training or self.track_running_stats
        return bn_cpu.batch_norm(
            x,
            self.running_mean if tracked else None,
            self.running_var if tracked else None,
            self.weight,
            self.bias,
            batch_stats,
            factor,
            self.eps,
        )
