"""Holomorphic EqProp (Laborieux & Zenke, NeurIPS 2022): nudging with complex β on a circle gives the gradient from
the first Fourier coefficient of the nudged phases, exactly as the number of points grows."""

from __future__ import annotations

import cmath
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError, DivergenceError
from eqprop.rules.base import Estimate, Rule, has_parameters
from eqprop.solvers.base import relax
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.systems.base import EnergySystem

__all__ = ["HolomorphicEqProp"]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


@dataclass(frozen=True)
class HolomorphicEqProp(Rule):
    r"""Holomorphic EqProp: ``N`` nudged phases at ``β_j = |β|·e^{2πij/N}``, each relaxed in complex arithmetic
    from the free equilibrium, and

    .. math::
        \widehat{∇}_θ = \mathrm{Re}\,\frac{1}{N|β|} \sum_{j=0}^{N-1} e^{−2πij/N}\, ∂_θE(θ, x, s^{β_j}),

    the first Fourier coefficient of ``β ↦ ∂_θE(s^β)`` on the circle: the β-derivative at 0 up to aliasing by the
    coefficients ``N + 1, 2N + 1, …``, so the error falls geometrically with ``N`` at a fixed, finite ``|β|``.
    ``N = 2`` is centered EqProp (phases at ±|β|). Needs an energy that is holomorphic in the state
    (:class:`~eqprop.systems.SmoothHopfield`; boxed units are not) and a cost without parameters.

    Args:
        beta: the radius ``|β| > 0``.
        points: ``N >= 2``, the number of nudged phases.
    """

    kind: ClassVar[str] = "holomorphic"

    beta: float = 0.5
    points: int = 4

    def __post_init__(self) -> None:
        if (
            isinstance(self.beta, bool)
            or not isinstance(self.beta, int | float)
            or not 0 < self.beta < math.inf
        ):
            raise ConfigError(
                f"HolomorphicEqProp(beta={self.beta!r}): the radius |beta| must be a finite number > 0"
            )
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 2:
            raise ConfigError(
                f"HolomorphicEqProp(points={self.points!r}): need an integer >= 2 (2: centered EqProp)"
            )

    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if not getattr(system, "holomorphic", False):
            raise ConfigError(
                f"holomorphic EqProp relaxes with complex nudging, and the energy of {type(system).__name__} is "
                "not holomorphic in its state (boxed units: a clip has no complex continuation)",
                hint="use system.kind = 'smooth_hopfield' (a smooth activation), or rule.kind = 'eqprop'",
            )
        if has_parameters(cost):
            raise ConfigError(
                f"holomorphic EqProp: {type(cost).__name__} has parameters of its own (a readout), which this rule "
                "does not train",
                hint="use cost.kind = 'squared_error'",
            )

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        system, x = phases.system, phases.x
        n = self.points
        with torch.no_grad():
            free = phases.free
            raise_if_diverged(free)
            cdtype = _COMPLEX.get(free.state[0].dtype)
            if cdtype is None:
                raise ConfigError(
                    f"holomorphic EqProp needs float32 or float64 states, got {free.state[0].dtype}"
                )
            init = tuple(s.to(cdtype) for s in free.state)
            total: dict[str, Tensor] | None = None
            residuals = [free.stats.residual]
            for j in range(n):
                turn = cmath.exp(2j * math.pi * j / n)
                eq = relax(
                    phases.problem.with_nudging(self.beta * turn),
                    phases.nudged_solver,
                    init=init,
                    throw=False,
                )
                if not bool(eq.stats.finite.all()):  # host sync, once per phase
                    raise DivergenceError(
                        f"non-finite state in the holomorphic phase at beta = {self.beta * turn:.3g}",
                        hint="lower the radius beta or the learning rate",
                    )
                residuals.append(eq.stats.residual)
                weight = turn.conjugate() / (n * self.beta)
                g = system.param_grads(x, eq.state)
                total = (
                    {k: v * weight for k, v in g.items()}
                    if total is None
                    else {k: total[k] + v * weight for k, v in g.items()}
                )
            assert total is not None
            grads = {f"system.{k}": v.real.to(free.state[0].dtype) for k, v in total.items()}
            target = phases.target
            loss = phases.cost(free.state, target).mean()
            scores = phases.cost.predict(free.state)
        return Estimate(
            grads=grads,
            loss=loss,
            scores=scores,
            phases=(free,),
            metrics={"residual": torch.stack(residuals).amax(1)},
            final_state=free.state,
        )
