"""Reference (non-learned) actions: implicit midpoint for pair potentials, exact Einstein crystal."""
from .builders import atomic_numbers_of, einstein, harmonic_pairs, lennard_jones, morse
from .calculator import PotentialCalculator

__all__ = ["atomic_numbers_of", "einstein", "harmonic_pairs", "lennard_jones", "morse", "PotentialCalculator"]
