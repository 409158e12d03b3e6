"""Quantum EqProp's β → 0 limit as a rule: the exact gradient by linear response at the free ground state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate, Rule
from eqprop.solvers.ground_state import GroundState, linear_response
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.systems.base import EnergySystem
from eqprop.systems.quantum import ObservableCost, QuantumSystem

__all__ = ["LinearResponse"]


@dataclass(frozen=True)
class LinearResponse(Rule):
    r"""The exact ``∂L/∂θ`` of a :class:`~eqprop.systems.quantum.QuantumSystem` at its free ground state, by
    first-order perturbation theory (:func:`~eqprop.solvers.ground_state.linear_response`): what EqProp tends to as
    β → 0, with one linear solve per example instead of two nudged ground states. A reference for quantum systems
    beside :class:`~eqprop.rules.ImplicitDiff` (which also works on them, by conjugate gradients on the Hessian of
    the Rayleigh quotient) and :func:`~eqprop.solvers.ground_state.exact_gradient` (autograd through ``eigh``).

    Not a ``rule.kind`` of run configurations: the registered kinds are checked on every system, and this one
    trains quantum systems only. Use it from Python.

    Example:
        >>> net, cost = transverse_ising_network(3, 1)                  # 5 qubits, readout cost
        >>> x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
        >>> exact = LinearResponse().gradients(net, cost, GroundState(), x, y)
        >>> approx = EqProp(beta=0.01).gradients(net, cost, GroundState(), x, y)   # → exact as β → 0
    """

    kind: ClassVar[str] = "linear_response"
    bias_order = None

    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if not isinstance(system, QuantumSystem) or not isinstance(cost, ObservableCost):
            raise ConfigError(
                "LinearResponse trains a QuantumSystem against an ObservableCost",
                hint="use ImplicitDiff() (rule.kind = 'implicit') for classical systems",
            )

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        free = phases.free
        raise_if_diverged(free)
        system, cost = phases.system, phases.cost
        assert isinstance(system, QuantumSystem) and isinstance(cost, ObservableCost)  # see check()
        solver = phases.solver if isinstance(phases.solver, GroundState) else None
        grads = linear_response(system, cost, phases.x, phases.y, solver=solver, state=free.state)
        with torch.no_grad():
            loss = cost(free.state, phases.target).mean()
            scores = cost.predict(free.state)
        return Estimate(
            grads=grads,
            loss=loss,
            scores=scores,
            phases=(free,),
            metrics={"residual": free.stats.residual.max().reshape(1)},
        )
