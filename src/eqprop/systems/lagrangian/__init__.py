"""Systems whose trajectory makes an action stationary: Lagrangian EqProp and the Hamiltonian echo."""

from eqprop.systems.lagrangian.base import BOUNDARIES, OBSERVE, MechanicalSystem
from eqprop.systems.lagrangian.chain import SpringChain
from eqprop.systems.lagrangian.hamiltonian_rnn import HamiltonianRNN
from eqprop.systems.lagrangian.oscillators import CoupledOscillators

__all__ = ["BOUNDARIES", "OBSERVE", "CoupledOscillators", "HamiltonianRNN", "MechanicalSystem", "SpringChain"]
