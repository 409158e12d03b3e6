"""Relaxation algorithms: how the state reaches equilibrium, s* = argmin_s E + βC.

``SOLVERS`` maps a configuration's ``solver.kind`` to the solver class; each class is a frozen dataclass whose
fields are that kind's settings.
"""

from eqprop.solvers.base import Equilibrium, Solver, SolveStats, TotalEnergy, relax, solve
from eqprop.solvers.block import BlockCoordinate
from eqprop.solvers.direct import DirectSolver
from eqprop.solvers.fire import Fire
from eqprop.solvers.flow import GradientFlow
from eqprop.solvers.gibbs import GibbsSampler
from eqprop.solvers.ground_state import GroundState
from eqprop.solvers.langevin import Langevin
from eqprop.solvers.leapfrog import Leapfrog
from eqprop.solvers.newton import Newton
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.solvers.settling import Settling
from eqprop.solvers.synchronous import Synchronous

SOLVERS: dict[str, type[Solver]] = {
    cls.kind: cls
    for cls in (
        BlockCoordinate,
        DirectSolver,
        Fire,
        GibbsSampler,
        GradientFlow,
        GroundState,
        Langevin,
        Leapfrog,
        Newton,
        Settling,
        Synchronous,
    )
}
"""``solver.kind`` → solver class."""

__all__ = [
    "SOLVERS",
    "BlockCoordinate",
    "DirectSolver",
    "Equilibrium",
    "Fire",
    "GibbsSampler",
    "GradientFlow",
    "GroundState",
    "Langevin",
    "Leapfrog",
    "Newton",
    "Phases",
    "Settling",
    "SolveStats",
    "Solver",
    "Synchronous",
    "TotalEnergy",
    "raise_if_diverged",
    "relax",
    "solve",
]
