"""Agnostic Equilibrium Propagation: learning by homeostatic control of the parameters, without gradients.

Reference: B. Scellier, S. Mishra, Y. Bengio, Y. Ollivier, "Agnostic Physics-Driven Deep Learning" (2022);
notes in ``research/aeqprop.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError, ConvergenceError, DivergenceError
from eqprop.physical import PhysicalSystem, SpringCoupled
from eqprop.rules.base import Estimate, Rule, raise_if_diverged
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem

__all__ = ["AgnosticEqProp", "agnostic_step"]

Mode = Literal["optimistic", "pessimistic", "centered"]
MODES: tuple[str, ...] = ("optimistic", "pessimistic", "centered")


def _nudgings(mode: str, beta: float) -> tuple[float, float]:
    return {"optimistic": (0.0, beta), "pessimistic": (-beta, 0.0), "centered": (-beta / 2, beta / 2)}[mode]


def _largest(tensors: Iterable[Tensor]) -> float:
    """The largest absolute entry over ``tensors`` (one pass each, one host sync)."""
    return float(torch.stack([torch.linalg.vector_norm(t, ord=math.inf) for t in tensors]).max())


def agnostic_step(
    physical: PhysicalSystem,
    beta1: float,
    beta2: float,
    *,
    parameter_iterations: int = 1,
    controller_iterations: int = 10,
    controller_rtol: float = 1e-5,
    free_phase: bool = True,
) -> dict[str, Tensor]:
    """One AEqprop step on a black-box physical system; returns the parameter displacement ``θ' − θ``.

    Only the :class:`PhysicalSystem` interface is used: relaxations, knob moves, nudging changes and
    measurements. No energy, force or gradient is ever asked for.

    1. Free phase: relax at ``β = 0`` (parameters held); skipped with ``free_phase=False`` when the system
       already sits at its free equilibrium.
    2. Phase 1: relax at ``β₁``; the homeostatic controller then moves the knobs until the released
       parameters stay where they are (a unit-gain proportional controller on their drift: exact after two
       rounds for a linear spring, plus one to see it stay, geometric otherwise). It stops once θ is back
       and at rest, within ``controller_rtol`` of the first drift, and raises :class:`ConvergenceError` if that takes more than
       ``controller_iterations`` rounds (θ would not be at rest, and the step would be wrong).
    3. Phase 2: knobs clamped, nudging ``β₂``; states and parameters settle together
       (``parameter_iterations`` rounds of "states relax, then parameters relax").
    """
    if free_phase:
        physical.set_nudging(0.0)
        physical.relax()
    theta0 = physical.read_parameters()
    physical.set_nudging(beta1)
    physical.relax()
    first, previous = None, theta0
    for _ in range(controller_iterations):  # homeostatic control: cancel the drift of the released θ
        physical.relax(states=False, parameters=True)
        theta = physical.read_parameters()
        drift = {n: theta[n] - theta0[n] for n in theta}
        worst = _largest(drift.values())  # host sync: the controller's sensor
        first = worst if first is None else first
        # θ is back where it was and stays there (it did not move in this round): the knobs hold it at rest
        if (
            worst <= controller_rtol * first
            and _largest(theta[n] - previous[n] for n in theta) <= controller_rtol * first
        ):
            break
        knobs = physical.read_knobs()
        physical.set_knobs({n: knobs[n] - drift[n] for n in knobs})
        previous = theta
    else:
        raise ConvergenceError(
            f"the homeostatic controller left the parameters drifting by {worst:.3g} (first drift "
            f"{first:.3g}) after {controller_iterations} rounds",
            hint="raise controller_iterations, or let the parameters settle further per relaxation "
            "(parameter_relaxation='exact', or more flow_steps / a larger flow_step_size)",
        )
    physical.set_nudging(beta2)
    for _ in range(parameter_iterations):
        physical.relax()
        physical.relax(states=False, parameters=True)
    return {n: p - theta0[n] for n, p in physical.read_parameters().items()}


@dataclass(frozen=True)
class AgnosticEqProp(Rule):
    r"""Agnostic EqProp (AEqprop): parameters are physical variables held by springs ``‖θ − u‖²/(2ε)`` to knobs.

    Phase 1 relaxes at ``β₁`` and a homeostatic controller sets the knobs so that θ is at rest; phase 2 clamps
    the knobs, nudges at ``β₂`` and lets the states and θ settle together. The displacement of θ is the
    learning step: to first order ``Δθ = −ε(β₂ − β₁)·ĝ_EqProp``, i.e. SGD with learning rate ``ε·β``.
    Modes: ``optimistic`` (0, β), ``pessimistic`` (−β, 0), ``centered`` (−β/2, +β/2) — so ``β₂ − β₁ = β``
    in every mode (bias O(β) one-sided, O(β²) centered).

    As a :class:`Rule` it returns the *equivalent gradient* ``−Δθ/(ε·β)`` and leaves θ where it was, so that
    it can be compared with the other rules; ``torch.optim.SGD`` with ``lr = ε·β`` per tensor (what the
    training loop builds for this rule) then applies exactly the physical step.

    Args:
        beta: nudging ``β > 0`` (the paper's official runs use 0.5, centered).
        mode: ``"optimistic"``, ``"pessimistic"`` or ``"centered"``.
        epsilon: spring compliance per parameter tensor (a number for all, or a mapping from
            ``system.named_parameters()`` names); the paper calls it the learning rate.
        epsilon_scale: multiplies every ``ε`` (the training loop uses it for ε's per-epoch decay).
        parameter_iterations: rounds of joint (states, parameters) relaxation in phase 2 (1 in the paper's code).
        parameter_relaxation: ``"exact"`` closed form, or ``"flow"``: ``flow_steps`` Euler steps of the
            parameters' gradient flow (parameters that do not fully settle).
        controller_iterations, controller_rtol: the homeostatic controller's budget, and its tolerance on θ's
            drift relative to the first drift it measures.

    Example:
        >>> rule = AgnosticEqProp(beta=0.5, mode="centered", epsilon={"weights.0": 0.1, ...})
        >>> est = rule.gradients(net, SquaredError(), BlockCoordinate(100, tol=1e-3), x, y)
    """

    beta: float = 0.5
    mode: Mode = "centered"
    epsilon: float | Mapping[str, float] = field(default=0.05)
    epsilon_scale: float = 1.0
    parameter_iterations: int = 1
    parameter_relaxation: Literal["exact", "flow"] = "exact"
    flow_steps: int = 10
    flow_step_size: float = 0.5
    controller_iterations: int = 10
    controller_rtol: float = 1e-5

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"AgnosticEqProp(beta={self.beta!r}): need a finite beta > 0")
        if self.mode not in MODES:
            raise ConfigError(f"AgnosticEqProp(mode={self.mode!r}): choose one of {', '.join(MODES)}")
        if self.parameter_iterations < 1 or self.controller_iterations < 3:
            raise ConfigError(
                "AgnosticEqProp: parameter_iterations must be >= 1 and controller_iterations >= 3 "
                "(the controller measures the drift, cancels it, and confirms θ stays at rest)"
            )
        if not 0 < self.controller_rtol < 1:
            raise ConfigError(f"AgnosticEqProp(controller_rtol={self.controller_rtol!r}): need 0 < rtol < 1")
        eps = self.epsilon.values() if isinstance(self.epsilon, Mapping) else [self.epsilon]
        if any(not (isinstance(e, int | float) and e > 0) for e in eps) or not self.epsilon_scale > 0:
            raise ConfigError(f"AgnosticEqProp(epsilon={self.epsilon!r}): every epsilon must be > 0")

    @property
    def bias_order(self) -> int:  # type: ignore[override]
        return 2 if self.mode == "centered" else 1

    @property
    def nudgings(self) -> tuple[float, float]:
        return _nudgings(self.mode, float(self.beta))

    def epsilons(self, system: EnergySystem) -> dict[str, float]:
        """``ε`` of every parameter tensor of ``system`` (times ``epsilon_scale``)."""
        names = [n for n, _ in system.named_parameters()]
        if isinstance(self.epsilon, Mapping):
            missing = [n for n in names if n not in self.epsilon]
            if missing:
                raise ConfigError(
                    f"AgnosticEqProp: no epsilon for {missing}",
                    hint=f"give one for each of {', '.join(names)}",
                )
            return {n: float(self.epsilon[n]) * self.epsilon_scale for n in names}
        return {n: float(self.epsilon) * self.epsilon_scale for n in names}

    def gradients(
        self,
        system: EnergySystem,
        cost: Cost,
        solver: Solver,
        x: Tensor,
        y: Tensor,
        *,
        nudged_solver: Solver | None = None,
    ) -> Estimate:
        if any(True for _ in cost.parameters()):
            raise ConfigError(
                "AgnosticEqProp trains the system's own parameters; a cost with parameters (a readout) is "
                "not part of the physical system",
                hint="use cost kind squared_error",
            )
        b1, b2 = self.nudgings
        for b in (b1, b2):
            cost.check_beta(b)
        eps = self.epsilons(system)
        with torch.no_grad():
            drive = system.prepare(x)
            free = solve(system, x, solver, throw=False, drive=drive)  # the free phase: what it predicts
            raise_if_diverged((free,))
            target = cost.prepare_target(y, free.state[cost.target_index])
            loss = cost(free.state, target).mean()
            scores = cost.predict(free.state)
        theta0 = {n: p.detach().clone() for n, p in system.named_parameters()}
        physical = SpringCoupled(
            system,
            cost,
            nudged_solver or solver,
            x,
            y,
            eps,
            parameter_relaxation=self.parameter_relaxation,
            flow_steps=self.flow_steps,
            flow_step_size=self.flow_step_size,
            state=free.state,
            drive=drive,
        )
        try:
            displacement = agnostic_step(
                physical,
                b1,
                b2,
                parameter_iterations=self.parameter_iterations,
                controller_iterations=self.controller_iterations,
                controller_rtol=self.controller_rtol,
                free_phase=False,
            )
        finally:
            with torch.no_grad():  # the rule is pure: θ goes back; the optimizer applies the step
                for n, p in system.named_parameters():
                    p.copy_(theta0[n])
        beta = b2 - b1
        grads = {f"system.{n}": -d / (eps[n] * beta) for n, d in displacement.items()}
        # NaN and inf survive a sum: one reduction per tensor and one host sync per step
        if not bool(torch.isfinite(torch.stack([g.sum() for g in grads.values()])).all()):
            raise DivergenceError("AEqprop step produced non-finite parameters", hint="lower epsilon or beta")
        return Estimate(
            grads=grads,
            loss=loss,
            scores=scores,
            phases=(free,),
            metrics={"state_sweeps": torch.tensor(physical.state_sweeps)},
        )
