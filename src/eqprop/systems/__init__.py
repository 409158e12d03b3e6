"""Energy-based physical systems: what the energy E(θ, x, s) is and which state variables it has."""

from eqprop.systems.base import EnergySystem
from eqprop.systems.hopfield import DeepHopfield

__all__ = ["DeepHopfield", "EnergySystem"]
