"""Crossbars written at run time: the analog twin of a product of two activations.

``AnalogMatMul`` replaces a :class:`spikecim.ops.MatMul` (``a @ b``) when the crossbar
config's ``dynamic`` section puts it on a ``crossbar`` or on ``sram``. At every call the
second operand ``b [..., K, N]`` is **written** into crossbars (K rows, N columns: K for
Q·Kᵀ, V for A·V and for Kᵀ·V) and the rows of ``a [..., M, K]`` are streamed through it:

1. **Mapping**, as for static weights (:func:`spikecim.analog.tiles.normalised_to_levels`):
   each tile of each matrix scaled by its abs-max, differential pair or offset,
   ``weight_bits`` and bit slicing, ``conductance_levels``; G = G_min + level·(G_max − G_min).
2. **Write noise** (crossbar only; TxSim form used by ClipFormer, docs/references.md#write-noise):
   G' = max(G + γ·sqrt((G − G_min)(G_max − G_min))·σ·N(0, 1), 0), a fresh draw from the
   global torch RNG at every call (seeded by the Monte-Carlo loop, as the read noise).
3. **ClipFormer** (crossbar only, when enabled; docs/references.md#clipformer):
   G ← max(G − α·G_min, G_min), then G ← min(G, β·G_max).
4. **Read**: the device's read noise at t = 0 (just written: no drift), normalised to
   (G − G_min)/(G_max − G_min), G+ − G− (or minus the offset reference).
5. **DAC** on each row of ``a`` per input tile (abs-max, ``dac.bits``), the MVM, output
   noise, **ADC** (``adc.range``: ``max`` is the tile's rows, a number, or ``calibrated``
   by :func:`spikecim.analog.calibrate_adc`), then the digital shift-and-add and scales.

``sram`` cells hold exact bits: no write noise, no ClipFormer, no read noise; the
converters stay. With every effect off the result is ``a @ b`` up to float rounding.
Device-to-device variation, stuck cells and IR drop are properties of static arrays and
are not applied to the written ones.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from spikecim.analog.config import ClipFormerConfig, CrossbarConfig, DynamicUnit
from spikecim.analog.devices import noisy_read
from spikecim.analog.quant import abs_max_scale, level_count, nonzero_scale
from spikecim.analog.tiles import normalised_to_levels
from spikecim.errors import SpikecimError
from spikecim.quant import Observer
from spikecim.quant import levels as quant_levels

__all__ = ["AnalogMatMul", "clipformer", "dynamic_layers", "write_noise"]


def write_noise(
    g_us: torch.Tensor, g_min_us: float, g_max_us: float, gamma: float, sigma: float
) -> torch.Tensor:
    """G' = max(G + γ·sqrt((G − G_min)(G_max − G_min))·N(0, σ²), 0), a new tensor."""
    if gamma == 0 or sigma == 0:
        return g_us.clone()
    std = (g_us - g_min_us).clamp_(min=0).mul_(g_max_us - g_min_us).sqrt_().mul_(gamma * sigma)
    return torch.randn_like(g_us).mul_(std).add_(g_us).clamp_(min=0.0)


def clipformer(g_us: torch.Tensor, g_min_us: float, g_max_us: float, cfg: ClipFormerConfig) -> torch.Tensor:
    """Shift then clip: G ← max(G − α·G_min, G_min), G ← min(G, β·G_max) (a new tensor)."""
    return (g_us - cfg.alpha * g_min_us).clamp_(min=g_min_us).clamp_(max=cfg.beta * g_max_us)


def dynamic_layers(model: nn.Module) -> list[AnalogMatMul]:
    return [m for m in model.modules() if isinstance(m, AnalogMatMul)]


class AnalogMatMul(nn.Module):
    """``forward(a, b) ≈ a @ b`` with ``b`` written into crossbars at every call (module
    docstring). ``unit``: ``crossbar`` or ``sram``."""

    def __init__(self, config: CrossbarConfig, unit: DynamicUnit):
        super().__init__()
        if unit not in ("crossbar", "sram"):
            raise SpikecimError(f"analog.dynamic.unit: AnalogMatMul needs 'crossbar' or 'sram', got '{unit}'")
        self.config = config
        self.unit = unit
        r = config.adc.range
        self.adc_bound = float(r) if not isinstance(r, str) else None  # 'calibrated': set by calibrate_adc
        self._adc_observers: OrderedDict[int, Observer] = OrderedDict()

    def extra_repr(self) -> str:
        return f"unit={self.unit}"

    def attach_adc_observer(self, observer: Observer) -> RemovableHandle:
        """Show ``observer`` the column outputs before the ADC (normalised units) at every
        forward until the handle's ``remove()``; meanwhile the ADC is bypassed."""
        handle = RemovableHandle(self._adc_observers)
        self._adc_observers[handle.id] = observer
        return handle

    def to_digital(self) -> nn.Module:
        from spikecim.ops import MatMul

        return MatMul()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2]:
            raise SpikecimError(
                f"AnalogMatMul: operands {list(a.shape)} and {list(b.shape)} do not multiply (a[..., M, K] @ b[..., K, N])"
            )
        lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        (M, K), N = a.shape[-2:], b.shape[-1]
        a3 = a.expand(*lead, M, K).reshape(-1, M, K)
        b3 = b.expand(*lead, K, N).reshape(-1, K, N)
        y = self._crossbar(a3, b3)
        if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            exact = torch.bmm(a3, b3)  # straight-through: the crossbar's value, the gradient of a @ b
            y = exact + (y - exact).detach()
        return y.reshape(*lead, M, N)

    # -- the staged pipeline --------------------------------------------------------------

    def conductances(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stages 1–3 for ``b [B, K, N]``: the written conductances in µS ``[P, S, B, n_in, R,
        n_out, C]`` (tiles of R rows × C columns), each tile's scale ``[B, n_in, 1, n_out, 1]``
        and the slice gains ``[S]``."""
        cfg = self.config
        Bn, K, N = b.shape
        R, C = min(cfg.tile_rows, K), min(cfg.tile_cols, N)
        n_in, n_out = -(-K // R), -(-N // C)
        bt = F.pad(b, (0, n_out * C - N, 0, n_in * R - K)).view(Bn, n_in, R, n_out, C)
        bt = bt.detach()
        w_scale = nonzero_scale(bt.abs().amax(dim=(2, 4), keepdim=True))  # [B, n_in, 1, n_out, 1]
        levels, gain = normalised_to_levels(bt / w_scale, cfg)
        g_min, g_max = cfg.g_min_us, cfg.g_max_us
        g = levels.mul_(g_max - g_min).add_(g_min)
        if self.unit == "crossbar":
            dyn = cfg.dynamic
            g = write_noise(g, g_min, g_max, dyn.write_noise_gamma, dyn.write_noise_sigma)
            if dyn.clipformer.enabled:
                g = clipformer(g, g_min, g_max, dyn.clipformer)
        return g, w_scale, gain

    def _read(self, g: torch.Tensor) -> torch.Tensor:
        """One read: device read noise (crossbar), normalised, signed ``[S, B, n_in, R, n_out, C]``."""
        cfg = self.config
        if self.unit == "crossbar":
            std = cfg.device.read_noise_std_us(g, g, 0.0, cfg.g_max_us)
            g = noisy_read(g, std)
        span = cfg.g_max_us - cfg.g_min_us
        if g.shape[0] == 2:
            return (g[0] - g[1]) / span
        return (g[0] - cfg.g_min_us) / span

    def _crossbar(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        Bn, M, K = a.shape
        N = b.shape[-1]
        a = a.detach()
        g, w_scale, gain = self.conductances(b)
        m = self._read(g)  # [S, B, n_in, R, n_out, C]
        S, _, n_in, R, n_out, C = m.shape
        x = F.pad(a, (0, n_in * R - K)).view(Bn, M, n_in, R).transpose(1, 2)  # [B, n_in, M, R]
        unit = 1.0
        dac_scale = None
        if cfg.dac.enabled:
            unit = float(level_count(cfg.dac.bits))
            dac_scale = abs_max_scale(x, dim=-1)  # [B, n_in, M, 1]
            x = quant_levels(x, dac_scale.reciprocal() * unit, ste="identity")
        row_sums = x.sum(-1) / unit if cfg.mapping == "offset" else None  # normalised, per input tile
        mt = m.permute(1, 2, 3, 4, 0, 5).reshape(Bn, n_in, R, n_out * S * C)
        y = torch.matmul(x, mt.to(x.dtype))  # [B, n_in, M, n_out*S*C]
        if cfg.out_noise_std > 0:
            y = y + cfg.out_noise_std * unit * torch.randn_like(y)
        if self._adc_observers:
            for obs in self._adc_observers.values():
                obs.observe(y.detach() / unit)
        elif cfg.adc.enabled:
            bound = float(R) if self.adc_bound is None else self.adc_bound
            n = level_count(cfg.adc.bits)
            y = quant_levels(y, n / (bound * unit), 0, -n, n, ste="identity")
            unit = n / bound
        y = y.view(Bn, n_in, M, n_out, S, C) * (gain.to(y.dtype) / unit).view(1, 1, 1, 1, S, 1)
        y = y.sum(4)  # [B, n_in, M, n_out, C]
        if row_sums is not None:  # offset mapping: minus the reference column
            y = y - row_sums[..., None, None]
        y = y * w_scale.to(y.dtype)  # [B, n_in, 1, n_out, 1]: each tile's scale
        if dac_scale is not None:
            y = y * dac_scale.unsqueeze(-1)
        return y.sum(1).reshape(Bn, M, n_out * C)[..., :N]
