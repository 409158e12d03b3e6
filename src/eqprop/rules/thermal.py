"""Thermal EqProp (thesis ch. 2, the stochastic setting): the difference of Gibbs averages of ∂E/∂θ."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate, has_parameters
from eqprop.rules.eqprop import EqProp
from eqprop.solvers.base import Solver, relax
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.systems.base import EnergySystem

__all__ = ["ThermalEqProp"]


@dataclass(frozen=True)
class ThermalEqProp(EqProp):
    r"""EqProp on a system at temperature ``T``: states drawn from the Gibbs distributions ``∝ exp(−(E + βC)/T)``
    of the free and nudged phases, and

    .. math::
        \widehat{∇}_θ = \frac{⟨∂E/∂θ⟩_{β_2} − ⟨∂E/∂θ⟩_{β_1}}{β_2 − β_1} \;\xrightarrow[β → 0]{}\; ∇_θ ⟨C⟩_{β=0},

    the gradient of the *expected* cost under the free Gibbs distribution (the stochastic EqProp theorem:
    ``d/dβ ⟨∂E/∂θ⟩_β = −Cov(∂E/∂θ, C)/T = ∂⟨C⟩/∂θ``). The averages run over ``samples`` independent chains per
    example (the batch is repeated), each relaxed by the solver, a sampler such as :class:`~eqprop.solvers.Langevin`
    (the nudged chains start from the free ones' last states). With a deterministic solver, or at ``T = 0``, every
    chain is the same and this is EqProp.

    Args:
        beta, variant, random_sign: EqProp's.
        samples: chains per example (the estimate's noise falls as ``1/√samples``).

    Raises:
        ConfigError: ``samples`` not a positive integer.
    """

    kind: ClassVar[str] = "thermal"

    variant: Literal["positive", "negative", "centered"] = "centered"
    samples: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"ThermalEqProp(samples={self.samples!r}): need an integer >= 1")

    def gradients(
        self,
        system: EnergySystem,
        cost: Cost,
        solver: Solver,
        x: Tensor,
        y: Tensor,
        *,
        nudged_solver: Solver | None = None,
        init: State | None = None,
        out: Literal["grad"] | None = None,
        apply: Callable[[], None] | None = None,
    ) -> Estimate:
        s = self.samples
        many = x.repeat_interleave(s, 0)
        labels = y.repeat_interleave(s, 0)
        start = None if init is None else tuple(t.repeat_interleave(s, 0) for t in init)
        est = super().gradients(
            system, cost, solver, many, labels, nudged_solver=nudged_solver, init=start, out=out, apply=apply
        )
        batch = x.shape[0]
        # the Gibbs average of the scores
        scores = est.scores.reshape(batch, s, *est.scores.shape[1:]).mean(1)
        return dataclasses.replace(est, scores=scores, final_state=None, phases=())

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        """EqProp's estimate with coupled phases: both nudged chains (the β = 0 one too, for a one-sided
        variant) continue each free chain from its last state with the *same* noise (common random numbers), so
        their difference carries the effect of β and little of the noise: the estimate's variance stays O(1) as
        β → 0 instead of growing as 1/β²."""
        b1, b2 = self.draw_betas()
        cost = phases.cost
        if has_parameters(cost):
            raise ConfigError(
                "ThermalEqProp trains the system's parameters; a cost with parameters (a readout) is not supported",
                hint="use cost.kind = 'squared_error'",
            )
        with torch.no_grad():
            free = phases.free
            rng = torch.get_rng_state()
            lo = relax(phases.problem.with_nudging(b1), phases.nudged_solver, init=free.state, throw=False)
            torch.set_rng_state(rng)  # the same noise for the second phase
            hi = relax(phases.problem.with_nudging(b2), phases.nudged_solver, init=free.state, throw=False)
            raise_if_diverged(free, lo, hi)
            scale = 1.0 / (b2 - b1)
            contrast = phases.system.param_grad_difference(phases.x, lo.state, hi.state, scale=scale, out=out)
            grads = {f"system.{n}": g for n, g in contrast.items()}
            loss = cost(free.state, phases.target).mean()
            scores = cost.predict(free.state)
        residuals = torch.stack([eq.stats.residual for eq in (free, lo, hi)]).amax(1)
        return Estimate(
            grads=grads, loss=loss, scores=scores, phases=(free, lo, hi), metrics={"residual": residuals}
        )
