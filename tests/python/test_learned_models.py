"""Symmetries of the learned action and predictor, checked numerically on random (untrained) weights.

Heads that start at zero are randomised first, so every term of the model is exercised."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from actionmd.action_map import ActionMap
from actionmd.model_file import export_model, load_model
from actionmd.models import build_learned_model
from actionmd.neighbors import VerletList
from actionmd.solver import SolverOptions

from ref_systems import ne_xe_crystal


def randomised(seed=0, predictor=True, dtype="float64", angular=False):
    module, meta = build_learned_model(["Ne", "Xe"], stride=8.0, cutoff=5.0, features=16, layers=2,
                                       predictor=predictor, dtype=dtype, energy_scale=1e-3, seed=seed,
                                       angular=angular, predictor_angular=angular and predictor)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.3)
    return module, meta


def inputs(atoms, positions=None, momenta=None):
    positions = atoms.positions if positions is None else positions
    neighbors = VerletList(5.0, skin=0.5)
    neighbors.update(positions, atoms.cell.array, atoms.pbc)
    types = torch.tensor((atoms.numbers == 54).astype(np.int64))
    p = torch.tensor(atoms.get_momenta() if momenta is None else momenta)
    return torch.tensor(positions), p, types, neighbors.edge_index, neighbors.edge_shifts(torch.float64)


@pytest.fixture
def system():
    atoms = ne_xe_crystal(repeat=2, temperature_K=300)
    atoms.rattle(0.2, seed=3)
    return atoms


@pytest.mark.parametrize("angular", [False, True])
def test_action_is_invariant_under_rotation_translation_and_permutation(system, angular):
    module, _ = randomised(angular=angular)
    q, p, types, edges, shifts = inputs(system)
    reference = module(q, p, types, edges, shifts).sum()
    # rotation of everything, cell included
    rotation = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    rotated = system.copy()
    rotated.set_cell(system.cell.array @ rotation.T, scale_atoms=False)
    rotated.positions = system.positions @ rotation.T
    q_r, _, types_r, edges_r, shifts_r = inputs(rotated)
    p_r = p @ torch.tensor(rotation.T)
    assert torch.allclose(module(q_r, p_r, types_r, edges_r, shifts_r).sum(), reference, rtol=1e-12, atol=1e-14)
    # translation
    q_t, _, _, edges_t, shifts_t = inputs(system, system.positions + [1.3, -0.7, 2.2])
    assert torch.allclose(module(q_t, p, types, edges_t, shifts_t).sum(), reference, rtol=1e-12, atol=1e-14)
    # permutation of atoms
    order = np.random.default_rng(0).permutation(len(system))
    permuted = system[order]
    q_p, p_p, types_p, edges_p, shifts_p = inputs(permuted)
    assert torch.allclose(module(q_p, p_p, types_p, edges_p, shifts_p).sum(), reference, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("angular", [False, True])
def test_action_is_even_in_momenta(system, angular):
    module, _ = randomised(angular=angular)
    q, p, types, edges, shifts = inputs(system)
    assert torch.equal(module(q, p, types, edges, shifts), module(q, -p, types, edges, shifts))


@pytest.mark.parametrize("angular", [False, True])
def test_isolated_atom_is_a_free_particle(angular):
    module, _ = randomised(angular=angular)
    q = torch.tensor([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([[0.3, -0.2, 0.1], [0.0, 1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    types = torch.tensor([0, 1])
    no_edges = torch.zeros((2, 0), dtype=torch.int64)
    action = module(q, p, types, no_edges, torch.zeros((0, 3), dtype=torch.float64)).sum()
    gq, gp = torch.autograd.grad(action, (q, p))
    masses = module.action.masses[types].unsqueeze(1)
    assert torch.equal(gq, torch.zeros_like(gq))
    assert torch.allclose(gp, 8.0 * p / masses, rtol=1e-14)


@pytest.mark.parametrize("angular", [False, True])
def test_predictor_is_equivariant_and_conserves_momentum(system, angular):
    module, _ = randomised(angular=angular)
    q, p, types, edges, shifts = inputs(system)
    dq, dp = module.predict(q, p, types, edges, shifts)
    assert dp.abs().max() > 1e-3  # the randomised predictor really transfers momentum
    assert torch.abs(dp.sum(0)).max() < 1e-12 * dp.abs().sum()
    rotation = torch.tensor(Rotation.from_euler("zyx", [0.5, 0.2, -0.9]).as_matrix())
    rotated = system.copy()
    rotated.set_cell(system.cell.array @ rotation.numpy().T, scale_atoms=False)
    rotated.positions = system.positions @ rotation.numpy().T
    q_r, _, _, edges_r, shifts_r = inputs(rotated)
    dq_r, dp_r = module.predict(q_r + 5.0, p @ rotation.T, types, edges_r, shifts_r)  # and translated
    assert torch.allclose(dq_r, dq @ rotation.T, atol=1e-12)
    assert torch.allclose(dp_r, dp @ rotation.T, atol=1e-12)


def test_learned_model_exports_and_runs_in_the_map(tmp_path, system):
    module, meta = randomised(dtype="float32")
    export_model(module, tmp_path / "learned.pt", meta)
    loaded = load_model(tmp_path / "learned.pt", device="cpu")
    assert loaded.metadata.interaction_range == 15.0 and loaded.metadata.has_predictor
    action_map = ActionMap(loaded)
    p0 = system.get_momenta() * 0.01
    q, p, report = action_map.step(system.positions, p0, action_map.types_of(system.numbers), system.cell.array,
                                   system.pbc)
    assert report.converged and np.abs(p.sum(0) - p0.sum(0)).max() < 1e-5


@pytest.mark.parametrize("layers, predictor_layers, predictor_angular, expected_range",
                         [(2, 2, False, 15.0), (2, 1, False, 10.0), (1, 0, False, 5.0), (1, 0, True, 10.0)])
def test_interaction_range_bounds_what_an_atom_sees(system, layers, predictor_layers, predictor_angular,
                                                    expected_range):
    """Moving atoms beyond interaction_range of atom 0 leaves its action term and prediction unchanged,
    while moving one just inside does change them: the stated range is what the model really uses."""
    module, meta = build_learned_model(["Ne", "Xe"], stride=8.0, cutoff=5.0, features=8, layers=layers,
                                       predictor_layers=predictor_layers, predictor_angular=predictor_angular,
                                       dtype="float64", seed=1)
    assert meta["interaction_range"] == expected_range
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.3)
    big = system.repeat((3, 3, 3))  # 17 Å cells: no periodic image of atom 0 within 15 Å
    big.pbc = False
    distance = np.linalg.norm(big.positions - big.positions[0], axis=1)

    def atom0(positions):
        q, p, types, edges, shifts = inputs(big, positions=positions)
        dq, dp = module.predict(q, p, types, edges, shifts)
        return module(q, p, types, edges, shifts)[0], dq[0], dp[0]

    reference = atom0(big.positions)
    for shell, changes in [(distance > expected_range + 0.5, False),
                           ((distance > expected_range - 4.0) & (distance < expected_range - 0.5), True)]:
        moved = big.positions.copy()
        moved[shell] += 0.3 * np.random.default_rng(2).standard_normal((shell.sum(), 3))
        differences = [float((a - b).detach().abs().max()) for a, b in zip(atom0(moved), reference)]
        assert (max(differences) > 1e-9) == changes, (shell.sum(), differences)


@pytest.mark.parametrize("layers, predictor_layers, angular, predictor_angular",
                         [(2, 2, True, True), (3, 1, False, False), (1, 0, True, False), (0, 0, True, True)])
def test_owned_methods_give_the_owned_atoms_exactly_what_the_full_model_does(system, layers, predictor_layers,
                                                                            angular, predictor_angular):
    """forward_owned/predict_owned (what a LAMMPS rank calls, its owned atoms first) equal forward/predict on
    those atoms, with every gradient, also from an edge list that, like the fix's, centres edges only
    within interaction_range - cutoff of the owned atoms."""
    module, meta = build_learned_model(["Ne", "Xe"], stride=8.0, cutoff=5.0, features=8, layers=layers,
                                       predictor_layers=predictor_layers, angular=angular,
                                       predictor_angular=predictor_angular, dtype="float64", seed=2)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.3)
    module = torch.jit.script(module)
    big = system.repeat((3, 1, 1))
    big.pbc = False
    big = big[np.argsort(big.positions[:, 0])]  # owned atoms first: a slab of the cluster
    n_owned = int((big.positions[:, 0] < 12.0).sum())
    q, p, types, edges, shifts = inputs(big)
    beyond = torch.tensor(big.positions[:, 0] - 12.0)[edges[0]]  # each edge's centre past the slab, Å
    fix_edges = edges[:, beyond <= meta["interaction_range"] - meta["cutoff"] + 0.5]
    assert 0 < n_owned < len(big) and fix_edges.shape[1] < edges.shape[1]

    def evaluate(method, edge_index, n):
        qq, pp = q.clone().requires_grad_(True), p.clone().requires_grad_(True)
        edge_shifts = shifts[:edge_index.shape[1]]
        if method == "full":
            action = module(qq, pp, types, edge_index, edge_shifts)[:n]
            dq, dp = (t[:n] for t in module.predict(qq, pp, types, edge_index, edge_shifts))
        else:
            action = module.forward_owned(qq, pp, types, edge_index, edge_shifts, n)
            dq, dp = module.predict_owned(qq, pp, types, edge_index, edge_shifts, n)
        return [action.detach(), *torch.autograd.grad(action.sum(), [qq, pp]), dq.detach(), dp.detach()]

    full = evaluate("full", edges, n_owned)
    assert full[0].shape == (n_owned,) and float(full[1][n_owned:].abs().max()) > 1e-6  # ghosts feel the owned
    for edge_index in (edges, fix_edges):
        for name, a, b in zip(["S", "dS/dq", "dS/dp", "dq", "dp"], evaluate("owned", edge_index, n_owned), full):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (name, float((a - b).abs().max()))
    everyone = zip(evaluate("owned", edges, len(big)), evaluate("full", edges, len(big)))
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in everyone)
    with pytest.raises(Exception, match=r"n_owned must lie in \[0, \d+\]"):
        module.forward_owned(q, p, types, edges, shifts, len(big) + 1)


def test_learned_potential_term_as_an_ase_calculator(tmp_path, system):
    """The action network's V as an ML potential (the same-backbone speed baseline): energy in eV equals
    the per-atom V summed and converted, and forces are its exact negative gradient."""
    from actionmd.reference import PotentialCalculator
    from actionmd.units import EV
    module, meta = randomised()
    export_model(module, tmp_path / "m.pt", meta)
    atoms = system.copy()
    atoms.calc = PotentialCalculator(str(tmp_path / "m.pt"))
    q, _, types, edges, shifts = inputs(atoms)
    expected = float(module.action.potential_energy_per_atom(q, types, edges, shifts).sum()) / EV
    assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-12) and abs(expected) > 1e-6
    forces, h = atoms.get_forces(), 1e-5
    for atom, axis in [(0, 0), (3, 2)]:
        displaced = [atoms.copy() for _ in range(2)]
        for sign, a in zip((1, -1), displaced):
            a.positions[atom, axis] += sign * h
            a.calc = PotentialCalculator(str(tmp_path / "m.pt"))
        slope = (displaced[0].get_potential_energy() - displaced[1].get_potential_energy()) / (2 * h)
        assert forces[atom, axis] == pytest.approx(-slope, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("n_edges", [0, 1, 57])
def test_angular_moments_match_a_per_atom_sum_for_edges_in_any_order(n_edges):
    """The batched block layout must give A1 = sum_j w u and A2 = sum_j w (u u^T - I/3) of each atom's
    own edges, whatever order the engine lists them in (LAMMPS and vesin order them differently)."""
    from actionmd.models.layers import AngularMoments
    torch.manual_seed(0)
    n_atoms, features, radial_size = 6, 4, 5
    moments = AngularMoments(2, features, radial_size).double()
    update = moments.update
    moments.update = torch.nn.Identity()  # expose the invariants themselves
    i, j = torch.randint(0, n_atoms, (n_edges,)), torch.randint(0, n_atoms, (n_edges,))
    unit = torch.nn.functional.normalize(torch.randn(n_edges, 3, dtype=torch.float64), dim=1)
    radial = torch.rand(n_edges, radial_size, dtype=torch.float64)
    types = torch.tensor([0, 1, 1, 0, 1, 0])
    got = moments(types, i, j, unit, radial, n_atoms)
    w = (moments.filter(radial) * moments.species(types[j])).detach().numpy()
    u = unit.numpy()
    for atom in range(n_atoms):
        mine = (i == atom).numpy()
        a1 = np.einsum("ek,ea->ka", w[mine], u[mine])
        a2 = np.einsum("ek,eab->kab", w[mine], np.einsum("ea,eb->eab", u[mine], u[mine]) - np.eye(3) / 3)
        expected = np.concatenate([(a1**2).sum(1), (a2**2).sum((1, 2)), np.einsum("ka,kab,kb->k", a1, a2, a1)])
        np.testing.assert_allclose(got[atom].detach().numpy(), expected, rtol=1e-12, atol=1e-14)
    # an atom that centres no edge has zero moments, so it gets update(0) like any other (only atoms with
    # edges are computed: LAMMPS ghosts mostly centre none)
    moments.update = update
    with torch.no_grad():
        full = moments(types, i, j, unit, radial, n_atoms)
        np.testing.assert_allclose(full.numpy(), update(got).numpy(), rtol=1e-12, atol=1e-14)


def test_split_first_linear_layers_compute_the_plain_mlps_on_concatenated_features():
    """The per-edge MLPs apply their first Linear per atom (and per species pair on the first layer) and
    gather it per edge; they must equal the textbook mlp(cat[h_i, h_j, ...]) of the architecture."""
    from actionmd.models import ActionNet
    from actionmd.models.layers import Interaction
    torch.manual_seed(1)
    n_atoms, n_edges, features, radial_size = 7, 40, 6, 5
    interaction = Interaction(features, radial_size).double()
    for m in interaction.modules():  # random weights everywhere, last layers included
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight)
    i, j = torch.randint(0, n_atoms, (n_edges,)), torch.randint(0, n_atoms, (n_edges,))
    radial = torch.rand(n_edges, radial_size, dtype=torch.float64)
    types = torch.tensor([0, 2, 1, 1, 0, 2, 0])
    species = torch.randn(3, features, dtype=torch.float64)
    h = torch.randn(n_atoms, features, dtype=torch.float64)

    def textbook(h):
        messages = interaction.message(torch.cat([h[i], h[j]], dim=1)) * interaction.filter(radial)
        return h + interaction.update(torch.zeros_like(h).index_add(0, i, messages))

    torch.testing.assert_close(interaction(h, i, j, radial), textbook(h), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(interaction.from_species(species, types, i, j, radial), textbook(species[types]),
                               rtol=1e-12, atol=1e-12)

    action = ActionNet(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 10.0, 4.0, features, 1,
                       radial_size).double()
    torch.nn.init.normal_(action.momentum_head[2].weight)
    expected = action.momentum_head(torch.cat([h[i], action.encoder.embedding(types[j]), radial], dim=1))
    torch.testing.assert_close(action._momentum_coefficients(h, types, i, j, radial), expected,
                               rtol=1e-12, atol=1e-12)


def test_a_loaded_model_is_frozen_but_still_differentiable_in_positions_and_momenta(tmp_path):
    """Integrators need dS/dq and dS/dp only: the weights of a loaded model carry no gradient."""
    atoms = ne_xe_crystal()
    module, metadata = build_learned_model([10, 54], 20.0, 4.0, features=8, layers=2)
    export_model(module, tmp_path / "m.pt", metadata)
    loaded = load_model(tmp_path / "m.pt", device="cpu")
    assert not any(p.requires_grad for p in loaded.module.parameters())
    nl = VerletList(4.0, 0.5, "cpu")
    nl.update(atoms.positions, atoms.cell.array, atoms.pbc)
    types = torch.tensor([0 if z == 10 else 1 for z in atoms.numbers])
    q = torch.tensor(atoms.positions, dtype=torch.float32, requires_grad=True)
    p = torch.randn(len(atoms), 3, requires_grad=True)
    action = loaded.module(q, p, types, nl.edge_index, nl.edge_shifts(torch.float32)).sum()
    gq, gp = torch.autograd.grad(action, (q, p))
    expected = module(q, p, types, nl.edge_index, nl.edge_shifts(torch.float32)).sum()
    eq, ep = torch.autograd.grad(expected, (q, p))
    torch.testing.assert_close(gq, eq)
    torch.testing.assert_close(gp, ep)


def test_export_of_a_model_file_keeps_its_weights_and_refuses_what_it_cannot_rebuild(tmp_path, capsys):
    """`actionmd export OLD.pt -o NEW.pt` re-exports a learned file with this version's code: same metadata,
    same action; it refuses a file whose rebuilt model computes something else, and a non-learned file."""
    from actionmd.cli import main
    from actionmd.reference import lennard_jones
    module, meta = randomised(seed=5)
    export_model(module, tmp_path / "old.pt", meta)
    assert main(["export", str(tmp_path / "old.pt"), "-o", str(tmp_path / "new.pt")]) == 0
    old, new = load_model(tmp_path / "old.pt", device="cpu"), load_model(tmp_path / "new.pt", device="cpu")
    assert new.metadata == old.metadata and hasattr(new.module, "forward_owned")
    for name, weights in old.module.state_dict().items():
        assert torch.equal(weights, new.module.state_dict()[name]), name
    assert main(["export", str(tmp_path / "new.pt"), "-o", str(tmp_path / "new.pt")]) == 0  # in place
    assert load_model(tmp_path / "new.pt", device="cpu").metadata == old.metadata
    assert sorted(f.name for f in tmp_path.iterdir()) == ["new.pt", "old.pt"]

    scaled = {**meta, "architecture": {**meta["architecture"], "energy_scale": 2 * meta["architecture"]["energy_scale"]}}
    export_model(module, tmp_path / "mislabelled.pt", scaled)
    assert main(["export", str(tmp_path / "mislabelled.pt"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "computes a different action from the same weights" in capsys.readouterr().err
    pair_module, pair_meta = lennard_jones(["Ne"], epsilon=[0.003], sigma=[2.8], cutoff=7.0, stride=4.0)
    export_model(pair_module, tmp_path / "lj.pt", pair_meta)
    assert main(["export", str(tmp_path / "lj.pt"), "-o", str(tmp_path / "y.pt")]) == 2
    assert "no 'architecture' in its metadata" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()


# ---------------------------------------------------------------------------- the map of a learned model
# The reference-action tests (test_map_physics.py) cannot see a learned model's gradient bugs: a wrong
# dS/dq that leaves every value of S right (a detached unit vector, say) breaks these and nothing else.


@pytest.mark.parametrize("angular", [False, True])
def test_the_map_of_a_learned_model_is_symplectic_and_conserves_angular_momentum(tmp_path, angular):
    """Symplectic for any S: |J^T Ω J - Ω| is central-difference noise (~1e-9 at h = 1e-4). A rotation-
    invariant S conserves L = Σ q × p exactly: L' - L = -(qbar × dS/dqbar + pbar × dS/dpbar) = 0."""
    from test_map_physics import jacobian_symplectic_defect, run, state_of
    from ref_systems import ne_xe_cluster

    module, meta = randomised(angular=angular)
    path = tmp_path / "m.pt"
    export_model(module, path, meta)
    action_map = ActionMap(path, solver=SolverOptions(tol=1e-13, method="newton", maxiter=100))
    atoms = ne_xe_cluster(a=3.3)
    assert jacobian_symplectic_defect(action_map, atoms) < 1e-7
    q0, p0 = state_of(atoms)
    q, p = run(action_map, atoms, q0, p0, 20)
    assert np.abs(p - p0).max() > 1e-3 * np.abs(p0).max()  # the model does act on the atoms
    angular_momentum_0 = np.cross(q0, p0).sum(0)
    assert np.abs(np.cross(q, p).sum(0) - angular_momentum_0).max() < 1e-10 * np.abs(angular_momentum_0).max()


def test_a_learned_map_is_time_reversible_to_the_solver_tolerance(tmp_path, system):
    """S is even in p: n steps, flip momenta, n steps, flip: back to the start within ~10 tol per step."""
    from test_map_physics import run, state_of

    module, meta = randomised(angular=True)
    path = tmp_path / "m.pt"
    export_model(module, path, meta)
    tol = 1e-12
    action_map = ActionMap(path, solver=SolverOptions(tol=tol, method="newton"))
    q0, p0 = state_of(system)
    q, p = run(action_map, system, q0, p0, 10)
    q, p = run(action_map, system, q, -p, 10)
    scale = system.get_masses()[:, None] / action_map.stride  # a momentum error as a displacement
    assert np.abs(q - q0).max() < 10 * tol * 10 and np.abs((-p - p0) / scale).max() < 10 * tol * 10


def test_the_guess_changes_the_path_of_the_solve_not_its_answer(tmp_path):
    """A learned predictor far from the answer, free flight and the previous step all converge to one
    trajectory (10 steps, to ~solver tolerance)."""
    from test_map_physics import run, state_of

    module, meta = randomised(angular=True)
    path = tmp_path / "m.pt"
    export_model(module, path, meta)
    atoms = ne_xe_crystal(repeat=2, temperature_K=100, seed=1)
    q0, p0 = state_of(atoms)
    ends = {}
    for guess in ("predictor", "free_flight", "previous"):
        action_map = ActionMap(path, guess=guess, device="cpu", solver=SolverOptions(tol=1e-12, method="newton"))
        if guess == "predictor":
            types = action_map.types_of(atoms.numbers)
            q1, _, _ = action_map.step(q0, p0, types, atoms.cell.array, atoms.pbc)
            edges = action_map.neighbors
            predicted = action_map.model.module.predict(torch.tensor(q0), torch.tensor(p0), types, edges.edge_index,
                                                        edges.edge_shifts(torch.float64))[0].detach().numpy()
            assert np.abs(predicted - (q1 - q0)).max() > 1e-3  # the guess is far from the answer
            action_map = ActionMap(path, guess=guess, device="cpu", solver=SolverOptions(tol=1e-12, method="newton"))
        ends[guess] = run(action_map, atoms, q0, p0, 10)
    for guess in ("free_flight", "previous"):
        assert np.abs(ends[guess][0] - ends["predictor"][0]).max() < 1e-10
        assert np.abs(ends[guess][1] - ends["predictor"][1]).max() < 1e-10


def test_float32_and_float64_exports_of_one_model_take_the_same_steps(tmp_path, system):
    """The same weights exported in both precisions: the float32 map follows the float64 one to its own
    solver tolerance (1e-5 Å) over 5 strides, not to some looser 'close enough'."""
    from actionmd.training.config import export_from_file
    from test_map_physics import run, state_of

    module, meta = randomised(angular=True)
    export_model(module, tmp_path / "m64.pt", meta)
    export_from_file(tmp_path / "m64.pt", tmp_path / "m32.pt", dtype="float32")
    q0, p0 = state_of(system)
    ends = [run(ActionMap(tmp_path / name), system, q0, p0, 5) for name in ("m64.pt", "m32.pt")]
    scale = system.get_masses()[:, None] / 8.0  # a momentum difference as a displacement over one stride
    assert np.abs(ends[0][0] - ends[1][0]).max() < 1e-5  # measured: 4e-7
    assert np.abs((ends[0][1] - ends[1][1]) / scale).max() < 1e-5
    assert np.abs(ends[0][0] - q0).max() > 0.01  # the atoms moved
