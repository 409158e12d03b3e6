"""Agnostic Equilibrium Propagation: learning by homeostatic control of the parameters, without gradients.

Reference: B. Scellier, S. Mishra, Y. Bengio, Y. Ollivier, "Agnostic Physics-Driven Deep Learning",
arXiv:2205.15021 (2022), and its official code (bscellier/agnostic-equilibrium-propagation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from eqprop._types import PER_LAYER, RUN_STATE
from eqprop.costs import Cost
from eqprop.errors import ConfigError, DivergenceError
from eqprop.rules.base import Estimate, Rule, Variant, check_beta_and_variant, has_parameters, phase_betas
from eqprop.rules.physical import Homeostat, HomeostaticSystem, PhysicalSystem, SpringCoupled, has_homeostat
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.systems.base import EnergySystem, layer_count, layer_value

__all__ = ["AgnosticEqProp", "agnostic_step"]

Phase2Start = Literal["phase1", "free"]
PHASE2_STARTS: tuple[str, ...] = ("phase1", "free")


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
class AgnosticEqProp(Rule):
    r"""Agnostic EqProp (AEqprop): parameters are physical variables held by springs ``‖θ − u‖²/(2ε)`` to knobs.

    Phase 1 relaxes at ``β₁`` and a homeostatic controller sets the knobs so that θ is at rest; phase 2 clamps
    the knobs, nudges at ``β₂`` and lets the states and θ settle together. The displacement of θ is the
    learning step: to first order ``Δθ = −ε(β₂ − β₁)·ĝ_EqProp``, i.e. SGD with learning rate ``ε·(β₂ − β₁)``.
    ``(β₁, β₂)`` follow the library's one convention (:mod:`eqprop.rules.base`): ``"positive"`` (0, β),
    ``"negative"`` (−β, 0), ``"centered"`` (−β, +β); bias O(β) one-sided, O(β²) centered. The paper calls the
    one-sided variants *optimistic* and *pessimistic*, and its β is the spread ``β₂ − β₁``: the official
    runs' centered ``--nudging 0.5`` is ``beta=0.25`` here.

    As a :class:`Rule` it returns the *equivalent gradient* ``−Δθ/(ε·(β₂ − β₁))`` and leaves θ where it was, so
    that it can be compared with the other rules; ``torch.optim.SGD`` with the rates of
    :meth:`learning_rates` (``ε·(β₂ − β₁)`` per tensor: what the training run builds for this rule) then
    applies exactly the physical step.

    Args:
        beta: nudging ``β > 0``; the sign of each phase comes from ``variant``.
        variant: ``"positive"``, ``"negative"`` or ``"centered"``.
        epsilon: spring compliance of the weights: one number for all, one per layer (a list, layer ``k``
            holding ``weights.k``), or a mapping from ``system.named_parameters()`` names; the paper calls it
            the learning rate.
        epsilon_biases: the compliance of the biases (one, or one per layer ``k`` holding ``biases.k``);
            default: as the weights. Unused with a mapping ``epsilon``.
        epsilon_scale: multiplies every ``ε`` (the training run sets it through :meth:`follow_schedule`:
            the compliances decay as the schedule decays the step ``ε·(β₂ − β₁)``).
        parameter_iterations: rounds of joint (states, parameters) relaxation in phase 2 (1 in the paper's code).
        parameter_relaxation: ``"exact"`` closed form, or ``"flow"``: ``flow_steps`` Euler steps of the
            parameters' gradient flow (parameters that do not fully settle).
        controller_iterations, controller_rtol: the budget and tolerance (relative to the first drift) of the
            homeostatic controller that :func:`agnostic_step` builds for a system without its own; the
            simulation this rule runs (:class:`SpringCoupled`) has its own, exact one.
        phase2_start: where the states start phase 2: ``"phase1"`` (where phase 1 left them: the physical
            path) or ``"free"`` (back at the free equilibrium, θ held: the official code's choice).

    Example:
        >>> rule = AgnosticEqProp(beta=0.25, variant="centered", epsilon=[0.1, 0.05], epsilon_biases=[0.02, 0.01])
        >>> est = rule.gradients(net, SquaredError(), BlockCoordinate(100, tol=1e-3), x, y)
    """

    kind: ClassVar[str] = "aeqprop"

    beta: float = 0.25
    variant: Variant = "centered"
    epsilon: float | list[float] | dict[str, float] = field(default=0.05, metadata=PER_LAYER)
    epsilon_biases: float | list[float] | None = field(default=None, metadata=PER_LAYER)
    epsilon_scale: float = field(default=1.0, metadata=RUN_STATE)
    parameter_iterations: int = 1
    parameter_relaxation: Literal["exact", "flow"] = "exact"
    flow_steps: int = 10
    flow_step_size: float = 0.5
    controller_iterations: int = 10
    controller_rtol: float = 1e-5
    phase2_start: Phase2Start = "phase1"

    def __post_init__(self) -> None:
        check_beta_and_variant("AgnosticEqProp", self.beta, self.variant)
        if self.phase2_start not in PHASE2_STARTS:
            raise ConfigError(
                f"AgnosticEqProp(phase2_start={self.phase2_start!r}): choose one of {', '.join(PHASE2_STARTS)}"
            )
        if self.parameter_relaxation not in ("exact", "flow"):
            raise ConfigError(
                f"AgnosticEqProp(parameter_relaxation={self.parameter_relaxation!r}): choose 'exact' or 'flow'"
            )
        if self.parameter_iterations < 1 or self.controller_iterations < 3:
            raise ConfigError(
                "AgnosticEqProp: parameter_iterations must be >= 1 and controller_iterations >= 3 "
                "(the controller measures the drift, cancels it, and confirms θ stays at rest)"
            )
        if not (self.flow_steps >= 1 and 0 < self.flow_step_size <= 1):
            raise ConfigError(
                f"AgnosticEqProp(flow_steps={self.flow_steps}, flow_step_size={self.flow_step_size}): need "
                "flow_steps >= 1 and 0 < flow_step_size <= 1"
            )
        if not 0 < self.controller_rtol < 1:
            raise ConfigError(f"AgnosticEqProp(controller_rtol={self.controller_rtol!r}): need 0 < rtol < 1")
        values: list[object] = []
        for e in (self.epsilon, self.epsilon_biases):
            values.extend(e.values() if isinstance(e, Mapping) else e if isinstance(e, list) else [e])
        values = [v for v in values if v is not None]
        bad = [
            v
            for v in values
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < float("inf")
        ]
        if bad or not 0 < self.epsilon_scale < float("inf"):
            raise ConfigError(
                f"AgnosticEqProp(epsilon={self.epsilon!r}, epsilon_biases={self.epsilon_biases!r}): every "
                "epsilon must be a finite number > 0"
            )

    @property
    def bias_order(self) -> int:  # type: ignore[override]
        return 2 if self.variant == "centered" else 1

    @property
    def betas(self) -> tuple[float, float]:
        """``(β₁, β₂)`` of the two phases."""
        return phase_betas(self.variant, self.beta)

    def epsilons(self, system: EnergySystem) -> dict[str, float]:
        """``ε`` of every parameter tensor of ``system`` (times ``epsilon_scale``).

        Raises:
            ConfigError: a mapping without some parameter, or per-layer lists of the wrong length.
        """
        names = [n for n, _ in system.named_parameters()]
        if isinstance(self.epsilon, Mapping):
            missing = [n for n in names if n not in self.epsilon]
            if missing:
                raise ConfigError(
                    f"AgnosticEqProp: no epsilon for {missing}",
                    hint=f"give one for each of {', '.join(names)}",
                )
            return {n: float(self.epsilon[n]) * self.epsilon_scale for n in names}
        layers = layer_count(system)
        for what, value in (("epsilon", self.epsilon), ("epsilon_biases", self.epsilon_biases)):
            if isinstance(value, list) and len(value) != layers:
                raise ConfigError(
                    f"rule.{what} = {value}: give one value, or one per layer ({layers} for this system)"
                )
        return {n: layer_value(n, self.epsilon, self.epsilon_biases) * self.epsilon_scale for n in names}

    # -- what the rule needs from a training run -------------------------------------------------------------
    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if has_parameters(cost):
            raise ConfigError(
                "AgnosticEqProp trains the system's own parameters; a cost with parameters (a readout) is "
                "not part of the physical system",
                hint="use cost kind squared_error",
            )
        self.epsilons(system)
        if optimizer is not None:
            plain = type(optimizer) is torch.optim.SGD and all(
                g["momentum"] == 0 and g["weight_decay"] == 0 and not g["nesterov"]
                for g in optimizer.param_groups
            )
            if not plain:
                group = optimizer.param_groups[0]
                extras = [f"{k} {group[k]}" for k in ("momentum", "weight_decay", "nesterov") if group.get(k)]
                raise ConfigError(
                    "rule.kind = aeqprop moves the parameters physically: the optimizer must be plain SGD "
                    f"(got {type(optimizer).__name__}"
                    + (f" with {', '.join(extras)}" if extras else "")
                    + ")",
                    hint="set optimizer.kind=sgd, optimizer.momentum=0, optimizer.weight_decay=0",
                )

    def check_data_parallel(self, processes: int) -> None:
        """With one round of parameter relaxation, the displacement is linear in the batch's mean force
        (``Δθ = ε·[f(s_hold) − f(s_rest)]``), so the processes' displacements average to the whole batch's: the
        gradient all-reduce is exact. With more rounds, the states of round 2 relax against parameters that moved
        by the batch's force: each process would feel only its share's."""
        if processes > 1 and self.parameter_iterations > 1:
            raise ConfigError(
                f"rule.parameter_iterations = {self.parameter_iterations}: split among {processes} processes, each "
                "share's states would relax against parameters moved by that share's force alone, not the batch's",
                hint="use rule.parameter_iterations=1 (the paper's setting) with several processes, or one process",
            )

    def learning_rates(self, system: EnergySystem) -> dict[str, float]:
        """``ε·(β₂ − β₁)`` per tensor (before ``epsilon_scale``): plain SGD at these rates applies exactly the
        displacement the physical system made."""
        b1, b2 = self.betas
        unscaled = dataclasses.replace(self, epsilon_scale=1.0)
        return {n: e * (b2 - b1) for n, e in unscaled.epsilons(system).items()}

    def follow_schedule(self, factor: float) -> AgnosticEqProp:
        """The springs' compliance ε decays with the schedule, as the step ``ε·(β₂ − β₁)`` does."""
        return dataclasses.replace(self, epsilon_scale=factor)

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        system, cost = phases.system, phases.cost
        b1, b2 = self.betas
        for b in (b1, b2):
            cost.check_beta(b, system)
        eps = self.epsilons(system)
        with torch.no_grad():
            free = phases.free  # the free phase: what it predicts
            raise_if_diverged(free)
            loss = cost(free.state, phases.target).mean()
            scores = cost.predict(free.state)
        physical = SpringCoupled(
            system,
            cost,
            phases.nudged_solver,
            phases.x,
            phases.y,
            eps,
            parameter_relaxation=self.parameter_relaxation,
            flow_steps=self.flow_steps,
            flow_step_size=self.flow_step_size,
            state=free.state,
            problem=phases.problem,
            free=True,
        )
        spread = b2 - b1
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
                gains={
                    n: -1.0 / (e * spread) for n, e in eps.items()
                },  # the equivalent gradient −Δθ/(ε·spread)
                out=out,
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
