r"""The initial-value problem of a Lagrangian system: its trajectory, integrated forward by leapfrog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, SolveStats, TotalEnergy

__all__ = ["Leapfrog"]


@dataclass(frozen=True)
class Leapfrog(Solver):
    r"""The forward trajectory of a :class:`~eqprop.systems.lagrangian.MechanicalSystem` with
    ``boundary = "initial"``, from rest, by the leapfrog (velocity Verlet) scheme: the variational integrator of
    the system's discrete Lagrangian (symplectic, time-reversible). The "relaxation" is the whole integration;
    :meth:`step` is that integration with the graph kept, so backprop through this solver is BPTT.

    It has no nudged phase: adding ``β∂C/∂q`` to the forward dynamics gives the retarded response, not the
    gradient, so a nudged problem is refused with what to use instead (the Hamiltonian echo, BPTT, or fixed /
    periodic boundaries).
    """

    iterations: int = 1
    """Kept for the solver interface and ignored: one integration is the whole trajectory (its steps are the
    input's time points)."""
    tol: float | None = None
    check_every: int = 1
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "leapfrog"

    def __post_init__(self) -> None:
        self._validate()
        if self.tol is not None:
            raise ConfigError(
                f"Leapfrog(tol={self.tol}): one integration is the whole trajectory, there is nothing to converge; "
                "leave tol unset (the number of steps is the input's time points)"
            )

    def _check(self, problem: TotalEnergy) -> None:
        system = problem.system
        if not callable(getattr(system, "integrate", None)) or system.stationary:
            raise ConfigError(
                f"the leapfrog solver integrates initial-value problems, and {type(system).__name__} is not one",
                hint="use a Lagrangian system with boundary='initial'; solve fixed or periodic ones with 'newton'",
            )
        if problem.nudged:
            system.check_stationary("a nudged leapfrog phase")

    def step(self, problem: TotalEnergy, state: State) -> State:
        self._check(problem)
        return problem.system.integrate(problem.x)  # type: ignore[operator]

    def run(self, problem: TotalEnergy, state: State) -> tuple[State, SolveStats]:
        self._check(problem)
        out = problem.system.integrate(problem.x)  # type: ignore[operator]
        finite = torch.ones(problem.x.shape[0], dtype=torch.bool, device=problem.x.device)
        for s in out:
            finite &= torch.isfinite(s).flatten(1).all(1)
        residual = torch.where(finite, 0.0, torch.inf).to(problem.x.dtype)
        return out, SolveStats(iterations=1, residual=residual, converged=finite, finite=finite)
