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
    ``fixcm=True`` projects the noise orthogonal to centre-of-mass motion in mass-weighted space, which
    samples the 3N-3 internal degrees of freedom exactly and keeps a zero total momentum at zero.
    ``rng`` needs ``standard_normal`` (numpy Generator); default: a fresh default_rng().
    Other keywords as for ActionVerlet.
    """

    def __init__(self, atoms, model, temperature_K=None, friction=None, timestep=None, *, fixcm=True, rng=None,
                 **kwargs):
        if temperature_K is None or friction is None:
            raise TypeError("ActionLangevin needs temperature_K and friction (inverse ASE time units)")
        super().__init__(atoms, model, timestep, **kwargs)
        self.set_temperature(temperature_K)
        self.set_friction(friction)
        self.fixcm = fixcm
        self.rng = np.random.default_rng() if rng is None else rng

    def set_temperature(self, temperature_K):
        if not temperature_K >= 0:
            raise ValueError(f"temperature_K must be >= 0, got {temperature_K}")
        self.temp = units.kB * temperature_K

    def set_friction(self, friction):
        if not friction >= 0:
            raise ValueError(f"friction must be >= 0 (inverse ASE time units), got {friction}")
        self.fr = friction

    def todict(self):
        return {**super().todict(), "temperature_K": self.temp / units.kB, "friction": self.fr, "fixcm": self.fixcm}

    def ornstein_uhlenbeck(self, duration):
        """Exact OU step of the momenta over ``duration`` (ASE time)."""
        atoms = self.atoms
        masses = self.masses  # shape (N, 1)
        c = np.exp(-self.fr * duration)
        noise = self.rng.standard_normal(size=(len(atoms), 3))
        self.comm.broadcast(noise, 0)
        kick = np.sqrt((1.0 - c * c) * masses * self.temp) * noise
        if self.fixcm:
            kick -= masses * kick.sum(axis=0) / masses.sum()
        atoms.set_momenta(c * atoms.get_momenta() + kick)

    def step(self, forces=None):
        self.ornstein_uhlenbeck(0.5 * self.dt)
        self.map_step()
        self.ornstein_uhlenbeck(0.5 * self.dt)
