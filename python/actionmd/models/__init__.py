"""Learned models: the action network and the direct predictor, built ready for export."""
from __future__ import annotations

import torch

from ..reference.builders import _masses, atomic_numbers_of
from .action_net import ActionNet, LearnedAction, LearnedActionWithPredictor, Predictor

__all__ = ["ActionNet", "Predictor", "LearnedAction", "LearnedActionWithPredictor", "build_learned_model",
           "scales_from_frames"]


def build_learned_model(species, stride, cutoff, *, masses=None, features=32, layers=2, radial_size=8,
                        predictor=True, predictor_layers=None, angular=False, predictor_angular=False,
                        energy_scale=1.0, momentum_scale=1.0,
                        length_scale=0.1, velocity_scale=0.01, dtype="float32", seed=0):
    """A fresh (untrained) learned model and its metadata.

    interaction_range covers the action (layers x cutoff) and the predictor, whose per-atom output also
    reads its neighbours' features ((predictor_layers + 1) x cutoff), so a parallel engine's ghost shell
    fits both. predictor_layers (default: layers) = layers - 1 keeps the range at layers x cutoff: a
    thinner ghost shell, which is most of a small LAMMPS subdomain's cost. angular adds bond-angle moments
    to the action's features (models.layers.AngularMoments), for many-body potentials such as SNAP;
    predictor_angular to the predictor's (its pair terms then read the neighbours' moments: one cutoff
    more of range; on ta-snap it did not save solver iterations, docs/training.md).
    """
    predictor_layers = layers if predictor_layers is None else int(predictor_layers)
    if predictor_layers < 0:
        raise ValueError(f"predictor_layers must be >= 0, got {predictor_layers}")
    torch.manual_seed(seed)
    numbers = atomic_numbers_of(species)
    mass_list = _masses(numbers, masses)
    mass_tensor = torch.tensor(mass_list, dtype=torch.float64)
    hyper = dict(features=features, layers=layers, radial_size=radial_size)
    action_shells = max(layers, 1 if angular else 0)  # neighbour shells the action reads
    action = ActionNet(mass_tensor, stride, cutoff, energy_scale=energy_scale, angular=bool(angular), **hyper)
    if predictor:
        module = LearnedActionWithPredictor(action, Predictor(
            mass_tensor, stride, cutoff, momentum_scale=momentum_scale, length_scale=length_scale,
            velocity_scale=velocity_scale, angular=bool(predictor_angular), **{**hyper, "layers": predictor_layers}))
        predictor_shells = max(predictor_layers, 1 if predictor_angular else 0) + 1
        interaction_range = max(action_shells, predictor_shells) * cutoff
    else:
        module = LearnedAction(action)
        interaction_range = action_shells * cutoff
    module = module.to(getattr(torch, dtype))
    metadata = dict(species=numbers, masses=mass_list, stride=float(stride), cutoff=float(cutoff),
                    interaction_range=float(interaction_range), dtype=dtype, has_predictor=predictor,
                    time_reversible=True, description="learned action (invariant message passing)",
                    architecture={"name": "actionmd.models.ActionNet", **hyper,
                                  # recorded only when it differs, so older runs' checkpoints still resume
                                  **({"predictor_layers": predictor_layers}
                                     if predictor and predictor_layers != layers else {}),
                                  **({"angular": True} if angular else {}),
                                  **({"predictor_angular": True} if predictor and predictor_angular else {}),
                                  "energy_scale": energy_scale,
                                  "momentum_scale": momentum_scale, "length_scale": length_scale,
                                  "velocity_scale": velocity_scale})
    return module, metadata


def scales_from_frames(frames, stride: float) -> dict:
    """Natural scales of the data, so that network outputs of order one mean physical sizes.

    energy_scale: rms reference force (u·Å/fs²) times 1 Å; momentum_scale: rms |dp|;
    length_scale: rms displacement beyond free flight; velocity_scale: rms speed component.
    """
    import numpy as np
    from ase.data import atomic_masses
    from ..units import EV
    dp = np.concatenate([f.next_momenta - f.momenta for f in frames])
    velocities = np.concatenate([f.momenta / atomic_masses[f.numbers][:, None] for f in frames])
    extra = np.concatenate([f.next_positions - f.positions
                            - stride * f.momenta / atomic_masses[f.numbers][:, None] for f in frames])
    forces = [f.forces for f in frames if f.forces is not None]
    force_rms = float(np.sqrt((np.concatenate(forces) ** 2).mean())) * EV if forces else float(
        np.sqrt((dp**2).mean())) / stride
    return {"energy_scale": max(force_rms, 1e-12), "momentum_scale": max(float(np.sqrt((dp**2).mean())), 1e-12),
            "length_scale": max(float(np.sqrt((extra**2).mean())), 1e-12),
            "velocity_scale": max(float(np.sqrt((velocities**2).mean())), 1e-12)}
