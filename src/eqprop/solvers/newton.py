r"""Stationary points, not only minima, by Newton's method: the boundary-value solver of Lagrangian systems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["Newton"]


@dataclass(frozen=True)
class Newton(Solver):
    r"""Newton's method on ``∂F/∂s = 0``, ``F = E + βC``: ``s ← s − (∂²F/∂s²)⁻¹ ∂F/∂s``, with the exact Hessian
    solve the system provides (:meth:`~eqprop.systems.EnergySystem.hessian_solve`).

    It finds the stationary point the physics reaches whatever its type: the trajectory of a Lagrangian system
    with fixed or periodic boundaries (:class:`~eqprop.systems.lagrangian.MechanicalSystem`) is a stationary point
    of the discrete action, a saddle in general, which a descent method would run away from. For a quadratic
    action one step is exact; nonlinear potentials converge quadratically from the free trajectory (the nudged
    phases start there). A quadratic cost's curvature (``β·c`` on the output) is part of the Hessian; other costs
    enter through their gradient only, and the iteration is then linearly convergent at rate ``O(β)``.

    Args:
        iterations: Newton steps (or fewer with ``tol``).
        tol: stop once every example's largest change is within ``tol``.
    """

    iterations: int = 20
    tol: float | None = None
    check_every: int = 1
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "newton"

    def __post_init__(self) -> None:
        self._validate()

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        system, x = problem.system, problem.x
        one = system.init_state(x[:1])
        probe = system.hessian_solve(x[:1], one, one)
        if probe is None:
            raise ConfigError(
                f"the newton solver needs a system that solves its Hessian exactly, and {type(system).__name__} "
                "does not",
                hint="use it for Lagrangian systems with boundary 'fixed' or 'periodic'; relax energies with "
                "block_coordinate or gradient_flow",
            )
        shift_of: Callable[[State], State] | None = None
        cost = problem.cost
        if problem.nudged and cost is not None and getattr(cost, "exact_quadratic", False):
            k = problem.nudged_index
            c = problem.beta * cost.curvature

            def shift_of(state: State) -> State:
                return tuple(
                    (s.new_full(s.shape, c) if i == k else s.new_zeros(s.shape)) for i, s in enumerate(state)
                )

        def sweep(state: State) -> State:
            g = problem.grad(state)
            z = system.hessian_solve(x, state, g, None if shift_of is None else shift_of(state))
            assert z is not None
            return tuple(s - d for s, d in zip(state, z, strict=True))

        return sweep
