"""An ASE calculator for the potential inside a reference model file (its ``potential_energy`` method).

It lets a run with the action map be checked against the very Hamiltonian it discretises, and lets
ASE's own VelocityVerlet run on exactly the same potential for comparison.
"""
from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, all_changes

from ..model_file import LoadedModel, load_model
from ..neighbors import VerletList


class PotentialCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) of a reference action's potential, in float64 on the CPU."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: str | LoadedModel, **kwargs):
        super().__init__(**kwargs)
        self.model = model if isinstance(model, LoadedModel) else load_model(model, device="cpu")
        if not hasattr(self.model.module, "potential_energy"):
            raise ValueError(f"{self.model.path}: this model has no potential_energy() method; only reference "
                             "actions (actionmd.reference) carry a potential")
        self.module = self.model.module.to(torch.float64)
        self.species = {z: t for t, z in enumerate(self.model.metadata.species)}
        self.neighbors = VerletList(self.model.metadata.cutoff, skin=0.5)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        try:
            types = torch.tensor([self.species[z] for z in self.atoms.numbers], dtype=torch.int64)
        except KeyError as err:
            raise ValueError(f"element Z={err.args[0]} is not among the model's species "
                             f"{self.model.metadata.species}") from None
        self.neighbors.update(self.atoms.positions, self.atoms.cell.array, self.atoms.pbc)
        positions = torch.tensor(self.atoms.positions, requires_grad=True)
        energy = self.module.potential_energy(positions, types, self.neighbors.edge_index,
                                              self.neighbors.edge_shifts(torch.float64))
        (grad,) = torch.autograd.grad(energy, positions)
        energy = float(energy.detach())
        self.results = {"energy": energy, "free_energy": energy, "forces": -grad.numpy()}
