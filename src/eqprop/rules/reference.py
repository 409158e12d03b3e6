"""The exact gradient a rule's estimate is judged against, whatever the system."""

from __future__ import annotations

from torch import Tensor

from eqprop.costs import Cost
from eqprop.rules.base import Estimate
from eqprop.rules.implicit import ImplicitDiff
from eqprop.rules.unrolled import BackpropThroughSolver
from eqprop.solvers.base import Solver
from eqprop.systems.base import EnergySystem

__all__ = ["reference_gradient"]


def reference_gradient(
    system: EnergySystem, cost: Cost, solver: Solver, x: Tensor, y: Tensor
) -> tuple[Estimate, str]:
    """The exact gradient of the cost and its name: implicit differentiation at the free equilibrium, or, for a
    trajectory integrated from initial conditions (no stationary point to differentiate), BPTT through the
    integrator. Used by ``eqprop gradcheck`` and the training monitor's probe."""
    if system.stationary:
        return ImplicitDiff().gradients(
            system, cost, solver, x, y
        ), "implicit differentiation at the free equilibrium"
    return BackpropThroughSolver().gradients(system, cost, solver, x, y), "BPTT through the integrator"
