"""ActionLangevin: the action map between two exact Ornstein–Uhlenbeck half steps (O-map-O).

    p <- c p + sqrt((1 - c^2) m kT) xi,   c = exp(-friction * dt / 2)

The O step is exact for any friction and stride, so the thermostat adds no error of its own; with an
exact map (e.g. the Einstein action) the Boltzmann distribution is sampled exactly.
"""
from __future__ import annotations

import numpy as np
from ase import units

from .base import ActionDynamics


class ActionLangevin(ActionDynamics):
    """Langevin dynamics at long strides.

    ActionLangevin(atoms, model, temperature_K, friction, timestep=None, *, fixcm=True, rng=None, **kwargs)

    ``friction`` is in inverse ASE time units, as in ase.md.langevin.Langevin (e.g. 0.01 / units.fs).
    ``fixcm=True`` takes the centre-of-mass part (in mass-weighted space) out of each O step's change of
    the momenta, noise and friction alike, which samples the 3N-3 internal degrees of freedom and keeps
    the total momentum as it is (at zero if it starts there), also with a friction per atom.
    ``temperature_K`` and ``friction`` are numbers or one value per atom, as in ASE's Langevin.
    ``rng`` needs ``standard_normal`` (numpy Generator); default: a fresh default_rng(), so pass
    ``rng=np.random.default_rng(seed)`` for a reproducible run (np.random.seed does not reach it).
    Other keywords as for ActionVerlet.
    """

    CALL = "ActionLangevin(atoms, model, temperature_K, friction, timestep=None, ...)"

    def __init__(self, atoms, model, *positional, temperature_K=None, friction=None, timestep=None, fixcm=True,
                 rng=None, **kwargs):
        # ASE's Langevin takes (atoms, timestep, temperature...): name the order when a call mixes them up
        given = {"temperature_K": temperature_K, "friction": friction, "timestep": timestep}
        if len(positional) > len(given):
            raise TypeError(f"too many positional arguments; the call is {self.CALL}")
        for name, value in zip(given, positional):
            if given[name] is not None:
                raise TypeError(f"{name} given by position and by keyword; the call is {self.CALL}: unlike "
                                "ase.md.langevin.Langevin, the model comes second and the timestep (default: the "
                                "model's stride) last")
            given[name] = value
        temperature_K, friction, timestep = given.values()
        if temperature_K is None or friction is None:
            raise TypeError(f"ActionLangevin needs temperature_K and friction (inverse ASE time units): {self.CALL}")
        super().__init__(atoms, model, timestep, **kwargs)
        self.set_temperature(temperature_K)
        self.set_friction(friction)
        self.fixcm = fixcm
        self.rng = np.random.default_rng() if rng is None else rng

    def set_temperature(self, temperature_K=None, *, temperature=None):
        """A number, or one per atom (as ASE's Langevin): ``temperature_K`` in K, or ``temperature`` in eV."""
        if (temperature_K is None) == (temperature is None):
            raise TypeError("set_temperature takes one of temperature_K (K) or temperature (eV, as k_B T)")
        if temperature is not None:
            temperature_K = np.asarray(temperature, dtype=float) / units.kB
        self.temp = units.kB * self._per_atom_or_scalar(temperature_K, "temperature_K", "K")

    def set_friction(self, friction):
        """A number, or one per atom (as ASE's Langevin), in inverse ASE time units."""
        self.fr = self._per_atom_or_scalar(friction, "friction", "inverse ASE time units, e.g. 0.01 / units.fs")

    def _per_atom_or_scalar(self, value, name: str, unit: str):
        array = np.asarray(value, dtype=float)
        if array.ndim > 1 or (array.ndim == 1 and len(array) != len(self.atoms)):
            raise ValueError(f"{name} must be a number or one value per atom ({len(self.atoms)}), "
                             f"got shape {array.shape}")
        if not (np.isfinite(array).all() and (array >= 0).all()):
            raise ValueError(f"{name} must be finite and >= 0 ({unit}), got {value}")
        return float(array) if array.ndim == 0 else array[:, np.newaxis]

    def todict(self):
        def plain(x):
            return x.ravel().tolist() if isinstance(x, np.ndarray) else x
        return {**super().todict(), "temperature_K": plain(self.temp / units.kB), "friction": plain(self.fr),
                "fixcm": self.fixcm}

    def ornstein_uhlenbeck(self, duration):
        """Exact OU step of the momenta over ``duration`` (ASE time)."""
        atoms = self.atoms
        masses = self.masses  # shape (N, 1)
        for name, value in (("friction", self.fr), ("temperature", self.temp)):
            if np.ndim(value) and len(value) != len(atoms):
                raise ValueError(f"a per-atom {name} was set for {len(value)} atoms and the system now has "
                                 f"{len(atoms)}; set it again (set_{name})")
        c = np.exp(-self.fr * duration)
        noise = self.rng.standard_normal(size=(len(atoms), 3))
        self.comm.broadcast(noise, 0)
        kick = np.sqrt((1.0 - c * c) * masses * self.temp) * noise
        momenta = atoms.get_momenta()
        new = c * momenta + kick
        if self.fixcm:  # the whole change of total momentum, friction's too (a per-atom c changes it)
            new -= masses * (new.sum(axis=0) - momenta.sum(axis=0)) / masses.sum()
        atoms.set_momenta(new)

    def step(self, forces=None):
        self._check_atoms(self.atoms)  # before the O step, which needs the current masses
        self.ornstein_uhlenbeck(0.5 * self.dt)
        self.map_step()
        self.ornstein_uhlenbeck(0.5 * self.dt)
