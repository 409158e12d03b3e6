"""Backpropagation through the relaxation (truncated BPTT): the other exact-in-the-limit baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate, Rule, named_parameters, raise_if_diverged
from eqprop.solvers.base import Solver, TotalEnergy, solve
from eqprop.systems.base import EnergySystem

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

    steps: int | None = None

    bias_order = None

    def __post_init__(self) -> None:
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise ConfigError(f"BackpropThroughSolver(steps={self.steps!r}): need an integer >= 1 or None")

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
    ) -> Estimate:
        params = named_parameters(system, cost)
        phases = ()
        with torch.enable_grad():
            problem = TotalEnergy(system, x, cost=cost, y=y, beta=0.0)  # drive built with the graph on
            if self.steps is None:
                if init is not None:
                    system.check_state(init, x.shape[0])
                state = system.init_state(x) if init is None else tuple(s.detach() for s in init)
                sweeps = solver.iterations
            else:
                free = solve(system, x, solver, throw=False, init=init)
                raise_if_diverged((free,))
                phases = (free,)
                state = free.state
                sweeps = self.steps
            for _ in range(sweeps):
                state = solver.step(problem, state)
            assert problem.target is not None
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
            phases=phases,
            metrics={},
            final_state=tuple(s.detach() for s in state),
        )
