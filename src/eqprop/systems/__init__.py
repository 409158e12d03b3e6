"""Energy-based physical systems: what the energy E(θ, x, s) is and which state variables it has."""

from eqprop.systems.analog import AnalogResistive
from eqprop.systems.base import EnergySystem
from eqprop.systems.conv_hopfield import ConvHopfield
from eqprop.systems.conv_vector_field import ConvVectorField
from eqprop.systems.elastic import CentralForceNetwork
from eqprop.systems.flow_network import FlowNetwork
from eqprop.systems.hopfield import DeepHopfield
from eqprop.systems.junction import ShockleyDiode
from eqprop.systems.lagrangian import CoupledOscillators, HamiltonianRNN, MechanicalSystem, SpringChain
from eqprop.systems.netlist import Netlist, ResistiveCircuit
from eqprop.systems.phase_network import PhaseNetwork
from eqprop.systems.quantum import ObservableCost, QuantumSystem
from eqprop.systems.resistive import DeepResistive
from eqprop.systems.smooth_hopfield import SmoothHopfield
from eqprop.systems.spring_network import SpringNetwork
from eqprop.systems.vector_field import VectorFieldHopfield

__all__ = [
    "AnalogResistive",
    "CentralForceNetwork",
    "ConvHopfield",
    "ConvVectorField",
    "CoupledOscillators",
    "DeepHopfield",
    "DeepResistive",
    "EnergySystem",
    "FlowNetwork",
    "HamiltonianRNN",
    "MechanicalSystem",
    "Netlist",
    "ObservableCost",
    "PhaseNetwork",
    "QuantumSystem",
    "ResistiveCircuit",
    "ShockleyDiode",
    "SmoothHopfield",
    "SpringChain",
    "SpringNetwork",
    "VectorFieldHopfield",
]
