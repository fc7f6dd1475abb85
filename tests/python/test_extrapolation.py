"""Where a model extrapolates: the closest pairs of its training data, recorded and watched."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from actionmd.ase import ActionVerlet
from actionmd.extrapolation import ExtrapolationWarning, closest_pairs
from actionmd.reference import lennard_jones

from ref_systems import NE_XE, export, ne_xe_crystal


def test_closest_pairs_are_found_per_species_pair_across_periodic_images():
    # a 10 Å cube: Ne-Ne closest through the boundary (0.5 + 1.0 = 1.5 Å), Ne-Xe 2 Å, no Xe-Xe pair
    segment = SimpleNamespace(atomic_numbers=np.array([10, 10, 54]), cell=np.eye(3) * 10.0,
                              positions=np.array([[[0.5, 5, 5], [9.0, 5, 5], [2.5, 5, 5]],
                                                  [[0.5, 5, 5], [7.0, 5, 5], [2.8, 5, 5]]]))
    assert closest_pairs([segment], cutoff=4.0) == pytest.approx({"10-10": 1.5, "10-54": 2.0})


def test_a_run_that_goes_closer_than_the_training_data_is_warned_of_once(tmp_path):
    module, meta = lennard_jones(**NE_XE, cutoff=8.0, stride=8.0)
    meta["training_range"] = {"closest_pair": {"10-10": 3.0, "10-54": 3.2, "54-54": 3.5}}
    model = export((module, meta), tmp_path / "ranged.pt")
    atoms = ne_xe_crystal()  # nearest neighbours ~3.96 Å apart
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        ActionVerlet(atoms, model).run(2)
    squeezed = ne_xe_crystal()
    squeezed.positions[1] = squeezed.positions[0] + [2.9, 0, 0]  # Xe 1 moved into the Ne shell: 2.5-2.9 Å
    dyn = ActionVerlet(squeezed, model)
    with pytest.warns(ExtrapolationWarning, match=r"step 0: atoms \d+ and \d+ are 2\.\d+ Å apart, closer than any "
                                                  r"Ne–Xe pair in the model's training data \(3\.200 Å\)") as caught:
        dyn.run(3)
    assert sum(issubclass(w.category, ExtrapolationWarning) for w in caught) == 1  # once per run


def test_a_model_without_a_training_range_is_not_watched(lj_mixture_model):
    squeezed = ne_xe_crystal()
    squeezed.positions[1] = squeezed.positions[0] + [2.9, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        ActionVerlet(squeezed, lj_mixture_model).run(1)


def _two_atoms(distance):
    return np.array([[5.0, 5.0, 5.0], [5.0 + distance, 5.0, 5.0]]), np.array([10, 54])


def test_the_warning_starts_below_the_margin_of_the_training_minimum():
    """Training minimum 3.2 Å for Ne–Xe, MARGIN 0.95: 3.1 Å (0.969 of it) is normal, 3.0 Å (0.9375) warns."""
    from actionmd.extrapolation import MARGIN, ClosestPairWatch

    assert MARGIN == 0.95
    training = {"closest_pair": {"10-10": 3.0, "10-54": 3.2, "54-54": 3.5}}
    positions, numbers = _two_atoms(3.1)
    assert ClosestPairWatch(training).check(positions, numbers, np.eye(3) * 20.0, [True] * 3) is None
    positions, numbers = _two_atoms(3.0)
    message = ClosestPairWatch(training).check(positions, numbers, np.eye(3) * 20.0, [True] * 3)
    assert message is not None and "atoms 0 and 1 are 3.000 Å apart" in message and "(3.200 Å)" in message


def test_closest_pairs_match_a_brute_force_search_in_a_triclinic_cell():
    """15 random Ne/Xe atoms, 3 frames: the minimum over the 27 nearest periodic images of every pair."""
    import itertools

    rng = np.random.default_rng(0)
    cell = np.array([[9.0, 0, 0], [2.0, 9.0, 0], [1.0, 1.5, 9.0]])  # half the smallest width > cutoff
    numbers = np.array([10] * 8 + [54] * 7)
    positions = rng.uniform(0, 1, (3, 15, 3)) @ cell
    cutoff = 4.4
    shifts = np.array(list(itertools.product([-1, 0, 1], repeat=3))) @ cell
    expected = {}
    for frame in positions:
        for i, j in itertools.combinations(range(15), 2):
            d = np.linalg.norm(frame[j] - frame[i] + shifts, axis=1).min()
            if d < cutoff:
                key = f"{min(numbers[i], numbers[j])}-{max(numbers[i], numbers[j])}"
                expected[key] = min(expected.get(key, np.inf), d)
    segment = SimpleNamespace(atomic_numbers=numbers, cell=cell, positions=positions)
    got = closest_pairs([segment], cutoff=cutoff)
    assert set(got) == {"10-10", "10-54", "54-54"} == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=0, abs=1e-12), key
