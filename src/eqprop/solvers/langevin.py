r"""Langevin dynamics: samples of the Gibbs distribution ``p(s) ∝ exp(−F(s)/T)`` instead of its minimum."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["Langevin"]


@dataclass(frozen=True)
class Langevin(Solver):
    r"""Projected Euler–Maruyama steps of the overdamped Langevin equation at temperature ``T``:

    .. math::
        s ← Π\big(s − η\,∂F/∂s + \sqrt{2ηT}\,ξ\big), \qquad ξ \sim N(0, I),

    whose stationary distribution is the Gibbs distribution ``∝ exp(−F/T)`` (up to the discretisation's O(η) bias;
    ``Π`` reflects nothing: units that hit their box are held on it). ``iterations`` steps from the starting state:
    the first ones are the burn-in, the last state is one sample per example. Run many chains (repeat the batch) to
    average over the distribution: :class:`~eqprop.rules.ThermalEqProp` does. At ``temperature = 0`` it is
    :class:`~eqprop.GradientFlow` exactly. The noise comes from torch's global generator (a run's seed fixes it).

    Args:
        temperature: ``T >= 0``, in the energy's units.
        step_size: ``η`` (the same bound as gradient flow's: ``η ≤ 1`` for unit curvature).
        iterations: steps per relaxation (burn-in included).
        tol, check_every, norm: as :class:`~eqprop.GradientFlow` (a sampler does not settle: leave ``tol`` unset).
    """

    temperature: float = 0.01
    step_size: float = 0.1
    iterations: int = 200
    tol: float | None = None
    check_every: int = 10
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "langevin"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not (0 <= t < math.inf):
            raise ConfigError(f"Langevin(temperature={t!r}): need a finite number >= 0")
        if not 0 < self.step_size <= 1:
            raise ConfigError(f"Langevin(step_size={self.step_size!r}): need 0 < step_size <= 1")

    def step(self, problem: TotalEnergy, state: State) -> State:
        grads = problem.grad(state)
        system = problem.system
        held = problem.clamp
        eta = self.step_size
        scale = math.sqrt(2.0 * eta * self.temperature)
        out = []
        for k, (v, s, g) in enumerate(zip(system.variables, state, grads, strict=True)):
            if k in held:
                out.append(held[k])
                continue
            new = s - eta * g
            if scale > 0:
                new = new + scale * torch.randn_like(s)
            out.append(system.project(new, v))
        return tuple(out)
