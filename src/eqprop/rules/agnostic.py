"""Agnostic Equilibrium Propagation: learning by homeostatic control of the parameters, without gradients.

Reference: B. Scellier, S. Mishra, Y. Bengio, Y. Ollivier, "Agnostic Physics-Driven Deep Learning" (2022);
notes in ``research/aeqprop.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError, DivergenceError
from eqprop.physical import Homeostat, HomeostaticSystem, PhysicalSystem, SpringCoupled, has_homeostat
from eqprop.rules.base import ContrastRule, Estimate, raise_if_diverged
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem

__all__ = ["AgnosticEqProp", "agnostic_step"]

Mode = Literal["optimistic", "pessimistic", "centered"]
MODES: tuple[str, ...] = ("optimistic", "pessimistic", "centered")
Phase2Start = Literal["phase1", "free"]
PHASE2_STARTS: tuple[str, ...] = ("phase1", "free")


def _nudgings(mode: str, beta: float) -> tuple[float, float]:
    return {"optimistic": (0.0, beta), "pessimistic": (-beta, 0.0), "centered": (-beta / 2, beta / 2)}[mode]


def agnostic_step(
    physical: PhysicalSystem,
    beta1: float,
    beta2: float,
    *,
    parameter_iterations: int = 1,
    controller_iterations: int = 10,
    controller_rtol: float = 1e-5,
    free_phase: bool = True,
    phase2_start: Phase2Start = "phase1",
    gains: Mapping[str, float] | None = None,
    out: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """One AEqprop step on a black-box physical system; returns the parameter displacement ``θ' − θ``.

    Only the :class:`PhysicalSystem` interface is used: relaxations, knob moves, nudging changes and
    measurements. No energy, force or gradient is ever asked for. A system with its own homeostatic
    controller (a :class:`HomeostaticSystem`) uses it; any other gets one built from its six basic methods
    (:class:`Homeostat`, with ``controller_iterations`` and ``controller_rtol``).

    1. Free phase: relax at ``β = 0`` (parameters held); skipped with ``free_phase=False`` when the system
       already sits at its free equilibrium.
    2. Phase 1: relax at ``β₁``; the homeostatic controller then sets the knobs so that the released
       parameters stay where they are.
    3. Phase 2: knobs clamped, nudging ``β₂``; states and parameters settle together
       (``parameter_iterations`` rounds of "states relax, then parameters relax"). With
       ``phase2_start="free"`` the states first return to the free equilibrium (nudging 0, parameters still
       held: what the official code does by restoring the saved free state), else they continue from phase 1.

    ``gains`` (per tensor) scales the displacement reading and ``out`` receives it (e.g. ``.grad`` buffers).
    """
    if phase2_start not in PHASE2_STARTS:
        raise ConfigError(
            f"phase2_start={phase2_start!r}: choose one of {', '.join(map(repr, PHASE2_STARTS))}"
        )
    system: HomeostaticSystem = (
        physical  # type: ignore[assignment]
        if has_homeostat(physical)
        else Homeostat(physical, iterations=controller_iterations, rtol=controller_rtol)
    )
    if free_phase:
        system.set_nudging(0.0)
        system.relax()
    system.set_nudging(beta1)
    system.relax()
    system.hold_parameters()  # homeostatic control: θ stays where it is, against the phase-1 states
    if phase2_start == "free":
        system.set_nudging(0.0)
        system.relax()  # back to the free equilibrium, θ still held
    system.set_nudging(beta2)  # from here on the knobs are clamped
    for _ in range(parameter_iterations):
        system.relax()
        system.relax(states=False, parameters=True)
    return system.read_displacement(gains=gains, out=out)


@dataclass(frozen=True)
class AgnosticEqProp(ContrastRule):
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
        controller_iterations, controller_rtol: the budget and tolerance (relative to the first drift) of the
            homeostatic controller that :func:`agnostic_step` builds for a system without its own; the
            simulation this rule runs (:class:`SpringCoupled`) has its own, exact one.
        phase2_start: where the states start phase 2: ``"phase1"`` (where phase 1 left them: the physical
            path) or ``"free"`` (back at the free equilibrium, θ held: the official code's choice).

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
    phase2_start: Phase2Start = "phase1"

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"AgnosticEqProp(beta={self.beta!r}): need a finite beta > 0")
        if self.mode not in MODES:
            raise ConfigError(f"AgnosticEqProp(mode={self.mode!r}): choose one of {', '.join(MODES)}")
        if self.phase2_start not in PHASE2_STARTS:
            raise ConfigError(
                f"AgnosticEqProp(phase2_start={self.phase2_start!r}): choose one of {', '.join(PHASE2_STARTS)}"
            )
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
        if any(True for _ in cost.parameters()):
            raise ConfigError(
                "AgnosticEqProp trains the system's own parameters; a cost with parameters (a readout) is "
                "not part of the physical system",
                hint="use cost kind squared_error",
            )
        b1, b2 = self.nudgings
        for b in (b1, b2):
            cost.check_beta(b, system)
        eps = self.epsilons(system)
        with torch.no_grad():
            drive = system.prepare(x)
            free = solve(
                system, x, solver, throw=False, drive=drive, init=init
            )  # the free phase: what it predicts
            raise_if_diverged((free,))
            target = cost.prepare_target(y, free.state[cost.target_index])
            loss = cost(free.state, target).mean()
            scores = cost.predict(free.state)
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
            free=True,
        )
        beta = b2 - b1
        try:
            grads = agnostic_step(
                physical,
                b1,
                b2,
                parameter_iterations=self.parameter_iterations,
                controller_iterations=self.controller_iterations,
                controller_rtol=self.controller_rtol,
                free_phase=False,
                phase2_start=self.phase2_start,
                gains={n: -1.0 / (e * beta) for n, e in eps.items()},  # the equivalent gradient −Δθ/(εβ)
                out=out or None,
            )
        finally:
            physical.restore_parameters()  # the rule is pure: θ goes back; the optimizer applies the step
        # NaN and inf survive a sum: one reduction per tensor and one host sync per step
        if not bool(torch.isfinite(torch.stack([g.sum() for g in grads.values()])).all()):
            raise DivergenceError("AEqprop step produced non-finite parameters", hint="lower epsilon or beta")
        return Estimate(
            grads={f"system.{n}": g for n, g in grads.items()},
            loss=loss,
            scores=scores,
            phases=(free,),
            metrics={"state_sweeps": torch.tensor(physical.state_sweeps)},
            final_state=physical.state,
        )
