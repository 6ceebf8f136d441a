"""Input reconstruction from power traces: pre-processing, a learned inverse, GAN refinement.

The attacker (docs/security.md#threat-model) holds inputs of the same kind as the victim's
(never the victim's own) and measures their traces on the same hardware. Pre-processing
averages a layer's samples over the timesteps and, where the reads of a convolution come
in raster order, lays them out as an image-shaped map (``map_shape``); every feature is
standardised with the attacker's own statistics. The inverse is an MLP trained on the
attacker's pairs (MSE); the GAN refinement trains it further as a pix2pix generator
(Isola et al. 2017), on minibatches: loss = BCE(D(fake), real) + λ·L1(fake, x), against a patch
discriminator (a small convolution whose every output judges one patch), conditioned on
the map resized to the image when there is one.

Metrics: SSIM (Wang et al. 2004: Gaussian window σ = 1.5, 11 wide or the image size if
smaller, K1 = 0.01, K2 = 0.03; of a colour image the mean over its channels, as
scikit-image's ``channel_axis``), PSNR = 10·log10(range²/MSE), MSE, all against the true
input; the baseline reconstructs every input as the attacker's mean image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttackResult", "mse", "preprocess", "psnr", "reconstruct", "ssim"]

K1, K2 = 0.01, 0.03  # Wang et al. 2004, eq. 7
WINDOW_SIGMA = 1.5  # Wang et al. 2004, section III-C: 11×11 circular Gaussian, σ = 1.5
WINDOW_SIZE = 11
GAN_BATCH = 128  # samples per GAN step


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean SSIM per image of ``x, y [N, C, H, W]`` over its positions and channels (module
    docstring); ``window`` [k, k] (weights summing to 1) replaces the Gaussian."""
    if window is None:
        k = min(WINDOW_SIZE, x.shape[-1], x.shape[-2])
        k -= 1 - k % 2  # odd
        t = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
        g = torch.exp(-(t**2) / (2 * WINDOW_SIGMA**2))
        window = torch.outer(g, g)
    window = window.to(torch.float64)
    c = x.shape[1]
    w = (window / window.sum())[None, None].expand(c, 1, *window.shape)  # one per channel

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, w, groups=c)

    x, y = x.to(torch.float64), y.to(torch.float64)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image."""
    return ((x.double() - y.double()) ** 2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """10·log10(range²/MSE) per image, capped at 100 dB for an exact copy."""
    return (10 * torch.log10(data_range**2 / mse(x, y).clamp(min=data_range**2 * 1e-10))).clamp(max=100.0)


def preprocess(samples: np.ndarray, map_shape: tuple[int, int] | None) -> np.ndarray:
    """``[N, T, S]`` -> features ``[N, S']``: the mean over timesteps of every sample (a map in
    raster order when ``map_shape`` is given: S' = H·W, bit-serial reads of a window summed)."""
    mean = samples.mean(axis=1)
    if map_shape is not None:
        h, w = map_shape
        mean = mean.reshape(mean.shape[0], h * w, -1).sum(-1)
    return mean


@dataclass
class AttackResult:
    metrics: dict[str, float]
    reconstructions: torch.Tensor  # [N, C, H, W] of the victim's inputs (GAN-refined when run)
    inverse_only: torch.Tensor  # the same before refinement


class _Inverse(nn.Module):
    def __init__(self, n_in: int, hidden: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, math.prod(shape)), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


def _patch_discriminator(channels: int) -> nn.Module:
    """Every output pixel judges the 5×5 patch of the image (and its condition) around it."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(16, 1, 3, padding=1),
    )  # fmt: skip


def reconstruct(
    train_feats: np.ndarray,
    train_x: torch.Tensor,
    test_feats: np.ndarray,
    test_x: torch.Tensor,
    cfg,
    map_shape: tuple[int, int] | None = None,
    victim_accuracy: Callable[[torch.Tensor], float] | None = None,
) -> AttackResult:
    """Train the inverse (and its GAN refinement when ``cfg.gan_epochs`` > 0) on the
    attacker's ``(train_feats, train_x)``, reconstruct the victim's ``test_x`` from
    ``test_feats``; metrics of the inverse, the refined generator and the mean-image
    baseline (``victim_accuracy(images)``: the victim model's accuracy on them)."""
    mu, sd = train_feats.mean(0), train_feats.std(0)
    sd = np.maximum(
        sd, 1e-3 * float(sd.mean()) if sd.mean() > 0 else 1.0
    )  # a near-constant feature stays small
    z_tr = torch.from_numpy((train_feats - mu) / sd).float()
    z_te = torch.from_numpy((test_feats - mu) / sd).float()
    x_tr, x_te = train_x.float(), test_x.float()
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        inverse = _Inverse(z_tr.shape[1], cfg.hidden, tuple(x_tr.shape[1:]))
        opt = torch.optim.Adam(inverse.parameters(), lr=cfg.lr)
        for _ in range(cfg.epochs):
            opt.zero_grad()
            F.mse_loss(inverse(z_tr), x_tr).backward()
            opt.step()
        with torch.no_grad():
            plain = inverse(z_te)
        refined = plain
        if cfg.gan_epochs > 0:
            refined = _refine(inverse, z_tr, x_tr, z_te, cfg, map_shape)
    baseline = x_tr.mean(0, keepdim=True).expand_as(x_te)
    metrics = {}
    for tag, rec in (("inverse", plain), ("gan", refined), ("mean_image", baseline)):
        if tag == "gan" and cfg.gan_epochs == 0:
            continue
        metrics[f"ssim_{tag}"] = float(ssim(rec, x_te).mean())
        metrics[f"psnr_{tag}"] = float(psnr(rec, x_te).mean())
        metrics[f"mse_{tag}"] = float(mse(rec, x_te).mean())
        if victim_accuracy is not None:
            metrics[f"victim_accuracy_{tag}"] = float(victim_accuracy(rec))
    return AttackResult(metrics, refined, plain)


def _condition(z: torch.Tensor, map_shape, image_shape) -> torch.Tensor | None:
    if map_shape is None:
        return None
    m = z.view(-1, 1, *map_shape)
    return F.interpolate(m, size=image_shape[-2:], mode="bilinear", align_corners=False)


def _refine(inverse, z_tr, x_tr, z_te, cfg, map_shape) -> torch.Tensor:
    """pix2pix fine-tuning of ``inverse`` against a patch discriminator; returns the
    refined reconstructions of ``z_te``."""
    cond = _condition(z_tr, map_shape, x_tr.shape)
    disc = _patch_discriminator(x_tr.shape[1] + (0 if cond is None else 1))
    opt_g = torch.optim.Adam(inverse.parameters(), lr=cfg.lr / 3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr / 3, betas=(0.5, 0.999))

    def judge(img: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return disc(img if cond is None else torch.cat([img, cond[idx]], 1))

    bce = nn.BCEWithLogitsLoss()
    n = z_tr.shape[0]
    for _ in range(cfg.gan_epochs):
        idx = torch.randperm(n)[: min(n, GAN_BATCH)]
        fake = inverse(z_tr[idx])
        opt_d.zero_grad()
        real_logit, fake_logit = judge(x_tr[idx], idx), judge(fake.detach(), idx)
        d_loss = bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        fake_logit = judge(fake, idx)
        g_loss = bce(fake_logit, torch.ones_like(fake_logit)) + cfg.l1_weight * F.l1_loss(fake, x_tr[idx])
        g_loss.backward()
        opt_g.step()
    with torch.no_grad():
        return inverse(z_te)
