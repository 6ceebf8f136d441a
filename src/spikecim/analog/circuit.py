"""IR drop: the crossbar as a resistive circuit, solved exactly by nodal analysis.

Geometry (``G_s[rows, cols]`` in siemens). Word line i: driver (v_i through r_driver) —
r_wire — cell (i,0) — r_wire — cell (i,1) — … — cell (i, cols−1), open at the far end.
Bit line j: cell (0,j) — r_wire — cell (1,j) — … — cell (rows−1, j) — r_wire — sense
amplifier (virtual ground through r_sense), open at the top. Cell (i,j) is G[i,j] between
word-line node (i,j) and bit-line node (i,j).

Kirchhoff's current law at the 2·rows·cols nodes gives a sparse symmetric system
``A(G)·u = B·v``. It is linear in v, so the column currents are ``I = v @ G_eff`` with one
effective conductance matrix per programmed array: factorise A once (SuperLU), solve for
one right-hand side per column, and every later input vector costs one matrix product.
With all resistances zero, ``G_eff = G`` exactly.

:func:`effective_conductance_fast` is a first-order (one Jacobi sweep from the ideal
currents) model computed with cumulative sums, O(rows·cols); one gain ``kappa`` fitted
against the exact solver by :func:`calibrate_fast` absorbs the higher orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.linalg import solve_banded
from threadpoolctl import threadpool_limits

from spikecim.analog.config import MAX_WIRE_OHM, MIN_WIRE_OHM
from spikecim.errors import SpikecimError

__all__ = [
    "FastFit",
    "calibrate_fast",
    "effective_conductance",
    "effective_conductance_fast",
    "solve_crossbar",
]


def _check(G_s: np.ndarray, r_wire_ohm: float, r_driver_ohm: float, r_sense_ohm: float) -> None:
    if G_s.ndim != 2:
        raise SpikecimError(f"ir_drop: G_s must be [rows, cols], got shape {tuple(G_s.shape)}")
    if not np.all(np.isfinite(G_s)) or np.any(G_s < 0):
        raise SpikecimError("ir_drop: G_s must be finite and >= 0 siemens")
    for name, r in (("r_wire_ohm", r_wire_ohm), ("r_driver_ohm", r_driver_ohm), ("r_sense_ohm", r_sense_ohm)):
        if not (np.isfinite(r) and 0 <= r <= MAX_WIRE_OHM):
            raise SpikecimError(f"ir_drop.{name}: must be between 0 and {MAX_WIRE_OHM:g} Ω, got {r}")
    if 0 < r_wire_ohm < MIN_WIRE_OHM:
        raise SpikecimError(
            f"ir_drop.r_wire_ohm: must be 0 (ideal wires) or at least {MIN_WIRE_OHM:g} Ω, got {r_wire_ohm}"
        )


def _as_numpy(x) -> np.ndarray:
    return (
        x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    )


def solve_crossbar(G_s, v_v, r_wire_ohm: float, r_driver_ohm: float = 0.0, r_sense_ohm: float = 0.0):
    """Column currents ``I_a[batch, cols]`` (A) for inputs ``v_v[batch, rows]`` (V).

    Accepts numpy arrays or torch tensors and returns the same kind (torch: input dtype).
    """
    G = _as_numpy(G_s)
    v = _as_numpy(v_v)
    if v.ndim != 2 or v.shape[1] != G.shape[0]:
        raise SpikecimError(f"ir_drop: v_v must be [batch, {G.shape[0]}], got shape {tuple(v.shape)}")
    I_a = v @ effective_conductance(G, r_wire_ohm, r_driver_ohm, r_sense_ohm)
    if isinstance(v_v, torch.Tensor):
        return torch.from_numpy(I_a).to(dtype=v_v.dtype, device=v_v.device)
    return I_a


def effective_conductance(
    G_s, r_wire_ohm: float, r_driver_ohm: float = 0.0, r_sense_ohm: float = 0.0, solver: str = "block"
) -> np.ndarray:
    """``G_eff_s[rows, cols]`` with ``I = v @ G_eff`` for the circuit in the module docstring.

    ``solver="block"`` (default) factorises the nodal matrix by block elimination along the
    rows (it is block-tridiagonal: row i couples to rows i±1 only through its bit-line
    segments), O(rows·cols³); ``solver="splu"`` factorises the same sparse matrix with SuperLU.
    Both are exact up to floating-point rounding.
    """
    G = _as_numpy(G_s)
    _check(G, r_wire_ohm, r_driver_ohm, r_sense_ohm)
    if solver not in ("block", "splu"):
        raise SpikecimError(f"ir_drop: solver must be 'block' or 'splu', got '{solver}'")
    if r_wire_ohm == 0:
        return _lumped(G, r_driver_ohm, r_sense_ohm)
    try:
        with np.errstate(all="ignore"):
            G_eff = _solve(G, r_wire_ohm, r_driver_ohm, r_sense_ohm, solver)
    except (np.linalg.LinAlgError, RuntimeError) as e:  # scipy's splu: RuntimeError "singular"
        raise SpikecimError(
            f"ir_drop.r_wire_ohm: the crossbar circuit with r_wire_ohm = {r_wire_ohm:g} Ω cannot be solved ({e})"
        ) from None
    if not np.all(np.isfinite(G_eff)):
        raise SpikecimError(
            f"ir_drop.r_wire_ohm: the crossbar circuit with r_wire_ohm = {r_wire_ohm:g} Ω gives non-finite currents"
        )
    return G_eff


def _solve(
    G: np.ndarray, r_wire_ohm: float, r_driver_ohm: float, r_sense_ohm: float, solver: str
) -> np.ndarray:
    if solver == "block":
        # Many small dense solves: BLAS threads only add contention here.
        with threadpool_limits(limits=1, user_api="blas"):
            return _block_elimination(G, r_wire_ohm, r_driver_ohm, r_sense_ohm)
    rows, cols = G.shape
    n = rows * cols
    g_w = 1.0 / r_wire_ohm
    g_d = 1.0 / (r_wire_ohm + r_driver_ohm)
    g_s = 1.0 / (r_wire_ohm + r_sense_ohm)
    idx = np.arange(n).reshape(rows, cols)
    word, bit = idx, idx + n  # word-line node (i,j), bit-line node (i,j)
    g = G.ravel()

    # Off-diagonal entries: wire segments along word lines and bit lines, and the cells.
    r_list = [word[:, :-1].ravel(), bit[:-1, :].ravel(), word.ravel()]
    c_list = [word[:, 1:].ravel(), bit[1:, :].ravel(), bit.ravel()]
    w_list = [np.full(rows * (cols - 1), g_w), np.full((rows - 1) * cols, g_w), g]
    ri, ci, wi = (np.concatenate(a) for a in (r_list, c_list, w_list))
    diag = np.zeros(2 * n)
    np.add.at(diag, ri, wi)
    np.add.at(diag, ci, wi)
    diag[word[:, 0]] += g_d  # driver end of every word line
    diag[bit[-1, :]] += g_s  # sense end of every bit line
    A = sp.coo_matrix(
        (
            np.concatenate([-wi, -wi, diag]),
            (np.concatenate([ri, ci, np.arange(2 * n)]), np.concatenate([ci, ri, np.arange(2 * n)])),
        ),
        shape=(2 * n, 2 * n),
    ).tocsc()
    lu = spla.splu(A)
    # A is symmetric: G_eff[i, j] = g_d · g_s · (A^-1)[bit(rows-1, j), word(i, 0)].
    rhs = np.zeros((2 * n, cols))
    rhs[bit[-1, :], np.arange(cols)] = 1.0
    out = np.empty((rows, cols))
    chunk = 64
    for start in range(0, cols, chunk):
        sol = lu.solve(rhs[:, start : start + chunk])
        out[:, start : start + chunk] = sol[word[:, 0], :]
    return g_d * g_s * out


def _block_elimination(
    G: np.ndarray, r_wire_ohm: float, r_driver_ohm: float, r_sense_ohm: float
) -> np.ndarray:
    """Exact solve by eliminating each word line into its row's bit-line nodes, then the
    rows one after another (block Thomas forward sweep; only the last row is needed).

    Row i: word nodes u (tridiagonal chain W_i = T_w + diag(g_i), driver at j = 0) and bit
    nodes b. Eliminating u leaves S_i = diag(bit_diag_i + g_i) − diag(g_i) W_i⁻¹ diag(g_i)
    with right-hand side diag(g_i) W_i⁻¹ e_0 · g_d · v_i; rows couple by −g_w·I.
    """
    rows, cols = G.shape
    g_w = 1.0 / r_wire_ohm
    g_d = 1.0 / (r_wire_ohm + r_driver_ohm)
    g_s = 1.0 / (r_wire_ohm + r_sense_ohm)
    # Banded storage of the word-line chain Laplacian (upper, main, lower).
    lap = np.full(cols, 2 * g_w)
    lap[-1] -= g_w
    lap[0] += g_d - g_w
    if cols == 1:
        lap[0] = g_d
    eye = np.eye(cols)
    d_tilde_inv = None
    y_tilde = None
    for i in range(rows):
        g = G[i]
        ab = np.zeros((3, cols))
        ab[0, 1:] = -g_w
        ab[1] = lap + g
        ab[2, :-1] = -g_w
        rhs = np.concatenate([np.diag(g), np.eye(cols, 1) * g_d], axis=1)
        z = solve_banded((1, 1), ab, rhs)  # W_i^-1 [diag(g) | g_d e_0]
        bit_diag = g + g_w * ((i > 0) + (i < rows - 1)) + (g_s if i == rows - 1 else 0.0)
        S = np.diag(bit_diag) - g[:, None] * z[:, :cols]
        y = np.zeros((cols, rows))
        y[:, i] = g * z[:, cols]
        if d_tilde_inv is not None:
            S -= g_w * g_w * d_tilde_inv
            y += g_w * (d_tilde_inv @ y_tilde)
        if i < rows - 1:
            sol = np.linalg.solve(S, np.concatenate([eye, y], axis=1))
            d_tilde_inv, y_tilde = sol[:, :cols], y
        else:
            b_last = np.linalg.solve(S, y)  # [cols, rows]: bit voltages of the last row per unit v_i
    return g_s * b_last.T


def _lumped(G: np.ndarray, r_driver_ohm: float, r_sense_ohm: float) -> np.ndarray:
    """No wire resistance: one node per word line and per bit line."""
    if r_driver_ohm == 0 and r_sense_ohm == 0:
        return G.copy()
    rows, cols = G.shape
    # Unknowns: word voltages u (rows) unless r_driver = 0, bit voltages b (cols) unless r_sense = 0.
    # Solve for the map v -> I directly with dense algebra (rows + cols unknowns).
    if r_driver_ohm == 0:
        # u = v; b_j (sum_i G_ij + 1/r_s) = sum_i G_ij v_i; I_j = b_j / r_s
        g_s = 1.0 / r_sense_ohm
        return G * (g_s / (G.sum(0) + g_s))[None, :]
    g_d = 1.0 / r_driver_ohm
    if r_sense_ohm == 0:
        # b = 0; u_i (g_d + sum_j G_ij) = g_d v_i; I_j = sum_i G_ij u_i
        return G * (g_d / (g_d + G.sum(1)))[:, None]
    g_s = 1.0 / r_sense_ohm
    K = np.zeros((rows + cols, rows + cols))
    K[:rows, :rows] = np.diag(g_d + G.sum(1))
    K[rows:, rows:] = np.diag(g_s + G.sum(0))
    K[:rows, rows:] = -G
    K[rows:, :rows] = -G.T
    rhs = np.zeros((rows + cols, rows))
    rhs[np.arange(rows), np.arange(rows)] = g_d
    sol = np.linalg.solve(K, rhs)  # [rows+cols, rows]: node voltages per unit input
    return g_s * sol[rows:, :].T


def effective_conductance_fast(
    G_s, r_wire_ohm: float, r_driver_ohm: float = 0.0, r_sense_ohm: float = 0.0, kappa: float = 1.0
) -> np.ndarray:
    """First-order IR-drop model, ``G_eff ≈ G / (1 + kappa·(r_wire·(A + B) + r_driver·D + r_sense·S))``.

    With ideal cell currents G·v, the word-line drop seen by cell (i,j) per volt of v_i is
    A_ij = Σ_{m≤j} Σ_{n≥m} G_in (every segment left of the cell carries the current of the
    cells beyond it); the bit-line rise is B_ij = Σ_{m≥i} Σ_{n≤m} G_nj; the driver and
    sense resistances carry the whole line current (D_i = Σ_j G_ij, S_j = Σ_i G_ij).
    """
    G = _as_numpy(G_s)
    _check(G, r_wire_ohm, r_driver_ohm, r_sense_ohm)
    suffix_row = np.cumsum(G[:, ::-1], axis=1)[:, ::-1]  # Σ_{n≥m} G_in
    A = np.cumsum(suffix_row, axis=1)
    prefix_col = np.cumsum(G, axis=0)  # Σ_{n≤m} G_nj
    B = np.cumsum(prefix_col[::-1, :], axis=0)[::-1, :]
    load = (
        r_wire_ohm * (A + B) + r_driver_ohm * G.sum(1, keepdims=True) + r_sense_ohm * G.sum(0, keepdims=True)
    )
    return G / (1.0 + kappa * load)


@dataclass(frozen=True)
class FastFit:
    """Result of :func:`calibrate_fast`: the gain and the relative error of the column currents
    (‖I_fast − I_exact‖ / ‖I_exact‖ over random inputs) with and without the fit."""

    kappa: float
    rel_error: float
    rel_error_uncalibrated: float


def calibrate_fast(
    G_s,
    r_wire_ohm: float,
    r_driver_ohm: float = 0.0,
    r_sense_ohm: float = 0.0,
    n_vectors: int = 64,
    seed: int = 0,
) -> FastFit:
    """Fit ``kappa`` of the fast model to the exact solver on one array (golden-section search)."""
    G = _as_numpy(G_s)
    exact = effective_conductance(G, r_wire_ohm, r_driver_ohm, r_sense_ohm)
    v = np.random.default_rng(seed).uniform(0, 1, size=(n_vectors, G.shape[0]))
    I_exact = v @ exact
    norm = np.linalg.norm(I_exact) or 1.0

    def err(k: float) -> float:
        return float(
            np.linalg.norm(
                v @ effective_conductance_fast(G, r_wire_ohm, r_driver_ohm, r_sense_ohm, k) - I_exact
            )
            / norm
        )

    lo, hi = 0.0, 2.0
    phi = (5**0.5 - 1) / 2
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    for _ in range(40):
        if err(a) < err(b):
            hi, b = b, a
            a = hi - phi * (hi - lo)
        else:
            lo, a = a, b
            b = lo + phi * (hi - lo)
    k = (lo + hi) / 2
    return FastFit(kappa=k, rel_error=err(k), rel_error_uncalibrated=err(1.0))
