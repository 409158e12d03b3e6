"""What every learning rule shares: the :class:`Rule` contract and the :class:`Estimate` it returns."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import DivergenceError
from eqprop.solvers.base import Equilibrium, Solver
from eqprop.systems.base import EnergySystem

__all__ = ["ContrastRule", "Estimate", "Rule", "named_parameters"]


def named_parameters(system: EnergySystem, cost: Cost | None) -> dict[str, nn.Parameter]:
    """The trainable parameters a rule estimates, keyed ``"system.<name>"`` and ``"cost.<name>"``."""
    out = {f"system.{n}": p for n, p in system.named_parameters()}
    if cost is not None:
        out.update({f"cost.{n}": p for n, p in cost.named_parameters()})
    return out


@dataclass(frozen=True)
class Estimate:
    """A rule's output: an estimate of ∂L/∂θ plus what was measured on the way.

    Attributes:
        grads: keyed like :func:`named_parameters` (``"system.weights.0"``, ``"cost.weight"``).
        loss: mean cost at the free equilibrium (0-dim tensor, on the device).
        scores: class scores at the free equilibrium ``(batch, classes)`` (for accuracy).
        phases: the equilibria the rule relaxed to (free first).
        metrics: extra tensors (e.g. residuals); the trainer syncs them once per log interval.
        final_state: the state the system was left in, if not the last phase's (see :attr:`last_state`).
    """

    grads: dict[str, Tensor]
    loss: Tensor
    scores: Tensor
    phases: tuple[Equilibrium, ...] = ()
    metrics: dict[str, Tensor] = field(default_factory=dict)
    final_state: State | None = None

    @property
    def last_state(self) -> State | None:
        """The state the system was left in: ``final_state``, else the last phase's state (``None`` without
        phases). With ``train.warm_start`` the next mini-batch's free phase starts from it."""
        if self.final_state is not None:
            return self.final_state
        return self.phases[-1].state if self.phases else None

    def write_grad(self, system: EnergySystem, cost: Cost | None = None) -> None:
        """Store the estimate in each parameter's ``.grad`` (replacing it), ready for ``optimizer.step()``."""
        for name, p in named_parameters(system, cost).items():
            g = self.grads.get(name)
            if g is None or g is p.grad:  # already computed in place (see EqProp.compute_gradients)
                continue
            if p.grad is None or p.grad.shape != p.shape or p.grad.dtype != p.dtype:
                p.grad = g.detach().to(dtype=p.dtype).clone()
            else:  # reuse the buffer: replacing it would free and re-fault megabytes every step
                p.grad.copy_(g)


class Rule(metaclass=ABCMeta):
    """A learning rule: relaxes the system as it needs and returns an :class:`Estimate` of ∂L/∂θ.

    ``gradients`` is pure (it writes no ``.grad``); :meth:`compute_gradients` also writes ``.grad``.
    ``bias_order`` is the order of the estimator's bias in β (1 one-sided, 2 centered); ``None`` for the exact
    references, and for rules that do not tend to ∂L/∂θ as β → 0 (contrastive and coupled learning).
    """

    bias_order: int | None = None

    @abstractmethod
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
        """Estimate ∂L/∂θ for the batch ``(x, y)``. ``nudged_solver`` (default ``solver``) relaxes the
        nudged phases, which start from the free equilibrium. ``init`` (default: the system's zero state)
        is where the free phase starts, e.g. the previous batch's :attr:`Estimate.last_state` (warm start)."""

    def compute_gradients(
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
        """:meth:`gradients`, then write them into ``.grad``: call ``optimizer.step()`` next."""
        est = self.gradients(system, cost, solver, x, y, nudged_solver=nudged_solver, init=init)
        est.write_grad(system, cost)
        return est


class ContrastRule(Rule):
    """A rule whose estimate is a contrast the system computes in place: :meth:`compute_gradients` hands
    the existing ``.grad`` buffers to :meth:`_estimate`, which writes the contrasts straight into them (no
    copy of θ-sized tensors); parameters without a buffer yet get theirs from ``write_grad``. The estimate's
    system gradients are then the ``.grad`` tensors themselves (the next call overwrites them): clone them
    to keep them."""

    @abstractmethod
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
        """The estimate; with ``out`` (name → buffer), the system's contrasts are written into the buffers."""

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
        return self._estimate(system, cost, solver, x, y, nudged_solver, init, out=None)

    def compute_gradients(
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
        out = {
            n: p.grad
            for n, p in system.named_parameters()
            if p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == p.dtype
        }
        est = self._estimate(system, cost, solver, x, y, nudged_solver, init, out=out)
        est.write_grad(system, cost)
        return est


def raise_if_diverged(phases: tuple[Equilibrium, ...]) -> None:
    """One host sync per batch: a non-finite phase means the run is diverging."""
    finite = phases[0].stats.finite
    for eq in phases[1:]:
        finite = finite & eq.stats.finite
    if not bool(finite.all()):  # host sync, once per batch
        betas = ", ".join(f"{eq.beta:g}" for eq in phases if not bool(eq.stats.finite.all()))
        raise DivergenceError(
            f"non-finite state during relaxation (phases with beta = {betas}); the run is diverging",
            hint="lower the learning rate or beta, or check the inputs for NaN/inf",
        )


def cost_param_grads(cost: Cost, objective: Tensor) -> dict[str, Tensor]:
    """Gradients of ``objective`` with respect to the cost's own parameters (a readout), keyed ``cost.*``."""
    params = dict(cost.named_parameters())
    if not params:
        return {}
    grads = torch.autograd.grad(objective, list(params.values()), allow_unused=True)
    return {
        f"cost.{n}": torch.zeros_like(p) if g is None else g
        for (n, p), g in zip(params.items(), grads, strict=True)
    }
