"""Solver failure modes and options; the Verlet list's rebuild rule."""
import numpy as np
import pytest
import torch

from actionmd.action_map import ActionMap
from actionmd.neighbors import VerletList
from actionmd.solver import SolverConvergenceError, SolverOptions, solve

from ref_systems import ne_xe_crystal
from test_map_physics import state_of


def test_non_convergence_names_the_step_and_residual(lj_mixture_model):
    atoms = ne_xe_crystal()
    action_map = ActionMap(lj_mixture_model, solver=SolverOptions(maxiter=2, tol=1e-12, newton_fallback=False))
    q, p = state_of(atoms)
    types = action_map.types_of(atoms.numbers)
    with pytest.raises(SolverConvergenceError, match=r"step 0: .*maxiter=2.*residual \d\.\d+e-\d+ Å > tol 1\.0e-12 Å"):
        action_map.step(q, p, types, atoms.cell.array, atoms.pbc)
    # with the Newton fallback, the message says both methods were tried (1e-30 Å is below round-off)
    action_map = ActionMap(lj_mixture_model, solver=SolverOptions(maxiter=2, tol=1e-30))
    with pytest.raises(SolverConvergenceError, match=r"step 0: .*2 anderson then 2 newton iterations \(maxiter=2 each\)"):
        action_map.step(q, p, types, atoms.cell.array, atoms.pbc)


def test_onfail_warn_downgrades_to_a_warning(lj_mixture_model):
    atoms = ne_xe_crystal()
    action_map = ActionMap(lj_mixture_model, solver=SolverOptions(maxiter=2, tol=1e-12, onfail="warn",
                                                                          newton_fallback=False))
    q, p = state_of(atoms)
    with pytest.warns(RuntimeWarning, match="step 0"):
        _, _, report = action_map.step(q, p, action_map.types_of(atoms.numbers), atoms.cell.array, atoms.pbc)
    assert not report.converged and report.residual > 1e-12


def test_nan_is_always_an_error_even_with_onfail_warn():
    q = torch.zeros(2, 3, dtype=torch.float64)
    p = torch.ones(2, 3, dtype=torch.float64)

    def broken_action(qbar, pbar):
        return (pbar**2).sum() * torch.tensor(float("nan"), dtype=torch.float64)

    with pytest.raises(SolverConvergenceError, match="step 7: the action or its gradient is NaN"):
        solve(broken_action, q, p, torch.ones(2, dtype=torch.float64), 1.0, (p, torch.zeros_like(p)),
              SolverOptions(onfail="warn"), step=7)


def test_free_particles_are_exact_in_zero_iterations():
    """S = dt p^2/2m: free flight is the exact answer, so the solver must accept the guess as it is."""
    q = torch.randn(5, 3, dtype=torch.float64)
    p = torch.randn(5, 3, dtype=torch.float64)
    m = torch.full((5,), 2.0, dtype=torch.float64)
    dq, dp, report = solve(lambda qb, pb: 3.0 * (pb**2).sum() / 4.0, q, p, m, 3.0, (p / 2 * 3.0, 0 * p),
                           SolverOptions())
    assert report.iterations == 0 and report.converged
    assert torch.allclose(dq, 1.5 * p) and torch.equal(dp, torch.zeros_like(p))


@pytest.mark.parametrize("options, message", [
    (dict(method="broyden"), "solver method must be one of"),
    (dict(onfail="ignore"), "onfail must be 'error' or 'warn'"),
    (dict(tol=0.0), "positive length in Å"),
    (dict(maxiter=0), "maxiter must be >= 1"),
])
def test_bad_solver_options(options, message):
    with pytest.raises(ValueError, match=message):
        SolverOptions(**options)


def test_verlet_list_rebuilds_only_past_half_the_skin():
    atoms = ne_xe_crystal()
    neighbors = VerletList(cutoff=6.0, skin=1.0)
    cell, pbc = atoms.cell.array, atoms.pbc
    assert neighbors.update(atoms.positions, cell, pbc)
    moved = atoms.positions.copy()
    moved[3] += [0.49, 0, 0]
    assert not neighbors.update(moved, cell, pbc)
    moved[3] += [0.02, 0, 0]
    assert neighbors.update(moved, cell, pbc)
    assert neighbors.update(moved, cell * 1.01, pbc)  # a new cell always rebuilds
    # every pair within the cutoff is in the list, with the right shift
    i, j = neighbors.edge_index.numpy()
    vectors = moved[j] - moved[i] + neighbors.edge_shifts(torch.float64).numpy()
    assert np.linalg.norm(vectors, axis=1).max() <= 7.0 + 1e-12


def test_periodic_axis_without_a_cell_is_an_error():
    with pytest.raises(ValueError, match="cell vector 2 is zero but the system is periodic"):
        VerletList(5.0, 1.0).update(np.zeros((2, 3)) + [[0, 0, 0], [1, 1, 1]], np.diag([10.0, 10.0, 0.0]),
                                    [True, True, True])


def test_bad_mode_and_guess(lj_mixture_model):
    with pytest.raises(ValueError, match="mode must be one of"):
        ActionMap(lj_mixture_model, mode="flashmd")
    with pytest.raises(ValueError, match="guess must be one of"):
        ActionMap(lj_mixture_model, guess="zero")


def test_newton_takes_over_when_anderson_stalls(model_dir):
    """A stiff linear map (w dt = 2.6) needs ~5 Anderson iterations; capped at 2, Newton finishes the
    solve from the best iterate (exact in one step on a linear problem), and the report says so."""
    from actionmd.reference import einstein
    from ref_systems import export
    from test_map_physics import einstein_system
    stride = 4.0
    sites, numbers, omegas, q, p, masses = einstein_system(stride)
    path = model_dir / "einstein_fallback.pt"
    export(einstein(["H", "Xe"], omegas, sites, stride, masses=[1.008, 131.293]), path)
    stalled = ActionMap(str(path), guess="free_flight",
                        solver=SolverOptions(maxiter=2, tol=1e-10, newton_fallback=False))
    types = stalled.types_of(numbers)
    with pytest.raises(SolverConvergenceError, match="2 anderson iterations"):
        stalled.step(q, p, types, np.zeros((3, 3)), [False] * 3)
    rescued = ActionMap(str(path), guess="free_flight", solver=SolverOptions(maxiter=2, tol=1e-10))
    q1, p1, report = rescued.step(q, p, types, np.zeros((3, 3)), [False] * 3)
    assert report.converged and report.fell_back and report.residual <= 1e-10
    exact = ActionMap(str(path), guess="free_flight", solver=SolverOptions(method="newton", tol=1e-12))
    q2, p2, _ = exact.step(q, p, types, np.zeros((3, 3)), [False] * 3)
    assert np.abs(q1 - q2).max() < 1e-9


@pytest.mark.parametrize("w_dt", [1.6, 2.6])
def test_anderson_takes_the_kinetic_coupling_in_gauss_seidel_order(w_dt):
    """S = h (p^2/2m + k q^2/2): from free flight, one plain step of the mixed map leaves exactly (w h/2)^2
    of the residual (G itself contracts only as w h/2), and Anderson then solves this linear problem,
    whose iteration has the two eigenvalues 0 and -(w h/2)^2, in one more step, also past w h = 2."""
    h, m = 10.0, 2.0
    k = m * (w_dt / h) ** 2
    generator = torch.Generator().manual_seed(0)
    # small amplitudes: the problem is linear, and onfail="warn" hands back only residuals below 0.1 Å
    q = 1e-3 * torch.randn(5, 3, dtype=torch.float64, generator=generator)
    p = 5e-5 * torch.randn(5, 3, dtype=torch.float64, generator=generator)
    masses = torch.full((5,), m, dtype=torch.float64)

    def action(qbar, pbar):
        return h * ((pbar * pbar).sum() / (2 * m) + k * (qbar * qbar).sum() / 2)

    guess = (h * p / m, torch.zeros_like(p))
    first = float((h * k * (q + guess[0] / 2)).abs().max()) * h / m  # only the momentum residual is nonzero
    options = SolverOptions(maxiter=1, tol=1e-30, onfail="warn", newton_fallback=False)
    with pytest.warns(RuntimeWarning, match="not solved"):
        report = solve(action, q, p, masses, h, guess, options)[2]
    assert report.residual == pytest.approx((w_dt / 2) ** 2 * first, rel=1e-10)
    report = solve(action, q, p, masses, h, guess, SolverOptions(tol=1e-12, newton_fallback=False))[2]
    assert report.converged and report.iterations == 2, report


def test_the_gpu_path_of_anderson_mixing_solves_the_same_least_squares():
    """On a GPU the mixing coefficients come from a QR factorisation made there (only the m x m factor
    goes to the host); on any device it must give lstsq's answer."""
    import torch
    from actionmd.solver import _by_qr
    generator = torch.Generator().manual_seed(0)
    d_f = torch.randn(600, 8, generator=generator, dtype=torch.float64)
    f = torch.randn(600, 1, generator=generator, dtype=torch.float64)
    expected = torch.linalg.lstsq(d_f, f).solution
    assert torch.allclose(_by_qr(d_f, f), expected, rtol=1e-10, atol=1e-12)
