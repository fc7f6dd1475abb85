"""Tiny actionmd model files for the LAMMPS plugin tests (format_version 1).

These stand in for the package's reference actions: an implicit-midpoint action
S = stride * H(qbar, pbar) for a Lennard-Jones H with a C2 switch, and for a
quadratic (harmonic, on-site) H whose step has a closed form.
Units: Angstrom, u, fs; energies in u*A^2/fs^2.
"""
import json
import warnings

import torch

EV = 1.0 / 103.642696562  # 1 eV in u*A^2/fs^2


class LJAction(torch.nn.Module):
    def __init__(self, stride: float, mass: float, epsilon_ev: float, sigma: float,
                 r_on: float, r_cut: float, predictor: bool = False):
        super().__init__()
        self.stride = stride
        self.register_buffer("masses", torch.tensor([mass], dtype=torch.float64))
        self.eps = epsilon_ev * EV
        self.sigma = sigma
        self.r_on = r_on
        self.r_cut = r_cut

    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        m = self.masses[types].to(positions.dtype)
        kinetic = (momenta * momenta).sum(1) / (2.0 * m)
        i = edge_index[0]
        j = edge_index[1]
        rij = positions[j] - positions[i] + edge_shifts
        r = torch.sqrt((rij * rij).sum(1))
        sr6 = (self.sigma / r) ** 6
        x = torch.clamp((r - self.r_on) / (self.r_cut - self.r_on), 0.0, 1.0)
        switch = 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)
        pair = 4.0 * self.eps * (sr6 * sr6 - sr6) * switch
        potential = torch.zeros_like(kinetic).index_add(0, i, 0.5 * pair)
        return self.stride * (kinetic + potential)


class LJActionWithPredictor(LJAction):
    @torch.jit.export
    def predict(self, positions, momenta, types, edge_index, edge_shifts):
        m = self.masses[types].to(positions.dtype).unsqueeze(1)
        return momenta / m * self.stride, torch.zeros_like(momenta)


class LJActionWithForcePredictor(LJAction):
    """Predictor = one velocity-Verlet step, with forces from autograd inside predict()."""

    @torch.jit.export
    def predict(self, positions, momenta, types, edge_index, edge_shifts):
        m = self.masses[types].to(positions.dtype).unsqueeze(1)
        q = positions.detach().requires_grad_(True)
        zero = torch.zeros_like(momenta)
        potential = self.forward(q, zero, types, edge_index, edge_shifts).sum() / self.stride
        grads = torch.autograd.grad([potential], [q])
        g = grads[0]
        assert g is not None
        force = -g
        p_half = momenta + 0.5 * self.stride * force
        return p_half / m * self.stride, self.stride * force


class HarmonicAction(torch.nn.Module):
    """S = stride * sum_i (|p_i|^2 / 2m + k |q_i|^2 / 2), absolute positions."""

    def __init__(self, stride: float, masses, ks):
        super().__init__()
        self.stride = stride
        self.register_buffer("masses", torch.tensor(masses, dtype=torch.float64))
        self.register_buffer("ks", torch.tensor(ks, dtype=torch.float64))

    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        m = self.masses[types].to(positions.dtype)
        k = self.ks[types].to(positions.dtype)
        return self.stride * ((momenta * momenta).sum(1) / (2.0 * m)
                              + 0.5 * k * (positions * positions).sum(1))


def metadata(species, masses, stride, cutoff, interaction_range=None, dtype="float64",
             has_predictor=False, **extra):
    meta = {
        "format": "actionmd",
        "format_version": 1,
        "species": list(species),
        "masses": list(masses),
        "stride": stride,
        "cutoff": cutoff,
        "interaction_range": interaction_range if interaction_range is not None else cutoff,
        "dtype": dtype,
        "has_predictor": has_predictor,
        "time_reversible": True,
        "description": "actionmd LAMMPS plugin test model",
    }
    meta.update(extra)
    return meta


def save(module, path, meta):
    """TorchScript file with actionmd.json (meta: dict, raw text, or None for none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream
        scripted = torch.jit.script(module)
        if meta is None:
            torch.jit.save(scripted, str(path))
        else:
            text = meta if isinstance(meta, str) else json.dumps(meta)
            torch.jit.save(scripted, str(path), _extra_files={"actionmd.json": text})
    return path


AR_MASS = 39.948


def lj_argon(path, stride=20.0, predictor=False, dtype="float64", **meta_overrides):
    cls = {False: LJAction, True: LJActionWithPredictor, "forces": LJActionWithForcePredictor}[predictor]
    module = cls(stride, AR_MASS, 0.0104, 3.4, 5.0, 6.5)
    if dtype == "float32":
        module = module.float()
    meta = metadata([18], [AR_MASS], stride, 6.5, dtype=dtype, has_predictor=bool(predictor))
    meta["translation_invariant"] = True  # pair distances only: the fix may move its origin
    meta.update(meta_overrides)
    return save(module, path, meta)


def harmonic(path, stride, mass, k, species=(18,)):
    """One species: mass and k are numbers; several: lists, one per species."""
    masses = list(mass) if isinstance(mass, (list, tuple)) else [mass]
    ks = list(k) if isinstance(k, (list, tuple)) else [k]
    meta = metadata(list(species), masses, stride, 0.0)  # on-site: no pair interactions
    return save(HarmonicAction(stride, masses, ks), path, meta)
