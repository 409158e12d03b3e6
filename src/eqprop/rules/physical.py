"""A system whose parameters are physical variables held by springs to control knobs (Agnostic EqProp).

The joint energy of states ``s``, parameters ``θ`` and knobs ``u`` for a mini-batch of ``N`` examples is

.. math::
    G(s, θ; u, β) = \\sum_j \\frac{‖θ_j − u_j‖²}{2ε_j} + \\frac1N \\sum_n F_β(s^{(n)}; θ, x^{(n)}, y^{(n)})

:class:`PhysicalSystem` is everything a learning rule may do to such a system: let it relax (states, and the
parameters when they are released), move the knobs, change the nudging, and read the output, the knobs and
the parameters. :class:`HomeostaticSystem` adds two physical mechanisms a system may have built in: a
homeostatic controller (a feedback loop per parameter that turns its knob until the released parameter stays
put) and that loop's error signal (how far each parameter has moved from where the loop held it).
:class:`Homeostat` builds both from the six basic methods alone, for any black box.
:class:`SpringCoupled` realises the whole interface in simulation around any
:class:`~eqprop.systems.base.EnergySystem`: it is where the physics (including the force ``∂E/∂θ`` that pulls
on the parameters) lives, so that the rule never needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError, ConvergenceError, DivergenceError
from eqprop.solvers.base import Solver, TotalEnergy, relax
from eqprop.systems.base import EnergySystem

__all__ = ["Homeostat", "HomeostaticSystem", "PhysicalSystem", "SpringCoupled", "has_homeostat"]


@runtime_checkable
class PhysicalSystem(Protocol):
    """What an agnostic learning rule can do to a physical system, and nothing more."""

    def set_nudging(self, beta: float) -> None:
        """Set the strength of the force pulling the output towards the target."""

    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        """Let the system settle; the parameters move only when ``parameters`` is True (else they are held)."""

    def read_knobs(self) -> dict[str, Tensor]:
        """The positions of the control knobs."""

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        """Move the control knobs."""

    def read_parameters(self) -> dict[str, Tensor]:
        """Measure the parameters (a copy)."""

    def read_output(self) -> Tensor:
        """Measure the output, ``(batch, classes)``."""


@runtime_checkable
class HomeostaticSystem(PhysicalSystem, Protocol):
    """A :class:`PhysicalSystem` with a built-in homeostatic controller and a sensor of its error signal.

    Both are physics, not learning: the paper's learning mechanisms are "energy minimisation, homeostatic
    control and nudging". A system without them gets them from :class:`Homeostat`.
    """

    def hold_parameters(self) -> None:
        """Homeostatic control: turn the knobs until the parameters, released against the current states,
        stay where they are now; the knobs then stay where the controller left them (clamped)."""

    def read_displacement(
        self, *, gains: Mapping[str, float] | None = None, out: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Measure how far each parameter has moved since the controller last held it (since the system was
        built, if never), times the sensor gain ``gains[name]`` (default 1); ``out``: buffers to write the
        readings into (the result then holds those tensors)."""


def has_homeostat(physical: object) -> bool:
    """Whether ``physical`` has the two methods of :class:`HomeostaticSystem` (a probe by name only)."""
    return all(callable(getattr(physical, n, None)) for n in ("hold_parameters", "read_displacement"))


def _largest(tensors: Iterable[Tensor]) -> float:
    """The largest absolute entry over ``tensors`` (one pass each, one host sync)."""
    return float(torch.stack([torch.linalg.vector_norm(t, ord=math.inf) for t in tensors]).max())


def _reading(
    values: Mapping[str, Tensor], gains: Mapping[str, float] | None, out: Mapping[str, Tensor] | None
) -> dict[str, Tensor]:
    """``gains[n]·values[n]`` for every ``n``, into ``out[n]`` where given (``values`` may be overwritten)."""
    result = {}
    for n, v in values.items():
        g = 1.0 if gains is None else float(gains[n])
        if out is not None and n in out:
            result[n] = torch.mul(v, g, out=out[n]) if g != 1.0 else out[n].copy_(v)
        else:
            result[n] = v.mul_(g) if g != 1.0 else v
    return result


class Homeostat:
    """A homeostatic controller and a displacement sensor for any :class:`PhysicalSystem`, built from its six
    basic methods alone: the result is a :class:`HomeostaticSystem` (the other methods are passed through).

    The controller is a unit-gain proportional loop on the drift of the released parameters: release them,
    measure how far they moved from where they were, turn each knob back by that much, repeat. For a linear
    spring it is exact after two rounds (plus one to see the parameters stay); otherwise it converges
    geometrically. It stops once the parameters are back and at rest, within ``rtol`` of the first drift,
    and raises :class:`ConvergenceError` after ``iterations`` rounds without (the step would be wrong).

    Args:
        physical: the black box.
        iterations: the controller's budget of rounds (>= 3: measure, cancel, confirm).
        rtol: its tolerance on the parameters' drift, relative to the first drift it measures.
    """

    def __init__(self, physical: PhysicalSystem, *, iterations: int = 10, rtol: float = 1e-5) -> None:
        if iterations < 3 or not 0 < rtol < 1:
            raise ConfigError(
                f"Homeostat(iterations={iterations}, rtol={rtol}): need iterations >= 3 (the controller "
                "measures the drift, cancels it, and confirms the parameters stay at rest) and 0 < rtol < 1"
            )
        self.physical, self.iterations, self.rtol = physical, iterations, rtol
        self._held = physical.read_parameters()  # the setpoint the drift is measured from

    # -- passed through ----------------------------------------------------------------------------------------
    def set_nudging(self, beta: float) -> None:
        self.physical.set_nudging(beta)

    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        self.physical.relax(states=states, parameters=parameters)

    def read_knobs(self) -> dict[str, Tensor]:
        return self.physical.read_knobs()

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        self.physical.set_knobs(knobs)

    def read_parameters(self) -> dict[str, Tensor]:
        return self.physical.read_parameters()

    def read_output(self) -> Tensor:
        return self.physical.read_output()

    # -- the controller and its sensor ---------------------------------------------------------------------------
    def hold_parameters(self) -> None:
        p = self.physical
        theta0 = p.read_parameters()
        knobs: dict[str, Tensor] | None = None
        first, worst, previous = None, math.nan, theta0
        for _ in range(self.iterations):
            p.relax(states=False, parameters=True)
            theta = p.read_parameters()
            drift = {n: theta[n] - theta0[n] for n in theta}
            worst = _largest(drift.values())  # host sync: the controller's sensor
            first = worst if first is None else first
            # θ is back where it was and stays there (it did not move in this round): the knobs hold it
            if (
                worst <= self.rtol * first
                and _largest(theta[n] - previous[n] for n in theta) <= self.rtol * first
            ):
                break
            knobs = p.read_knobs() if knobs is None else knobs
            for n in knobs:
                knobs[n].sub_(drift[n])  # turn each knob back by its parameter's drift
            p.set_knobs(knobs)
            previous = theta
        else:
            raise ConvergenceError(
                f"the homeostatic controller left the parameters drifting by {worst:.3g} (first drift "
                f"{first:.3g}) after {self.iterations} rounds",
                hint="raise controller_iterations, or let the parameters settle further per relaxation "
                "(parameter_relaxation='exact', or more flow_steps / a larger flow_step_size)",
            )
        self._held = theta0

    def read_displacement(
        self, *, gains: Mapping[str, float] | None = None, out: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        theta = self.physical.read_parameters()
        return _reading({n: theta[n].sub_(self._held[n]) for n in theta}, gains, out)


class SpringCoupled:
    """An :class:`EnergySystem` with spring-coupled parameters, for one mini-batch: a :class:`HomeostaticSystem`.

    Args:
        system: the energy-based system; its parameters are moved in place when the simulation needs them
            moved (see below); :meth:`restore_parameters` puts them back.
        cost: the cost whose nudging :meth:`set_nudging` controls.
        solver: how the states relax (e.g. ``BlockCoordinate(100, order="backward", tol=1e-3, norm="layer-l1")``).
        x, y: the mini-batch.
        epsilon: spring compliance ``ε`` of each parameter tensor (keyed like ``system.named_parameters()``).
        parameter_relaxation: ``"exact"`` (the parameter energy is quadratic at fixed states, so θ jumps to
            ``u − ε·∂E/∂θ``) or ``"flow"`` (``flow_steps`` Euler steps of ``dθ/dt = −(θ − u)/ε − ∂E/∂θ`` with
            step ``flow_step_size·ε``: parameters that do not fully settle, the paper's ``max_iterations_params``).
        state: the starting state (default: the system's zero state).
        problem: the batch's free-phase :class:`~eqprop.solvers.TotalEnergy` at the current parameters, if the
            caller has one: its input drive and target are reused until the parameters move.
        free: ``state`` is the free equilibrium (β = 0) at the current parameters. A relaxation at β = 0 while
            the parameters have not moved then returns to it directly, with no sweep: a simulation shortcut
            (the official code restores the saved free state the same way), exact when the free
            equilibrium is unique.

    The knobs start where the parameters are. Reading the parameters or knobs returns copies.

    The simulation is lazy about parameter-sized work: the force of states ``s`` on the parameters is
    ``f(s) = ∂E/∂θ(s)``, and as long as only the controller and exact parameter relaxations have acted, the
    knobs are ``u = θ_b + ε·f(s_hold)`` and the parameters ``θ = u − ε·f(s_rest)``, with ``θ_b`` the
    system's own tensors. The controller and an exact relaxation then only record which states ``s_hold`` /
    ``s_rest`` hold or pull the parameters, and the displacement since the hold,
    ``ε·[f(s_hold) − f(s_rest)]``, is read as one contrast of two states (one matmul per weight). Anything
    that needs the parameters or the knobs where they are (a state relaxation after θ moved, reading them,
    setting the knobs, a ``flow`` relaxation) moves ``θ_b`` there first: the physics is the same, only when
    it is computed differs.
    """

    def __init__(
        self,
        system: EnergySystem,
        cost: Cost,
        solver: Solver,
        x: Tensor,
        y: Tensor,
        epsilon: Mapping[str, float],
        *,
        parameter_relaxation: Literal["exact", "flow"] = "exact",
        flow_steps: int = 10,
        flow_step_size: float = 0.5,
        state: State | None = None,
        problem: TotalEnergy | None = None,
        free: bool = False,
    ) -> None:
        params = dict(system.named_parameters())
        missing = [n for n in params if n not in epsilon]
        if missing:
            raise ConfigError(
                f"SpringCoupled: no epsilon for parameter(s) {missing}", hint="give one per tensor"
            )
        if any(not epsilon[n] > 0 for n in params):
            raise ConfigError(f"SpringCoupled: every epsilon must be > 0, got {dict(epsilon)}")
        if parameter_relaxation not in ("exact", "flow"):
            raise ConfigError(f"parameter_relaxation={parameter_relaxation!r}: choose 'exact' or 'flow'")
        if parameter_relaxation == "flow" and not (flow_steps >= 1 and 0 < flow_step_size <= 1):
            raise ConfigError("flow relaxation needs flow_steps >= 1 and 0 < flow_step_size <= 1")
        self.system, self.cost, self.solver, self.x, self.y = system, cost, solver, x, y
        self.epsilon = {n: float(epsilon[n]) for n in params}
        self.parameter_relaxation = parameter_relaxation
        self.flow_steps = flow_steps
        self.flow_step_size = flow_step_size
        self.beta = 0.0
        self.state: State = system.init_state(x) if state is None else tuple(state)
        self._params = params
        # Lazy springs (see the class docstring): explicit knob tensors, or None for u = θ_b + ε·f(hold),
        # θ = u − ε·f(rest) (f(None) = 0); θ is θ_b exactly when `_rest is _hold`.
        self._knobs: dict[str, Tensor] | None = None
        self._hold: State | None = None
        self._rest: State | None = None
        self._setpoint: dict[str, Tensor] | None = None  # θ when last held, once θ_b has moved since
        self._backup: dict[str, Tensor] | None = None  # θ_b as built, once it has moved
        self._free: State | None = self.state if free and state is not None else None
        # The batch's total energy at β = 0 (input drive, target): rebuilt before the next state relaxation
        # after θ_b moves.
        self._problem = problem
        self._force: tuple[State, dict[str, Tensor]] | None = None  # f at a state, while it holds
        self.state_sweeps = 0

    # -- the PhysicalSystem interface -------------------------------------------------------------------------
    def set_nudging(self, beta: float) -> None:
        self.cost.check_beta(beta, self.system)
        self.beta = float(beta)

    @torch.no_grad()
    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        if states:
            if self.beta == 0.0 and self._free is not None:
                self.state = self._free  # the free equilibrium at these parameters is known: back to it
            else:
                self._explicit_if_moved()  # the states feel the parameters where they are
                if self._problem is None:
                    self._problem = TotalEnergy(self.system, self.x, cost=self.cost, y=self.y)
                problem = self._problem.with_nudging(self.beta)
                eq = relax(
                    problem, self.solver, init=self.state, throw=False
                )  # a cap reached is not an error
                if not bool(eq.stats.finite.all()):  # host sync, once per relaxation
                    raise DivergenceError(
                        f"non-finite state while relaxing at beta={self.beta}", hint="lower epsilon or beta"
                    )
                self.state = eq.state
                self.state_sweeps += eq.stats.iterations
        if parameters:
            self._relax_parameters()

    def read_knobs(self) -> dict[str, Tensor]:
        if self._knobs is None:
            return self._lazy_knobs()
        return {n: u.clone() for n, u in self._knobs.items()}

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        for n in knobs:
            if n not in self._params:
                raise ConfigError(f"set_knobs: no knob named {n!r}; knobs: {', '.join(self._params)}")
        self._explicit()
        assert self._knobs is not None
        for n, u in knobs.items():
            self._knobs[n].copy_(u)

    def read_parameters(self) -> dict[str, Tensor]:
        self._explicit_if_moved()
        return {n: p.detach().clone() for n, p in self._params.items()}

    def read_output(self) -> Tensor:
        with torch.no_grad():
            return self.cost.predict(self.state)

    # -- the HomeostaticSystem interface: the controller, in closed form ------------------------------------------
    def hold_parameters(self) -> None:
        """The controller's fixed point: ``u = θ + ε·f(s)``, θ at rest against the current states (what the
        official code's ``ControlKnob.adjust`` computes). Recorded, not computed: see the class docstring."""
        self._explicit_if_moved()  # θ is θ_b
        self._knobs = None
        self._hold = self._rest = self.state
        self._setpoint = None  # the setpoint is θ_b itself, until θ_b moves

    @torch.no_grad()
    def read_displacement(
        self, *, gains: Mapping[str, float] | None = None, out: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        if self._knobs is None and self._setpoint is None:
            # θ − θ_held = ε·[f(s_hold) − f(s_rest)]: one contrast of two states, no parameter-sized copy
            factor = {n: e * (1.0 if gains is None else float(gains[n])) for n, e in self.epsilon.items()}
            return self._contrast(self._rest, self._hold, factor, out)
        self._explicit()
        held = self._setpoint if self._setpoint is not None else self._params
        return _reading({n: p.detach() - held[n] for n, p in self._params.items()}, gains, out)

    # -- the simulation's own methods (not part of the protocol) --------------------------------------------------
    def restore_parameters(self) -> None:
        """Put the system's parameters back where they were when this simulation was built (a rule that must
        leave θ alone calls it at the end); the simulation is then over."""
        with torch.no_grad():
            if self._backup is not None:
                for n, p in self._params.items():
                    p.copy_(self._backup[n])
        self._knobs, self._hold, self._rest, self._setpoint, self._backup = None, None, None, None, None
        self._problem, self._force, self._free = None, None, None

    def joint_energy(self) -> Tensor:
        """``G = Σ‖θ − u‖²/(2ε) + mean F_β``: for tests and monitoring (never used by a rule)."""
        with torch.no_grad():
            self._explicit()
            assert self._knobs is not None
            spring = sum(
                ((p - self._knobs[n]) ** 2).sum() / (2 * self.epsilon[n]) for n, p in self._params.items()
            )
            f = self.system.energy(self.x, self.state)
            if self.beta != 0.0:
                target = self.cost.prepare_target(self.y, self.state[self.cost.target_index])
                f = f + self.beta * self.cost(self.state, target)
            return spring + f.mean()

    # -- the physics --------------------------------------------------------------------------------------------
    def _forces(self, state: State) -> dict[str, Tensor]:
        """``f(s) = ∂E/∂θ`` at ``state``: the pull of the states on the parameters (cached while they hold)."""
        if self._force is None or self._force[0] is not state:
            self._force = (state, self.system.param_grads(self.x, state))
        return self._force[1]

    def _lazy_knobs(self) -> dict[str, Tensor]:
        """New tensors ``u = θ_b + ε·f(s_hold)``."""
        if self._hold is None:
            return {n: p.detach().clone() for n, p in self._params.items()}
        f = self.system.param_grads(self.x, self._hold)
        return {n: torch.add(p.detach(), f[n], alpha=self.epsilon[n]) for n, p in self._params.items()}

    def _contrast(
        self,
        a: State | None,
        b: State | None,
        factor: Mapping[str, float],
        out: Mapping[str, Tensor] | None,
    ) -> dict[str, Tensor]:
        """``factor[n]·[f(b) − f(a)]`` (``f(None) = 0``), into ``out`` where given."""
        if a is b:
            zeros = {n: torch.zeros_like(p) for n, p in self._params.items()}
            return _reading(zeros, None, out)
        if a is None or b is None:
            f = self.system.param_grads(self.x, b if a is None else a)
            sign = 1.0 if a is None else -1.0
            return _reading(f, {n: sign * factor[n] for n in f}, out)
        values = set(factor.values())
        if len(values) == 1:  # the common case: the factor goes into the small state factors, no extra pass
            return self.system.param_grad_difference(self.x, a, b, scale=values.pop(), out=out)
        return _reading(self.system.param_grad_difference(self.x, a, b), factor, out)

    def _before_moving(self) -> None:
        """Keep what the sensor and :meth:`restore_parameters` need before ``θ_b`` changes in place."""
        first = self._backup is None
        if first:
            self._backup = {n: p.detach().clone() for n, p in self._params.items()}
        if self._setpoint is None:  # θ_b is still the setpoint: keep it (it is the backup if never moved)
            assert self._backup is not None
            self._setpoint = (
                self._backup if first else {n: p.detach().clone() for n, p in self._params.items()}
            )
        self._problem = None
        self._free = None

    def _explicit_if_moved(self) -> None:
        if self._knobs is None and self._rest is not self._hold:
            self._explicit()

    @torch.no_grad()
    def _explicit(self) -> None:
        """From the lazy form to tensors: ``u`` explicit, and ``θ_b`` moved to ``θ = u − ε·f(s_rest)``."""
        if self._knobs is not None:
            return
        knobs = self._lazy_knobs()
        if self._rest is not self._hold:
            self._before_moving()
            assert self._rest is not None  # `_rest is None` only while `_hold is None`
            f = self._forces(self._rest)
            for n, p in self._params.items():
                torch.add(knobs[n], f[n], alpha=-self.epsilon[n], out=p.data)
        self._knobs, self._hold, self._rest = knobs, None, None

    @torch.no_grad()
    def _relax_parameters(self) -> None:
        """θ settles in ``‖θ − u‖²/(2ε) + ⟨E(θ, s)⟩`` with the states held (E is linear in θ at fixed s)."""
        self._free = None
        if self.parameter_relaxation == "exact" and self._knobs is None:
            self._rest = self.state  # θ = u − ε·f(s): recorded; computed when observed
            return
        self._explicit()
        assert self._knobs is not None
        g = self._forces(self.state)
        self._before_moving()
        for n, p in self._params.items():
            eps, u = self.epsilon[n], self._knobs[n]
            if self.parameter_relaxation == "exact":
                torch.add(u, g[n], alpha=-eps, out=p.data)  # θ = u − ε·g in one pass
            else:
                for _ in range(self.flow_steps):  # Euler steps of dθ/dt = −(θ − u)/ε − g, dt = step·ε
                    p.sub_(self.flow_step_size * (p - u + eps * g[n]))
