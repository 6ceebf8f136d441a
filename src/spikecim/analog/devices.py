"""Device models: how a memory cell is programmed, drifts and is read.

A device model is a pydantic parameter class with a ``name`` tag, registered with
:func:`register_device`, and three pure methods over conductance tensors in µS:

- ``program(g_target_us, g_max_us, generator) -> g_prog_us``   write noise, once
- ``drift_exponent(g_target_us, g_max_us, generator) -> nu``  drawn once at programming
- ``drift(g_prog_us, nu, t_inference_s)`` and ``read_noise_std_us(...)``; ``read`` = drift plus
  read noise drawn at every read (:mod:`spikecim.analog.noise`, keyed by the global torch
  generator, so ``torch.manual_seed`` reproduces a run)

The read itself, g + σ·N(0, 1) clipped at 0, is one function, :func:`noisy_read`: the
crossbar tiles call it on the drift and σ they keep from programming
(:func:`spikecim.analog.tiles.read_matrix`), ``DeviceModel.read`` on fresh ones.

Every method returns a new tensor, never one of its inputs: the caller may overwrite it.

Each physical effect has its own switch (``prog_noise_enabled``, ``drift_enabled``,
``read_noise_enabled``).
Device-independent effects (device-to-device variation, stuck cells, finite levels,
DAC/ADC, output noise, IR drop) live in :mod:`spikecim.analog.tiles`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, model_validator

from spikecim.analog import noise
from spikecim.schema import Schema

_PCM_READ_X_MIN = 0.044 ** (1 / 0.65)  # below it PCM's Q_s is at its cap (PCMDevice.read_noise_std_rel)

__all__ = [
    "DEVICES",
    "DeviceModel",
    "IdealDevice",
    "PCMDevice",
    "RRAMDevice",
    "SRAMDevice",
    "noisy_read",
    "register_device",
]

DEVICES: dict[str, type[DeviceModel]] = {}


def noisy_read(g: torch.Tensor, std: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """One read of conductances ``g`` with read-noise σ ``std`` (same units and shape, None: no
    noise): ``max(g + σ·N(0, 1), 0)``, a fresh draw at every call, keyed by torch's global
    generator (:mod:`spikecim.analog.noise`). ``out``: a work tensor of ``g``'s shape for the
    result (default a new one); ``g`` itself is returned when there is no noise."""
    if std is None:
        return g
    return noise.noisy_read(g, std, out)


def register_device(name: str) -> Callable[[type[DeviceModel]], type[DeviceModel]]:
    def deco(cls: type[DeviceModel]) -> type[DeviceModel]:
        DEVICES[name] = cls
        return cls

    return deco


class DeviceModel(Schema):
    """Base: a perfect cell (no write noise, no drift, no read noise). Numbers as in
    :mod:`spikecim.schema`: finite, at most 1e12 in magnitude."""

    name: str

    def program(
        self, g_target_us: torch.Tensor, g_max_us: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        return g_target_us.clone()

    def drift_exponent(
        self, g_target_us: torch.Tensor, g_max_us: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        return torch.zeros_like(g_target_us)

    def drift(self, g_prog_us: torch.Tensor, nu: torch.Tensor, t_inference_s: float) -> torch.Tensor:
        return g_prog_us.clone()

    def read_noise_std_us(
        self, g_drift_us: torch.Tensor, g_prog_us: torch.Tensor, t_inference_s: float, g_max_us: float
    ) -> torch.Tensor | None:
        """σ of one read around the drifted conductance, µS (None: no read noise)."""
        return None

    def read(
        self, g_prog_us: torch.Tensor, nu: torch.Tensor, t_inference_s: float, g_max_us: float
    ) -> torch.Tensor:
        """One read at time t: drift, then read noise (a fresh draw at every call), g ≥ 0."""
        g = self.drift(g_prog_us, nu, t_inference_s)
        return noisy_read(g, self.read_noise_std_us(g, g_prog_us, t_inference_s, g_max_us))

    @property
    def has_read_noise(self) -> bool:
        return False


@register_device("ideal")
class IdealDevice(DeviceModel):
    name: Literal["ideal"] = "ideal"


@register_device("sram")
class SRAMDevice(DeviceModel):
    """An SRAM bit cell: binary, exact storage (used with ``bits_per_cell = 1``)."""

    name: Literal["sram"] = "sram"


@register_device("pcm")
class PCMDevice(DeviceModel):
    """Phase-change memory, the statistical model of aihwkit's ``PCMLikeNoiseModel``
    (Nandakumar et al., ICECS 2019; docs/references.md#pcm).

    - programming: σ_prog = (c0 + c1·g/g_ref + c2·(g/g_ref)²)·g_max/25, with g_ref = g_max;
      g_prog = max(g + σ_prog·N, 0)
    - drift exponent: g_rel = max(|g|/g_max, 1e-7), μ_ν = clip(−0.0155 ln g_rel + 0.0244, 0.049, 0.1),
      σ_ν = clip(−0.0125 ln g_rel − 0.0059, 0.008, 0.045), ν = |μ_ν + σ_ν·N|
    - drift: t = t_inference + t0, g_drift = g_prog·(t/t0)^(−ν)
    - read (1/f) noise: Q_s = min(0.0088 / max((|g_prog|/g_max)^0.65, 1e-3), 0.2),
      σ_read = Q_s·sqrt(ln((t + t_read)/(2 t_read))), g = max(g_drift + |g_drift|·σ_read·N, 0)
    """

    name: Literal["pcm"] = "pcm"
    t0_s: float = Field(20.0, gt=0, description="time of the programming reference read, s")
    t_read_s: float = Field(250e-9, gt=0, description="duration of one read pulse, s")
    prog_coeff: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)
    prog_noise_enabled: bool = True
    drift_enabled: bool = True
    read_noise_enabled: bool = True
    prog_noise_scale: float = Field(1.0, ge=0)
    read_noise_scale: float = Field(1.0, ge=0)
    drift_scale: float = Field(1.0, ge=0)
    drift_nu_fixed: float | None = Field(
        None, ge=0, description="use this ν for every cell instead of drawing it"
    )

    @model_validator(mode="after")
    def _read_after_reference(self):
        """σ_read holds √ln((t + t_read)/(2·t_read)) with t ≥ t0: real only for t0 ≥ t_read."""
        if self.t0_s < self.t_read_s:
            raise ValueError(
                f"t0_s must be at least t_read_s (the read noise needs t0 + t >= t_read), "
                f"got t0_s={self.t0_s}, t_read_s={self.t_read_s}"
            )
        return self

    # Each method allocates one or two tensors and updates them in place: a model holds
    # millions of cells and every fresh full-size tensor costs as much as the arithmetic.

    def prog_noise_std_us(self, g_target_us: torch.Tensor, g_max_us: float) -> torch.Tensor:
        g = g_target_us / g_max_us
        c0, c1, c2 = self.prog_coeff
        return (g * c2).add_(c1).mul_(g).add_(c0).mul_(g_max_us / 25.0)  # Horner

    def program(self, g_target_us, g_max_us, generator):
        if not self.prog_noise_enabled:
            return g_target_us.clone()
        sigma = self.prog_noise_std_us(g_target_us, g_max_us).mul_(self.prog_noise_scale)
        return noise.noisy_read(g_target_us, sigma, out=sigma, generator=generator)  # one fused pass

    def drift_exponent(self, g_target_us, g_max_us, generator):
        if not self.drift_enabled:
            return torch.zeros_like(g_target_us)
        if self.drift_nu_fixed is not None:
            return torch.full_like(g_target_us, self.drift_nu_fixed * self.drift_scale)
        log_g = g_target_us.abs().div_(g_max_us).clamp_(min=1e-7).log_()
        mu = (log_g * -0.0155).add_(0.0244).clamp_(0.049, 0.1)
        sig = log_g.mul_(-0.0125).sub_(0.0059).clamp_(0.008, 0.045)
        noise = torch.randn(g_target_us.shape, generator=generator, dtype=g_target_us.dtype)
        return noise.mul_(sig).add_(mu).abs_().mul_(self.drift_scale)

    def read_noise_std_rel(
        self, g_prog_us: torch.Tensor, t_inference_s: float, g_max_us: float, gain: float = 1.0
    ) -> torch.Tensor:
        """σ_read relative to the conductance (times ``gain``)."""
        # Q_s = min(0.0088 / max((|g|/g_max)^0.65, 1e-3), 0.2)
        # Crossbars written at run time evaluate this at every inference, so in few passes:
        # x^0.65 as exp(0.65 ln x) (torch's pow with a float exponent is ~4x slower), and
        # min(0.0088 / max(x^0.65, 1e-3), 0.2) = 0.0088 / max(x^0.65, 0.044). x is clamped to
        # 0.044^(1/0.65) first, where x^0.65 reaches 0.044: the idle device of a pair (x = 0)
        # then never reaches the log, whose path for 0 is slow (torch's log_ of 12.6 M floats, half
        # of them 0: 69 against 13 ms without zeros, one thread on an AMD EPYC).
        x = g_prog_us.abs().div_(g_max_us).clamp_(min=_PCM_READ_X_MIN)
        q_s = x.log_().mul_(0.65).exp_().clamp_(min=0.044).reciprocal_()
        return q_s.mul_(self.read_noise_coeff(t_inference_s, gain))

    def read_noise_coeff(self, t_inference_s: float, gain: float = 1.0) -> float:
        """The factor of Q_s in σ_read/g: 0.0088·√ln((t + t_read)/(2·t_read))·``gain`` at
        t = ``t_inference_s`` + t0 (aihwkit's ``PCMLikeNoiseModel``)."""
        t = t_inference_s + self.t0_s
        return 0.0088 * math.sqrt(math.log((t + self.t_read_s) / (2 * self.t_read_s))) * gain

    def drift(self, g_prog_us, nu, t_inference_s):
        t = t_inference_s + self.t0_s
        if t <= self.t0_s:
            return g_prog_us.clone()
        # (t/t0)^(−ν) as exp(−ν·ln(t/t0)): the base is one number, so one exp per cell
        # (torch's pow of a number to a tensor: 63 against 31 ms for 12.6 M cells, one thread;
        # equal to float rounding)
        return torch.mul(nu, -math.log(t / self.t0_s)).exp_().mul_(g_prog_us)

    def read_noise_std_us(self, g_drift_us, g_prog_us, t_inference_s, g_max_us):
        if not self.has_read_noise:
            return None
        std = self.read_noise_std_rel(g_prog_us, t_inference_s, g_max_us, self.read_noise_scale)
        return std.mul_(g_drift_us).abs_()  # |g|·σ_rel, σ_rel ≥ 0

    @property
    def has_read_noise(self) -> bool:
        return self.read_noise_enabled and self.read_noise_scale > 0


@register_device("rram")
class RRAMDevice(DeviceModel):
    """Resistive RAM: additive Gaussian write noise, relative Gaussian read noise and a
    power-law conductance relaxation g·((t + t0)/t0)^(−ν) with one ν for all cells.
    """

    name: Literal["rram"] = "rram"
    write_noise_std_us: float = Field(0.0, ge=0, description="σ of the programmed conductance, µS")
    read_noise_std_rel: float = Field(0.0, ge=0, description="σ of a read relative to g (per read)")
    drift_nu: float = Field(0.0, ge=0, description="relaxation exponent ν (0: none)")
    t0_s: float = Field(1.0, gt=0, description="reference time of the relaxation, s")
    prog_noise_enabled: bool = True
    drift_enabled: bool = True
    read_noise_enabled: bool = True

    def program(self, g_target_us, g_max_us, generator):
        if not self.prog_noise_enabled or self.write_noise_std_us == 0:
            return g_target_us.clone()
        noise = torch.randn(g_target_us.shape, generator=generator, dtype=g_target_us.dtype)
        return (g_target_us + self.write_noise_std_us * noise).clamp(min=0.0)

    def drift_exponent(self, g_target_us, g_max_us, generator):
        return torch.full_like(g_target_us, self.drift_nu if self.drift_enabled else 0.0)

    def drift(self, g_prog_us, nu, t_inference_s):
        return g_prog_us * ((t_inference_s + self.t0_s) / self.t0_s) ** (-nu)

    def read_noise_std_us(self, g_drift_us, g_prog_us, t_inference_s, g_max_us):
        if not self.has_read_noise:
            return None
        return g_drift_us.abs() * self.read_noise_std_rel

    @property
    def has_read_noise(self) -> bool:
        return self.read_noise_enabled and self.read_noise_std_rel > 0
