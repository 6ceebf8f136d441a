"""TesseraQ: block reconstruction with progressive adaptive rounding (PAR), and the same
reconstruction without the progressive schedule (AdaRound-style) and round-to-nearest (RTN)
as baselines. Weight-only, W2 to W8, group-wise (:mod:`spikecim.quant.groupwise`).

docs/references.md#tesseraq (Li and Panda, "TesseraQ: ultra low-bit LLM post-training
quantization with block reconstruction", arXiv 2024; public code
``Intelligent-Computing-Lab-Yale/TesseraQ``, also the ``TesseraQ`` algorithm of
``ModelTC/llmc``, ``llmc/compression/quantization/tesseraq.py``, whose weight quantiser is
asymmetric and group-wise, ``configs/quantization/methods/Tesseraq/tesseraq_w_only.yml``).

Every weight ``W`` (its ``[out, fan_in]`` view) with group step Δ and zero point z gets one
rounding variable ν per entry, initialised from the fractional part through the rectified
sigmoid (AdaRound's stretch, ζ = 1.1, γ = −0.1)::

    h(ν) = clamp((ζ − γ)·σ(ν) + γ, 0, 1) = clamp(1.2·σ(ν) − 0.1, 0, 1)
    ν₀   = h⁻¹(W/Δ − ⌊W/Δ⌋) = −log((ζ − γ)/(frac − γ) − 1)
    Ŵ    = (clamp(⌊W/Δ⌋ + h(ν) + z, qmin, qmax) − z) · Δ · 2σ(φ)      (φ = 0 at the start)

PAR: for each threshold q of the schedule (the paper's twenty, 0.8 down to 0.005), the
score |h(ν) − 0.5| of every variable is ranked, the variables scoring above its q-quantile
(the most decided, so that a fraction q stays soft) are hardened to 0 or 1 (h(ν) > 0.5 → 1),
then Adam (lr 1e-3, ``steps`` per stage; 250 in the paper) optimises the soft ν and the
dequantisation-scale factors φ (one per group, weight decay 1e-4) on the block's output
reconstruction loss. After the last stage every variable is hardened (ν > 0 → 1) and the
result is folded into the weights: each weight becomes the plain tensor Ŵ (the model keeps
its layers; the weights take only the 2^b levels (q − z)·Δ·2σ(φ) of their group).

A threshold of 0 hardens every variable still soft. The loss is the mean squared error
between the quantised block's output and the full-precision model's output at that block,
the block's input coming from the already quantised blocks before it (as TesseraQ and
OmniQuant do); it is divided by the block's RTN error, a constant (Adam's steps do not
depend on the loss's scale), so the AdaRound regulariser's weight means the same in every
block.

AdaRound-style (docs/references.md#adaround; Nagel et al., "Up or down? Adaptive rounding
for post-training quantization", ICML 2020): the same variables and loss, every variable soft from the start, Adam for
``steps · len(thresholds)`` steps (the budget of PAR) with the regulariser
λ·mean(1 − |2h(ν) − 1|^β), β annealed linearly from 20 to 2 after a warm-up of 20 % of the
steps without it, then hard rounding ν > 0 → 1; no scale factor (φ stays 0).
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from spikecim.quant.blocks import reconstruction_blocks
from spikecim.quant.functional import expand_qparam
from spikecim.quant.groupwise import WeightQuantSpec, quantizable_layers, rtn_weight, weight_qparams

__all__ = [
    "PAPER_THRESHOLDS",
    "BlockLog",
    "PtqOutcome",
    "ReconstructionConfig",
    "Rounding",
    "StageLog",
    "post_training_quantize",
    "rectified_sigmoid",
    "rectified_sigmoid_inverse",
]

ZETA, GAMMA = 1.1, -0.1  # the stretch of the rectified sigmoid (AdaRound; llmc RectifiedSigmoid(-0.1, 1.1))

PAPER_THRESHOLDS = (
    0.8, 0.65, 0.5, 0.43, 0.38, 0.34, 0.3, 0.27, 0.24, 0.21,
    0.18, 0.15, 0.12, 0.10, 0.08, 0.06, 0.04, 0.02, 0.01, 0.005,
)  # fmt: skip

Method = Literal["rtn", "adaround", "tesseraq"]
METHODS: tuple[str, ...] = ("rtn", "adaround", "tesseraq")


def rectified_sigmoid(nu: torch.Tensor) -> torch.Tensor:
    """h(ν) = clamp((ζ − γ)·σ(ν) + γ, 0, 1)."""
    return torch.clamp(torch.sigmoid(nu) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def rectified_sigmoid_inverse(r: torch.Tensor) -> torch.Tensor:
    """ν with h(ν) = r for r in [0, 1): −log((ζ − γ)/(r − γ) − 1)."""
    return -torch.log((ZETA - GAMMA) / (r - GAMMA) - 1.0)


@dataclass(frozen=True)
class ReconstructionConfig:
    """Settings of block reconstruction (module docstring). ``steps``: Adam steps per stage
    of the schedule (AdaRound-style: ``steps · len(thresholds)`` in all); ``batch_size``:
    calibration samples per step (None: all of them); ``seed`` draws the batches."""

    method: Literal["tesseraq", "adaround"] = "tesseraq"
    thresholds: tuple[float, ...] = PAPER_THRESHOLDS
    steps: int = 250
    lr: float = 1e-3
    learn_scale: bool = True
    batch_size: int | None = None
    adaround_lambda: float = 0.01
    adaround_beta: tuple[float, float] = (20.0, 2.0)
    adaround_warmup: float = 0.2
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("tesseraq", "adaround"):
            raise ValueError(f"method: must be tesseraq or adaround, got '{self.method}'")
        t = self.thresholds
        if not t or any(not 0.0 <= q < 1.0 for q in t) or any(b > a for a, b in itertools.pairwise(t)):
            raise ValueError(f"thresholds: must be a non-empty, non-increasing list in [0, 1), got {list(t)}")
        if self.steps < 0:
            raise ValueError(f"steps: must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1 or None, got {self.batch_size}")


class Rounding(nn.Module):
    """The rounding variables ν (one per weight entry) and scale factors φ (one per group) of
    one weight, with the hard mask. ``weight()`` is Ŵ in the weight's shape (module docstring)."""

    def __init__(self, weight: torch.Tensor, spec: WeightQuantSpec, learn_scale: bool = True) -> None:
        super().__init__()
        qp = weight_qparams(weight, spec)
        w = weight.detach().reshape(weight.shape[0], -1).float()
        g = qp.group_size
        inv = expand_qparam(torch.reciprocal(qp.scale), w, 1, g)  # x·(1/Δ), as levels() computes it
        scaled = w * inv
        floor = torch.floor(scaled)
        self.shape, self.dtype, self.group_size = weight.shape, weight.dtype, g
        self.qmin, self.qmax = qp.qmin, qp.qmax
        self.register_buffer("floor", floor)
        self.register_buffer("step", expand_qparam(qp.scale, w, 1, g))
        self.register_buffer("zero", expand_qparam(qp.zero_point.float(), w, 1, g))
        self.register_buffer("hard", torch.zeros_like(w, dtype=torch.bool))
        self.register_buffer("hard_value", torch.zeros_like(w))
        self.nu = nn.Parameter(rectified_sigmoid_inverse(scaled - floor))
        self.phi = nn.Parameter(torch.zeros_like(qp.scale), requires_grad=learn_scale)

    def h(self) -> torch.Tensor:
        """The rounding offsets in [0, 1]: hard ones 0 or 1, the others h(ν)."""
        return torch.where(self.hard, self.hard_value, rectified_sigmoid(self.nu))

    def weight(self) -> torch.Tensor:
        q = torch.clamp(self.floor + self.h() + self.zero, self.qmin, self.qmax)
        factor = expand_qparam(2.0 * torch.sigmoid(self.phi), q, 1, self.group_size)
        return ((q - self.zero) * self.step * factor).reshape(self.shape).to(self.dtype)

    @torch.no_grad()
    def harden(self, threshold: float) -> None:
        """Harden the soft variables scoring |h − 0.5| above the ``threshold``-quantile of
        every variable's score (the hard ones score 0.5), so about a fraction ``threshold``
        stays soft; 0 hardens them all. A variable goes to 1 where h(ν) > 0.5, else 0."""
        soft = ~self.hard
        if threshold <= 0:
            chosen = soft
        else:
            score = (self.h() - 0.5).abs()
            v = float(np.quantile(score.cpu().numpy(), threshold))
            chosen = soft & (score > v)
        self.hard_value[chosen] = (rectified_sigmoid(self.nu[chosen]) > 0.5).float()
        self.hard |= chosen

    @property
    def soft_fraction(self) -> float:
        return float((~self.hard).float().mean())


@dataclass(frozen=True)
class StageLog:
    """One stage of a block's reconstruction: its threshold (AdaRound-style: none), the
    fraction of variables soft during it and the block's output MSE after the hardening that
    opens it and after its Adam steps."""

    threshold: float | None
    soft_fraction: float
    mse_after_hardening: float
    mse_after_steps: float


@dataclass(frozen=True)
class BlockLog:
    """A block's reconstruction: its weight layers, the output MSE (against the full-precision
    model's output at the block, on all calibration samples) under RTN, at the start (soft
    variables at their initial values), per stage, and with the final hard rounding."""

    name: str
    layers: list[str]
    rtn_mse: float
    initial_mse: float
    stages: list[StageLog]
    final_mse: float


@dataclass
class PtqOutcome:
    """The quantised copy of the model, a log per block (empty for RTN) and the seconds taken."""

    model: nn.Module
    blocks: list[BlockLog] = field(default_factory=list)
    seconds: float = 0.0


def post_training_quantize(
    model: nn.Module,
    spec: WeightQuantSpec,
    method: Method,
    calibration: torch.Tensor | None = None,
    config: ReconstructionConfig | None = None,
    batch_dim: int = 1,
) -> PtqOutcome:
    """A copy of ``model`` with every synaptic weight quantised by ``method``: ``rtn``
    (round to nearest), ``adaround`` or ``tesseraq`` (block reconstruction on
    ``calibration``, the model's input for some training samples, batch along ``batch_dim``:
    1 for a time-major ``[T, B, ...]`` input). ``model`` itself is left unchanged."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got '{method}'")
    start = time.perf_counter()
    was_training = model.training
    try:
        qmodel, logs = _quantize(model.eval(), spec, method, calibration, config, batch_dim)
    finally:
        model.train(was_training)
    return PtqOutcome(qmodel, logs, time.perf_counter() - start)


def _quantize(fp, spec, method, calibration, config, batch_dim) -> tuple[nn.Module, list[BlockLog]]:
    qmodel = copy.deepcopy(fp).eval()
    for p in qmodel.parameters():
        p.requires_grad_(False)
    if method == "rtn":
        with torch.no_grad():
            for layer in quantizable_layers(qmodel).values():
                layer.weight.copy_(rtn_weight(layer.weight, spec))
        return qmodel, []
    if calibration is None or calibration.shape[batch_dim] == 0:
        raise ValueError(f"calibration: {method} needs calibration samples")
    config = config or ReconstructionConfig(method=method)
    if config.method != method:
        config = ReconstructionConfig(**{**config.__dict__, "method": method})
    gen = torch.Generator().manual_seed(config.seed)
    logs = []
    x_fp = x_q = calibration
    for (name, fp_block), (_, q_block) in zip(
        reconstruction_blocks(fp), reconstruction_blocks(qmodel), strict=True
    ):
        with torch.no_grad():  # a block may write over its input (_Block.output), so it gets a copy
            target = fp_block(x_fp.clone())
        layers = quantizable_layers(q_block)
        if layers:
            with torch.enable_grad():
                logs.append(_reconstruct(name, q_block, layers, x_q, target, spec, config, batch_dim, gen))
        with torch.no_grad():
            x_fp, x_q = target, q_block(x_q.clone())
    return qmodel, logs


class _Block:
    """A block with its weights replaced by the roundings' Ŵ, and its loss on the calibration
    samples, relative to RTN's."""

    def __init__(self, block, roundings, x, target, batch_dim):
        self.block, self.roundings, self.x, self.target, self.batch_dim = (
            block,
            roundings,
            x,
            target,
            batch_dim,
        )

    def output(self, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The block's output on a copy of ``x``: a block that starts with an in-place neuron
        (every block after the first in the built-in SNNs: the previous block ends at its
        BatchNorm) writes its spikes over its input, which is the cached calibration input
        (the ANNs' in-place ReLU does too, harmlessly: ReLU of its own output is the same)."""
        if weights is None:
            weights = {_weight_key(n): r.weight() for n, r in self.roundings.items()}
        return functional_call(self.block, weights, (x.clone(),))

    @torch.no_grad()
    def mse(self, weights: dict[str, torch.Tensor] | None = None) -> float:
        return float(F.mse_loss(self.output(self.x, weights), self.target))

    def batch_loss(self, batch_size: int | None, gen: torch.Generator) -> torch.Tensor:
        x, target = self.x, self.target
        n = x.shape[self.batch_dim]
        if batch_size is not None and batch_size < n:
            idx = torch.randperm(n, generator=gen)[:batch_size]
            x, target = x.index_select(self.batch_dim, idx), target.index_select(self.batch_dim, idx)
        return F.mse_loss(self.output(x), target)


def _reconstruct(name, block, layers, x, target, spec, config, batch_dim, gen) -> BlockLog:
    roundings = {
        n: Rounding(m.weight, spec, config.learn_scale and config.method == "tesseraq")
        for n, m in layers.items()
    }
    b = _Block(block, roundings, x, target, batch_dim)
    rtn_mse = b.mse({_weight_key(n): rtn_weight(m.weight, spec) for n, m in layers.items()})
    norm = rtn_mse if rtn_mse > 0 else 1.0
    initial = b.mse()
    stages = (_par if config.method == "tesseraq" else _adaround)(b, config, norm, gen)
    for r in roundings.values():
        r.harden(0.0)
    with torch.no_grad():
        for n, m in layers.items():
            m.weight.copy_(roundings[n].weight())
    final = b.mse({_weight_key(n): m.weight for n, m in layers.items()})
    return BlockLog(name, list(layers), rtn_mse, initial, stages, final)


def _adam(b: _Block, config: ReconstructionConfig) -> torch.optim.Adam | None:
    groups = [{"params": [r.nu for r in b.roundings.values()]}]
    phis = [r.phi for r in b.roundings.values() if r.phi.requires_grad]
    if phis:
        groups.append({"params": phis, "weight_decay": 1e-4})
    return torch.optim.Adam(groups, lr=config.lr)


def _par(b: _Block, config: ReconstructionConfig, norm: float, gen) -> list[StageLog]:
    stages = []
    for q in config.thresholds:
        for r in b.roundings.values():
            r.harden(q)
        soft = sum(float((~r.hard).sum()) for r in b.roundings.values())
        total = sum(r.hard.numel() for r in b.roundings.values())
        before = b.mse()
        if soft or any(r.phi.requires_grad for r in b.roundings.values()):
            opt = _adam(b, config)
            for _ in range(config.steps):
                loss = b.batch_loss(config.batch_size, gen) / norm
                opt.zero_grad()
                loss.backward()
                opt.step()
        stages.append(StageLog(q, soft / total, before, b.mse()))
    return stages


def _adaround(b: _Block, config: ReconstructionConfig, norm: float, gen) -> list[StageLog]:
    total = config.steps * len(config.thresholds)
    warmup = int(config.adaround_warmup * total)
    beta_start, beta_end = config.adaround_beta
    before = b.mse()
    opt = _adam(b, config)
    for i in range(total):
        loss = b.batch_loss(config.batch_size, gen) / norm
        if i >= warmup:
            t = (i - warmup) / max(total - warmup, 1)
            beta = beta_end + (beta_start - beta_end) * (1.0 - t)
            reg = torch.stack(
                [(1 - (2 * rectified_sigmoid(r.nu) - 1).abs().pow(beta)).mean() for r in b.roundings.values()]
            ).mean()
            loss = loss + config.adaround_lambda * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [StageLog(None, 1.0, before, b.mse())]


def _weight_key(layer: str) -> str:
    """The weight's name inside the block (the block itself when ``layer`` is "")."""
    return f"{layer}.weight" if layer else "weight"
