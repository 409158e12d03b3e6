"""A system whose parameters are physical variables held by springs to control knobs (Agnostic EqProp).

The joint energy of states ``s``, parameters ``θ`` and knobs ``u`` for a mini-batch of ``N`` examples is

.. math::
    G(s, θ; u, β) = \\sum_j \\frac{‖θ_j − u_j‖²}{2ε_j} + \\frac1N \\sum_n F_β(s^{(n)}; θ, x^{(n)}, y^{(n)})

:class:`PhysicalSystem` is everything a learning rule may do to such a system: let it relax (states, and the
parameters when they are released), move the knobs, change the nudging, and read the output, the knobs and
the parameters. :class:`SpringCoupled` realises it in simulation around any
:class:`~eqprop.systems.base.EnergySystem`: it is where the physics (including the force ``∂E/∂θ`` that pulls
on the parameters) lives, so that the rule never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError, DivergenceError
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem

__all__ = ["PhysicalSystem", "SpringCoupled"]


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


class SpringCoupled:
    """An :class:`EnergySystem` with spring-coupled parameters, for one mini-batch: a :class:`PhysicalSystem`.

    Args:
        system: the energy-based system; its parameters are moved in place by :meth:`relax`.
        cost: the cost whose nudging :meth:`set_nudging` controls.
        solver: how the states relax (e.g. ``BlockCoordinate(100, order="backward", tol=1e-3, norm="layer-l1")``).
        x, y: the mini-batch.
        epsilon: spring compliance ``ε`` of each parameter tensor (keyed like ``system.named_parameters()``).
        parameter_relaxation: ``"exact"`` (the parameter energy is quadratic at fixed states, so θ jumps to
            ``u − ε·∂E/∂θ``) or ``"flow"`` (``flow_steps`` Euler steps of ``dθ/dt = −(θ − u)/ε − ∂E/∂θ`` with
            step ``flow_step_size·ε``: parameters that do not fully settle, the paper's ``max_iterations_params``).
        state: the starting state (default: the system's zero state).
        drive: a precomputed ``system.prepare(x)`` for the current parameters.

    The knobs start where the parameters are. Reading the parameters returns copies.
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
        drive: Any = None,
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
        self._knobs = {n: p.detach().clone() for n, p in params.items()}
        self._drive = (
            system.prepare(x) if drive is None else drive
        )  # recomputed before the next state relaxation after θ moves
        self._force: tuple[State, dict[str, Tensor]] | None = None  # ∂E/∂θ at a state, while it holds
        self.state_sweeps = 0

    # -- the PhysicalSystem interface -------------------------------------------------------------------------
    def set_nudging(self, beta: float) -> None:
        self.cost.check_beta(beta)
        self.beta = float(beta)

    @torch.no_grad()
    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        if states:
            if self._drive is None:
                self._drive = self.system.prepare(self.x)
            eq = solve(
                self.system,
                self.x,
                self.solver,
                cost=self.cost,
                y=self.y,
                beta=self.beta,
                init=self.state,
                drive=self._drive,
                throw=False,
            )  # a cap reached is not an error here
            if not bool(eq.stats.finite.all()):  # host sync, once per relaxation
                raise DivergenceError(
                    f"non-finite state while relaxing at beta={self.beta}", hint="lower epsilon or beta"
                )
            self.state = eq.state
            self.state_sweeps += eq.stats.iterations
        if parameters:
            self._relax_parameters()

    def read_knobs(self) -> dict[str, Tensor]:
        return {n: u.clone() for n, u in self._knobs.items()}

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        for n, u in knobs.items():
            if n not in self._knobs:
                raise ConfigError(f"set_knobs: no knob named {n!r}; knobs: {', '.join(self._knobs)}")
            self._knobs[n].copy_(u)

    def read_parameters(self) -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in self._params.items()}

    def read_output(self) -> Tensor:
        with torch.no_grad():
            return self.cost.predict(self.state)

    # -- the physics --------------------------------------------------------------------------------------------
    def _relax_parameters(self) -> None:
        """θ settles in ``‖θ − u‖²/(2ε) + ⟨E(θ, s)⟩`` with the states held (E is linear in θ at fixed s)."""
        if self._force is None or self._force[0] is not self.state:
            # the force the states exert on the parameters (unchanged while the states are held)
            self._force = (self.state, self.system.param_grads(self.x, self.state))
        g = self._force[1]
        for n, p in self._params.items():
            eps, u = self.epsilon[n], self._knobs[n]
            if self.parameter_relaxation == "exact":
                torch.add(u, g[n], alpha=-eps, out=p.data)  # θ = u − ε·g in one pass
            else:
                for _ in range(self.flow_steps):  # Euler steps of dθ/dt = −(θ − u)/ε − g, dt = step·ε
                    p.sub_(self.flow_step_size * (p - u + eps * g[n]))
        self._drive = None

    def joint_energy(self) -> Tensor:
        """``G = Σ‖θ − u‖²/(2ε) + mean F_β``: for tests and monitoring (never used by a rule)."""
        with torch.no_grad():
            spring = sum(
                ((p - self._knobs[n]) ** 2).sum() / (2 * self.epsilon[n]) for n, p in self._params.items()
            )
            f = self.system.energy(self.x, self.state)
            if self.beta != 0.0:
                target = self.cost.prepare_target(self.y, self.state[self.cost.target_index])
                f = f + self.beta * self.cost(self.state, target)
            return spring + f.mean()
