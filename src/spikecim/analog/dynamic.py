"""Crossbars written at run time: the analog twin of a product of two activations.

``AnalogMatMul`` replaces a :class:`spikecim.ops.MatMul` (``a @ b``) when the crossbar
config's ``dynamic`` section puts it on a ``crossbar`` or on ``sram``. At every call the
second operand ``b [..., K, N]`` is **written** into crossbars (K rows, N columns: K for
Q·Kᵀ, V for A·V and for Kᵀ·V) and the rows of ``a [..., M, K]`` are streamed through it:

1. **Mapping**, as for static weights (:func:`spikecim.analog.tiles.normalised_to_levels`):
   each tile of each matrix scaled by its abs-max (``dynamic.operand_range: tile``) or every
   entry by one range per product fixed on calibration data (``calibrated``:
   :func:`spikecim.analog.calibrate_adc` sets :attr:`AnalogMatMul.operand_bound` to the
   ``operand_percentile`` of |b|; entries beyond it saturate at G_max), differential pair
   or offset, ``weight_bits`` and bit slicing, ``conductance_levels``;
   G = G_min + level·(G_max − G_min).
2. **ClipFormer** (crossbar only, when enabled; docs/references.md#clipformer), on each
   entry's magnitude before it is sliced and written, as the conductance G it maps to:
   G ← max(G − s·G_min, G_min), then G ← min(G, β·G_max), the shift s = α − 1 (α = β = 1:
   the identity) or s = α (``clipformer.shift: alpha``, the paper's formula as printed;
   docs/transformers.md#clipformer).
3. **Write noise** (crossbar only; TxSim form used by ClipFormer, docs/references.md#write-noise):
   G' = max(G + γ·sqrt((G − G_min)(G_max − G_min))·σ·N(0, 1), 0), a fresh draw at every call
   keyed by the global torch generator (:mod:`spikecim.analog.noise`; seeded by the
   Monte-Carlo loop, as the read noise).
4. **Read**: the device's read noise at t = 0 (just written: no drift), normalised to
   (G − G_min)/(G_max − G_min), G+ − G− (or minus the offset reference).
5. **DAC** on each row of ``a`` per input tile (abs-max, ``dac.bits``), the MVM, output
   noise, **ADC** (``adc.range``: ``max`` is the tile's rows, a number, or ``calibrated``
   by :func:`spikecim.analog.calibrate_adc`), then the digital shift-and-add and scales
   (on the CPU, for the differential mapping, in the two compiled passes of
   :mod:`spikecim.analog.matmul_kernel`).

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

from spikecim.analog import converter_kernels, matmul_kernel, noise, written_kernel
from spikecim.analog.config import ClipFormerConfig, CrossbarConfig, DynamicUnit
from spikecim.analog.devices import noisy_read
from spikecim.analog.quant import abs_max_scale, level_count, nonzero_scale
from spikecim.analog.tiles import normalised_to_levels
from spikecim.errors import SpikecimError
from spikecim.ops.matmul import matmul_shared
from spikecim.quant import Observer
from spikecim.quant import levels as quant_levels

__all__ = ["AnalogMatMul", "clipformer", "dynamic_layers", "write_noise"]


def write_noise(
    u: torch.Tensor, gamma: float, sigma: float, floor: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The write noise in units of the conductance span, u = (G − G_min)/(G_max − G_min):
    G' = max(G + γ·sqrt((G − G_min)(G_max − G_min))·N(0, σ²), 0) divided through by the span
    is u' = max(u + γ·σ·sqrt(u)·N(0, 1), floor) with floor = −G_min/(G_max − G_min).
    ``u`` ≥ 0 (written levels); returns ``out`` (default a new tensor; it may be ``u``), or
    ``u`` itself when γ·σ = 0."""
    if gamma == 0 or sigma == 0:
        return u
    return noise.write_noise(u, gamma * sigma, floor, out)  # one fused pass


def clipformer(u: torch.Tensor, g_min_us: float, g_max_us: float, cfg: ClipFormerConfig) -> torch.Tensor:
    """Shift then clip, G ← max(G − s·G_min, G_min), G ← min(G, β·G_max) with s = α − 1
    (``cfg.shift`` ``alpha_minus_one``) or s = α (``alpha``, the paper's formula as printed), in
    units of the span u = (G − G_min)/(G_max − G_min) (a new tensor)."""
    span = g_max_us - g_min_us
    s = cfg.alpha - 1.0 if cfg.shift == "alpha_minus_one" else cfg.alpha
    shifted = (u - s * g_min_us / span).clamp_(min=0.0)
    return shifted.clamp_(max=(cfg.beta * g_max_us - g_min_us) / span)


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
        self._operand_observers: OrderedDict[int, Observer] = OrderedDict()
        self.operand_bound: float | None = None  # operand_range 'calibrated': set by calibrate_adc

    def extra_repr(self) -> str:
        return f"unit={self.unit}"

    def attach_adc_observer(self, observer: Observer) -> RemovableHandle:
        """Show ``observer`` the column outputs before the ADC (normalised units) at every
        forward until the handle's ``remove()``; meanwhile the ADC is bypassed."""
        handle = RemovableHandle(self._adc_observers)
        self._adc_observers[handle.id] = observer
        return handle

    def attach_operand_observer(self, observer: Observer) -> RemovableHandle:
        """Show ``observer`` the written operand ``b`` at every forward until the handle's
        ``remove()``; meanwhile the product is computed digitally (``a @ b``)."""
        handle = RemovableHandle(self._operand_observers)
        self._operand_observers[handle.id] = observer
        return handle

    def to_digital(self) -> nn.Module:
        from spikecim.ops import MatMul

        return MatMul()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2]:
            raise SpikecimError(
                f"AnalogMatMul: operands {list(a.shape)} and {list(b.shape)} do not multiply (a[..., M, K] @ b[..., K, N])"
            )
        lead = a.shape[:-2]
        if lead != b.shape[:-2]:  # torch.broadcast_shapes costs tens of µs: only when needed
            lead = torch.broadcast_shapes(lead, b.shape[:-2])
        (M, K), N = a.shape[-2:], b.shape[-1]
        a, b = a.expand(*lead, M, K), b.expand(*lead, K, N)
        if self._operand_observers:
            for obs in self._operand_observers.values():
                obs.observe(b.detach().reshape(-1, K, N))
            return matmul_shared(a, b)
        y = self._crossbar(a, b)
        if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            exact = matmul_shared(a, b)  # straight-through: the crossbar's value, the gradient of a @ b
            y = exact + (y - exact).detach()
        return y

    # -- the staged pipeline --------------------------------------------------------------

    def conductances(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stages 1–3 for ``b [B, K, N]`` in µS: the written conductances ``[P, S, B, n_in, R,
        n_out, C]`` (tiles of R rows × C columns), each tile's scale ``[B, n_in, 1, n_out, 1]``
        and the slice gains ``[S]``."""
        u, w_scale, gain, _ = self._written(b)
        cfg = self.config
        return u * (cfg.g_max_us - cfg.g_min_us) + cfg.g_min_us, w_scale, gain

    def _written(
        self, b: torch.Tensor, signed: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`conductances` in units of the span, u = (G − G_min)/(G_max − G_min): the
        forward works there (no conversion pass to µS and back). ``signed=True`` (the
        differential mapping, where one cell of each pair sits at G_min, a level no write
        noise, ClipFormer or read noise moves: :meth:`_idle_cell_exact`): only the cell that
        holds |b| is written, ``[1, S, ...]``, and the sign of b is returned (None otherwise):
        G+ − G− = sign·u costs one cell."""
        cfg = self.config
        Bn, K, N = b.shape
        R, C = min(cfg.tile_rows, K), min(cfg.tile_cols, N)
        n_in, n_out = -(-K // R), -(-N // C)
        bt = F.pad(b.detach(), (0, n_out * C - N, 0, n_in * R - K)).view(Bn, n_in, R, n_out, C)
        if cfg.dynamic.operand_range == "calibrated":
            bound = self._calibrated_bound()
            w_scale = torch.full((Bn, n_in, 1, n_out, 1), bound, dtype=bt.dtype, device=bt.device)
            wn = (bt / bound).clamp_(-1.0, 1.0)  # beyond the range: G_max
        else:
            w_scale = nonzero_scale(bt.abs().amax(dim=(2, 4), keepdim=True))  # [B, n_in, 1, n_out, 1]
            wn = bt / w_scale
        dyn = cfg.dynamic
        if self.unit == "crossbar" and dyn.clipformer.enabled:  # on |entry| before it is written
            wn = clipformer(wn.abs(), cfg.g_min_us, cfg.g_max_us, dyn.clipformer).mul_(torch.sign(wn))
        u, gain = normalised_to_levels(wn, cfg, magnitude=signed)  # signed: the cell of |b| only
        if self.unit == "crossbar":
            floor = -cfg.g_min_us / (cfg.g_max_us - cfg.g_min_us)  # G' ≥ 0
            u = write_noise(u, dyn.write_noise_gamma, dyn.write_noise_sigma, floor, out=u)  # u: ours
        return u, w_scale, gain.to(b.device), torch.sign(wn) if signed else None

    def _idle_cell_exact(self) -> bool:
        """Whether a cell written at G_min reads exactly G_min: no read noise there (write
        noise vanishes at G_min, and ClipFormer acts on the entries before they are written)."""
        cfg = self.config
        if cfg.mapping != "differential":
            return False
        if self.unit != "crossbar":
            return True
        if not cfg.device.has_read_noise:
            return True
        g = torch.full((1,), cfg.g_min_us)
        std = cfg.device.read_noise_std_us(g, g.clone(), 0.0, cfg.g_max_us)
        return std is None or bool((std == 0).all())

    def _read(self, u: torch.Tensor) -> torch.Tensor:
        """One read of cells ``u`` (units of the span, written by this call: overwritten):
        the device's read noise on a crossbar, none on SRAM. In place: every fresh tensor of
        the size of the written cells costs page faults at each inference."""
        cfg = self.config
        if self.unit != "crossbar" or not cfg.device.has_read_noise:
            return u
        span = cfg.g_max_us - cfg.g_min_us
        g = u.mul_(span).add_(cfg.g_min_us)
        g = noisy_read(g, cfg.device.read_noise_std_us(g, g, 0.0, cfg.g_max_us), out=g)
        return g.sub_(cfg.g_min_us).div_(span)

    def _read_matrix(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stages 1–4 for ``b [B, K, N]``: the signed read matrix ``mt [B, n_in, R,
        n_out·S·C]`` (units of the span; column (o, s, c) of row r of input tile i), each
        tile's scale ``[B, n_in, 1, n_out, 1]`` and the slice gains ``[S]``. One compiled
        pass (:mod:`spikecim.analog.written_kernel`) where it applies, else torch passes."""
        cfg = self.config
        signed = self._idle_cell_exact()
        if signed and written_kernel.fused_device(cfg, self.unit) is not None:
            bound = None
            if cfg.dynamic.operand_range == "calibrated":
                bound = self._calibrated_bound()
            # checked before the key is drawn: a call the kernel refuses leaves the generator as it was
            if not (torch.is_grad_enabled() and b.requires_grad) and written_kernel.available(b.dtype):
                fused = written_kernel.read_matrix(b, cfg, self.unit, bound, noise.draw_seed())
                if fused is not None:
                    mt, w_scale, gain = fused
                    return mt, w_scale, gain.to(b.device)
        u, w_scale, gain, sign = self._written(b.reshape(-1, *b.shape[-2:]), signed)
        u = self._read(u)
        if sign is not None:  # one cell per entry, its partner at G_min (u: ours)
            m = u[0].mul_(sign)
        else:  # G+ − G−, or G − G_min against the offset reference
            m = u[0] - u[1] if u.shape[0] == 2 else u[0]
        # m: [S, B, n_in, R, n_out, C], signed, units of the span
        S, Bn, n_in, R, n_out, C = m.shape
        return m.permute(1, 2, 3, 4, 0, 5).reshape(Bn, n_in, R, n_out * S * C), w_scale, gain

    def _calibrated_bound(self) -> float:
        if self.operand_bound is None:
            raise SpikecimError(
                "analog.dynamic.operand_range: 'calibrated' needs calibration samples "
                "(calibrate_adc) before the forward; give some, or use 'tile'"
            )
        return self.operand_bound

    def _crossbar(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a [..., M, K] @ b [..., K, N]`` (the same leading dimensions) on the written
        crossbars, ``[..., M, N]``. The compiled passes read ``[B, M, K]`` and ``[B1, B2, M,
        K]`` operands through their strides, so the heads of attention (views of the
        projections' outputs) are not copied; other shapes, and the torch passes, take
        ``[B, M, K]`` copies."""
        lead, (M, K), N = a.shape[:-2], a.shape[-2:], b.shape[-1]
        if len(lead) != 2:
            a, b = a.reshape(-1, M, K), b.reshape(-1, K, N)
        mt, w_scale, gain = self._read_matrix(b.detach())
        a = a.detach()
        if (
            self.config.mapping == "differential"
            and not self._adc_observers
            and matmul_kernel.available(a, mt.shape[2])
        ):
            y = self._products_fused(a, mt, w_scale, gain, N)
        else:
            y = self._products(a.reshape(-1, M, K), mt, w_scale, gain, N)
        return y.reshape(*lead, M, N)

    def _products(
        self, a: torch.Tensor, mt: torch.Tensor, w_scale: torch.Tensor, gain: torch.Tensor, N: int
    ) -> torch.Tensor:
        """Stage 5 in torch passes: the rows of ``a [B, M, K]`` through the read matrix ``mt``
        of :meth:`_read_matrix` (scales ``w_scale``, slice gains ``gain``) into ``[B, M, N]``."""
        cfg = self.config
        Bn, M, K = a.shape
        S = gain.numel()
        R, C = mt.shape[2], min(cfg.tile_cols, N)
        n_in, n_out = -(-K // R), -(-N // C)
        x = F.pad(a, (0, n_in * R - K)).view(Bn, M, n_in, R).transpose(1, 2)  # [B, n_in, M, R]
        unit = 1.0
        dac_scale = None
        if cfg.dac.enabled and converter_kernels.available(x):  # the same levels in one pass
            unit = float(level_count(cfg.dac.bits))
            levels, dac_scale = converter_kernels.dac_levels(x.transpose(1, 2).reshape(-1, R, 1), int(unit))
            x = levels.view(Bn, M, n_in, R).transpose(1, 2)
            dac_scale = dac_scale.view(Bn, M, n_in, 1).transpose(1, 2)  # [B, n_in, M, 1]
        elif cfg.dac.enabled:
            unit = float(level_count(cfg.dac.bits))
            dac_scale = abs_max_scale(x, dim=-1)  # [B, n_in, M, 1]
            x = quant_levels(x, dac_scale.reciprocal() * unit, ste="identity")
        row_sums = x.sum(-1) / unit if cfg.mapping == "offset" else None  # normalised, per input tile
        y = torch.matmul(x, mt.to(x.dtype))  # [B, n_in, M, n_out*S*C]
        if cfg.out_noise_std > 0:  # y is a new tensor without a gradient (a and b detached)
            y = noise.add_normal_(y, cfg.out_noise_std * unit)
        if self._adc_observers:
            for obs in self._adc_observers.values():
                obs.observe(y.detach() / unit)
        elif cfg.adc.enabled:
            bound = float(R) if self.adc_bound is None else self.adc_bound
            n = level_count(cfg.adc.bits)
            y = quant_levels(y, n / (bound * unit), 0, -n, n, ste="identity", inplace=True)  # y: ours
            unit = n / bound
        if S == 1 and row_sums is None:  # one slice: its gain joins the tile's scale, in place
            y = y.view(Bn, n_in, M, n_out, C).mul_(w_scale.to(y.dtype) * (float(gain[0]) / unit))
        else:
            y = y.view(Bn, n_in, M, n_out, S, C) * (gain.to(y.dtype) / unit).view(1, 1, 1, 1, S, 1)
            y = y.sum(4)  # [B, n_in, M, n_out, C]
            if row_sums is not None:  # offset mapping: minus the reference column
                y = y - row_sums[..., None, None]
            y = y * w_scale.to(y.dtype)  # [B, n_in, 1, n_out, 1]: each tile's scale
        if dac_scale is not None:
            y = y.mul_(dac_scale.unsqueeze(-1))
        y = y.sum(1) if n_in > 1 else y[:, 0]  # over the input tiles
        return y.reshape(Bn, M, n_out * C)[..., :N]

    def _products_fused(
        self, a: torch.Tensor, mt: torch.Tensor, w_scale: torch.Tensor, gain: torch.Tensor, N: int
    ) -> torch.Tensor:
        """:meth:`_products` in the compiled passes of :mod:`spikecim.analog.matmul_kernel`
        (the differential mapping): DAC and MVM, the output noise (the same draws), then ADC
        and the digital stage; the same levels, the MVM's sums in their own order."""
        cfg = self.config
        n_out = -(-N // min(cfg.tile_cols, N))
        n_dac = level_count(cfg.dac.bits) if cfg.dac.enabled else None
        unit = float(n_dac) if n_dac is not None else 1.0
        y, dac_scale = matmul_kernel.columns(a, mt.to(a.dtype), n_dac)  # [B, n_in, M, n_out*S*C]
        if cfg.out_noise_std > 0:
            y = noise.add_normal_(y, cfg.out_noise_std * unit)
        adc = None
        if cfg.adc.enabled:
            bound = float(mt.shape[2]) if self.adc_bound is None else self.adc_bound
            n = level_count(cfg.adc.bits)
            adc, unit = (n / (bound * unit), n), n / bound
        if gain.numel() == 1:  # as the torch path: the one slice's gain over the unit in float64
            gains = torch.full((1,), float(gain[0]) / unit, dtype=y.dtype)
        else:
            gains = gain.to(y.dtype) / unit
        return matmul_kernel.output(y, w_scale, gains, dac_scale, adc, n_out, N)
