r"""Networks of coupled nonlinear oscillators (pendula): a Lagrangian system with a non-quadratic potential."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from eqprop.systems.lagrangian.base import Boundary, MechanicalSystem, Observe

__all__ = ["CoupledOscillators"]


class CoupledOscillators(MechanicalSystem):
    r"""``units`` pendula (angles ``q``) with restoring strengths ``k``, all-to-all couplings ``J`` (symmetric, no
    self-coupling) and driving torques ``B u_t``:

    .. math::
        V(θ, u, q) = \sum_i k_i (1 - \cos q_i) + \tfrac12\sum_{i \ne j} J_{ij}\,(1 - \cos(q_i - q_j))
        - \sum_i (B u)_i\, q_i .

    Small angles give a spring network; large ones the pendulum's softening nonlinearity. The Hessian and the
    parameter gradients take the generic (autograd) path: the reference for the fast paths of the other systems.

    Args:
        units, outputs, input_shape, dt, boundary, observe, mass: see :class:`MechanicalSystem`.
        stiffness: initial ``k`` (±``spread``/2 relative); coupling_scale: ``J`` starts ``N(0, scale²/units)``;
        input_scale: ``B`` starts ``N(0, input_scale²/features)``.
    """

    def __init__(
        self,
        units: int,
        *,
        outputs: int,
        input_shape: Sequence[int],
        dt: float = 0.1,
        boundary: Boundary = "initial",
        observe: Observe = "trajectory",
        mass: float | Sequence[float] = 1.0,
        stiffness: float = 1.0,
        coupling_scale: float = 0.5,
        spread: float = 0.2,
        input_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            units,
            outputs=outputs,
            input_shape=input_shape,
            dt=dt,
            boundary=boundary,
            observe=observe,
            mass=mass,
        )
        self._check_nonnegative(stiffness=stiffness, coupling_scale=coupling_scale, spread=spread)
        self.stiffness = nn.Parameter(
            stiffness * (1 + spread * (torch.rand(units, generator=generator) - 0.5))
        )
        j = torch.randn(units, units, generator=generator) * (coupling_scale / math.sqrt(units))
        self.couplings = nn.Parameter(0.5 * (j + j.T))
        self.input_weights = self._input_weights(units, input_scale, generator)
        self.register_buffer("off_diagonal", 1 - torch.eye(units))

    def _symmetric(self) -> Tensor:
        return 0.5 * (self.couplings + self.couplings.T) * self.off_diagonal

    def potential(self, u: Tensor, q: Tensor) -> Tensor:
        diff = q.unsqueeze(-1) - q.unsqueeze(-2)
        pair = 0.5 * (self._symmetric() * (1 - torch.cos(diff))).sum((-1, -2))
        return (self.stiffness * (1 - torch.cos(q))).sum(-1) + pair - ((u @ self.input_weights.T) * q).sum(-1)

    def force(self, u: Tensor, q: Tensor) -> Tensor:
        diff = q.unsqueeze(-1) - q.unsqueeze(-2)
        return (
            -self.stiffness * torch.sin(q)
            - (self._symmetric() * torch.sin(diff)).sum(-1)
            + u @ self.input_weights.T
        )
