"""IR drop: the exact nodal solve against an independent dense formulation (numpy)."""

import numpy as np
import pytest
import torch

from spikecim.analog.circuit import (
    calibrate_fast,
    effective_conductance,
    effective_conductance_fast,
    solve_crossbar,
)
from spikecim.errors import SpikecimError


def dense_reference(G, v, r_wire, r_driver, r_sense):
    """Independent solve: build the graph Laplacian from an explicit edge list (plus a
    source node per word line and the ground), eliminate the fixed nodes, solve densely."""
    rows, cols = G.shape
    wl = lambda i, j: i * cols + j
    bl = lambda i, j: rows * cols + i * cols + j
    src = lambda i: 2 * rows * cols + i
    gnd = 2 * rows * cols + rows
    n = gnd + 1
    edges = []
    for i in range(rows):
        edges.append((src(i), wl(i, 0), 1.0 / (r_driver + r_wire)))
        for j in range(cols - 1):
            edges.append((wl(i, j), wl(i, j + 1), 1.0 / r_wire))
    for j in range(cols):
        for i in range(rows - 1):
            edges.append((bl(i, j), bl(i + 1, j), 1.0 / r_wire))
        edges.append((bl(rows - 1, j), gnd, 1.0 / (r_wire + r_sense)))
    for i in range(rows):
        for j in range(cols):
            edges.append((wl(i, j), bl(i, j), G[i, j]))
    L = np.zeros((n, n))
    for a, b, g in edges:
        L[a, a] += g
        L[b, b] += g
        L[a, b] -= g
        L[b, a] -= g
    free = np.arange(2 * rows * cols)
    fixed = np.arange(2 * rows * cols, n)
    out = []
    for vec in v:
        vf = np.concatenate([vec, [0.0]])
        x = np.linalg.solve(L[np.ix_(free, free)], -L[np.ix_(free, fixed)] @ vf)
        out.append([(x[bl(rows - 1, j)] - 0.0) / (r_wire + r_sense) for j in range(cols)])
    return np.array(out)


@pytest.mark.parametrize(
    "shape,r_wire,r_driver,r_sense",
    [((5, 4), 2.0, 0.0, 0.0), ((4, 6), 1.0, 10.0, 5.0), ((1, 3), 3.0, 1.0, 0.0), ((3, 1), 0.5, 0.0, 2.0)],
)
@pytest.mark.parametrize("solver", ["block", "splu"])
def test_exact_solver_matches_dense_nodal_reference(shape, r_wire, r_driver, r_sense, solver):
    rng = np.random.default_rng(0)
    G = rng.uniform(1e-6, 1e-3, shape)  # strong cells: sizeable IR drop
    v = rng.uniform(-0.3, 0.3, (3, shape[0]))
    I_ref = dense_reference(G, v, r_wire, r_driver, r_sense)
    I = v @ effective_conductance(G, r_wire, r_driver, r_sense, solver=solver)
    np.testing.assert_allclose(I, I_ref, rtol=1e-9, atol=1e-9 * np.abs(I_ref).max())
    assert np.abs(I - v @ G).max() > 1e-3 * np.abs(v @ G).max()  # the drop is real


def test_zero_resistance_returns_ideal_vector_matrix_product_exactly():
    rng = np.random.default_rng(1)
    G = rng.uniform(0, 25e-6, (7, 5))
    v = rng.uniform(0, 0.2, (4, 7))
    assert np.array_equal(solve_crossbar(G, v, 0.0), v @ G)


def test_torch_inputs_give_torch_output_of_same_dtype_and_the_nodal_currents():
    G = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 1e-3
    v = torch.rand(2, 4, dtype=torch.float32, generator=torch.Generator().manual_seed(5))
    out = solve_crossbar(G, v, 1.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 3)
    # the values are the dense nodal solve's (drivers and sense amps ideal), to float32 rounding
    I_ref = dense_reference(G.numpy(), v.double().numpy(), 1.0, 0.0, 0.0)
    np.testing.assert_allclose(out.numpy(), I_ref, rtol=1e-5, atol=1e-6 * np.abs(I_ref).max())
    assert np.abs(I_ref - v.double().numpy() @ G.numpy()).max() > 1e-4 * np.abs(I_ref).max()


def test_cells_far_from_driver_and_sense_amp_lose_most_current():
    rows = cols = 16
    G = np.full((rows, cols), 50e-6)
    G_eff = effective_conductance(G, 5.0)
    loss = 1 - G_eff / G
    # Far from the driver = high column index; far from the sense amp = low row index (top).
    assert np.unravel_index(np.argmax(loss), loss.shape) == (0, cols - 1)
    assert np.unravel_index(np.argmin(loss), loss.shape) == (rows - 1, 0)


def test_lumped_resistances_without_wire_are_the_limit_of_vanishing_wires():
    rng = np.random.default_rng(2)
    G = rng.uniform(1e-5, 1e-3, (4, 3))
    v = rng.uniform(0, 0.2, (2, 4))
    I = v @ effective_conductance(G, 0.0, 20.0, 10.0)
    I_ref = dense_reference(G, v, 1e-7, 20.0 - 1e-7, 10.0 - 1e-7)  # wires of 0.1 µΩ
    np.testing.assert_allclose(I, I_ref, rtol=1e-4)


@pytest.mark.parametrize("r_driver,r_sense", [(20.0, 0.0), (0.0, 30.0), (20.0, 30.0)])
def test_single_cell_is_a_series_circuit(r_driver, r_sense):
    g = 1e-3
    I = solve_crossbar(np.array([[g]]), np.array([[0.5]]), 0.0, r_driver, r_sense)
    assert I[0, 0] == pytest.approx(0.5 / (r_driver + 1 / g + r_sense), rel=1e-12)


def test_fast_model_is_calibrated_and_reports_its_error():
    rng = np.random.default_rng(3)
    G = rng.uniform(0, 25e-6, (32, 32))
    fit = calibrate_fast(G, 2.0)
    v = rng.uniform(0, 0.2, (50, 32))
    exact = v @ effective_conductance(G, 2.0)
    fast = v @ effective_conductance_fast(G, 2.0, kappa=fit.kappa)
    ideal = v @ G
    err_fast = np.linalg.norm(fast - exact) / np.linalg.norm(exact)
    err_ideal = np.linalg.norm(ideal - exact) / np.linalg.norm(exact)
    assert err_fast < 0.1 * err_ideal  # much closer than ignoring IR drop
    assert fit.rel_error <= fit.rel_error_uncalibrated + 1e-15
    assert fit.rel_error == pytest.approx(err_fast, rel=0.5)


@pytest.mark.parametrize("bad", [{"r_wire_ohm": -1.0}, {"r_wire_ohm": float("nan")}])
def test_bad_resistance_is_a_one_line_error(bad):
    with pytest.raises(SpikecimError, match="r_wire_ohm"):
        effective_conductance(np.ones((2, 2)) * 1e-6, **bad)


def test_negative_conductance_is_refused():
    with pytest.raises(SpikecimError, match="G_s"):
        solve_crossbar(-np.ones((2, 2)), np.ones((1, 2)), 1.0)
