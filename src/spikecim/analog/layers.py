"""Analog layers: ``nn.Linear`` / ``nn.Conv2d`` whose products run through tiled crossbars.

Each layer holds the digital weight and bias (parameters, as in the layer it replaces), the
crossbar config, and its programmed :class:`~spikecim.analog.tiles.TileState` (set only by
:func:`spikecim.analog.program` and :func:`spikecim.analog.drift`). The bias is added
digitally. Each patch of a convolution is one input vector of the crossbar, as in
aihwkit's analog convolutions. In inference on a CPU with AVX-512 or AVX2 with FMA (float32,
the differential mapping, no ADC observer) a convolution runs in one compiled pass
(:mod:`spikecim.analog.conv_kernel`: the patches' DAC, the tile products and the ADC per
panel of patches, the patches never written out), except where its patches need no DAC
(binary spikes, or the DAC off) and either fit one input tile or are sparse spikes: there
one ``conv2d`` per input tile with the read matrix as kernel gives the same column outputs
faster (on sparse spikes the event-driven one of :mod:`spikecim.nn.kernels.spike_conv_cpu`),
as it does where the one pass does not run. Otherwise the patches are unfolded (``F.unfold``'s layout, or
rows where the products are small, written by the patch DAC kernel).

ADC range calibration observes the column outputs before the ADC through
:meth:`AnalogLayer.attach_adc_observer` (used with :func:`spikecim.quant.observing`): while
an observer is attached the ADC converts nothing (its range is what is being measured), as
torch's ``FakeQuantize`` with observation on and fake quantisation off.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from spikecim.analog import converter_kernels
from spikecim.analog.config import CrossbarConfig
from spikecim.analog.quant import Converter, level_count, nonzero_scale
from spikecim.analog.scratch import Scratch
from spikecim.analog.tiles import (
    TileState,
    crossbar_conv2d,
    crossbar_conv_fused,
    crossbar_matmul,
    crossbar_patch_rows,
    crossbar_patches,
    direct_conv_applies,
    fused_conv_applies,
    patch_rows_apply,
    program_tiles,
    to_device,
)
from spikecim.errors import SpikecimError
from spikecim.nn.kernels import spike_conv_cpu
from spikecim.ops.conv import output_size
from spikecim.quant import Observer

__all__ = ["AnalogConv2d", "AnalogLayer", "AnalogLinear"]


class AnalogLayer(nn.Module):
    """Common part: the config, the programmed tiles, the ADC bound, the ADC observers."""

    config: CrossbarConfig
    tiles: TileState | None
    adc_bound: float | None  # normalised units; None: the full range (tile_rows)

    def _setup(self, weight: nn.Parameter, bias: nn.Parameter | None, config: CrossbarConfig) -> None:
        self.weight = weight
        self.bias = bias
        self.config = config
        self.tiles = None
        r = config.adc.range
        self.adc_bound = float(r) if not isinstance(r, str) else None  # 'calibrated' is set by calibrate_adc
        self._adc_observers: OrderedDict[int, Observer] = OrderedDict()  # attach_adc_observer
        self._scratch = Scratch()  # work tensors kept between inference calls (scratch.py)

    def __getstate__(self) -> dict:
        """Pickled (``torch.save``, ``copy.deepcopy``) without the work tensors."""
        return {**super().__getstate__(), "_scratch": Scratch()}

    def _add_bias(self, y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``y + bias``, in ``y``'s memory when no gradient is needed (``y`` is the layer's own
        fresh output then)."""
        if torch.is_grad_enabled() and (y.requires_grad or bias.requires_grad):
            return y + bias
        return y.add_(bias)

    def attach_adc_observer(self, observer: Observer) -> RemovableHandle:
        """Show ``observer`` the column outputs before the ADC, in normalised units, at every
        forward until the returned handle's ``remove()``; meanwhile the ADC is bypassed."""
        handle = RemovableHandle(self._adc_observers)
        self._adc_observers[handle.id] = observer
        return handle

    def adc(self) -> Converter | None:
        """The column ADC of the next forward: None when disabled or under observation."""
        if not self.config.adc.enabled or self._adc_observers:
            return None
        return Converter(self.config.adc.bits, self.adc_bound)

    def matrix_weight(self) -> torch.Tensor:
        return self.weight.reshape(self.weight.shape[0], -1)

    def program(self, seed: int) -> None:
        self.tiles = program_tiles(self.matrix_weight(), self.config, seed, self._scratch)

    def _ready(self, x: torch.Tensor):
        """Check the layer is programmed, move the tiles to ``x``'s device; the pre-ADC hook
        that feeds the attached observers (None when there are none)."""
        if self.tiles is None:
            raise SpikecimError("analog: layer not programmed; call spikecim.analog.program(model, seed)")
        if self.tiles.w_scale.device != x.device:  # the tiles follow the input to its device
            self.tiles = to_device(self.tiles, x.device)
        if not self._adc_observers:
            return None
        observers = list(self._adc_observers.values())

        def observe(y: torch.Tensor, unit: float) -> None:
            y = y.detach() if unit == 1.0 else y.detach() / unit
            for obs in observers:
                obs.observe(y)

        return observe

    def matmul(self, x2d: torch.Tensor) -> torch.Tensor:
        hook = self._ready(x2d)
        return crossbar_matmul(x2d, self.tiles, self.config, self.adc(), hook, self._scratch)


class AnalogLinear(AnalogLayer):
    def __init__(self, linear: nn.Linear, config: CrossbarConfig):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._setup(linear.weight, linear.bias, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise SpikecimError(
                f"analog: AnalogLinear takes {self.in_features} input features in the last "
                f"dimension, got an input of shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        y = self.matmul(x.reshape(-1, x.shape[-1]))
        if self.bias is not None:
            y = self._add_bias(y, self.bias)
        return y.reshape(*lead, self.out_features)

    def to_digital(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        lin.weight = self.weight
        lin.bias = self.bias
        return lin


class AnalogConv2d(AnalogLayer):
    def __init__(self, conv: nn.Conv2d, config: CrossbarConfig):
        super().__init__()
        if conv.groups != 1:
            raise SpikecimError(
                f"analog: Conv2d with groups={conv.groups} is not supported (groups must be 1)"
            )
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise SpikecimError("analog: Conv2d needs numeric zero padding (padding_mode='zeros')")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self._setup(conv.weight, conv.bias, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # one unbatched image [C, H, W], as nn.Conv2d takes it
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise SpikecimError(
                f"analog: AnalogConv2d takes [N, {self.in_channels}, H, W] or [{self.in_channels}, H, W], "
                f"got an input of shape {tuple(x.shape)}"
            )
        n, _, h, w = x.shape
        h_out, w_out = output_size((h, w), self.kernel_size, self.stride, self.padding, self.dilation)
        hook = self._ready(x)
        direct = direct_conv_applies(x, self.tiles, self.config)  # no DAC needed: spikes, or the DAC off
        # sparse spikes: the direct convolution of each tile adds the rows under the spikes
        # (nn/kernels/spike_conv_cpu.py), faster than the one pass's dense products
        events = direct and spike_conv_cpu.sparse_spikes_likely(
            x, self.weight, self.stride, self.padding, self.dilation
        )
        if (
            fused_conv_applies(x, self.config, hook is not None)
            and not events
            and (not direct or self.tiles.grid[1] > 1)
        ):
            # one pass (conv_kernel.py); over one input tile the direct convolution is faster
            geometry = (self.kernel_size, self.stride, self.padding, self.dilation)
            y = crossbar_conv_fused(
                x, self.tiles, self.config, self.adc(), geometry, self._scratch, not direct
            )
        elif direct:
            conv = {
                "weight_shape": self.weight.shape,
                "stride": self.stride,
                "padding": self.padding,
                "dilation": self.dilation,
            }
            y = crossbar_conv2d(x, self.tiles, self.config, self.adc(), conv, hook, self._scratch)
        elif (
            self.config.dac.enabled
            and not (torch.is_grad_enabled() and x.requires_grad)
            and converter_kernels.available(x)
        ):
            y = self._dac_forward(x, h_out * w_out, hook)
        else:
            cols = self._unfold(x)  # [N, C*kh*kw, L]
            scale = self._patch_abs_max(x) if self.config.dac.enabled else None
            y = crossbar_patches(cols, self.tiles, self.config, self.adc(), hook, True, scale, self._scratch)
        if self.bias is not None:
            y = self._add_bias(y, self.bias[:, None])
        return y.reshape(n, self.out_channels, h_out, w_out)

    def _dac_forward(self, x: torch.Tensor, patches: int, hook) -> torch.Tensor:
        """Inference with the DAC on and the converter kernels built, where the one-pass
        kernel does not run: ``[N, out, L]``, the patches gathered straight into DAC levels,
        written once (converter_kernels.py), as rows where one product over the batch beats
        a product per sample (gemm.py)."""
        tiles, cfg, adc = self.tiles, self.config, self.adc()
        rows = patch_rows_apply(x, tiles, cfg, patches, hook is not None)
        cols, levels_scale = self._unfold_levels(x, patches, rows)
        if rows:
            return crossbar_patch_rows(cols, levels_scale, tiles, cfg, adc, self._scratch)
        return crossbar_patches(cols, tiles, cfg, adc, hook, True, None, self._scratch, levels_scale)

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``F.unfold(x)``: the patches ``[N, C*kh*kw, L]``. In inference they are copied from a
        strided view of ``x`` into the layer's scratch (the DAC overwrites it): a fresh patch
        tensor of tens of MB costs more in page faults than the copy."""
        if torch.is_grad_enabled() and x.requires_grad:
            return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        (ph, pw), (kh, kw), (dh, dw), (sh, sw) = self.padding, self.kernel_size, self.dilation, self.stride
        xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
        view = xp.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)  # [N, C, H', W', ., .]
        view = view[..., ::dh, ::dw].permute(0, 1, 4, 5, 2, 3)  # [N, C, kh, kw, H', W']
        work = self._scratch.take("patches", view.shape, x)
        work.copy_(view)
        return work.view(x.shape[0], self.in_channels * kh * kw, view.shape[4] * view.shape[5])

    def _unfold_levels(
        self, x: torch.Tensor, patches: int, rows: bool
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """The ``patches`` per sample in DAC levels, in the layer's scratch (as rows: one
        matrix per input tile), and their scales per input tile
        (:func:`converter_kernels.unfold_dac`; inference only)."""
        kh, kw = self.kernel_size
        work = self._scratch.take("patches", (x.shape[0], self.in_channels * kh * kw, patches), x)
        n_dac = level_count(self.config.dac.bits)
        geometry = (self.kernel_size, self.stride, self.padding, self.dilation)
        return converter_kernels.unfold_dac(x, *geometry, self.tiles.grid[2], n_dac, work, rows)

    def _patch_abs_max(self, x: torch.Tensor) -> torch.Tensor | None:
        """Every patch's abs-max ``[N, 1, L]`` without unfolding: a max-pool of the largest
        |x| over the channels (zero padding never raises it). Only for one input tile, where
        a patch is one input vector; None otherwise."""
        wide_pad = any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True))
        if self.tiles.grid[1] != 1 or wide_pad:
            return None  # several tiles, or more padding than max_pool2d takes
        channel_max = x.detach().abs().amax(dim=1, keepdim=True)
        pooled = F.max_pool2d(channel_max, self.kernel_size, self.stride, self.padding, self.dilation)
        return nonzero_scale(pooled.flatten(2))

    def to_digital(self) -> nn.Conv2d:
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            bias=self.bias is not None,
        )
        conv.weight = self.weight
        conv.bias = self.bias
        return conv
