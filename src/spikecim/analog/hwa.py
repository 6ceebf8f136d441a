"""The hardware-aware training forward with converters: input range, DAC, weight noise,
output bound and ADC per tile (:class:`~spikecim.analog.hwa_config.HwaConverters`).

For a weight W [M, K] split along its K inputs into tiles of at most ``tile_rows`` (equal
sizes, as aihwkit-lightning 2.1's ``get_split_sizes``), each tile t with inputs x_t computes

    r_t    learned: a parameter, the inputs clipped to ±r_t;  abs-max: max|x_t| per input vector
    x̂_t  = Q_dac(x_t; ±r_t)                       (straight-through)
    Ŵ_t  = W_t + noise(W_t)                        (the weight modifier, training only; ∂/∂W = 1)
    y_t  = x̂_t Ŵ_tᵀ
    b_t  = out_bound · r_t · max|W_t|              (clean weights, no gradient)
    ŷ_t  = clip(Q_adc(y_t; ±b_t), ±b_t)            (straight-through inside ±b_t, 0 outside)

and the layer returns Σ_t ŷ_t + bias. A convolution runs on its input patches (im2col),
each patch one input vector. The learned range follows aihwkit-lightning's
``TorchLinear.apply_input_range`` and ``InputRangeForward``
(``aihwkit_lightning/nn/modules/torch_utils/torch_linear.py``): for the first
``range_init_batches`` training batches r ← (r·i + range_init_std·std(x_t))/(i + 1); the
gradient of a clipped input is 0 (an input exactly at ±r keeps it), and

    ∂L/∂r = r · (Σ_{x ≥ r} min(g, 0) − Σ_{x ≤ −r} max(g, 0)) + range_decay · r · [unclipped fraction > range_min_unclipped]

with g the gradient at the layer's (quantised) input. The converters are
:func:`spikecim.analog.quant.quantize` on a grid of 2^(b−1)−1 levels each side of zero,
aihwkit's ``res = 2/(2^b − 2)`` (docs/references.md#adc-dac).

:func:`hwa_layers` puts an :class:`HwaLayer` around every operator of :mod:`spikecim.ops`
with a programmed weight (linear, conv2d); :func:`digital_layers` takes them off again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikecim import ops
from spikecim.analog.hwa_config import HwaConverters
from spikecim.analog.quant import abs_max_scale, quantize
from spikecim.errors import SpikecimError

__all__ = ["HwaLayer", "clip_weights", "digital_layers", "hwa_layers", "tile_sizes"]


def tile_sizes(inputs: int, tile_rows: int | None) -> list[int]:
    """``inputs`` split into the fewest tiles of at most ``tile_rows``, sizes differing by at
    most one (the first ones larger), as aihwkit-lightning's ``get_split_sizes``."""
    if tile_rows is None:
        return [inputs]
    n = -(-inputs // tile_rows)
    base, extra = divmod(inputs, n)
    return [base + (i < extra) for i in range(n)]


class HwaLayer(nn.Module):
    """A linear or conv2d ``module`` (its parameters shared, not copied) computing the forward
    of the module docstring; ``modifier`` and ``generator`` draw the weight noise at every
    training call (none in evaluation, or when ``modifier`` is None)."""

    def __init__(self, module: nn.Module, converters: HwaConverters, modifier=None, generator=None):
        super().__init__()
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            raise SpikecimError(
                "analog.hwa converters: a grouped convolution or one with padding_mode other than 'zeros' "
                "is not supported"
            )
        self.module, self.converters, self.modifier, self.generator = module, converters, modifier, generator
        self.sizes = tile_sizes(module.weight[0].numel(), converters.tile_rows)
        learned = converters.input_range == "learned"
        self.input_range = (
            nn.Parameter(torch.full((len(self.sizes),), converters.range_init, dtype=module.weight.dtype))
            if learned
            else None
        )
        self.register_buffer(
            "range_updates", torch.zeros(len(self.sizes), dtype=torch.long) if learned else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        w = m.weight.reshape(m.weight.shape[0], -1)
        if not isinstance(m, nn.Conv2d):
            out = self._tiles(x, w, dim=-1)
            return out if m.bias is None else out + m.bias
        from spikecim.ops.conv import _padding

        padding = _padding(m)
        patches = F.unfold(x, m.kernel_size, m.dilation, padding, m.stride)  # [B, K, L]
        out = self._tiles(patches, w, dim=-2)  # [B, M, L]
        if m.bias is not None:
            out = out + m.bias.view(1, -1, 1)
        h = (x.shape[-2] + 2 * padding[0] - m.dilation[0] * (m.kernel_size[0] - 1) - 1) // m.stride[0] + 1
        return out.view(x.shape[0], w.shape[0], h, -1)

    def _tiles(self, x: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
        """Σ_t ŷ_t for inputs ``x`` whose vectors lie along ``dim`` (-1: ``[..., K]``,
        -2: patches ``[B, K, L]``)."""
        c = self.converters
        noisy = self.training and self.modifier is not None
        if noisy:
            from spikecim.analog.mitigation import weight_noise  # mitigation builds these layers
        out, start = None, 0
        for t, size in enumerate(self.sizes):
            xt = x.narrow(dim, start, size)
            wt = w.narrow(1, start, size)
            start += size
            xt, r = self._range(xt, t, dim)
            if c.dac_bits is not None:
                xt = quantize(xt, c.dac_bits, r)
            w_max = wt.detach().abs().amax() if c.out_bound is not None else None
            if noisy:
                wt = wt + weight_noise(wt, self.modifier, self.generator)
            yt = F.linear(xt, wt) if dim == -1 else torch.matmul(wt, xt)
            if c.out_bound is not None:
                bound = r * c.out_bound * w_max
                if c.adc_bits is not None:
                    yt = quantize(yt, c.adc_bits, bound, ste="saturated")
                else:
                    yt = torch.clamp(yt, -bound, bound)
            out = yt if out is None else out + yt
        return out

    def _range(self, xt: torch.Tensor, t: int, dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tile's inputs (clipped to a learned range) and their range (no gradient)."""
        c = self.converters
        if c.input_range == "abs-max":
            return xt, abs_max_scale(xt, dim)
        if c.input_range is None:
            return xt, None
        if self.training:
            self._init_range(xt, t)
        r = self.input_range[t]
        return _ClipToRange.apply(xt, r, c.range_decay, c.range_min_unclipped), r.detach()

    @torch.no_grad()
    def _init_range(self, xt: torch.Tensor, t: int) -> None:
        """Move the learned range towards range_init_std·std(x_t) for the first batches. It
        writes the parameter's ``.data`` (as aihwkit-lightning does), so a forward called
        again before the backward (one call per time step) keeps its graph."""
        c, i = self.converters, int(self.range_updates[t])
        if i >= c.range_init_batches:
            return
        std = xt.std()
        r = self.input_range.data
        if std > 0:
            r[t] = (r[t] * i + c.range_init_std * std) / (i + 1)
            self.range_updates[t] += 1
        r[t] = r[t].abs()


class _ClipToRange(torch.autograd.Function):
    """clamp(x, −r, r) with the learned range's gradients (module docstring)."""

    @staticmethod
    def forward(ctx, x, r, decay: float, min_unclipped: float):
        upper, lower = x >= r, x <= -r
        inside = x.abs() <= r  # an input exactly at ±r keeps its gradient
        ctx.save_for_backward(upper, lower, inside, r)
        ctx.decay, ctx.min_unclipped = decay, min_unclipped
        return torch.clamp(x, -r, r)

    @staticmethod
    def backward(ctx, g):
        upper, lower, inside, r = ctx.saved_tensors
        grad_r = None
        if ctx.needs_input_grad[1]:
            grad_r = (g.clamp(max=0) * upper).sum() - (g.clamp(min=0) * lower).sum()
            grad_r = grad_r * r
            if ctx.decay > 0:
                unclipped = 1.0 - (upper | lower).sum() / upper.numel()
                grad_r = grad_r + ctx.decay * r * (unclipped > ctx.min_unclipped)
        return g * inside, grad_r, None, None


def hwa_layers(model: nn.Module, converters: HwaConverters, modifier=None, generator=None) -> nn.Module:
    """``model`` (in place) with an :class:`HwaLayer` around every operator with a programmed
    weight (:func:`spikecim.ops.programmed_weights`)."""
    from spikecim.analog.convert import _swap

    def wrap(_name: str, m: nn.Module) -> nn.Module | None:
        op = ops.find(m)
        if op is None or not op.on_crossbar or op.static_weight(m) is None:
            return None
        return HwaLayer(m, converters, modifier, generator)

    _swap(model, wrap)
    return model


def digital_layers(model: nn.Module) -> nn.Module:
    """``model`` (in place) with every :class:`HwaLayer` replaced by the module it wraps
    (the learned input ranges are dropped: the crossbar has its own converters)."""
    from spikecim.analog.convert import _swap

    _swap(model, lambda _n, m: m.module if isinstance(m, HwaLayer) else None)
    return model


@torch.no_grad()
def clip_weights(weights: list[torch.Tensor], sigma: float) -> None:
    """Clip each weight in place to ±σ·std(W) (unbiased std over the whole tensor:
    aihwkit-lightning's ``LAYER_GAUSSIAN`` clipping, ``clip_weights`` of its layers)."""
    for w in weights:
        bound = sigma * w.std()
        w.clamp_(-bound, bound)
