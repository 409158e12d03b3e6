"""eqprop: physics-grounded learning. Systems that settle to an energy minimum, trained by Equilibrium
Propagation, with exact reference gradients to check them against.

The five ideas: a *system* (its energy), a *cost*, a *solver* (how the state relaxes), a *rule* (how the
parameter updates are obtained) and a *run* (data, training loop, CLI).
"""

from eqprop._types import State, Variable
from eqprop.costs import Cost, CrossEntropyReadout, SquaredError
from eqprop.errors import (
    CheckpointError,
    ConfigError,
    ConvergenceError,
    DataError,
    DivergenceError,
    EqpropError,
)
from eqprop.rules import (
    AgnosticEqProp,
    BackpropThroughSolver,
    ContrastiveLearning,
    CoupledLearning,
    EqProp,
    Estimate,
    Homeostat,
    HomeostaticSystem,
    ImplicitDiff,
    PhysicalSystem,
    Rule,
    SpringCoupled,
)
from eqprop.solvers import (
    BlockCoordinate,
    Equilibrium,
    GradientFlow,
    Phases,
    Solver,
    SolveStats,
    TotalEnergy,
    solve,
)
from eqprop.systems import ConvHopfield, DeepHopfield, DeepResistive, EnergySystem, Netlist, ResistiveCircuit

__version__ = "0.1.0"

__all__ = [
    "AgnosticEqProp",
    "BackpropThroughSolver",
    "BlockCoordinate",
    "CheckpointError",
    "ConfigError",
    "ContrastiveLearning",
    "ConvHopfield",
    "ConvergenceError",
    "Cost",
    "CoupledLearning",
    "CrossEntropyReadout",
    "DataError",
    "DeepHopfield",
    "DeepResistive",
    "DivergenceError",
    "EnergySystem",
    "EqProp",
    "EqpropError",
    "Equilibrium",
    "Estimate",
    "GradientFlow",
    "Homeostat",
    "HomeostaticSystem",
    "ImplicitDiff",
    "Netlist",
    "Phases",
    "PhysicalSystem",
    "ResistiveCircuit",
    "Rule",
    "SolveStats",
    "Solver",
    "SpringCoupled",
    "SquaredError",
    "State",
    "TotalEnergy",
    "Variable",
    "__version__",
    "solve",
]
