"""eqprop: physics-grounded learning. Systems that settle to an energy minimum, trained by Equilibrium
Propagation, with exact reference gradients to check them against.

The five ideas: a *system* (its energy), a *cost*, a *solver* (how the state relaxes), a *rule* (how the
parameter updates are obtained) and a *run* (data, training loop, CLI).

Importing the package is instant: each name below is imported from its module on first use (PEP 562), so that the
command line can answer (and be interrupted) before torch has loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AgnosticEqProp": "eqprop.rules",
    "BackpropThroughSolver": "eqprop.rules",
    "BlockCoordinate": "eqprop.solvers",
    "CheckpointError": "eqprop.errors",
    "ConfigError": "eqprop.errors",
    "ContinualEqProp": "eqprop.rules",
    "AnalogResistive": "eqprop.systems",
    "ContrastiveLearning": "eqprop.rules",
    "ConvHopfield": "eqprop.systems",
    "ConvVectorField": "eqprop.systems",
    "ConvergenceError": "eqprop.errors",
    "Cost": "eqprop.costs",
    "CoupledLearning": "eqprop.rules",
    "CrossEntropyReadout": "eqprop.costs",
    "DataError": "eqprop.errors",
    "DeepHopfield": "eqprop.systems",
    "DeepResistive": "eqprop.systems",
    "DirectSolver": "eqprop.solvers",
    "DivergenceError": "eqprop.errors",
    "EnergySystem": "eqprop.systems",
    "FlowNetwork": "eqprop.systems",
    "EqProp": "eqprop.rules",
    "EqpropError": "eqprop.errors",
    "Equilibrium": "eqprop.solvers",
    "Estimate": "eqprop.rules",
    "Fire": "eqprop.solvers",
    "CentralForceNetwork": "eqprop.systems",
    "GradientFlow": "eqprop.solvers",
    "GroundState": "eqprop.solvers",
    "HolomorphicEqProp": "eqprop.rules",
    "Homeostat": "eqprop.rules",
    "HomeostaticSystem": "eqprop.rules",
    "ImplicitDiff": "eqprop.rules",
    "LinearResponse": "eqprop.rules",
    "Netlist": "eqprop.systems",
    "ObservableCost": "eqprop.systems",
    "Phases": "eqprop.solvers",
    "PhysicalSystem": "eqprop.rules",
    "QuantumSystem": "eqprop.systems",
    "ResistiveCircuit": "eqprop.systems",
    "Rule": "eqprop.rules",
    "ShockleyDiode": "eqprop.systems",
    "SmoothHopfield": "eqprop.systems",
    "SolveStats": "eqprop.solvers",
    "Solver": "eqprop.solvers",
    "SpringCoupled": "eqprop.rules",
    "Settling": "eqprop.solvers",
    "SquaredError": "eqprop.costs",
    "Synchronous": "eqprop.solvers",
    "State": "eqprop._types",
    "TotalEnergy": "eqprop.solvers",
    "Variable": "eqprop._types",
    "VectorFieldEqProp": "eqprop.rules",
    "VectorFieldHopfield": "eqprop.systems",
    "CoupledOscillators": "eqprop.systems",
    "HamiltonianRNN": "eqprop.systems",
    "MechanicalSystem": "eqprop.systems",
    "SpringChain": "eqprop.systems",
    "HamiltonianEcho": "eqprop.rules",
    "Leapfrog": "eqprop.solvers",
    "Newton": "eqprop.solvers",
    "PhaseNetwork": "eqprop.systems",
    "PhaseSquaredError": "eqprop.costs",
    "solve": "eqprop.solvers",
}
"""Public name -> the module that defines it."""

_SUBPACKAGES = ("analysis", "cli", "costs", "data", "errors", "rules", "solvers", "systems", "train")

__all__ = [
    "AgnosticEqProp",
    "AnalogResistive",
    "BackpropThroughSolver",
    "BlockCoordinate",
    "CentralForceNetwork",
    "CheckpointError",
    "ConfigError",
    "ContinualEqProp",
    "ContrastiveLearning",
    "ConvHopfield",
    "ConvVectorField",
    "ConvergenceError",
    "Cost",
    "CoupledLearning",
    "CoupledOscillators",
    "CrossEntropyReadout",
    "DataError",
    "DeepHopfield",
    "DeepResistive",
    "DirectSolver",
    "DivergenceError",
    "EnergySystem",
    "EqProp",
    "EqpropError",
    "Equilibrium",
    "Estimate",
    "Fire",
    "FlowNetwork",
    "GradientFlow",
    "GroundState",
    "HamiltonianEcho",
    "HamiltonianRNN",
    "HolomorphicEqProp",
    "Homeostat",
    "HomeostaticSystem",
    "ImplicitDiff",
    "Leapfrog",
    "LinearResponse",
    "MechanicalSystem",
    "Netlist",
    "Newton",
    "ObservableCost",
    "PhaseNetwork",
    "PhaseSquaredError",
    "Phases",
    "PhysicalSystem",
    "QuantumSystem",
    "ResistiveCircuit",
    "Rule",
    "Settling",
    "ShockleyDiode",
    "SmoothHopfield",
    "SolveStats",
    "Solver",
    "SpringChain",
    "SpringCoupled",
    "SquaredError",
    "State",
    "Synchronous",
    "TotalEnergy",
    "Variable",
    "VectorFieldEqProp",
    "VectorFieldHopfield",
    "__version__",
    "solve",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"eqprop.{name}")
    raise AttributeError(f"module 'eqprop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBPACKAGES})


if TYPE_CHECKING:  # the names, for type checkers and IDEs
    from eqprop._types import State, Variable
    from eqprop.costs import Cost, CrossEntropyReadout, PhaseSquaredError, SquaredError
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
        ContinualEqProp,
        ContrastiveLearning,
        CoupledLearning,
        EqProp,
        Estimate,
        HamiltonianEcho,
        HolomorphicEqProp,
        Homeostat,
        HomeostaticSystem,
        ImplicitDiff,
        LinearResponse,
        PhysicalSystem,
        Rule,
        SpringCoupled,
        VectorFieldEqProp,
    )
    from eqprop.solvers import (
        BlockCoordinate,
        DirectSolver,
        Equilibrium,
        Fire,
        GradientFlow,
        GroundState,
        Leapfrog,
        Newton,
        Phases,
        Settling,
        Solver,
        SolveStats,
        Synchronous,
        TotalEnergy,
        solve,
    )
    from eqprop.systems import (
        AnalogResistive,
        CentralForceNetwork,
        ConvHopfield,
        ConvVectorField,
        CoupledOscillators,
        DeepHopfield,
        DeepResistive,
        EnergySystem,
        FlowNetwork,
        HamiltonianRNN,
        MechanicalSystem,
        Netlist,
        ObservableCost,
        PhaseNetwork,
        QuantumSystem,
        ResistiveCircuit,
        ShockleyDiode,
        SmoothHopfield,
        SpringChain,
        VectorFieldHopfield,
    )
