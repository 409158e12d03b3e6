r"""The Hamiltonian echo: exact gradients of a physical initial-value trajectory from the physics run backwards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate, Rule, Variant, check_beta_and_variant, cost_param_grads, phase_betas
from eqprop.solvers.phases import Phases
from eqprop.systems.base import EnergySystem

__all__ = ["HamiltonianEcho"]


@dataclass(frozen=True)
class HamiltonianEcho(Rule):
    r"""Hamiltonian echo learning (Lopez-Pastor & Marquardt, PRX 2023; RHEL, Pourcel & Ernoult 2025) for a
    Lagrangian system solving its initial-value problem (:class:`~eqprop.systems.lagrangian.MechanicalSystem` with
    ``boundary = "initial"``, integrated by the ``leapfrog`` solver).

    After the forward pass, the final state is time-reversed (momenta flipped) and the same physics runs on the
    time-reversed input, twice, with the cost's gradient injected into the momenta at strengths ``ε₁`` and ``ε₂``
    (the β convention of :mod:`eqprop.rules.base`: ``(0, β)``, ``(−β, 0)`` or ``(−β, +β)``). The gradient is the
    contrast of the time-integrated ``∂V/∂θ`` between the two echoes, divided by ``ε₂ − ε₁``: a local quantity (a
    spring's extension squared, a synapse's pre/post product), no Jacobian, no stored trajectory, memory flat in
    the sequence length. For the leapfrog scheme it tends to the BPTT gradient exactly, with bias ``O(β)``
    one-sided and ``O(β²)`` centered.

    A cost with parameters (a readout) gets its ordinary gradient at the forward trajectory.

    Args:
        beta: the echo's nudging strength (``ε`` in the papers), > 0.
        variant: ``"positive"``, ``"negative"`` or ``"centered"``.
    """

    kind: ClassVar[str] = "echo"
    reads_stationary: ClassVar[bool] = False

    beta: float = 1e-3
    variant: Variant = "centered"

    def __post_init__(self) -> None:
        check_beta_and_variant("HamiltonianEcho", self.beta, self.variant)

    @property
    def bias_order(self) -> int:  # type: ignore[override]
        return 2 if self.variant == "centered" else 1

    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if not callable(getattr(system, "echo", None)) or system.stationary:
            raise ConfigError(
                f"the Hamiltonian echo trains a Lagrangian system's initial-value problem, and {type(system).__name__}"
                f"{' (boundary ' + repr(system.boundary) + ')' if hasattr(system, 'boundary') else ''} is not one",
                hint="use boundary='initial' with the leapfrog solver; fixed or periodic boundaries train with "
                "rule.kind='eqprop' (Lagrangian EqProp) and the newton solver",
            )

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        system, cost, x = phases.system, phases.cost, phases.x
        free = phases.free
        system.check_trajectory(free.state)  # type: ignore[attr-defined]  # a non-finite one: what to change
        target = phases.target
        with torch.enable_grad():
            leaves = tuple(s.detach().requires_grad_(True) for s in free.state)
            c = cost(leaves, target)
            found = torch.autograd.grad(c.sum(), leaves, allow_unused=True)
        grads_state = tuple(
            torch.zeros_like(s) if g is None else g for s, g in zip(leaves, found, strict=True)
        )
        if bool(grads_state[0].abs().amax() > 0):
            raise ConfigError(
                "the Hamiltonian echo injects the cost's gradient into the momenta through the positions, and this "
                "cost reads the final momentum",
                hint="read the output positions (the last state variable)",
            )
        inject = system.positions(grads_state)  # type: ignore[attr-defined]
        q = system.positions(free.state)  # type: ignore[attr-defined]
        q_end = q if q.dim() == 2 else q[:, -1]
        b1, b2 = phase_betas(self.variant, self.beta)
        sys_grads = system.echo(x, q_end, free.state[0], inject, (b1, b2))  # type: ignore[operator]
        grads = {f"system.{n}": g for n, g in sys_grads.items()}
        loss = c.detach().mean()
        with torch.enable_grad():
            grads.update(cost_param_grads(cost, cost(free.state, target).mean()))
        with torch.no_grad():
            scores = cost.predict(free.state)
        return Estimate(grads=grads, loss=loss, scores=scores, phases=(free,), metrics={})
