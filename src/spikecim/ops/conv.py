"""``conv1d`` and ``conv2d``: ``nn.Conv1d`` / ``nn.Conv2d`` and subclasses, groups included.

Accumulates triggered by non-zero inputs, exactly (borders, strides, dilation, groups):
``Σ conv(mask(x), K, groups)`` with ``K[g, i, k…] = out_ch / groups`` — each output position
counts the non-zero inputs under its kernel window, once per output channel of the group.
Those on non-zero weights take ``K[g, i, k…] = Σ_{o in group g} [W[o, i, k…] ≠ 0]``: an input
under offset ``k`` meets the non-zero weights at that offset of its group's output channels.
Counts are exact integers, returned as float64. A 1-D convolution is described with
``in_hw = (L, 1)``, ``kernel = (k, 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.ops import Op, register_op
from spikecim.ops._bits import static_operand


def _pair(v, fill: int) -> tuple[int, int]:
    v = (v,) if isinstance(v, int) else tuple(v)
    return (int(v[0]), int(v[1]) if len(v) > 1 else fill)


class _Conv(Op):
    nd: int = 2

    def sample_ndim(self, module):
        return self.nd + 1

    def accumulates(self, module, inputs):
        g = module.groups
        fan_out = torch.full((g, module.in_channels // g, *module.kernel_size), module.out_channels // g)
        return self._pairs(module, inputs[0], fan_out)

    def weighted_accumulates(self, module, inputs):
        nonzero = module.weight != 0  # [out_ch, in_ch/groups, k…]
        g = module.groups
        fan_out = nonzero.reshape(g, module.out_channels // g, *nonzero.shape[1:]).sum(1)
        return self._pairs(module, inputs[0], fan_out)

    def _pairs(self, module, x: torch.Tensor, fan_out: torch.Tensor) -> torch.Tensor:
        """Per row: Σ over output positions of ``conv(mask(x), fan_out, groups)``, where
        ``fan_out[g, i, k…]`` is the outputs an input of group ``g``, channel ``i``, under
        offset ``k`` feeds. In float32 when every window sum is below 2**24 (exact), else
        float64; summed in float64."""
        largest = int(fan_out.flatten(1).sum(1).max())
        dtype = torch.float32 if largest < 2**24 else torch.float64
        mask = (x != 0).to(dtype)
        conv = F.conv2d if self.nd == 2 else F.conv1d
        kernel = fan_out.to(mask.device, dtype)
        window = conv(mask, kernel, None, module.stride, module.padding, module.dilation, module.groups)
        return window.flatten(1).sum(1, dtype=torch.float64)

    def describe(self, module, in_shapes, out_shape):
        w = module.weight
        hw = lambda s: _pair(tuple(s[1:]), 1)
        return {
            "in_ch": module.in_channels,
            "out_ch": module.out_channels,
            "kernel": _pair(module.kernel_size, 1),
            "stride": _pair(module.stride, 1),
            "padding": _pair(_padding(module), 0),
            "dilation": _pair(module.dilation, 1),
            "groups": module.groups,
            "in_hw": hw(in_shapes[0]),
            "out_hw": hw(out_shape),
            "has_bias": module.bias is not None,
            "operands": {"weight": static_operand(module, w)},
        }

    def static_weight(self, module):
        return module.weight

    def to_nir(self, writer, module, name, prev):
        import nir

        from spikecim.interop.export_layers import as_numpy

        in_shape = writer.shape(module, name, 0)
        if module.padding_mode != "zeros":
            raise SpikecimError(
                f"layer '{name}' ({type(module).__name__}): padding_mode '{module.padding_mode}' "
                "has no NIR equivalent"
            )
        m = module
        bias = as_numpy(m.bias) if m.bias is not None else as_numpy(torch.zeros(m.out_channels))
        pad = m.padding if isinstance(m.padding, str) else tuple(m.padding)
        if self.nd == 1:
            node = nir.Conv1d(input_shape=int(in_shape[-1]), weight=as_numpy(m.weight), stride=int(m.stride[0]),
                              padding=pad if isinstance(pad, str) else int(pad[0]), dilation=int(m.dilation[0]),
                              groups=int(m.groups), bias=bias)  # fmt: skip
        else:
            node = nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[-2:]), weight=as_numpy(m.weight),
                              stride=tuple(m.stride), padding=pad, dilation=tuple(m.dilation),
                              groups=int(m.groups), bias=bias)  # fmt: skip
        return writer.add(name, node)


def output_size(size, kernel_size, stride, padding, dilation) -> tuple[int, ...]:
    """A convolution's output extent in each spatial dimension for an input of ``size``, as
    ``nn.Conv1d`` and ``nn.Conv2d`` compute it: ``⌊(n + 2p − d·(k − 1) − 1) / s⌋ + 1``."""
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel_size, stride, padding, dilation, strict=True)
    )


def _padding(module) -> tuple[int, ...]:
    """Numeric padding; ``'same'`` as the symmetric padding that keeps the size (odd windows),
    ``'valid'`` as 0."""
    if not isinstance(module.padding, str):
        return tuple(module.padding)
    if module.padding == "valid":
        return (0,) * len(module.kernel_size)
    return tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))


@register_op
class Conv1d(_Conv):
    """1-D convolution; ``to_analog`` keeps it digital (no 1-D crossbar layer yet)."""

    kind = "conv1d"
    modules = (nn.Conv1d,)
    nd = 1


@register_op
class Conv2d(_Conv):
    kind = "conv2d"
    modules = (nn.Conv2d,)
    on_crossbar = True
    nd = 2

    def to_analog(self, module, config):
        from spikecim.analog.layers import AnalogConv2d

        return AnalogConv2d(module, config)
