"""The map's geometric properties, on the real solver and the real reference actions (float64)."""
import numpy as np
import pytest

from actionmd.action_map import ActionMap
from actionmd.reference import einstein
from actionmd.solver import SolverOptions
from actionmd.units import momenta_ase_to_model

from ref_systems import export, ne_xe_cluster, ne_xe_crystal


def state_of(atoms):
    return atoms.positions.copy(), momenta_ase_to_model(atoms.get_momenta())


def run(action_map, atoms, q, p, steps):
    types = action_map.types_of(atoms.numbers)
    for _ in range(steps):
        q, p, _ = action_map.step(q, p, types, atoms.cell.array, atoms.pbc)
    return q, p


def jacobian_symplectic_defect(action_map, atoms, h=1e-4):
    """max |J^T Ω J - Ω| of one step, J by central differences in canonical, dimensionless variables
    q~ = q sqrt(m/dt), p~ = p sqrt(dt/m), so that every entry of J is of order one."""
    q0, p0 = state_of(atoms)
    m = atoms.get_masses()[:, None]
    dt = action_map.stride
    scale_q, scale_p = np.sqrt(m / dt), np.sqrt(dt / m)
    types = action_map.types_of(atoms.numbers)
    z0 = np.concatenate([(q0 * scale_q).ravel(), (p0 * scale_p).ravel()])
    n = q0.size

    def step(z):
        q, p = z[:n].reshape(-1, 3) / scale_q, z[n:].reshape(-1, 3) / scale_p
        q, p, _ = action_map.step(q, p, types, atoms.cell.array, atoms.pbc)
        return np.concatenate([(q * scale_q).ravel(), (p * scale_p).ravel()])

    jac = np.empty((2 * n, 2 * n))
    for k in range(2 * n):
        e = np.zeros(2 * n)
        e[k] = h
        jac[:, k] = (step(z0 + e) - step(z0 - e)) / (2 * h)
    omega = np.block([[np.zeros((n, n)), np.eye(n)], [-np.eye(n), np.zeros((n, n))]])
    return np.abs(jac.T @ omega @ jac - omega).max()


@pytest.mark.parametrize("method", ["anderson", "newton"])
def test_step_is_symplectic(lj_mixture_model, method):
    action_map = ActionMap(lj_mixture_model, solver=SolverOptions(tol=1e-14, method=method, maxiter=200))
    assert jacobian_symplectic_defect(action_map, ne_xe_cluster()) < 1e-8


def test_symplecticity_check_detects_a_non_symplectic_map(lj_mixture_model):
    """Negative control: two plain fixed-point sweeps from free flight give an explicit, non-symplectic map
    (a single sweep happens to be close to leapfrog, itself symplectic, so it would be a poor control)."""
    action_map = ActionMap(lj_mixture_model, solver=SolverOptions(tol=1e-14, method="fixed_point", maxiter=2,
                                                                  onfail="warn"))
    with pytest.warns(RuntimeWarning, match="not solved"):
        assert jacobian_symplectic_defect(action_map, ne_xe_cluster()) > 1e-3


@pytest.mark.parametrize("method", ["anderson", "newton"])
def test_step_is_time_reversible(lj_mixture_model, method):
    """Forward n steps, flip momenta, n steps, flip: back to the start within ~10x tol per step."""
    tol = 1e-10
    atoms = ne_xe_crystal()
    action_map = ActionMap(lj_mixture_model, solver=SolverOptions(tol=tol, method=method))
    q0, p0 = state_of(atoms)
    for steps in (1, 10):
        q, p = run(action_map, atoms, q0, p0, steps)
        q, p = run(action_map, atoms, q, -p, steps)
        assert np.abs(q - q0).max() < 10 * tol * steps**2
        scale = atoms.get_masses()[:, None] / action_map.stride  # momentum error as a displacement
        assert np.abs((-p - p0) / scale).max() < 10 * tol * steps**2


def test_total_momentum_is_conserved_to_round_off(lj_mixture_model):
    atoms = ne_xe_crystal()
    atoms.set_momenta(atoms.get_momenta() + [0.3, -0.2, 0.1])  # a moving centre of mass
    action_map = ActionMap(lj_mixture_model)
    q0, p0 = state_of(atoms)
    q, p = run(action_map, atoms, q0, p0, 50)
    assert np.abs(p.sum(0) - p0.sum(0)).max() < 1e-12 * np.abs(p0).sum()
    # and the centre of mass moves uniformly: M dR/dt = P
    m = atoms.get_masses()[:, None]
    expected = (m * q0).sum(0) + 50 * action_map.stride * p0.sum(0)
    assert np.abs((m * q).sum(0) - expected).max() < 1e-9 * m.sum()


def einstein_system(stride, n=24, seed=0):
    """Two species on random sites; H at w dt = 2.6 (velocity Verlet unstable beyond 2), Xe at 0.9."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, 15, size=(n, 3))
    numbers = np.where(np.arange(n) % 2 == 0, 1, 54)
    omegas = np.array([2.6, 0.9]) / stride
    q = sites + rng.normal(scale=0.2, size=(n, 3))
    masses = np.where(numbers == 1, 1.008, 131.293)[:, None]
    p = rng.normal(size=(n, 3)) * np.sqrt(masses) * 0.01
    return sites, numbers, omegas, q, p, masses


@pytest.mark.parametrize("guess", ["free_flight", "predictor"])
def test_einstein_action_reproduces_the_exact_flow(model_dir, guess):
    stride = 4.0
    sites, numbers, omegas, q0, p0, masses = einstein_system(stride)
    path = model_dir / "einstein_exact.pt"
    export(einstein(["H", "Xe"], omegas, sites, stride, masses=[1.008, 131.293]), path)
    action_map = ActionMap(str(path), guess=guess)
    types = action_map.types_of(numbers)
    q, p = q0.copy(), p0.copy()
    steps = 150
    for _ in range(steps):
        q, p, report = action_map.step(q, p, types, np.zeros((3, 3)), [False] * 3)
        assert report.converged
    w = np.where(numbers == 1, omegas[0], omegas[1])[:, None]
    t = steps * stride
    x0 = q0 - sites
    x_exact = x0 * np.cos(w * t) + p0 / (masses * w) * np.sin(w * t)
    p_exact = p0 * np.cos(w * t) - masses * w * x0 * np.sin(w * t)
    assert np.abs(q - sites - x_exact).max() < 1e-8
    assert np.abs((p - p_exact) * stride / masses).max() < 1e-8
    # velocity Verlet at this stride is unstable for the light species (w dt = 2.6 > 2)
    qv, pv = q0 - sites, p0.copy()
    for _ in range(steps):
        pv = pv - 0.5 * stride * masses * w**2 * qv
        qv = qv + stride * pv / masses
        pv = pv - 0.5 * stride * masses * w**2 * qv
    assert np.abs(qv).max() > 1e3
