"""Backpropagation through the relaxation (truncated BPTT): the other exact-in-the-limit baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.errors import ConfigError, DivergenceError
from eqprop.rules.base import Estimate, Rule, named_parameters
from eqprop.solvers.base import Equilibrium, TotalEnergy
from eqprop.solvers.phases import Phases, raise_if_diverged

__all__ = ["BackpropThroughSolver"]


@dataclass(frozen=True)
class BackpropThroughSolver(Rule):
    r"""Gradient of the cost after the relaxation, by backpropagation through its sweeps.

    With ``steps=None`` the whole free relaxation (``solver.iterations`` sweeps from the initial state) is
    differentiated (BPTT). With ``steps=T`` the free phase runs without a graph and only ``T`` further sweeps
    from the free equilibrium are differentiated: truncated backprop (TBP in Scellier et al. 2023). At a
    fixed point of a contracting sweep both tend to the implicit-differentiation gradient as ``T`` grows.

    Args:
        steps: sweeps to differentiate from the free equilibrium, or ``None`` for the full relaxation.

    Example:
        >>> est = BackpropThroughSolver(steps=20).gradients(net, SquaredError(), BlockCoordinate(30), x, y)
    """

    kind: ClassVar[str] = "backprop"

    steps: int | None = None

    bias_order = None
    reads_stationary: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise ConfigError(f"BackpropThroughSolver(steps={self.steps!r}): need an integer >= 1 or None")

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        system, cost, solver, x = phases.system, phases.cost, phases.solver, phases.x
        params = named_parameters(system, cost)
        used: tuple[Equilibrium, ...] = ()
        with torch.enable_grad():
            # A total energy of its own, built with the graph on: the drive depends on θ.
            problem = TotalEnergy(system, x, cost=cost, y=phases.y)
            if self.steps is None:
                init = phases.init
                state = system.init_state(x) if init is None else tuple(s.detach() for s in init)
                if init is not None:
                    system.check_state(init, x.shape[0])
                sweeps = solver.iterations
            else:
                free = phases.free
                raise_if_diverged(free)
                used = (free,)
                state = free.state
                sweeps = self.steps
            for _ in range(sweeps):
                state = solver.step(problem, state)
            assert problem.target is not None
            if not all(bool(torch.isfinite(s).all()) for s in state):  # host sync, once per batch
                raise DivergenceError(
                    f"non-finite state after backprop's {sweeps} sweeps: the relaxation (or trajectory) diverged",
                    hint="lower the learning rate, or shorten the time step of an integrator",
                )
            loss = cost(state, problem.target).mean()
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        with torch.no_grad():
            scores = cost.predict(state)
        return Estimate(
            grads={
                n: (torch.zeros_like(p) if g is None else g)
                for (n, p), g in zip(params.items(), grads, strict=True)
            },
            loss=loss.detach(),
            scores=scores.detach(),
            phases=used,
            metrics={},
            final_state=tuple(s.detach() for s in state),
        )
