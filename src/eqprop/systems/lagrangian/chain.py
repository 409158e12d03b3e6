r"""A driven chain of masses and springs: the linear Lagrangian system of the thesis's ch. 6 and of the echo papers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from eqprop.systems.lagrangian.base import Boundary, MechanicalSystem, Observe

__all__ = ["SpringChain"]


class SpringChain(MechanicalSystem):
    r"""``units`` masses on a line, each tied to its rest position by a spring ``k_i`` and to its neighbour by a
    spring ``κ_i``, driven by forces ``B u_t``:

    .. math::
        V(θ, u, q) = \tfrac12\sum_i k_i q_i^2 + \tfrac12\sum_i κ_i (q_{i+1} - q_i)^2 - \sum_i (B u)_i\, q_i .

    Every parameter's gradient is local: ``∂V/∂k_i = ½q_i²`` (the spring's extension squared), ``∂V/∂κ_i =
    ½(q_{i+1} − q_i)²``, ``∂V/∂B_ij = −q_i u_j``. The springs are kept ``>= 0`` after each update.

    Args:
        units, outputs, input_shape, dt, boundary, observe, mass: see :class:`MechanicalSystem`.
        stiffness, coupling: initial ``k`` and ``κ`` (each spread by ±``spread``/2 relative, from ``generator``).
        input_scale: the input weights start ``N(0, input_scale²/features)``.
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
        coupling: float = 1.0,
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
        self._check_nonnegative(stiffness=stiffness, coupling=coupling, spread=spread)

        def spread_of(n: int, mean: float) -> Tensor:
            return mean * (1 + spread * (torch.rand(n, generator=generator) - 0.5))

        self.stiffness = nn.Parameter(spread_of(units, stiffness))
        self.coupling = nn.Parameter(spread_of(max(units - 1, 0), coupling))
        self.input_weights = self._input_weights(units, input_scale, generator)

    def _stretch(self, q: Tensor) -> Tensor:
        return q[..., 1:] - q[..., :-1]

    def potential(self, u: Tensor, q: Tensor) -> Tensor:
        d = self._stretch(q)
        return (
            0.5 * (self.stiffness * q * q).sum(-1)
            + 0.5 * (self.coupling * d * d).sum(-1)
            - ((u @ self.input_weights.T) * q).sum(-1)
        )

    def force(self, u: Tensor, q: Tensor) -> Tensor:
        t = self.coupling * self._stretch(q)  # the tension of each coupling spring
        pad = torch.zeros_like(q[..., :1])
        pull = torch.cat((t, pad), -1) - torch.cat(
            (pad, t), -1
        )  # from the right neighbour, minus to the left
        return -self.stiffness * q + pull + u @ self.input_weights.T

    def potential_hessian(self, u: Tensor, q: Tensor) -> Tensor:
        n = self.units
        h = torch.diag(self.stiffness)
        if n > 1:
            c = self.coupling
            lap = torch.diag(torch.cat((c, c.new_zeros(1))) + torch.cat((c.new_zeros(1), c)))
            lap = lap - torch.diag(c, 1) - torch.diag(c, -1)
            h = h + lap
        return h.detach().to(q.dtype).expand(*q.shape[:-1], n, n)

    def potential_param_grads(self, u: Tensor, q: Tensor, weight: Tensor) -> dict[str, Tensor]:
        w = weight.expand(q.shape[:-1]).unsqueeze(-1)
        d = self._stretch(q)
        wq = (w * q).reshape(-1, self.units)
        return {
            "stiffness": 0.5 * (w * q * q).reshape(-1, self.units).sum(0),
            "coupling": 0.5 * (w * d * d).reshape(-1, max(self.units - 1, 0)).sum(0),
            "input_weights": -(wq.T @ u.reshape(-1, self.features)),
        }

    def constrain_parameters(self) -> None:
        with torch.no_grad():
            self.stiffness.clamp_(min=0.0)
            self.coupling.clamp_(min=0.0)
