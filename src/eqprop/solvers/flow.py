"""Projected gradient flow: the continuous-time dynamics ds/dt = −∂F/∂s, discretised by Euler steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

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
        grads = problem.grad(state)
        system = problem.system
        held = problem.clamp  # clamped variables stay at their value (usually empty)
        out = []
        for k, (v, s, g) in enumerate(zip(system.variables, state, grads, strict=True)):
            out.append(held[k] if k in held else system.project(s - self.step_size * g, v))
        return tuple(out)
