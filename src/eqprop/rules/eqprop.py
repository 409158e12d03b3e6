"""Equilibrium Propagation: the gradient from two relaxations at different nudging strengths."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import ContrastRule, Estimate, cost_param_grads, raise_if_diverged
from eqprop.solvers.base import Equilibrium, Solver, solve
from eqprop.systems.base import EnergySystem

__all__ = ["EqProp"]

Variant = Literal["positive", "negative", "centered"]
VARIANTS: tuple[str, ...] = ("positive", "negative", "centered")


@dataclass(frozen=True)
class EqProp(ContrastRule):
    r"""Equilibrium Propagation (Scellier & Bengio 2017; thesis §2.3):

    .. math::
        \widehat{∇}_θ = \frac{∂_θF(θ, β_2, s^{β_2}) − ∂_θF(θ, β_1, s^{β_1})}{β_2 − β_1},
        \qquad F = E + βC

    with ``(β₁, β₂) = (0, β)`` (``"positive"``, bias O(β)), ``(−β, 0)`` (``"negative"``, bias O(β)) or
    ``(−β, +β)`` (``"centered"``, bias O(β²); Laborieux et al. 2021). The nudged phases start from the free
    equilibrium. For the system's parameters this is the local contrast of ``∂E/∂θ``; a cost with
    parameters (a readout) gets ``[β₂∂C/∂θ(s^{β₂}) − β₁∂C/∂θ(s^{β₁})]/(β₂ − β₁)``.

    Args:
        beta: the nudging strength ``β > 0``; the sign of each phase comes from ``variant``.
        variant: ``"positive"``, ``"negative"`` or ``"centered"``.

    Example:
        >>> rule = EqProp(beta=0.2, variant="centered")
        >>> est = rule.compute_gradients(net, SquaredError(), BlockCoordinate(iterations=15), x, y)
        >>> optimizer.step()
    """

    beta: float = 0.2
    variant: Variant = "centered"

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(
                f"EqProp(beta={self.beta!r}): beta must be a finite number > 0; the sign comes from `variant`"
            )
        if self.variant not in VARIANTS:
            raise ConfigError(
                f"EqProp(variant={self.variant!r}): choose 'positive', 'negative' or 'centered'"
            )

    @property
    def bias_order(self) -> int:  # type: ignore[override]
        return 2 if self.variant == "centered" else 1

    @property
    def betas(self) -> tuple[float, float]:
        b = float(self.beta)
        return {"positive": (0.0, b), "negative": (-b, 0.0), "centered": (-b, b)}[self.variant]

    def _estimate(
        self,
        system: EnergySystem,
        cost: Cost,
        solver: Solver,
        x: Tensor,
        y: Tensor,
        nudged_solver: Solver | None,
        init: State | None,
        out: dict[str, Tensor] | None,
    ) -> Estimate:
        b1, b2 = self.betas
        nudged_solver = solver if nudged_solver is None else nudged_solver
        with torch.no_grad():
            for b in (b1, b2):
                cost.check_beta(b, system)
            drive = system.prepare(x)  # shared by the three phases: θ does not change within a step
            free = solve(system, x, solver, drive=drive, throw=False, init=init)
            if y.shape[0] != x.shape[0]:
                raise ConfigError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
            target = cost.prepare_target(y, free.state[cost.target_index])  # once for both nudged phases

            def phase(b: float) -> Equilibrium:
                if b == 0.0:
                    return free
                return solve(
                    system,
                    x,
                    nudged_solver,
                    cost=cost,
                    y=y,
                    beta=b,
                    init=free.state,
                    drive=drive,
                    throw=False,
                    target=target,
                )

            lo, hi = phase(b1), phase(b2)
            phases = (free, lo, hi) if b1 != 0.0 and b2 != 0.0 else (free, hi if b1 == 0.0 else lo)
            raise_if_diverged(phases)
            scale = 1.0 / (b2 - b1)
            contrast = system.param_grad_difference(x, lo.state, hi.state, scale=scale, out=out or None)
            grads = {f"system.{n}": g for n, g in contrast.items()}
            loss = cost(free.state, target).mean()
            scores = cost.predict(free.state)
        if (cost._parameters or cost._modules) and any(True for _ in cost.parameters()):  # a readout
            with torch.enable_grad():
                objective = (b2 * cost(hi.state, target).mean() - b1 * cost(lo.state, target).mean()) * scale
                grads.update(cost_param_grads(cost, objective))
        residuals = torch.stack([eq.stats.residual for eq in phases]).amax(1)
        return Estimate(
            grads=grads,
            loss=loss,
            scores=scores,
            phases=phases,
            metrics={"residual": residuals},
        )
