"""An ASE calculator for the potential inside a model file.

For a reference action (its ``potential_energy`` method) it lets a run with the action map be checked
against the very Hamiltonian it discretises, and lets ASE's own VelocityVerlet run on exactly the same
potential. For a learned action it uses the potential-like term V of the action network
(``action.potential_energy_per_atom``): an ML potential with the same backbone as the action, which is
what a user would otherwise run with velocity Verlet at the reference dt (the speed comparison).
"""
from __future__ import annotations

import copy

import torch
from ase.calculators.calculator import Calculator, all_changes

from ..allocator import keep_large_buffers
from ..model_file import LoadedModel, load_model
from ..neighbors import VerletList
from ..units import EV


class PotentialCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) of a model's potential: float64 for reference actions, the model's own
    dtype (the cost of the learned backbone as it runs) for learned ones."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: str | LoadedModel, **kwargs):
        super().__init__(**kwargs)
        self.model = model if isinstance(model, LoadedModel) else load_model(model, device="cpu")
        module = self.model.module
        if hasattr(module, "potential_energy"):  # a float64 copy: the caller's module stays as it is
            self.module, self.dtype = copy.deepcopy(module).to(torch.float64), torch.float64
            self.energy = self.module.potential_energy
        elif hasattr(module, "action") and hasattr(module.action, "potential_energy_per_atom"):
            self.module, self.dtype = module, self.model.metadata.torch_dtype
            self.energy = lambda *inputs: self.module.action.potential_energy_per_atom(*inputs).sum() / EV
        else:
            raise ValueError(f"{self.model.path}: this model has no potential (neither potential_energy() nor "
                             "action.potential_energy_per_atom())")
        self.species = {z: t for t, z in enumerate(self.model.metadata.species)}
        self.device = self.model.device  # a LoadedModel may live on a GPU (load_model's default there)
        self.neighbors = VerletList(self.model.metadata.cutoff, skin=0.5, device=self.device)
        self._malloc_set = False

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if not self._malloc_set:  # as the integrators do: the same-backbone baseline runs alike
            self._malloc_set = keep_large_buffers(len(self.atoms)) or True
        try:
            types = torch.tensor([self.species[z] for z in self.atoms.numbers], dtype=torch.int64,
                                 device=self.device)
        except KeyError as err:
            raise ValueError(f"element Z={err.args[0]} is not among the model's species "
                             f"{self.model.metadata.species}") from None
        self.neighbors.update(self.atoms.positions, self.atoms.cell.array, self.atoms.pbc)
        positions = torch.tensor(self.atoms.positions, dtype=self.dtype, device=self.device, requires_grad=True)
        energy = self.energy(positions, types, self.neighbors.edge_index, self.neighbors.edge_shifts(self.dtype))
        (grad,) = torch.autograd.grad(energy, positions)
        energy = float(energy.detach())
        self.results = {"energy": energy, "free_energy": energy, "forces": -grad.double().cpu().numpy()}
