r"""A Hamiltonian recurrent network: oscillators coupled through nonlinear springs, a sequence model for the echo."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqprop.errors import ConfigError
from eqprop.systems.lagrangian.base import Boundary, MechanicalSystem, Observe

__all__ = ["HamiltonianRNN"]


def _logcosh(z: Tensor) -> Tensor:
    return F.softplus(2 * z) - z - math.log(2.0)


class HamiltonianRNN(MechanicalSystem):
    r"""Hamiltonian recurrent units in the spirit of RHEL's HRUs (Pourcel & Ernoult 2025): ``units`` oscillators
    with stiffnesses ``α``, coupled through ``springs`` nonlinear springs whose rest length the input moves,

    .. math::
        V(θ, u, q) = \tfrac12\sum_i α_i q_i^2 + \sum_j \log\cosh\big((W q + B u + b)_j\big).

    ``log cosh`` grows linearly, so the ``α`` term keeps the energy bounded below and the trajectory bounded
    (energy is conserved). Local gradients: ``∂V/∂W = tanh(z)qᵀ``, ``∂V/∂B = tanh(z)uᵀ``, ``∂V/∂b = tanh(z)``,
    ``∂V/∂α = ½q²``, with ``z = Wq + Bu + b`` the springs' stretch. ``α`` is kept ``>= 0``.

    Args:
        units, outputs, input_shape, dt, boundary, observe, mass: see :class:`MechanicalSystem`.
        springs: the number of nonlinear springs (default ``units``).
        stiffness: initial ``α``; coupling_scale: ``W`` starts ``N(0, scale²/units)``; input_scale: ``B`` starts
        ``N(0, input_scale²/features)``.
    """

    def __init__(
        self,
        units: int,
        *,
        outputs: int,
        input_shape: Sequence[int],
        dt: float = 0.5,
        boundary: Boundary = "initial",
        observe: Observe = "final",
        mass: float | Sequence[float] = 1.0,
        springs: int | None = None,
        stiffness: float = 1.0,
        coupling_scale: float = 1.0,
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
        m = units if springs is None else springs
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(f"HamiltonianRNN(springs={springs!r}): need an integer >= 1")
        self._check_nonnegative(stiffness=stiffness, coupling_scale=coupling_scale)
        self.springs = m
        self.stiffness = nn.Parameter(torch.full((units,), float(stiffness)))
        self.weights = nn.Parameter(
            torch.randn(m, units, generator=generator) * (coupling_scale / math.sqrt(units))
        )
        self.input_weights = self._input_weights(m, input_scale, generator)
        self.bias = nn.Parameter(torch.zeros(m))

    def _stretch(self, u: Tensor, q: Tensor) -> Tensor:
        return q @ self.weights.T + u @ self.input_weights.T + self.bias

    def potential(self, u: Tensor, q: Tensor) -> Tensor:
        return 0.5 * (self.stiffness * q * q).sum(-1) + _logcosh(self._stretch(u, q)).sum(-1)

    def force(self, u: Tensor, q: Tensor) -> Tensor:
        return -self.stiffness * q - torch.tanh(self._stretch(u, q)) @ self.weights

    def potential_hessian(self, u: Tensor, q: Tensor) -> Tensor:
        sech2 = 1 - torch.tanh(self._stretch(u, q)) ** 2  # (..., springs)
        w = self.weights
        h = torch.einsum("...j,ja,jb->...ab", sech2, w, w)
        return (h + torch.diag(self.stiffness)).detach()

    def potential_param_grads(self, u: Tensor, q: Tensor, weight: Tensor) -> dict[str, Tensor]:
        w = weight.expand(q.shape[:-1]).unsqueeze(-1)
        t = (w * torch.tanh(self._stretch(u, q))).reshape(-1, self.springs)
        return {
            "stiffness": 0.5 * (w * q * q).reshape(-1, self.units).sum(0),
            "weights": t.T @ q.reshape(-1, self.units),
            "input_weights": t.T @ u.reshape(-1, self.features),
            "bias": t.sum(0),
        }

    def constrain_parameters(self) -> None:
        with torch.no_grad():
            self.stiffness.clamp_(min=0.0)
