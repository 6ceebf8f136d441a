"""Tiled crossbars: mapping a weight matrix to conductances, programming, reading, and the
staged forward pass (STYLE item 8).

Forward of one layer, ``x[N, in] -> y[N, out]``, split into tiles of ``tile_rows`` inputs
× ``tile_cols`` outputs:

1. **DAC**: each tile's input vector is scaled by its abs-max and quantised to
   ``dac.bits`` over ±1 (:func:`spikecim.quant.levels`, the converter grid of
   :mod:`spikecim.analog.quant`; binary spikes pass unchanged: they are already on the grid).
2. **Read** ``read_matrix(state, cfg)``: conductances at time t with a fresh read-noise
   draw, normalised to ``(G − g_min)/(g_max − g_min)``, G+ − G− per weight column,
   through the IR-drop effective matrix when enabled.
3. **MVM**: column outputs of every tile and slice, one matrix product per input tile on
   rows (:func:`crossbar_matmul`), on ``F.unfold``'s patches in place
   (:func:`crossbar_patches`) or on the patches laid out as rows
   (:func:`crossbar_patch_rows`), or one ``conv2d`` for convolutions whose input needs no
   DAC (:func:`crossbar_conv2d`) — the injected piece; stages 4–5 are shared.
4. **Output noise** ``+ out_noise_std·N(0,1)`` and the **ADC** (``levels`` over its bound; the
   layer passes no ADC while the ADC's range is being calibrated).
5. **Digital**: shift-and-add of the slices, times the tile's weight scale and the
   input's abs-max, partial sums of the tiles added, global drift compensation.

Between stages the signals stay in converter levels; stage 5 applies every step size and
gain at once. In inference on the CPU, stage 1 and stages 4 (ADC) – 5 run in the one-pass C
kernels of :mod:`spikecim.analog.converter_kernels`, which give exactly the values of the
torch passes here (these remain for gradients, other devices and machines without a C
compiler). Every stage is the identity when its switch is off, so with everything
ideal the result is ``x @ W.T`` up to float rounding (tiled or not, bit-sliced or not for
weights on the grid). Units: conductances in µS; column outputs in normalised units (1 =
one full-scale input on one g_max cell), the units of ``adc.range`` and ``out_noise_std``
(docs/references.md#adc-dac).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch.nn.modules.utils import _pair

from spikecim.analog import conv_kernel, converter_kernels, gemm, noise
from spikecim.analog.circuit import effective_conductance, effective_conductance_fast
from spikecim.analog.config import CrossbarConfig
from spikecim.analog.devices import noisy_read
from spikecim.analog.quant import Converter, abs_max_scale, level_count
from spikecim.analog.scratch import Scratch
from spikecim.errors import SpikecimError
from spikecim.nn.kernels import spike_conv_cpu
from spikecim.ops.conv import output_size
from spikecim.quant import levels as quant_levels

__all__ = [
    "TileState",
    "crossbar_conv2d",
    "crossbar_conv_fused",
    "crossbar_matmul",
    "crossbar_patch_rows",
    "direct_conv_applies",
    "fused_conv_applies",
    "normalised_to_levels",
    "program_tiles",
    "read_matrix",
    "set_time",
    "tile_weight",
    "weight_to_levels",
]


@dataclass(frozen=True)
class TileState:
    """The programmed crossbars of one layer (explicit state, replaced by ``program``/``drift``).

    Every per-cell tensor is in the kernel layout ``[P, n_in, R, n_out, S, C]`` (P = 2 for
    G+/G− or 1 for offset, tiles along inputs, R rows, tiles along outputs, S slices, C
    columns): ``g_prog_us``/``nu`` as programmed, ``mask`` ``[1, n_in, R, n_out, 1, C]``
    marks cells that hold a real weight. ``w_scale [n_in, n_out]`` is each tile's max|W|,
    ``slice_gain [S]`` the shift-and-add weights. In this layout the read matrix of input
    tile i, ``[R, n_out·S·C]``, is contiguous, and drift and noise work elementwise.
    """

    in_features: int
    out_features: int
    g_prog_us: torch.Tensor
    nu: torch.Tensor
    mask: torch.Tensor
    w_scale: torch.Tensor
    slice_gain: torch.Tensor
    t_inference_s: float = 0.0
    # Read-side state at time t, float32, in kernel layout [P, n_in, R, n_out, S, C] and in
    # units of the conductance span (g_max − g_min); cells without a weight hold g_min and
    # no read noise, so they add nothing to any column:
    g_drift_k: torch.Tensor | None = None  # conductances at t without read noise
    read_std_k: torch.Tensor | None = None  # σ of one read (None: no read noise)
    ir_eff_k: torch.Tensor | None = None  # IR-drop effective conductances at t (None: no IR drop)
    m_static: torch.Tensor | None = None  # signed matrix [n_in, R, n_out*S*C] when reads are noiseless
    drift_gain: float = 1.0  # global drift compensation factor
    readout_ref: float | None = None  # mean|Y0| of the compensation readout at programming

    @property
    def grid(self) -> tuple[int, int, int, int, int, int]:
        """``(P, n_in, R, n_out, S, C)``."""
        return tuple(self.g_prog_us.shape)


def tile_shape(out_features: int, in_features: int, cfg: CrossbarConfig) -> tuple[int, int]:
    """Rows and columns used per tile: the configured size, cut to the layer when it is
    smaller (the layer sits in the corner next to the drivers and sense amplifiers; the
    unused lines carry no current)."""
    return min(cfg.tile_rows, in_features), min(cfg.tile_cols, out_features)


def tile_weight(weight: torch.Tensor, cfg: CrossbarConfig) -> torch.Tensor:
    """``W[out, in] -> [n_in, n_out, R, C]`` with zero padding (tile (a, b) holds W rows
    b·C … and columns a·R …, transposed so rows are inputs)."""
    out_f, in_f = weight.shape
    R, C = tile_shape(out_f, in_f, cfg)
    n_in, n_out = -(-in_f // R), -(-out_f // C)
    w = torch.zeros(n_out * C, n_in * R, dtype=weight.dtype)
    w[:out_f, :in_f] = weight.detach()
    return w.view(n_out, C, n_in, R).permute(2, 0, 3, 1).contiguous()


def weight_to_levels(
    weight: torch.Tensor, cfg: CrossbarConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target levels in [0, 1] ``[n_in, n_out, S, P, R, C]``, tile scales and slice gains.

    Analog weights: W/max|W| split into G+ = max(w, 0), G− = max(−w, 0) (differential) or
    (w + 1)/2 (offset). Integer weights q = round(w·q_max), q_max = 2^(b−1) − 1, magnitude
    (or q + q_max for offset) written in base 2^c digits d_k, one cell per digit with level
    d_k/(2^c − 1); slice gain (2^c − 1)·2^(c·k)/q_max recombines them (docs/references.md#bit-slicing).
    """
    wt = tile_weight(weight, cfg)
    w_scale = wt.abs().amax(dim=(2, 3))
    w_scale = torch.where(w_scale > 0, w_scale, torch.ones_like(w_scale))
    levels, gain = normalised_to_levels(wt / w_scale[:, :, None, None], cfg)  # [P, S, n_in, n_out, R, C]
    return levels.permute(2, 3, 1, 0, 4, 5), w_scale, gain


def normalised_to_levels(
    wn: torch.Tensor, cfg: CrossbarConfig, magnitude: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target levels in [0, 1] ``[P, S, *wn.shape]`` of a matrix normalised to |wn| ≤ 1, and the
    slice gains ``[S]``: the mapping of :func:`weight_to_levels`, shared by the crossbars
    written at run time (:mod:`spikecim.analog.dynamic`). ``magnitude=True`` (differential
    mapping): only the cell that holds |wn| (P = 1), its partner being at level 0."""
    if magnitude and cfg.mapping != "differential":
        raise ValueError("normalised_to_levels: magnitude=True needs the differential mapping")
    if cfg.weight_bits is None:
        if magnitude:
            levels = wn.abs().unsqueeze(0)
            gain = torch.ones(1, dtype=wn.dtype)
        elif cfg.mapping == "differential":
            levels = torch.stack([wn.clamp(min=0), (-wn).clamp(min=0)])
            gain = torch.ones(1, dtype=wn.dtype)
        else:
            levels = ((wn + 1) / 2).unsqueeze(0)
            gain = torch.full((1,), 2.0, dtype=wn.dtype)
        levels = levels.unsqueeze(1)  # S = 1
    else:
        q_max = 2 ** (cfg.weight_bits - 1) - 1
        q = quant_levels(wn, q_max, 0, -q_max, q_max, ste=None).to(torch.int64)  # |wn| ≤ 1
        if magnitude:
            parts = [q.abs()]
        elif cfg.mapping == "differential":
            parts = [q.clamp(min=0), (-q).clamp(min=0)]
        else:
            parts = [q + q_max]
        base = 2**cfg.bits_per_cell
        digits = [torch.stack([(p // base**k) % base for p in parts]) for k in range(cfg.n_slices)]
        levels = torch.stack(digits, dim=1).to(wn.dtype) / (base - 1)
        gain = torch.tensor([(base - 1) * base**k / q_max for k in range(cfg.n_slices)], dtype=wn.dtype)
    if cfg.conductance_levels is not None:
        n = cfg.conductance_levels - 1
        levels = quant_levels(levels, n, 0, 0, n, ste=None) / n  # levels in [0, 1]
    return levels, gain


def program_tiles(
    weight: torch.Tensor, cfg: CrossbarConfig, seed: int, scratch: Scratch | None = None
) -> TileState:
    """Write the weights once: target conductances, write noise, device-to-device variation,
    stuck cells, drift exponents. Non-finite weights are refused. ``scratch``: work tensors
    for the compensation readout."""
    if not torch.isfinite(weight).all():
        raise SpikecimError(
            "weights: a layer has non-finite values (NaN or inf); cannot program the crossbar"
        )
    gen = torch.Generator().manual_seed(int(seed))
    weight = (
        weight.detach().float().cpu()
    )  # programmed on the CPU; moved to the input's device at the first read
    levels, w_scale, gain = weight_to_levels(weight, cfg)
    g_min, g_max = cfg.g_min_us, cfg.g_max_us
    g_target = torch.empty([levels.shape[i] for i in (3, 0, 4, 1, 2, 5)], dtype=levels.dtype)
    g_target.copy_(levels.permute(3, 0, 4, 1, 2, 5)).mul_(g_max - g_min).add_(g_min)  # kernel layout
    g = cfg.device.program(g_target, g_max, gen)
    if cfg.variation.enabled and cfg.variation.std_rel > 0:
        g = (g * (1 + cfg.variation.std_rel * torch.randn(g.shape, generator=gen, dtype=g.dtype))).clamp(
            min=0
        )
    if cfg.faults.enabled:
        u = torch.rand(g.shape, generator=gen, dtype=g.dtype)
        g = torch.where(u < cfg.faults.stuck_on_rate, torch.full_like(g, g_max), g)
        g = torch.where(
            (u >= cfg.faults.stuck_on_rate) & (u < cfg.faults.stuck_on_rate + cfg.faults.stuck_off_rate),
            torch.full_like(g, g_min),
            g,
        )
    nu = cfg.device.drift_exponent(g_target, g_max, gen)
    out_f, in_f = weight.shape
    _, n_in, R, n_out, _, C = g.shape
    rows_real = torch.arange(n_in * R).view(1, n_in, R, 1, 1, 1) < in_f
    cols_real = torch.arange(n_out * C).view(1, 1, 1, n_out, 1, C) < out_f
    mask = rows_real & cols_real  # [1, n_in, R, n_out, 1, C]: cells that hold a weight
    state = TileState(in_f, out_f, g, nu, mask, w_scale, gain)
    state = set_time(state, cfg, 0.0)
    if cfg.drift_compensation.enabled:
        state = replace(state, readout_ref=_readout(state, cfg, scratch))
    return state


def to_device(state: TileState, device: torch.device) -> TileState:
    """The same state with every tensor on ``device``."""
    moved = {
        f.name: getattr(state, f.name).to(device)
        for f in fields(state)
        if isinstance(getattr(state, f.name), torch.Tensor)
    }
    return replace(state, **moved)


def set_time(
    state: TileState, cfg: CrossbarConfig, t_inference_s: float, scratch: Scratch | None = None
) -> TileState:
    """The tiles at ``t_inference_s`` after programming: drifted conductances, the IR-drop
    matrix at those conductances, and the drift-compensation gain (``scratch``: work
    tensors for its readout)."""
    if not (np.isfinite(t_inference_s) and t_inference_s >= 0):
        raise SpikecimError(f"drift: t_s must be finite and >= 0 seconds, got {t_inference_s}")
    state = to_device(state, torch.device("cpu"))  # computed on the CPU, moved at the next read
    g_drift = cfg.device.drift(state.g_prog_us, state.nu, t_inference_s)
    std = cfg.device.read_noise_std_us(g_drift, state.g_prog_us, t_inference_s, cfg.g_max_us)
    ir = _ir_effective(g_drift * state.mask, cfg) if cfg.ir_drop.enabled else None
    span = cfg.g_max_us - cfg.g_min_us

    def kernel(g_us: torch.Tensor, empty_us: float) -> torch.Tensor:
        """µS -> float32 in units of the span, in ``g_us``'s memory (a new tensor the device
        model returned), cells without a weight set to ``empty_us``."""
        return _fill_unused(g_us.float().div_(span), state, empty_us / span)

    state = replace(
        state,
        t_inference_s=float(t_inference_s),
        g_drift_k=kernel(g_drift, cfg.g_min_us),
        read_std_k=None if std is None else kernel(std, 0.0),
        ir_eff_k=None if ir is None else kernel(ir, cfg.g_min_us),
        m_static=None,
        drift_gain=1.0,
    )
    if std is None:
        state = replace(state, m_static=read_matrix(state, cfg))
    if cfg.drift_compensation.enabled and state.readout_ref is not None:
        now = _readout(state, cfg, scratch)
        # cells that read no signal at all (every weight zero, no read noise): no gain to restore
        state = replace(state, drift_gain=state.readout_ref / now if now > 0 else 1.0)
    return state


def _fill_unused(cells: torch.Tensor, state: TileState, value: float) -> torch.Tensor:
    """``cells`` (kernel layout) with the cells that hold no weight (``~state.mask``) set to
    ``value`` in place. They are the rows past the layer's inputs and the columns past its
    outputs, all in the last tile of their direction: two slice fills, which touch only the
    padding. A fill through the broadcast mask read every cell: 60 ms of one program and
    drift of VGG-9 on ``pcm-aihwkit`` (torch profiler, one thread; BENCHMARKS.md)."""
    _, n_in, R, n_out, _, C = cells.shape
    cells[:, n_in - 1, state.in_features - (n_in - 1) * R :].fill_(value)
    cells[:, :, :, n_out - 1, :, state.out_features - (n_out - 1) * C :].fill_(value)
    return cells


def _ir_effective(g_us: torch.Tensor, cfg: CrossbarConfig) -> torch.Tensor:
    """Per physical array (one per tile, slice and polarity: R × C cells), the effective
    conductances in µS under IR drop, in the kernel layout of ``g_us``."""
    ir = cfg.ir_drop
    arrays = g_us.permute(0, 1, 3, 4, 2, 5)  # [P, n_in, n_out, S, R, C]
    flat = arrays.reshape(-1, *arrays.shape[-2:]).double().numpy()  # padding cells hold no device: 0 S
    r = (ir.r_wire_ohm, ir.r_driver_ohm, ir.r_sense_ohm)
    if ir.method == "exact":
        eff = [effective_conductance(a * 1e-6, *r) * 1e6 for a in flat]
    else:
        eff = [effective_conductance_fast(a * 1e-6, *r, kappa=ir.fast_kappa) * 1e6 for a in flat]
    return torch.from_numpy(np.stack(eff)).view_as(arrays).permute(0, 1, 4, 2, 3, 5)


def read_matrix(state: TileState, cfg: CrossbarConfig, scratch: Scratch | None = None) -> torch.Tensor:
    """One read of all tiles: the signed normalised matrix ``[n_in, R, n_out*S*C]``.

    Conductances at t plus a fresh read-noise draw (:func:`~spikecim.analog.devices.noisy_read`,
    the device model's read, on the drift and σ kept in the state), through the IR-drop effective
    matrix when enabled (the effective matrix at t plus the read-noise deviation, a
    first-order treatment of the noise), normalised to (G − g_min)/(g_max − g_min), G+ − G−.
    G+/G− pairs without IR drop are drawn, clipped and subtracted in one pass
    (:func:`spikecim.analog.noise.differential_read`).
    With ``scratch`` the draw and the result live in its work tensors (inference only: the
    result is valid until the next read).
    """
    if state.m_static is not None:
        return state.m_static
    base = state.g_drift_k
    P, n_in, R, n_out, S, C = base.shape
    if P == 2 and state.ir_eff_k is None and state.read_std_k is not None:  # one fused pass
        out = None if scratch is None else scratch.take("signed", base.shape[1:], base)
        signed = noise.differential_read(base, state.read_std_k, out)
        return signed.view(n_in, R, n_out * S * C)
    g = state.ir_eff_k if state.ir_eff_k is not None else base
    if state.read_std_k is not None:
        out = None if scratch is None else scratch.take("read", base.shape, base)
        noisy = noisy_read(base, state.read_std_k, out)  # the device's read (devices.py)
        g = noisy.sub_(base).add_(g) if state.ir_eff_k is not None else noisy
    out = None if scratch is None else scratch.take("signed", g.shape[1:], g)
    if P == 2:
        signed = torch.sub(g[0], g[1], out=out)
    else:
        signed = torch.sub(g[0], cfg.g_min_us / (cfg.g_max_us - cfg.g_min_us), out=out)
    return signed.view(n_in, R, n_out * S * C)


def _readout(state: TileState, cfg: CrossbarConfig, scratch: Scratch | None = None) -> float:
    """mean|Y| of one-hot inputs through every tile (the compensation readout)."""
    _, n_in, R, n_out, S, C = state.grid
    m = read_matrix(state, cfg, scratch).view(n_in, R, n_out, S, C)
    if S == 1 and cfg.mapping == "differential":  # cells without a weight read exactly 0
        per_tile = m.abs().sum((1, 3, 4)) * state.w_scale  # Σ|w| per tile [n_in, n_out]
        return float(per_tile.sum() * state.slice_gain[0] / state.mask.sum())
    w = (m * state.slice_gain.view(1, 1, 1, -1, 1)).sum(3) * state.w_scale[:, None, :, None]
    if cfg.mapping == "offset":
        w = w - state.w_scale[:, None, :, None]
    mask = state.mask[0, :, :, :, 0].float()  # [n_in, R, n_out, C]
    return float((w.abs() * mask).sum() / mask.sum())


def _inference(x: torch.Tensor) -> bool:
    """Whether no gradient is needed through ``x`` (then stages may work in place)."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def _tile_products(
    x: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    overwrite: bool,
    dac_scale: torch.Tensor | None = None,
    scratch: Scratch | None = None,
    levels_scale: torch.Tensor | None = None,
):
    """Stages 1–3 for every input tile: DAC per input vector and tile, one read, the MVM.

    ``x`` is ``[N, in]`` (input vectors as rows) or ``[N, in, L]`` (``F.unfold``'s patches as
    columns, never copied into rows). Tile i takes inputs ``i·R …`` (the last tile only its
    real rows: unused rows hold no device and carry no current). Returns the column outputs
    ``y[n_in, N, n_out*S*C, L]`` (L = 1 for rows), the DAC's per-vector scales ``[n_in, N,
    1, L]`` (None: DAC off; then ``y`` is in normalised units, else in DAC levels) and, for the
    offset mapping, each vector's normalised sum ``[n_in, N, 1, L]`` (None otherwise).
    ``overwrite=True``: ``x`` is scratch the DAC may overwrite in inference; ``dac_scale``:
    the vectors' abs-max when the caller has it (one input tile only); ``scratch``: the
    layer's work tensors (used in inference only); ``levels_scale [n_in, N, 1, L]``: ``x``
    is already in DAC levels (:func:`converter_kernels.unfold_dac`) with these scales."""
    _, n_in, R = state.grid[:3]
    N, L = x.shape[0], x.shape[2] if x.dim() == 3 else 1
    inference = _inference(x)
    scratch = scratch if inference else None
    m = read_matrix(state, cfg, scratch).to(x.dtype)  # 2. one read of all tiles [n_in, R, n_out*S*C]
    n_dac = level_count(cfg.dac.bits)
    y = _columns(state, cfg, scratch, (n_in, N, m.shape[2], L), x) if inference else None
    fused = inference and converter_kernels.available(x)
    parts, scales, sums = [], [], []
    for i in range(n_in):
        xi = x[:, i * R : (i + 1) * R]
        mi = m[i, : xi.shape[1]]
        if cfg.dac.enabled:  # 1. DAC: abs-max per vector, |x·n/s| ≤ n so no clipping is needed
            known = dac_scale if dac_scale is not None and n_in == 1 else None
            if levels_scale is not None:
                s = levels_scale[i]
            elif fused:  # the same levels in one kernel call (converter_kernels.py)
                xi, s = _fused_dac(xi, n_dac, known, overwrite, scratch)
            else:
                s = known if known is not None else abs_max_scale(xi, dim=1)
                gain = s.reciprocal().mul_(n_dac)
                xi = quant_levels(xi, gain, ste="identity", inplace=overwrite and inference)
            scales.append(s)
        if cfg.mapping == "offset":
            sums.append(xi.sum(1, keepdim=True) / (n_dac if cfg.dac.enabled else 1))
        # 3. MVM of the tile
        if inference and x.dim() == 3:
            gemm.patch_product(mi, xi, y[i])
        elif inference:
            gemm.rows_product(xi, mi, y[i, :, :, 0])
        else:
            parts.append(torch.matmul(mi.T, xi) if x.dim() == 3 else (xi @ mi).unsqueeze(-1))
    y = y if inference else torch.stack(parts)
    scale = torch.stack(scales).view(n_in, N, 1, L) if scales else None
    row_sums = torch.stack(sums).view(n_in, N, 1, L) if sums else None
    return y, scale, row_sums


def _fused_dac(
    xi: torch.Tensor, n_dac: int, known: torch.Tensor | None, overwrite: bool, scratch: Scratch | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`converter_kernels.dac_levels` on one input tile ``xi`` (``[N, R]`` rows or
    ``[N, R, L]`` patches): its levels, shaped as ``xi`` (in ``xi``'s memory when
    ``overwrite``, else in ``scratch`` or a new tensor), and the vectors' scales."""
    x3 = xi if xi.dim() == 3 else xi.unsqueeze(-1)
    if overwrite:
        out = x3
    elif scratch is not None:
        out = scratch.take("dac", x3.shape, x3)
    else:
        out = torch.empty(x3.shape, dtype=x3.dtype)
    levels, s = converter_kernels.dac_levels(x3, n_dac, known, out)
    return levels.view(xi.shape), s


def crossbar_matmul(
    x: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    adc: Converter | None,
    pre_adc_hook: Callable[[torch.Tensor, float], None] | None = None,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """``x[N, in] -> y[N, out]`` through the staged pipeline (module docstring).

    ``adc``: the column ADC (None: none), its bound in normalised units (None: the full
    range, ``tile_rows``); ``pre_adc_hook(y, unit)`` sees the column outputs before the
    ADC, ``y / unit`` in normalised units (range calibration; it must not change ``y``);
    ``scratch``: work tensors kept by the layer (inference only)."""
    y, scale, row_sums = _tile_products(x, state, cfg, overwrite=False, scratch=scratch)
    return _columns_to_output(y, state, cfg, adc, pre_adc_hook, scale, row_sums, scratch)[:, :, 0]


def crossbar_patches(
    cols: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    adc: Converter | None,
    pre_adc_hook: Callable[[torch.Tensor, float], None] | None = None,
    overwrite: bool = False,
    dac_scale: torch.Tensor | None = None,
    scratch: Scratch | None = None,
    levels_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`crossbar_matmul` on unfolded convolution patches ``cols[N, in, L]`` (the layout
    ``F.unfold`` returns), each patch one input vector: returns ``[N, out, L]``
    (channel-major, as a convolution). ``overwrite=True``: ``cols`` is scratch the DAC may
    overwrite in inference; ``dac_scale [N, 1, L]``: the patches' abs-max, if known;
    ``scratch``: work tensors kept by the layer (inference only); ``levels_scale [n_in, N, 1,
    L]``: ``cols`` already holds the DAC's levels, with these scales (the DAC is skipped)."""
    y, scale, row_sums = _tile_products(cols, state, cfg, overwrite, dac_scale, scratch, levels_scale)
    return _columns_to_output(y, state, cfg, adc, pre_adc_hook, scale, row_sums, scratch)


def crossbar_patch_rows(
    patches: list[torch.Tensor],
    levels_scale: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    adc: Converter | None,
    scratch: Scratch,
) -> torch.Tensor:
    """:func:`crossbar_patches` on patches laid out as rows, for inference: ``patches[i]`` is
    input tile i's ``[N·L, R_i]`` DAC levels and ``levels_scale [n_in, N, 1, L]`` their
    scales (:func:`converter_kernels.unfold_dac` with ``rows``). One product per tile over
    every patch of the batch (:func:`gemm.prefers_rows`), read by the ADC kernel in the rows
    layout: the values of :func:`crossbar_patches` on the same levels, the same output-noise
    normals included, up to the products' float rounding. Returns ``[N, out, L]``. Only where
    :func:`patch_rows_apply` holds."""
    n_in = state.grid[1]
    M, L = patches[0].shape[0], levels_scale.shape[3]
    m = read_matrix(state, cfg, scratch).to(patches[0].dtype)  # [n_in, R, n_out*S*C]
    if n_in == 1:
        y = gemm.rows_product(patches[0], m[0, : patches[0].shape[1]])
    else:
        y = scratch.take("columns", (n_in, M, m.shape[2]), patches[0])
        for i, xi in enumerate(patches):
            gemm.rows_product(xi, m[i, : xi.shape[1]], y[i])
    y = y.view(n_in, M // L, L, m.shape[2])
    return _columns_to_output(y, state, cfg, adc, None, levels_scale, None, scratch, rows=True)


def patch_rows_apply(
    x: torch.Tensor, state: TileState, cfg: CrossbarConfig, patches: int, hooked: bool
) -> bool:
    """Whether a convolution on ``x`` (``patches`` per sample; DAC on, inference, converter
    kernels built) runs through :func:`crossbar_patch_rows`: its products are faster on rows
    (:func:`gemm.prefers_rows`), the ADC and the digital stage run in the converter kernel
    (:func:`_fused_output`) and no pre-ADC hook watches the column outputs."""
    _, _, R, n_out, S, C = state.grid
    return (
        not hooked
        and _fused_output(cfg, x)
        and gemm.prefers_rows(x, min(R, state.in_features), n_out * S * C, patches)
    )


def crossbar_conv2d(
    x: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    adc: Converter | None,
    conv: dict,
    pre_adc_hook: Callable[[torch.Tensor, float], None] | None = None,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """The same pipeline for a convolution whose patches need no DAC (DAC off, or binary
    spikes, which the DAC leaves unchanged): the MVM of every patch on input tile i is one
    ``conv2d`` over the input channels that tile's rows touch, with the read matrix as
    kernel (zero where a row of the kernel lies on another tile; event-driven on sparse
    spikes, :mod:`spikecim.nn.kernels.spike_conv_cpu`). Returns ``[N, out, L]``
    as :func:`crossbar_patches`. ``conv``: ``weight_shape``, ``stride``, ``padding``,
    ``dilation`` of the layer; ``scratch``: work tensors kept by the layer (inference only)."""
    _, n_in, R = state.grid[:3]
    kh, kw = conv["weight_shape"][2:]
    per_channel = kh * kw
    scratch = scratch if _inference(x) else None
    m = read_matrix(state, cfg, scratch).to(x.dtype)  # [n_in, R, n_out*S*C], rows = (channel, kh, kw)
    columns = None  # inference: the tiles' outputs written in place, where the event-driven kernel runs
    if (
        scratch is not None
        and conv["stride"] in (1, (1, 1))
        and conv["dilation"] in (1, (1, 1))
        and spike_conv_cpu.available()
    ):
        n, _, h, w = x.shape
        ph, pw = _pair(conv["padding"]) if not isinstance(conv["padding"], str) else (-1, -1)
        if min(ph, pw) >= 0:
            ho, wo = output_size((h, w), (kh, kw), (1, 1), (ph, pw), (1, 1))
            shape = (n_in, n, m.shape[2], ho * wo)
            columns = _columns(state, cfg, scratch, shape, x)
    parts = []
    for i in range(n_in):
        first, last = i * R, min((i + 1) * R, state.in_features)
        c0, c1 = first // per_channel, -(-last // per_channel)
        rows = m[i, : last - first]
        if (first, last) != (c0 * per_channel, c1 * per_channel):  # the tile cuts a channel
            rows = torch.cat(
                [
                    rows.new_zeros(first - c0 * per_channel, rows.shape[1]),
                    rows,
                    rows.new_zeros(c1 * per_channel - last, rows.shape[1]),
                ]
            )
        kernel = rows.T.reshape(-1, c1 - c0, kh, kw)
        if columns is not None and spike_conv_cpu.conv2d_into(
            x[:, c0:c1], kernel, conv["padding"], columns[i]
        ):
            parts.append(columns[i])
            continue
        y = spike_conv_cpu.conv2d(
            x[:, c0:c1], kernel, None, conv["stride"], conv["padding"], conv["dilation"]
        )
        parts.append(y.flatten(2))
    if columns is not None:
        for i, p in enumerate(parts):
            if p.data_ptr() != columns[i].data_ptr():  # torch's convolution ran for this tile
                columns[i].copy_(p)
        y = columns
    elif n_in == 1:
        y = parts[0].unsqueeze(0)
    elif scratch is None:  # with a gradient
        y = torch.stack(parts)
    else:
        y = torch.stack(parts, out=_columns(state, cfg, scratch, (n_in, *parts[0].shape), x))
    return _columns_to_output(y, state, cfg, adc, pre_adc_hook, None, None, scratch)


def _columns(
    state: TileState, cfg: CrossbarConfig, scratch: Scratch | None, shape: tuple[int, ...], like: torch.Tensor
):
    """Where the column outputs ``[n_in, N, n_out*S*C, L]`` go: the layer's work tensor when
    stage 5 writes a new tensor anyway (it sums tiles or slices, or runs in the converter
    kernel), so the columns are never returned to the caller; a new tensor otherwise."""
    _, n_in, _, _, S, _ = state.grid
    if scratch is not None and (n_in > 1 or S > 1 or _fused_output(cfg, like)):
        return scratch.take("columns", shape, like)
    return like.new_empty(shape)


def direct_conv_applies(x: torch.Tensor, state: TileState, cfg: CrossbarConfig) -> bool:
    """Whether :func:`crossbar_conv2d` gives exactly what the unfolded path gives."""
    if cfg.mapping != "differential":
        return False
    if not cfg.dac.enabled:
        return True
    head = x.reshape(-1)[:4096]  # analog inputs almost always show it here: skip the full check
    if not bool(((head == 0) | (head == 1)).all()):
        return False
    if converter_kernels.available(x):
        return converter_kernels.all_binary(x)  # the same test in one pass
    return bool(((x == 0) | (x == 1)).all())


def _columns_to_output(
    y: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    adc: Converter | None,
    pre_adc_hook: Callable[[torch.Tensor, float], None] | None,
    row_scale: torch.Tensor | None,
    row_sums: torch.Tensor | None,
    scratch: Scratch | None = None,
    rows: bool = False,
) -> torch.Tensor:
    """Stages 4 and 5 on the column outputs ``y[n_in, N, n_out*S*C, L]`` (L = 1 for a
    matmul, patches for a convolution); returns ``[N, out, L]``. ``rows=True``: ``y`` is
    ``[n_in, N, L, n_out*S*C]`` (:func:`crossbar_patch_rows`; the converter kernel only).

    With ``row_scale`` (``[n_in, N, 1, L]``: the DAC's per-vector scales) ``y``
    holds DAC level units: n_dac per normalised unit. The output noise, the ADC and the
    digital gains take that unit into account, so no pass over ``y`` converts it. ``y`` is
    overwritten in inference, where the output noise is added in place (one fused pass)."""
    _, n_in, R, n_out, S, C = state.grid
    N, L = (y.shape[1], y.shape[2]) if rows else (y.shape[1], y.shape[3])
    unit = float(level_count(cfg.dac.bits)) if row_scale is not None else 1.0
    inplace = _inference(y)
    fused = _fused_output(cfg, y)
    if rows and not (fused and pre_adc_hook is None):
        raise ValueError(
            "the rows layout of the column outputs needs the converter kernel (patch_rows_apply)"
        )
    # 4. output noise and ADC (the noise drawn in the converter kernel's pass when it runs)
    out_noise = None
    if cfg.out_noise_std > 0:
        alpha = cfg.out_noise_std * unit
        if fused and pre_adc_hook is None and y.is_contiguous():
            out_noise = (alpha, noise.draw_seed())
        elif inplace:
            y = noise.add_normal_(y, alpha)
        else:
            y = y + alpha * noise.normal_like(y)
    if pre_adc_hook is not None:
        pre_adc_hook(y, unit)
    adc_levels = None
    if adc is not None:
        adc_levels, unit = _adc_levels(adc, R, unit)
        if not fused:
            n = adc_levels[1]
            y = quant_levels(y, adc_levels[0], 0, -n, n, ste="identity", inplace=inplace)
    # 5. digital: shift-and-add, scales, tile sums, in as few passes as the mapping allows
    y = y.view(n_in, N, L, n_out, S, C) if rows else y.view(n_in, N, n_out, S, C, L)
    if fused:  # the ADC and stage 5 in one pass, the same values (converter_kernels.py)
        factor = _output_factor(state, unit, y.dtype)
        return converter_kernels.adc_accumulate(
            y, factor, row_scale, adc_levels, state.out_features, out_noise, rows
        )
    gain = (state.slice_gain / unit).to(y.dtype).view(1, 1, 1, S, 1, 1)
    w_scale = state.w_scale.to(y.dtype).view(n_in, 1, n_out, 1, 1, 1)
    if row_sums is None:
        y = _scale(y, gain * w_scale * state.drift_gain, inplace)
    else:  # offset mapping: subtract the reference column (its normalised row sum) per slice sum
        y = _scale(y, gain, inplace).sum(3, keepdim=True) - row_sums.reshape(n_in, N, 1, 1, 1, L)
        y = _scale(y, w_scale * state.drift_gain, inplace)
    if row_scale is not None:
        y = _scale(y, row_scale.to(y.dtype).view(n_in, N, 1, 1, 1, L), inplace)
    if n_in > 1 or y.shape[3] > 1:
        y = _sum_tiles_and_slices(y) if inplace else y.sum((0, 3))
    return y.reshape(N, n_out * C, L)[:, : state.out_features]


def _adc_levels(adc: Converter, rows: int, unit: float) -> tuple[tuple[float, int], float]:
    """The ADC's ``(k, q)`` for column outputs in ``unit`` per normalised unit (levels
    ``clamp(rint(y·k), −q, q)``; its bound in normalised units, ``rows`` when None), and the
    ADC levels per normalised unit after it."""
    bound = float(rows) if adc.bound is None else adc.bound
    n = level_count(adc.bits)
    return (n / (bound * unit), n), n / bound


def _output_factor(state: TileState, unit: float, dtype: torch.dtype) -> torch.Tensor:
    """Stage 5's factor per tile, column tile and slice, ``[n_in, 1, n_out, S, 1, 1]``: the
    slice gain over ``unit``, times the tile's weight scale and the drift gain."""
    _, n_in, _, n_out, S, _ = state.grid
    gain = (state.slice_gain / unit).to(dtype).view(1, 1, 1, S, 1, 1)
    return gain * state.w_scale.to(dtype).view(n_in, 1, n_out, 1, 1, 1) * state.drift_gain


def crossbar_conv_fused(
    x: torch.Tensor,
    state: TileState,
    cfg: CrossbarConfig,
    adc: Converter | None,
    geometry: tuple,
    scratch: Scratch,
    dac: bool = True,
) -> torch.Tensor:
    """:func:`crossbar_patches` on the patches of ``x [N, C, H, W]`` (``geometry``: kernel
    size, stride, padding, dilation), in inference, in one compiled pass
    (:func:`conv_kernel.conv_adc`): the same read, DAC and ADC levels and output-noise
    normals, the products to float rounding. ``dac=False`` (the DAC off, or binary spikes,
    which it leaves unchanged): the patches as they are, the values of
    :func:`crossbar_conv2d`. Returns ``[N, out, L]``. Only where :func:`fused_conv_applies`
    holds."""
    _, n_in, R, n_out, S, C = state.grid
    m = read_matrix(state, cfg, scratch).to(x.dtype)  # [n_in, R, n_out*S*C]
    n_dac = level_count(cfg.dac.bits) if dac else None
    unit = float(n_dac) if dac else 1.0
    out_noise = (cfg.out_noise_std * unit, noise.draw_seed()) if cfg.out_noise_std > 0 else None
    adc_levels = None
    if adc is not None:
        adc_levels, unit = _adc_levels(adc, R, unit)
    factor = _output_factor(state, unit, x.dtype).view(n_in, n_out, S)
    return conv_kernel.conv_adc(x, geometry, m, n_dac, factor, adc_levels, state.out_features, C, out_noise)


def fused_conv_applies(x: torch.Tensor, cfg: CrossbarConfig, hooked: bool) -> bool:
    """Whether a convolution on ``x`` runs through :func:`crossbar_conv_fused`: in inference,
    the ADC and the digital stage run in a converter kernel (:func:`_fused_output`), no
    pre-ADC hook watches the column outputs, and the kernel runs for ``x``
    (:func:`conv_kernel.available`)."""
    return not hooked and _fused_output(cfg, x) and conv_kernel.available(x)


def _fused_output(cfg: CrossbarConfig, y: torch.Tensor) -> bool:
    """Whether stages 4 (the ADC) and 5 run in :func:`converter_kernels.adc_accumulate`: in
    inference, for the differential mapping, where the kernel is built."""
    return cfg.mapping == "differential" and _inference(y) and converter_kernels.available(y)


def _sum_tiles_and_slices(y: torch.Tensor) -> torch.Tensor:
    """``y[n_in, N, n_out, S, C, L]`` (n_in·S ≥ 2) summed over tiles and slices into a new
    tensor ``[N, n_out, C, L]`` by elementwise adds: torch's reduction over two non-adjacent
    dimensions runs several times slower. ``y`` may be a work tensor: nothing returned
    shares its memory."""
    parts = [y[i, :, :, k] for i in range(y.shape[0]) for k in range(y.shape[3])]
    out = torch.add(parts[0], parts[1])
    for part in parts[2:]:
        out.add_(part)
    return out


def _scale(y: torch.Tensor, factor: torch.Tensor, inplace: bool) -> torch.Tensor:
    return y.mul_(factor) if inplace else y * factor
