"""Leakage without a trained attacker: how much of the input a trace carries, in seconds.

Per layer and time bin (timestep), from the samples of that bin alone:

- ``probe_r2``: a linear probe, ridge regression (λ = 1e-3·N on standardised samples, plus a
  bias) from the attacker's samples to the input pixels, scored on the victim's inputs as
  R² = 1 − Σ(x − x̂)² / Σ(x − x̄)² over all pixels (0: no better than the mean image, 1:
  the input read off exactly);
- ``max_corr``: the largest |Pearson correlation| between any sample and any pixel.
"""

from __future__ import annotations

import numpy as np

__all__ = ["leakage_map", "max_correlation", "probe_r2"]

RIDGE = 1e-3
SD_FLOOR = 1e-3


def _standardise(a: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``(a − μ)/σ`` with σ floored at 1e-3 of the mean σ: a sample that barely varies for the
    attacker (a window over the blank border of an image) is not blown up on the victim's."""
    floor = SD_FLOOR * float(sd.mean()) if sd.size and sd.mean() > 0 else 1.0
    return (a - mu) / np.maximum(sd, floor)


def probe_r2(train_s: np.ndarray, train_x: np.ndarray, test_s: np.ndarray, test_x: np.ndarray) -> float:
    """R² of the ridge probe ``samples[N, S] -> pixels[N, P]`` (module docstring)."""
    mu, sd = train_s.mean(0), train_s.std(0)
    a = np.hstack([_standardise(train_s, mu, sd), np.ones((len(train_s), 1))])
    b = np.hstack([_standardise(test_s, mu, sd), np.ones((len(test_s), 1))])
    w = np.linalg.solve(a.T @ a + RIDGE * len(a) * np.eye(a.shape[1]), a.T @ train_x)
    resid = ((test_x - b @ w) ** 2).sum()
    total = ((test_x - train_x.mean(0)) ** 2).sum()
    return float(1 - resid / total) if total > 0 else 0.0


def max_correlation(s: np.ndarray, x: np.ndarray) -> float:
    """max |corr(s_k, x_p)| over samples k and pixels p (constant columns count 0)."""
    sc, xc = s - s.mean(0), x - x.mean(0)
    ns, nx = np.sqrt((sc**2).sum(0)), np.sqrt((xc**2).sum(0))
    cov = sc.T @ xc
    denom = np.outer(ns, nx)
    corr = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
    return float(np.abs(corr).max()) if corr.size else 0.0


def leakage_map(
    train: dict[str, np.ndarray], train_x: np.ndarray, test: dict[str, np.ndarray], test_x: np.ndarray
) -> dict[str, list[dict[str, float]]]:
    """Per layer (samples ``[N, T, S]``), per timestep: ``probe_r2`` and ``max_corr``."""
    tx, vx = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)
    out = {}
    for name, s_tr in train.items():
        s_te = test[name]
        out[name] = [
            {
                "probe_r2": probe_r2(s_tr[:, t], tx, s_te[:, t], vx),
                "max_corr": max_correlation(s_tr[:, t], tx),
            }
            for t in range(s_tr.shape[1])
        ]
    return out
