r"""Continual EqProp (C-EP; Ernoult, Grollier, Querlioz, Bengio & Scellier 2020): the parameters move at every
step of the nudged phase, so that learning is local in time as well as in space.

Called ``CEP`` in Laborieux et al.'s code; here ``rule.kind = "continual"``, because our ``CEP`` is *centered*
EqProp (the comparative study's name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError, DivergenceError
from eqprop.rules.base import Estimate, Rule, Variant, check_beta_and_variant, has_parameters, phase_betas
from eqprop.rules.eqprop import EqProp
from eqprop.solvers.base import Solver, TotalEnergy, relax
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.systems.base import EnergySystem

__all__ = ["ContinualEqProp"]


@dataclass(frozen=True)
class ContinualEqProp(Rule):
    r"""Continual EqProp: the free phase as usual, then at every step t of each nudged phase one parameter update
    from the step's own EqProp contrast,

    .. math::
        g_t = ±\frac{∂_θE(θ_t, s^{β}_{t+1}) − ∂_θE(θ_t, s^{β}_t)}{β_2 − β_1},
        \qquad θ_{t+1} = \mathrm{optimizer}(θ_t, g_t),

    (+ for the phase at β₂, − for the phase at β₁, ``(β₁, β₂)`` from ``variant`` as in EqProp), and the next step
    of the dynamics runs with ``θ_{t+1}``. With SGD at rate η, the updates of a phase sum to η times EqProp's
    estimate after that many nudged steps, up to O(η) (the theorem of Ernoult et al. 2020: C-EP → EqProp as
    η → 0). The dynamics is one step of the nudged solver (:class:`~eqprop.GradientFlow` with ``step_size = 1``
    is Laborieux et al.'s ``σ(∂Φ/∂s)``), ``nudged_solver.iterations`` steps per phase. The centered variant runs
    the +β phase, relaxes back to the free fixed point with the free phase's solver and the updated parameters,
    then runs the −β phase (Laborieux et al.'s code, with ``--thirdphase``, relaxes back for only T2 steps: then
    the −β phase does not start at the fixed point, and the η → 0 limit is not centered EqProp).

    The updates go through the ``apply`` callback of :meth:`gradients` (the training loop's optimizer step); a
    call without one (``out=None``, e.g. a gradient probe) returns EqProp's estimate, C-EP's η → 0 limit (for C-VF,
    vector-field EqProp's, which C-VF's limit matches up to O(β)).

    With ``update="vector_field"`` (continual vector-field EqProp, C-VF; a system with backward weights, e.g.
    :class:`~eqprop.systems.VectorFieldHopfield`) each step's update is the vector-field one instead of the Hebbian
    contrast: ``∓(s_post[t+1] − s_post[t]) ⊗ s_pre[t] / (β₂ − β₁)`` for every weight, forward and backward.

    Args:
        beta: the nudging strength ``β > 0``.
        variant: ``"positive"`` (0, +β), ``"negative"`` (−β, 0) or ``"centered"`` (−β, +β).
        update: ``"hebbian"`` (C-EP) or ``"vector_field"`` (C-VF).

    Raises:
        ConfigError: a cost with parameters (a readout is not part of the dynamics: use ``squared_error``), or a
            data-parallel run (every step would need an all-reduce).
    """

    kind: ClassVar[str] = "continual"

    beta: float = 0.2
    variant: Variant = "positive"
    update: Literal["hebbian", "vector_field"] = "hebbian"

    def __post_init__(self) -> None:
        check_beta_and_variant("ContinualEqProp", self.beta, self.variant)
        if self.update not in ("hebbian", "vector_field"):
            raise ConfigError(f"ContinualEqProp(update={self.update!r}): choose 'hebbian' or 'vector_field'")

    @property
    def bias_order(self) -> int:  # type: ignore[override]
        return 2 if self.variant == "centered" else 1

    @property
    def betas(self) -> tuple[float, float]:
        return phase_betas(self.variant, self.beta)

    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if self.update == "vector_field" and not hasattr(system, "vector_field_contrast"):
            raise ConfigError(
                f"continual vector-field EqProp trains backward weights, and {type(system).__name__} has none",
                hint="use system.kind = 'vector_field', or rule.update = 'hebbian'",
            )
        if has_parameters(cost):
            raise ConfigError(
                f"ContinualEqProp updates the system's parameters during the nudged phase; {type(cost).__name__} "
                "has parameters of its own (a readout), which are not part of the dynamics",
                hint="use cost.kind = 'squared_error', or rule.kind = 'eqprop'",
            )

    def check_data_parallel(self, processes: int) -> None:
        if processes > 1:
            raise ConfigError(
                "continual EqProp updates the parameters at every step of the nudged phase: a data-parallel run "
                "would need one all-reduce per step",
                hint="run it in one process",
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
        if out is None or apply is None:  # nothing to learn with: the η → 0 limit, EqProp's estimate
            return super().gradients(
                system, cost, solver, x, y, nudged_solver=nudged_solver, init=init, out=out
            )
        self.check_physics(system)
        self.check(system, cost)
        phases = Phases(system, cost, solver, x, y, nudged_solver=nudged_solver, init=init)
        return self._learn(phases, apply)

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        if self.update == "vector_field":
            from eqprop.rules.vector_field import VectorFieldEqProp

            return VectorFieldEqProp(beta=self.beta, variant=self.variant)._estimate(phases, out)
        return EqProp(beta=self.beta, variant=self.variant)._estimate(phases, out)

    def _learn(self, phases: Phases, apply: Callable[[], None]) -> Estimate:
        system, cost, x, y = phases.system, phases.cost, phases.x, phases.y
        b1, b2 = self.betas
        spread = b2 - b1
        params = dict(system.named_parameters())
        for p in params.values():
            if p.grad is None or p.grad.shape != p.shape or p.grad.dtype != p.dtype:
                p.grad = torch.zeros_like(p)
        buffers = {n: p.grad for n, p in params.items()}
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        step = _one_step(phases.nudged_solver)
        with torch.no_grad():
            free = phases.free
            raise_if_diverged(free)
            loss = cost(free.state, phases.target).mean()
            scores = cost.predict(free.state)
            state = free.state
            for b, sign in ((b2, 1.0), (b1, -1.0)):
                if b == 0.0:
                    continue
                if sign < 0 and b2 != 0.0:  # centered: back to the free fixed point, with today's θ
                    back = TotalEnergy(system, x, cost=cost, y=y)
                    state = relax(back, phases.solver, init=state, throw=False).state
                for _ in range(phases.nudged_solver.iterations):
                    problem = TotalEnergy(system, x, cost=cost, y=y, beta=b)  # θ moved: a fresh input drive
                    new = step.step(problem, state)
                    if self.update == "vector_field":  # presynaptic activity at the step's start
                        contrast = system.vector_field_contrast  # type: ignore[attr-defined]
                        contrast(x, state, state, new, scale=sign / spread, out=buffers)
                    else:
                        system.param_grad_difference(x, state, new, scale=sign / spread, out=buffers)
                    for n, g in buffers.items():
                        total[n] += g
                    apply()
                    state = new
            if not all(bool(torch.isfinite(s).all()) for s in state):  # host sync, once per batch
                raise DivergenceError(
                    "non-finite state in continual EqProp's nudged phase; the run is diverging",
                    hint="lower the learning rate or beta",
                )
        return Estimate(
            grads={f"system.{n}": g for n, g in total.items()},
            loss=loss,
            scores=scores,
            phases=(free,),
            metrics={"residual": free.stats.residual.amax().reshape(1)},
            final_state=state,
            applied=True,
        )


def _one_step(solver: Solver) -> Solver:
    """``solver`` as one step of the dynamics."""
    return dataclasses.replace(solver, iterations=1, tol=None)  # type: ignore[type-var]
