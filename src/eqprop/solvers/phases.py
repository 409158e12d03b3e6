"""The relaxations of one training step: a free phase, then nudged or clamped phases that start from it."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import DivergenceError
from eqprop.solvers.base import Equilibrium, Solver, TotalEnergy, relax
from eqprop.systems.base import EnergySystem

__all__ = ["Phases"]


class Phases:
    """One batch's phases, as a learning rule asks for them: the free equilibrium, then relaxations nudged by
    ``β`` (or with the output clamped) that start from it.

    The batch is checked once (input shape and dtype, labels, starting state), and the input drive and the
    prepared target are computed once, the first time a phase needs them, and shared by every phase. Nothing
    here syncs with the host except :meth:`raise_if_diverged`.

    Args:
        system, cost: the model.
        solver: relaxes the free phase.
        x, y: the batch.
        nudged_solver: relaxes the nudged and clamped phases (default: ``solver``).
        init: where the free phase starts (default: the system's zero state), e.g. the state the previous
            batch left the system in (warm start).

    Example:
        >>> phases = Phases(net, SquaredError(), BlockCoordinate(iterations=15), x, y)
        >>> lo, hi = phases.nudged(-0.2), phases.nudged(0.2)       # both from phases.free
    """

    def __init__(
        self,
        system: EnergySystem,
        cost: Cost,
        solver: Solver,
        x: Tensor,
        y: Tensor,
        *,
        nudged_solver: Solver | None = None,
        init: State | None = None,
    ) -> None:
        self.system = system
        self.cost = cost
        self.solver = solver
        self.nudged_solver = solver if nudged_solver is None else nudged_solver
        self.x = x
        self.y = y
        self.init = init

    @cached_property
    def problem(self) -> TotalEnergy:
        """The free phase's total energy (β = 0). Its input drive is built in the grad mode of the first
        access: rules read it under ``torch.no_grad()``."""
        return TotalEnergy(self.system, self.x, cost=self.cost, y=self.y)

    @property
    def target(self) -> Tensor:
        """The prepared target (one-hot labels, or the float targets as given)."""
        target = self.problem.target
        assert target is not None  # a cost and labels are always given
        return target

    @cached_property
    def free(self) -> Equilibrium:
        """The free equilibrium (relaxed on first access)."""
        return relax(self.problem, self.solver, init=self.init, throw=False)

    def nudged(self, beta: float) -> Equilibrium:
        """The equilibrium nudged by ``beta``, relaxed from the free one (``beta = 0`` is the free phase)."""
        if beta == 0.0:
            return self.free
        return relax(self.problem.with_nudging(beta), self.nudged_solver, init=self.free.state, throw=False)

    def clamped(self, clamp: Mapping[int, Tensor]) -> Equilibrium:
        """The equilibrium with the variables of ``clamp`` held (``{k: value}``), relaxed from the free one."""
        problem = self.problem.with_nudging(0.0, clamp=clamp)
        return relax(problem, self.nudged_solver, init=self.free.state, throw=False)


def raise_if_diverged(*phases: Equilibrium) -> None:
    """One host sync per training step: a non-finite phase means the run is diverging."""
    finite = phases[0].stats.finite
    for eq in phases[1:]:
        finite = finite & eq.stats.finite
    if not bool(finite.all()):  # host sync, once per batch
        betas = ", ".join(f"{eq.beta:g}" for eq in phases if not bool(eq.stats.finite.all()))
        raise DivergenceError(
            f"non-finite state during relaxation (phases with beta = {betas}); the run is diverging",
            hint="lower the learning rate or beta, or check the inputs for NaN/inf",
        )
