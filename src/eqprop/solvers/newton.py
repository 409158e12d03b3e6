r"""Stationary points, not only minima, by Newton's method: the boundary-value solver of Lagrangian systems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

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
        iterations: Newton steps at most.
        tol: stop once every example's largest change is within ``tol`` (a quadratic action: after the second step;
            ``solve`` raises if an example is still above it, and a rule logs its residual).
        backtracking: step halvings per iteration (damped Newton; see the field).
    """

    iterations: int = 50
    tol: float | None = 1e-10
    backtracking: int = 8
    """Halvings of the step allowed per iteration, for the examples whose residual ``‖∂F/∂s‖`` the full step
    would increase (damped Newton); 0: always the full step (no extra gradient evaluations)."""
    check_every: int = 1
    norm: Literal["max", "layer-l1"] = "max"
    merit: Literal["residual", "energy"] = "residual"
    """What a damped step must lower: ``"residual"`` ``‖∂F/∂s‖`` (finds saddles: the discrete action of a Lagrangian
    system), or ``"energy"`` ``F`` itself (a minimisation: a step that would raise ``F`` is halved, and one that
    still raises it after every halving is not taken, so ``F`` never increases beyond its rounding; where the Newton direction is not
    downhill, a Hessian that is not positive definite, it is shifted by ``λI`` with ``λ = ‖∂F/∂s‖``, then ×10
    (Levenberg), and after six shifts the direction falls back to the gradient)."""
    kind: ClassVar[str] = "newton"

    def __post_init__(self) -> None:
        self._validate()
        if (
            isinstance(self.backtracking, bool)
            or not isinstance(self.backtracking, int)
            or self.backtracking < 0
        ):
            raise ConfigError(f"Newton(backtracking={self.backtracking!r}): need an integer >= 0")
        if self.merit not in ("residual", "energy"):
            raise ConfigError(f"Newton(merit={self.merit!r}): choose 'residual' or 'energy'")

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        system, x = problem.system, problem.x
        shift_of: Callable[[State], State] | None = None
        cost = problem.cost
        if problem.nudged and cost is not None and getattr(cost, "exact_quadratic", False):
            k = problem.nudged_index
            c = problem.beta * cost.curvature

            def shift_of(state: State) -> State:
                return tuple(
                    (s.new_full(s.shape, c) if i == k else s.new_zeros(s.shape)) for i, s in enumerate(state)
                )

        halvings = self.backtracking

        def size(g: State) -> Tensor:
            return torch.stack([t.flatten(1).square().sum(1) for t in g]).sum(0)

        def descend(state: State, g: State, z: State) -> State:
            """A step along ``−z`` (or ``−g`` where ``z`` is no descent direction) that lowers ``F``, else none."""
            # at a residual of round-off the energy cannot tell better from worse: take the Newton step as it is
            # (the contraction that backprop through the solver differentiates), never the gradient's
            units = sum(t[0].numel() for t in g)
            settled = size(g) <= units * (1e3 * torch.finfo(g[0].dtype).eps) ** 2
            slope = sum((a * b).flatten(1).sum(1) for a, b in zip(g, z, strict=True))
            downhill = (slope > 0) | settled
            lam = torch.sqrt(sum(t.flatten(1).square().sum(1) for t in g))  # Levenberg's shift: ‖∂F/∂s‖, ×10
            for _ in range(6):
                if bool(downhill.all()):  # host sync: a Hessian that is not positive definite along the step
                    break
                shifted = system.hessian_solve(
                    x, state, g, tuple(lam.reshape((-1,) + (1,) * (t.dim() - 1)).expand_as(t) for t in g)
                )
                assert shifted is not None
                z = tuple(
                    torch.where(downhill.reshape((-1,) + (1,) * (a.dim() - 1)), a, b)
                    for a, b in zip(z, shifted, strict=True)
                )
                slope = sum((a * b).flatten(1).sum(1) for a, b in zip(g, z, strict=True))
                downhill = (slope > 0) | settled
                lam = 10 * lam
            d = tuple(
                torch.where(downhill.reshape((-1,) + (1,) * (a.dim() - 1)), a, b)
                for a, b in zip(z, g, strict=True)
            )
            before = problem.energy(state)
            # a step that changes F by round-off only is taken too: near the minimum the energies of two states
            # differ by less than their rounding, and refusing those steps would leave the state detached from
            # the Newton contraction (backprop through the solver would read no derivative)
            ceiling = before + 8 * torch.finfo(before.dtype).eps * before.abs()
            step = before.new_ones(before.shape)
            taken = torch.zeros_like(downhill)
            new = state
            for _ in range(max(halvings, 1) + 1):
                trial = tuple(
                    s - step.reshape((-1,) + (1,) * (a.dim() - 1)) * a for s, a in zip(state, d, strict=True)
                )
                lower = ((problem.energy(trial) <= ceiling) | settled) & ~taken
                new = tuple(
                    torch.where(lower.reshape((-1,) + (1,) * (t.dim() - 1)), t, n)
                    for t, n in zip(trial, new, strict=True)
                )
                taken = taken | lower
                if bool(taken.all()):  # host sync: once per trial step
                    break
                step = 0.5 * step
            return new

        def sweep(state: State) -> State:
            g = problem.grad(state)
            z = system.hessian_solve(x, state, g, None if shift_of is None else shift_of(state))
            if z is None:
                raise ConfigError(
                    f"the newton solver needs a system that solves its Hessian exactly, and {type(system).__name__} "
                    "does not",
                    hint="use it for Lagrangian systems with boundary 'fixed' or 'periodic'; relax energies with "
                    "block_coordinate or gradient_flow",
                )
            if self.merit == "energy":
                return descend(state, g, z)
            new = tuple(s - d for s, d in zip(state, z, strict=True))
            if not halvings:
                return new
            # damped Newton: halve the step of each example whose residual ‖∂F/∂s‖ grew (far from a solution the
            # full step can overshoot into another basin)
            before = size(g)
            units = sum(t[0].numel() for t in g)
            floor = (
                units * (1e3 * torch.finfo(before.dtype).eps) ** 2
            )  # a residual at round-off: nothing to damp
            step = before.new_ones(before.shape)
            for _ in range(halvings):
                worse = (size(problem.grad(new)) > before) & (before > floor)
                if not bool(worse.any()):  # host sync: once per trial step
                    break
                step = torch.where(worse, 0.5 * step, step)
                new = tuple(
                    s - step.reshape((-1,) + (1,) * (d.dim() - 1)) * d for s, d in zip(state, z, strict=True)
                )
            else:  # no halving helped: stuck at a minimum of ‖∂F/∂s‖ that is no solution; the full step escapes it
                stuck = (size(problem.grad(new)) > before) & (before > floor)
                step = torch.where(stuck, torch.ones_like(step), step)
                new = tuple(
                    s - step.reshape((-1,) + (1,) * (d.dim() - 1)) * d for s, d in zip(state, z, strict=True)
                )
            return new

        return sweep
