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

and the layer returns Σ_t ŷ_t + bias. A convolution's input vectors are its patches; a
tile runs as a native convolution of the image's channels it touches (the kernel entries
outside the tile zero), each input counted once per window that covers it, so the numbers
and gradients are the patch form's (with a per-vector abs-max range it runs on the patches,
im2col). On the CPU the tiles' convolutions run in ``torch.channels_last`` (the layer's
input is laid out so once, its gradient handed back in the input's layout; the output
keeps channels-last): oneDNN reads that layout as it lies, where in torch's default layout
it reorders every tile's input and output and pads the tile's channels to a multiple of 16
(VGG-9's 32×32 layer at batch 32, 22 of 64 input channels: 7.9 against 12.5 ms forward, one
thread, ``benchmarks/bench_hwa_parts.py``). The learned range follows aihwkit-lightning's
``TorchLinear.apply_input_range`` and ``InputRangeForward``
(``aihwkit_lightning/nn/modules/torch_utils/torch_linear.py``): for the first
``range_init_batches`` training batches r ← (r·i + range_init_std·std(x_t))/(i + 1); the
gradient of a clipped input is 0 (an input exactly at ±r keeps it), and

    ∂L/∂r = r · (Σ_{x ≥ r} min(g, 0) − Σ_{x ≤ −r} max(g, 0)) + range_decay · r · [unclipped fraction > range_min_unclipped]

with g the gradient at the layer's (quantised) input. The converters are the crossbar's
(:mod:`spikecim.analog.quant`: :func:`spikecim.quant.levels` on a grid of 2^(b−1)−1 levels
each side of zero, aihwkit's ``res = 2/(2^b − 2)``, docs/references.md#adc-dac), fused with
their straight-through gradients in one autograd function each.

:func:`hwa_layers` puts an :class:`HwaLayer` around every operator of :mod:`spikecim.ops`
with a programmed weight (linear, conv2d); :func:`digital_layers` takes them off again.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from spikecim import ops
from spikecim.analog import hwa_kernels
from spikecim.analog.hwa_config import HwaConverters
from spikecim.analog.hwa_kernels import LOWER, OUTSIDE, UPPER
from spikecim.analog.hwa_noise import weight_noise
from spikecim.analog.quant import abs_max_scale, level_count
from spikecim.autograd import Function
from spikecim.errors import SpikecimError
from spikecim.nn.linear import Linear
from spikecim.ops.conv import output_size
from spikecim.quant import levels

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
        if type(module).forward not in (nn.Linear.forward, Linear.forward, nn.Conv2d.forward):
            raise SpikecimError(
                f"analog.hwa converters: {type(module).__name__} has its own forward; the converters "
                "support layers computing nn.Linear's or nn.Conv2d's forward"
            )
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            raise SpikecimError(
                "analog.hwa converters: a grouped convolution or one with padding_mode other than 'zeros' "
                "is not supported"
            )
        self.module, self.converters, self.modifier, self.generator = module, converters, modifier, generator
        self.sizes = tile_sizes(module.weight[0].numel(), converters.tile_rows)
        self.starts = list(itertools.accumulate(self.sizes, initial=0))[:-1]  # each tile's first input
        self.channel_ranges = self._channel_ranges() if isinstance(module, nn.Conv2d) else None
        learned = converters.input_range == "learned"
        self.input_range = (
            nn.Parameter(torch.full((len(self.sizes),), converters.range_init, dtype=module.weight.dtype))
            if learned
            else None
        )
        self.register_buffer(
            "range_updates", torch.zeros(len(self.sizes), dtype=torch.long) if learned else None
        )
        self._copies_of: dict = {}  # a convolution tile's _copies per input size (shapes only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        w = m.weight.reshape(m.weight.shape[0], -1)
        if not isinstance(m, nn.Conv2d):
            parts = x.split(self.sizes, -1)  # one split: its backward is one concatenation
            out = self._tiles(w, lambda t, start, wt: self._matmul(parts[t], -1, t, wt))
            return out if m.bias is None else out + m.bias
        from spikecim.ops.conv import _padding

        geometry = (m.stride, _padding(m), m.dilation)
        if self._on_image():
            cpu = x.device.type == "cpu"  # module docstring: the tiles' convolutions in channels-last
            if cpu and not hwa_kernels.channels_last(x):
                x = _ChannelsLast.apply(x)
            parts = self._channels(x)
            out = self._tiles(w, lambda t, start, wt: self._conv(parts[t], geometry, t, start, wt))
            return out if m.bias is None else out + m.bias.view(1, -1, 1, 1)
        patches = F.unfold(x, m.kernel_size, m.dilation, geometry[1], m.stride).split(self.sizes, -2)
        out = self._tiles(w, lambda t, start, wt: self._matmul(patches[t], -2, t, wt))  # [B, M, L]
        if m.bias is not None:
            out = out + m.bias.view(1, -1, 1)
        ho = output_size(x.shape[-2:], m.kernel_size, m.stride, geometry[1], m.dilation)[0]
        return out.view(x.shape[0], w.shape[0], ho, -1)

    def _channel_ranges(self) -> list[tuple[int, int]]:
        """The input channels [first, last) each convolution tile touches (neighbours share
        a channel when a tile ends inside a channel's kernel window)."""
        window = self.module.kernel_size[0] * self.module.kernel_size[1]
        ranges, start = [], 0
        for size in self.sizes:
            ranges.append((start // window, (start + size - 1) // window + 1))
            start += size
        return ranges

    def _channels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each tile's input channels, from one split of ``x`` at every tile's ends (so the
        backward concatenates once instead of filling a full-size gradient per tile)."""
        ranges = self.channel_ranges
        if len(ranges) == 1:
            return [x]
        cuts = sorted({0, x.shape[1], *(e for r in ranges for e in r)})
        pieces = x.split([b - a for a, b in itertools.pairwise(cuts)], 1)
        at = {c: i for i, c in enumerate(cuts)}
        return [
            pieces[at[a]] if at[b] - at[a] == 1 else torch.cat(pieces[at[a] : at[b]], 1) for a, b in ranges
        ]

    def _on_image(self) -> bool:
        """Whether a convolution runs on the image (a native convolution per tile) rather
        than on its patches: not with a per-patch abs-max range."""
        return self.converters.input_range != "abs-max"

    def _tiles(self, w: torch.Tensor, product) -> torch.Tensor:
        """Σ_t ŷ_t; ``product(t, start, W_t)`` gives the tile's x̂_t Ŵ_tᵀ and its range r_t."""
        c = self.converters
        noisy = self.training and self.modifier is not None
        out = None
        for t, (start, wt) in enumerate(zip(self.starts, w.split(self.sizes, 1), strict=True)):
            w_max = wt.detach().abs().amax() if c.out_bound is not None or noisy else None  # clean W_t
            if noisy:
                wt = wt + weight_noise(wt, self.modifier, self.generator, w_max)
            yt, r = product(t, start, wt)
            if c.out_bound is not None:  # the ADC adds the tile to the tiles before
                out = _Adc.apply(yt, r * c.out_bound * w_max, c.adc_bits, out)[0]
            else:
                out = yt if out is None else out + yt
        return out

    def _matmul(self, xt: torch.Tensor, dim: int, t: int, wt: torch.Tensor):
        """x̂_t Ŵ_tᵀ of the tile's inputs, vectors along ``dim`` (-1: ``[..., K_t]``, -2:
        patches ``[B, K_t, L]``)."""
        xt, r = self._inputs(xt, t, dim)
        return (F.linear(xt, wt) if dim == -1 else torch.matmul(wt, xt)), r

    def _conv(self, xt: torch.Tensor, geometry, t: int, start: int, wt: torch.Tensor):
        """x̂_t Ŵ_tᵀ of a convolution tile as a convolution of the channels it touches
        (``xt``), the kernel entries outside the tile zero (module docstring: the same numbers
        and gradients as on the patches)."""
        m, c = self.module, self.converters
        window = m.kernel_size[0] * m.kernel_size[1]
        size = wt.shape[1]
        first, last = self.channel_ranges[t]
        pad = (start - first * window, last * window - start - size)
        kernel = F.pad(wt, pad).view(wt.shape[0], last - first, *m.kernel_size)
        if c.input_range is None:
            return F.conv2d(xt, kernel, None, *geometry), None
        key = (t, tuple(xt.shape[2:]), xt.dtype, xt.device)
        if key not in self._copies_of:  # they depend on the shapes only: computed once
            inside = F.pad(xt.new_ones(1, size), pad).view(1, last - first, *m.kernel_size)
            self._copies_of[key] = _copies(inside, xt.shape[2:], geometry)
        copies, windows = self._copies_of[key]
        if self.training and self._initialising(t):
            self._init_range(t, _patch_std(xt.detach(), copies, windows * size))
        r = self.input_range[t]
        entries = xt.shape[0] * windows * size  # patch entries of the tile in the batch
        y = _ConvTile.apply(
            xt, kernel, r, c.dac_bits, geometry, copies, entries, c.range_decay, c.range_min_unclipped
        )[0]
        return y, r.detach()

    def _inputs(self, xt: torch.Tensor, t: int, dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tile's inputs after the range and the DAC, and their range (no gradient)."""
        c = self.converters
        if c.input_range is None:
            return xt, None
        if c.input_range == "abs-max":
            r = abs_max_scale(xt, dim)
            return _dac(xt, r, c.dac_bits, 0.0, 1.0), r
        if self.training and self._initialising(t):
            self._init_range(t, xt.detach().std())
        r = self.input_range[t]
        return _dac(xt, r, c.dac_bits, c.range_decay, c.range_min_unclipped), r.detach()

    def _initialising(self, t: int) -> bool:
        return int(self.range_updates[t]) < self.converters.range_init_batches

    @torch.no_grad()
    def _init_range(self, t: int, std: torch.Tensor) -> None:
        """Move the learned range towards range_init_std·std (the std of the tile's inputs,
        as patches for a convolution) for the first batches. It writes the parameter's
        ``.data`` (as aihwkit-lightning does), so a forward called again before the backward
        (one call per time step) keeps its graph. The arithmetic is torch's on the 0-dim
        tensors, ``|(r·i + range_init_std·std) / (i + 1)|`` in the range's dtype, one rounding
        per operation, on numpy scalars of that dtype (the same IEEE operations, without a
        tensor operation's overhead; 0-dim tensors for dtypes numpy lacks)."""
        c, i = self.converters, int(self.range_updates[t])
        r = self.input_range.data
        real = _NUMPY_REALS.get(r.dtype) or (lambda v: torch.tensor(v, dtype=r.dtype))
        value, s = real(r[t].item()), real(std.item())
        if s > 0:
            value = (value * real(i) + real(c.range_init_std) * s) / real(i + 1)
            self.range_updates[t] = i + 1
        r[t] = float(abs(value))


_NUMPY_REALS = {torch.float32: np.float32, torch.float64: np.float64}


def _copies(inside: torch.Tensor, size: torch.Size, geometry) -> tuple[torch.Tensor, int]:
    """How many patch entries of a convolution tile copy each input ``[C, H, W]`` (the
    windows that cover it with a kernel entry of the tile, ``inside`` ``[1, C, kh, kw]``: the
    transposed convolution of a map of ones over the output), and the windows per sample."""
    stride, padding, dilation = geometry
    kernel = inside.shape[2:]
    dims = list(zip(size, padding, dilation, kernel, stride, strict=True))
    out = list(output_size(size, kernel, stride, padding, dilation))
    reach = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, (_, p, d, k, s) in zip(out, dims, strict=True)]
    # the last (size − reach) < stride inputs: the transposed convolution's output padding, which
    # computes them (the last window covers some when the padding on the right is cut short)
    extra = [n - r for n, r in zip(size, reach, strict=True)]
    ones = inside.new_ones(1, 1, *out)
    copies = F.conv_transpose2d(ones, inside, None, stride, padding, extra, 1, dilation)
    return copies[0], out[0] * out[1]


def _patch_std(x: torch.Tensor, copies: torch.Tensor, entries: int) -> torch.Tensor:
    """The unbiased std of a convolution tile's ``entries`` patch entries per sample (padding
    zeros included) without the patches: Σx and Σx² weighted by each input's ``copies``,
    accumulated in float64 (one pass of :func:`spikecim.analog.hwa_kernels.moments` where
    it runs)."""
    n = x.shape[0] * entries
    if hwa_kernels.available(x):
        s1, s2 = hwa_kernels.moments(x, copies)
        return torch.tensor(math.sqrt(max((s2 - s1 * s1 / n) / (n - 1), 0.0)), dtype=x.dtype)
    weights = copies.to(torch.float64)
    s1 = (x.sum(0, dtype=torch.float64) * weights).sum()
    s2 = (x.square().sum(0, dtype=torch.float64) * weights).sum()
    return ((s2 - s1 * s1 / n) / (n - 1)).clamp(min=0).sqrt().to(x.dtype)


class _Clip(NamedTuple):
    """Where the inputs met a learned range: ``code`` one byte per input (bits ``UPPER``
    x ≥ r, ``LOWER`` x ≤ −r, ``OUTSIDE`` |x| > r: no gradient), None when no input reached
    ±r; ``clipped`` #(x ≥ r) + #(x ≤ −r); ``weighted`` the inputs with x ≥ r or x ≤ −r
    counted once per patch entry that copies them (with ``copies``, else 0)."""

    code: torch.Tensor | None
    clipped: int
    weighted: float


def _clip_and_dac(
    x: torch.Tensor, r: torch.Tensor, bits: int | None, copies: torch.Tensor | None = None
) -> tuple[torch.Tensor, _Clip]:
    """x clipped to ±r, then on the ``bits``-bit grid over ±r (``bits`` None: no grid), and
    where it clipped (never for a per-vector abs-max range); ``copies`` ``[C, H, W]``: how
    many patch entries copy each input of a convolution tile ``[B, C, H, W]``. One pass of
    :func:`spikecim.analog.hwa_kernels.dac` where it runs, else the torch passes."""
    n = level_count(bits) if bits is not None else None
    if r.dim() == 0 and hwa_kernels.available(x):
        y, code, clipped, weighted = hwa_kernels.dac(x, r, n, copies)
        return y, _Clip(code if clipped else None, clipped, weighted)
    y = torch.clamp(x, -r, r)
    clip = _Clip(None, 0, 0.0)
    if r.dim() == 0:
        lo, hi = torch.aminmax(x)
        if hi >= r or lo <= -r:
            upper, lower = x >= r, x <= -r
            code = upper.to(torch.uint8) * UPPER + lower.to(torch.uint8) * LOWER
            code += (y != x).to(torch.uint8) * OUTSIDE
            weighted = float(((upper | lower).sum(0) * copies).sum()) if copies is not None else 0.0
            clip = _Clip(code, int(upper.count_nonzero() + lower.count_nonzero()), weighted)
    if n is not None:
        y = levels(y, n / r, ste=None, inplace=True).mul_(r / n)  # inside ±r already: no clip
    return y, clip


def _dac_grad(g: torch.Tensor, code: torch.Tensor | None, sums: bool, inplace: bool = False):
    """``(grad, clipped)``: ``g`` zeroed where ``code`` is ``OUTSIDE``, and with ``sums``
    Σ_{x≥r} min(g, 0) − Σ_{x≤−r} max(g, 0) (0.0 without a ``code``: nothing clipped)."""
    if code is None:
        return g, 0.0
    if hwa_kernels.available(g):
        return hwa_kernels.dac_backward(g, code, sums, inplace)
    outside = (code & OUTSIDE).bool()
    grad = g.masked_fill_(outside, 0) if inplace else g.masked_fill(outside, 0)
    if not sums:
        return grad, 0.0
    upper, lower = (code & UPPER).bool(), (code & LOWER).bool()
    return grad, g[upper].clamp(max=0).sum() - g[lower].clamp(min=0).sum()


def _range_grad(r: torch.Tensor, clipped_grad, unclipped: float, decay: float, min_unclipped: float):
    """∂L/∂r = r · (Σ_{x≥r} min(g, 0) − Σ_{x≤−r} max(g, 0)) + decay · r while the unclipped
    fraction exceeds ``min_unclipped`` (``clipped_grad``: the sums, 0 when nothing clipped)."""
    grad = (torch.zeros_like(r) + clipped_grad) * r
    if decay > 0 and unclipped > min_unclipped:
        grad = grad + decay * r
    return grad


def _dac(x: torch.Tensor, r: torch.Tensor, bits: int | None, decay: float, min_unclipped: float):
    """The tile's inputs through :class:`_Dac`."""
    return _Dac.apply(x, r, bits, decay, min_unclipped)[0]


class _ChannelsLast(Function):
    """A channels-last copy of ``x`` (channel stride 1 also for one channel, so that the
    convolution writes channels-last); its gradient laid out as ``x`` was (torch's default
    layout, or left as it comes), so the layers before see one layout forward and back."""

    @staticmethod
    def forward(x):
        return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.default = inputs[0].is_contiguous()

    @staticmethod
    def backward(ctx, g):
        return g.contiguous() if ctx.default else g


class _Dac(Function):
    """:func:`_clip_and_dac` with straight-through gradients, except that a clipped input
    gets none (one exactly at ±r keeps it); a range that needs a gradient (learned) gets
    :func:`_range_grad`. Its outputs besides the first (where it clipped, the unclipped
    fraction) carry what the backward needs (the form ``torch.func`` takes: no context in
    the forward)."""

    @staticmethod
    def forward(x, r, bits: int | None, decay: float, min_unclipped: float):
        y, clip = _clip_and_dac(x, r, bits)
        return y, clip.code, 1.0 - clip.clipped / x.numel()

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, r, _, decay, min_unclipped = inputs
        _, code, unclipped = output
        if code is not None:
            ctx.mark_non_differentiable(code)
        ctx.save_for_backward(code, r)
        ctx.decay, ctx.min_unclipped, ctx.unclipped = decay, min_unclipped, unclipped
        ctx.set_materialize_grads(False)  # no zeros for the outputs besides the first

    @staticmethod
    def backward(ctx, g, _code, _unclipped):
        if g is None:
            return None, None, None, None, None
        code, r = ctx.saved_tensors
        grad_x, clipped = _dac_grad(g, code, ctx.needs_input_grad[1])
        grad_r = None
        if ctx.needs_input_grad[1]:
            grad_r = _range_grad(r, clipped, ctx.unclipped, ctx.decay, ctx.min_unclipped)
        return grad_x, grad_r, None, None, None


class _Adc(Function):
    """``prev`` (the sum of the tiles before, or None) plus the outputs on the ``bits``-bit
    grid over ±bound (``bits`` None: no grid), clipped to ±bound, written into ``prev`` (no
    one else holds it); the gradient is straight-through inside ±bound and 0 outside (a
    saturated output)."""

    @staticmethod
    def forward(y, bound, bits: int | None, prev):
        n = level_count(bits) if bits is not None else None
        # prev, the sum of the tiles before, has y's dtype; the kernel writes into a dense one,
        # on one bound (an abs-max range gives every input vector its own: the torch passes)
        one_bound = not isinstance(bound, torch.Tensor) or bound.numel() == 1
        if one_bound and hwa_kernels.available(y) and (prev is None or hwa_kernels.dense(prev)):
            out, code, saturated = hwa_kernels.adc(y, prev, bound, n)
        else:
            out, mask, saturated = _adc(y, bound, n)
            out = out if prev is None else prev.add_(out)
            code = mask.to(torch.uint8) * OUTSIDE if saturated else None
        return out, (code if saturated else None)

    @staticmethod
    def setup_context(ctx, inputs, output):
        prev = inputs[3]
        if prev is not None:
            ctx.mark_dirty(prev)
        code = output[1]
        if code is not None:
            ctx.mark_non_differentiable(code)
        ctx.save_for_backward(code)
        ctx.prev = prev is not None
        ctx.set_materialize_grads(False)  # no zeros for the code

    @staticmethod
    def backward(ctx, g, _code):
        if g is None:
            return None, None, None, None
        (code,) = ctx.saved_tensors
        grad_y, _ = _dac_grad(g, code, False)  # 0 at a saturated output (code OUTSIDE)
        return grad_y, None, None, (g if ctx.prev else None)


def _adc(
    y: torch.Tensor, bound: torch.Tensor, n: int | None
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """The torch passes of :class:`_Adc`: ``(out, mask, saturated)``, the mask built only
    when some output saturates."""
    if n is None:
        mask = (y > bound) | (y < -bound)
        return torch.clamp(y, -bound, bound), mask, bool(mask.any())
    k = levels(y, n / bound, ste=None)
    lo, hi = torch.aminmax(k)
    saturated = bool(lo < -n or hi > n)
    mask = (k > n) | (k < -n) if saturated else None
    return (k.clamp_(-n, n) if saturated else k).mul_(bound / n), mask, saturated


class _ConvTile(Function):
    """A convolution tile on the image: the inputs through :class:`_Dac` (clip to ±r, DAC),
    then ``conv2d`` with the tile's kernel. The backward gives what the patch form gives:
    each image input is a patch entry once per window that covers it, so its clip and the
    range's gradient are counted per covering window (``copies`` of each input, of
    ``entries`` in all), from the output gradient G at the few clipped inputs only:
    g_patch = Σ_m W[m, c, i, j] · G[b, m, window]."""

    @staticmethod
    def forward(x, kernel, r, bits, geometry, copies, entries: int, decay: float, min_unclipped: float):
        stride, padding, dilation = geometry
        y, clip = _clip_and_dac(x, r, bits, copies if decay > 0 else None)
        out = F.conv2d(y, kernel, None, stride, padding, dilation)
        # besides the output, what the backward needs (the form torch.func takes, as _Dac's)
        return out, y, clip.code, 1.0 - clip.weighted / entries  # clipped entries: once per window

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, kernel, r, _, geometry, _, _, decay, min_unclipped = inputs
        _, y, code, unclipped = output
        ctx.mark_non_differentiable(*(t for t in (y, code) if t is not None))
        ctx.save_for_backward(y, kernel, r, code)
        ctx.geometry, ctx.decay, ctx.min_unclipped, ctx.unclipped = geometry, decay, min_unclipped, unclipped
        ctx.set_materialize_grads(False)  # no zeros for the DAC's output and the code

    @staticmethod
    def backward(ctx, g, _y, _code, _unclipped):
        if g is None:
            return (None,) * 9
        y, kernel, r, code = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_r = None
        grad_x, grad_k, _ = torch.ops.aten.convolution_backward(
            g,
            y,
            kernel,
            None,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            1,
            [*ctx.needs_input_grad[:2], False],
        )  # torch's convolution backward, input and kernel in one call
        if grad_x is not None:
            grad_x, _ = _dac_grad(grad_x, code, False, inplace=True)
        if ctx.needs_input_grad[2]:
            clipped = _clipped_patch_grads(code, kernel, g, ctx.geometry) if code is not None else 0.0
            grad_r = _range_grad(r, clipped, ctx.unclipped, ctx.decay, ctx.min_unclipped)
        return grad_x, grad_k, grad_r, None, None, None, None, None, None


def _clipped_patch_grads(code: torch.Tensor, kernel: torch.Tensor, g: torch.Tensor, geometry):
    """Σ min(g_patch, 0) over the patch entries copied from an input coded ``UPPER``, minus
    Σ max(g_patch, 0) over those coded ``LOWER``: :func:`spikecim.analog.hwa_kernels.conv_range_grad`
    where it runs, else the gradient at every patch entry (Wᵀ·G per window, one matmul)
    read at the windows that cover each clipped input."""
    if hwa_kernels.available(g) and kernel.dtype == g.dtype:
        return hwa_kernels.conv_range_grad(code, kernel, g, geometry)
    stride, padding, dilation = geometry
    kh, kw = kernel.shape[2:]
    ho, wo = g.shape[2:]
    taps = kernel.shape[1] * kh * kw
    cols = torch.matmul(g.flatten(2).transpose(1, 2), kernel.reshape(kernel.shape[0], taps)).reshape(
        -1
    )  # [B, L, taps]
    total = torch.zeros((), dtype=g.dtype)
    i, j = torch.arange(kh), torch.arange(kw)
    for bit, sign in ((UPPER, 1.0), (LOWER, -1.0)):
        b, c, yy, xx = (code & bit).nonzero(as_tuple=True)
        oy = yy[:, None] + padding[0] - i[None] * dilation[0]  # [n, kh], before the stride
        ox = xx[:, None] + padding[1] - j[None] * dilation[1]
        vy = (oy % stride[0] == 0) & (oy >= 0) & (oy // stride[0] < ho)
        vx = (ox % stride[1] == 0) & (ox >= 0) & (ox // stride[1] < wo)
        oy, ox = (oy // stride[0]).clamp(0, ho - 1), (ox // stride[1]).clamp(0, wo - 1)
        k = (c[:, None, None] * kh + i[None, :, None]) * kw + j[None, None, :]
        window = (b[:, None, None] * ho + oy[:, :, None]) * wo + ox[:, None, :]
        gp = cols[(window * taps + k).flatten()] * sign
        valid = (vy[:, :, None] & vx[:, None, :]).flatten()
        total = total + gp.masked_fill_(~valid, 0).clamp_(max=0).sum()  # min(±g, 0)
    return total


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
def clip_weights(model: nn.Module, sigma: float) -> None:
    """Clip every programmed weight of ``model`` in place to ±σ·std(W) (unbiased std over the
    whole tensor: aihwkit-lightning's ``LAYER_GAUSSIAN`` clipping, ``clip_weights`` of its
    layers). W is the weight the layer computes (:func:`spikecim.ops.programmed_layers`), as
    the tile holds it: a parametrised weight's std is taken after its parametrisations (a
    pruning mask's zeros count), and the clip goes into the tensor the forward reads it from
    (:func:`spikecim.ops.programmed_weights`)."""
    for _, m, w in ops.programmed_layers(model):
        bound = sigma * w.std()
        # the whole stored tensor is clipped, the entries a mask zeroes too: they reach the
        # forward multiplied by zero either way, and a pruned weight stays pruned
        stored = m.parametrizations["weight"].original if parametrize.is_parametrized(m, "weight") else w
        stored.clamp_(-bound, bound)
