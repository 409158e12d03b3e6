"""Projected gradient flow: the continuous-time dynamics ds/dt = −∂F/∂s, discretised by Euler steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["GradientFlow"]


@dataclass(frozen=True)
class GradientFlow(Solver):
    r"""Projected Euler steps of the gradient flow: ``s ← Π_box(s − step·∂F/∂s)`` for all variables at once.

    Works for any system (autograd fallback for ``∂F/∂s``); for ``step ≤ 1/L`` (``L`` the Lipschitz constant
    of ``∂F/∂s``) each step decreases ``F``. Slower than :class:`BlockCoordinate` but closest to the
    physics of a leaky-integrator network (thesis ch. 3). A variable clamped by
    ``solve(..., clamp={k: value})`` does not move: its step returns ``value``.

    Args:
        iterations: number of Euler steps.
        step_size: the step size (``dt`` in units of the unit time constant).
        tol: stop once every example's largest change in a step is ``<= tol`` (``None`` = never).
        check_every: steps between tolerance checks (each is one host sync).
        norm: ``"max"`` (largest change of a unit, per example) or ``"layer-l1"`` (per layer, summed over
            units and batch: the AEqprop reference code's criterion).

    Example:
        >>> eq = eqprop.solve(eqprop.DeepHopfield([8, 6, 3]), torch.rand(2, 8), GradientFlow(iterations=200))
    """

    iterations: int = 100
    step_size: float = 0.2
    tol: float | None = None
    check_every: int = 10
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "gradient_flow"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()
        if not 0 < self.step_size <= 1:
            raise ConfigError(
                f"GradientFlow(step_size={self.step_size!r}): need 0 < step_size <= 1 "
                "(larger steps overshoot the unit self-curvature)"
            )

    def step(self, problem: TotalEnergy, state: State) -> State:
        if self._synchronous(problem):
            return self._synchronous_sweep(problem)(state)
        grads = problem.grad(state)
        system = problem.system
        held = problem.clamp  # clamped variables stay at their value (usually empty)
        out = []
        for k, (v, s, g) in enumerate(zip(system.variables, state, grads, strict=True)):
            out.append(held[k] if k in held else system.project(s - self.step_size * g, v))
        return tuple(out)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        if self._synchronous(problem):
            return self._synchronous_sweep(problem)
        return super().make_sweep(problem)

    def _synchronous(self, problem: TotalEnergy) -> bool:
        """Whether a step is the synchronous block update: ``step_size`` 1 on a system of unit self-curvature
        with a block minimiser, where ``s − (s − h_k + β∂C/∂s) = h_k − β∂C/∂s`` (Laborieux et al.'s dynamics)."""
        if self.step_size != 1.0 or not problem.system.has_block_minimizer:
            return False
        system = problem.system
        return all(
            isinstance(a, float) and a == 1.0
            for a in (system.block_curvature(k) for k in range(len(system.variables)))
        )

    def _synchronous_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        """``s_k ← clip(h_k)`` for every layer from the same old state (the system's fused block updates), and
        ``clip(h_k + β(l − c·s_k))`` for the nudged layer, with the cost's model ``(c, l)`` at the old state (its
        gradient there is ``c·s − l``): the projected step of size 1, with fewer kernels."""
        system = problem.system
        n = len(system.variables)
        nudged = problem.nudged_index if problem.nudged else None
        updates: list[Callable[[State], Tensor]] = []
        for k in range(n):
            if k in problem.clamp:
                value = problem.clamp[k]
                updates.append(lambda state, value=value: value)
            elif k == nudged:
                updates.append(_nudged_update(problem, k))
            else:
                updates.append(system.block_minimizer(k, problem.drive))

        def sweep(state: State) -> State:  # hot loop: every layer from the old state, one closure each
            return tuple(f(state) for f in updates)

        return sweep


def _nudged_update(problem: TotalEnergy, k: int) -> Callable[[State], Tensor]:
    system, cost, target, beta, drive = (
        problem.system,
        problem.cost,
        problem.target,
        problem.beta,
        problem.drive,
    )
    assert cost is not None and target is not None
    lo, hi = system.block_bounds(k)
    bounded = lo is not None or hi is not None

    def update(state: State) -> Tensor:
        c, lin = cost.nudge(state[k], target)
        h = system.block_field(k, state, drive) + beta * lin
        if c != 0.0:
            h = h - (beta * c) * state[k]
        return h.clamp(lo, hi) if bounded else h

    return update
