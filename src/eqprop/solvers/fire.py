r"""FIRE, the Fast Inertial Relaxation Engine (Bitzek, Koskinen, Gähler, Moseler & Gumbsch, PRL 97, 170201, 2006):
the minimiser that mechanical-network codes use, needing only forces."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, SolveStats, TotalEnergy

__all__ = ["Fire"]


@dataclass(frozen=True)
class Fire(Solver):
    r"""Minimise ``F = E + βC`` by damped inertial dynamics on unit masses, with the forces ``−∂F/∂s`` only.

    Each step integrates ``v += dt·f``, ``s += dt·v`` (semi-implicit Euler) after mixing the velocity toward the
    force, ``v ← (1 − α)v + α‖v‖f/‖f‖``. While the power ``P = f·v`` stays positive for more than ``n_min`` steps the
    step grows (``dt ← min(f_inc·dt, dt_max)``, ``α ← f_α·α``); the first step uphill (``P ≤ 0``) stops the motion
    (``v = 0``), shrinks the step (``dt ← f_dec·dt``) and resets ``α``. Every example of the batch keeps its own
    ``dt``, ``α`` and count. Clamped variables stay where they are (coupled learning's clamped phase).

    Convergence is force balance: the run stops once every example's largest ``|∂F/∂s|`` is within ``tol``; that
    force is the ``residual`` of the statistics (not the change of a step, which a small ``dt`` makes small).

    Args:
        iterations: steps at most.
        tol: the largest force allowed at the end (``None``: run every step).
        dt, dt_max: the initial and largest step (the largest must stay below about ``2/√λ_max`` of the
            stiffest mode, or every step goes uphill: 0.1 suits stiffnesses up to about 100).
        n_min, f_inc, f_dec, alpha, f_alpha: FIRE's constants (the paper's 5, 1.1, 0.5, 0.1, 0.99).
    """

    iterations: int = 2000
    tol: float | None = 1e-8
    dt: float = 0.02
    dt_max: float = 0.1
    n_min: int = 5
    f_inc: float = 1.1
    f_dec: float = 0.5
    alpha: float = 0.1
    f_alpha: float = 0.99
    check_every: int = 10
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "fire"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()
        for name in ("dt", "dt_max"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ConfigError(f"Fire({name}={value!r}): need a finite number > 0")
        if self.dt > self.dt_max:
            raise ConfigError(f"Fire(dt={self.dt}, dt_max={self.dt_max}): need dt <= dt_max")
        if not (0 < self.f_dec < 1 < self.f_inc and 0 < self.alpha < 1 and 0 < self.f_alpha <= 1):
            raise ConfigError("Fire: need 0 < f_dec < 1 < f_inc, 0 < alpha < 1 and 0 < f_alpha <= 1")

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        clamp = problem.clamp
        free = [k for k in range(len(problem.system.variables)) if k not in clamp]
        memory: dict[str, Tensor] = {}

        def sweep(state: State) -> State:
            grads = problem.grad(state)
            f = torch.cat([-grads[k].flatten(1) for k in free], 1)
            if not memory:
                batch = f.shape[0]
                memory["v"] = torch.zeros_like(f)
                memory["dt"] = f.new_full((batch, 1), self.dt)
                memory["alpha"] = f.new_full((batch, 1), self.alpha)
                memory["count"] = f.new_zeros((batch, 1))
            v, dt, alpha, count = memory["v"], memory["dt"], memory["alpha"], memory["count"]
            power = (f * v).sum(1, keepdim=True)
            uphill = power <= 0
            f_norm = f.norm(dim=1, keepdim=True).clamp_min(torch.finfo(f.dtype).tiny)
            mixed = (1 - alpha) * v + alpha * v.norm(dim=1, keepdim=True) * f / f_norm
            v = torch.where(uphill, torch.zeros_like(v), mixed)
            count = torch.where(uphill, torch.zeros_like(count), count + 1)
            grow = (~uphill) & (count > self.n_min)
            dt = torch.where(
                uphill, dt * self.f_dec, torch.where(grow, (dt * self.f_inc).clamp_max(self.dt_max), dt)
            )
            alpha = torch.where(
                uphill, torch.full_like(alpha, self.alpha), torch.where(grow, alpha * self.f_alpha, alpha)
            )
            v = v + dt * f
            move = dt * v
            memory.update(v=v, dt=dt, alpha=alpha, count=count)
            out = list(state)
            offset = 0
            for k in free:
                n = state[k][0].numel()
                out[k] = state[k] + move[:, offset : offset + n].reshape(state[k].shape)
                offset += n
            for k, value in clamp.items():
                out[k] = value
            return tuple(out)

        return sweep

    def _force(self, problem: TotalEnergy, state: State) -> Tensor:
        grads = problem.grad(state)
        free = [g.flatten(1) for k, g in enumerate(grads) if k not in problem.clamp]
        return torch.cat(free, 1).abs().amax(1)

    def run(self, problem: TotalEnergy, state: State) -> tuple[State, SolveStats]:
        """Up to ``iterations`` steps, stopping once every example is in force balance within ``tol``."""
        sweep = self.make_sweep(problem)
        done = 0
        for it in range(1, self.iterations + 1):
            state = sweep(state)
            done = it
            checking = self.tol is not None and it % self.check_every == 0
            if checking and bool((self._force(problem, state) <= self.tol).all()):  # host sync when checking
                break
        with torch.no_grad():
            force = self._force(problem, state)
        converged = force <= self.tol if self.tol is not None else torch.ones_like(force, dtype=torch.bool)
        finite = torch.isfinite(force)
        return state, SolveStats(iterations=done, residual=force, converged=converged, finite=finite)
