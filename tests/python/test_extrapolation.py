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
