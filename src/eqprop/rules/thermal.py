"""Thermal EqProp (thesis ch. 2, the stochastic setting): the difference of Gibbs averages of ∂E/∂θ."""

from __future__ import annotations

import dataclasses
import math
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

    With ``train.warm_start`` the chains are persistent: each batch's free chains continue from the previous batch's
    last free states (:meth:`fits_warm_start`), so a short burn-in per batch suffices once the chains have mixed.

    Args:
        beta, variant, random_sign: EqProp's.
        samples: chains per example (the estimate's noise falls as ``1/√samples``).

    Raises:
        ConfigError: ``samples`` not a positive integer.
    """

    kind: ClassVar[str] = "thermal"

    variant: Literal["positive", "negative", "centered"] = "centered"
    samples: int = 64
    check_mixing: bool = False
    """A burn-in diagnostic: every other chain of an example starts from a random state (uniform in the units'
    boxes, or on the circle for unbounded ones) instead of the common start, and the free phase's mean energy of the
    two halves is compared; if any example's halves differ by more than 5 standard errors, the sampler did not
    forget where it started and the estimate is refused (``ConvergenceError``: raise the burn-in ``iterations`` or
    the temperature). Needs ``samples >= 4``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"ThermalEqProp(samples={self.samples!r}): need an integer >= 1")
        if self.check_mixing and self.samples < 4:
            raise ConfigError(
                f"ThermalEqProp(check_mixing=True, samples={self.samples}): the burn-in diagnostic compares two "
                "halves of each example's chains: need samples >= 4"
            )

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
        if (
            init is not None and init[0].shape[0] == x.shape[0] * s
        ):  # persistent chains: each continues its own
            start: State | None = tuple(init)
        else:
            start = None if init is None else tuple(t.repeat_interleave(s, 0) for t in init)
        if self.check_mixing:
            start = _dispersed(system, many, start, s)
        est = super().gradients(
            system, cost, solver, many, labels, nudged_solver=nudged_solver, init=start, out=out, apply=apply
        )
        batch = x.shape[0]
        if self.check_mixing:
            with torch.no_grad():
                _check_mixed(est.phases[0].energy.reshape(batch, s), solver)
        # the Gibbs average of the scores
        scores = est.scores.reshape(batch, s, *est.scores.shape[1:]).mean(1)
        # the free chains' last states: with train.warm_start the next batch's chains continue them (persistent
        # chains, one per sample slot), instead of starting afresh
        chains = est.phases[0].state if est.phases else None
        return dataclasses.replace(est, scores=scores, final_state=chains, phases=())

    def fits_warm_start(self, warm: State | None, x: Tensor) -> bool:
        """Persistent chains: the previous batch's free chains (``samples`` per example) start this batch's."""
        return warm is not None and warm[0].shape[0] == x.shape[0] * self.samples

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


def _dispersed(system: EnergySystem, many: Tensor, start: State | None, samples: int) -> State:
    """The chains' starting states, every other chain of an example at a random state instead of the common one:
    random ±1 spins for units boxed to [−1, 1], uniform in other boxes, on the circle for unbounded units."""
    base = system.init_state(many) if start is None else start
    odd = (torch.arange(many.shape[0], device=many.device) % samples % 2 == 1).reshape(-1, 1)
    out = []
    for v, b in zip(system.variables, base, strict=True):
        u = torch.rand_like(b)
        lo, hi = v.bounds
        r = 2 * math.pi * u if lo is None or hi is None else lo + (hi - lo) * u
        if v.bounds == (-1, 1):  # spins (1.0 == 1): a random ±1 configuration
            r = torch.where(u < 0.5, -1.0, 1.0).to(b.dtype)
        out.append(torch.where(odd.reshape(-1, *([1] * (b.dim() - 1))), r, b))
    return tuple(out)


def _check_mixed(energy: Tensor, solver: Solver) -> None:
    """Raise if the two halves of some example's chains (common start, random start) still differ in mean free
    energy by more than 5 standard errors (one host sync)."""
    from eqprop.errors import ConvergenceError

    a, b = energy[:, 0::2], energy[:, 1::2]
    gap = (a.mean(1) - b.mean(1)).abs()
    se = (a.var(1) / a.shape[1] + b.var(1) / b.shape[1]).sqrt()
    bad = gap > 5 * se + 1e-9 * energy.abs().amax()
    if bool(bad.any()):
        worst = float((gap / se.clamp_min(1e-300)).max())
        raise ConvergenceError(
            f"the sampler did not mix: for {int(bad.sum())} of {len(bad)} examples, chains started at random end at "
            f"another mean free energy than chains from the common start ({worst:.1f} standard errors apart) after "
            f"{solver.iterations} sweeps",
            hint="raise the solver's iterations (the burn-in) or its temperature",
        )
