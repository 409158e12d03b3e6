"""Equilibrium Propagation: the gradient from two relaxations at different nudging strengths."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.errors import ConfigError
from eqprop.rules.base import (
    Estimate,
    Rule,
    Variant,
    check_beta_and_variant,
    cost_param_grads,
    has_parameters,
    phase_betas,
)
from eqprop.solvers.base import Equilibrium
from eqprop.solvers.phases import Phases, raise_if_diverged

__all__ = ["EqProp"]


@dataclass(frozen=True)
class EqProp(Rule):
    r"""Equilibrium Propagation (Scellier & Bengio 2017; thesis §2.3):

    .. math::
        \widehat{∇}_θ = \frac{∂_θF(θ, β_2, s^{β_2}) − ∂_θF(θ, β_1, s^{β_1})}{β_2 − β_1},
        \qquad F = E + βC

    with ``(β₁, β₂) = (0, β)`` (``"positive"``, bias O(β)), ``(−β, 0)`` (``"negative"``, bias O(β)) or
    ``(−β, +β)`` (``"centered"``, bias O(β²); Laborieux et al. 2021): the β convention of
    :mod:`eqprop.rules.base`. The nudged phases start from the free equilibrium. For the system's parameters
    this is the local contrast of ``∂E/∂θ``; a cost with parameters (a readout) gets
    ``[β₂∂C/∂θ(s^{β₂}) − β₁∂C/∂θ(s^{β₁})]/(β₂ − β₁)``.

    With ``random_sign=True`` (one-sided variants only) each batch draws the side of its nudged phase, (0, +β)
    or (−β, 0), with probability ½ each from torch's global generator (which a run's checkpoints save), as
    Laborieux et al. (2021) do to cancel the one-sided bias on average over the batches.

    Args:
        beta: the nudging strength ``β > 0``; the sign of each phase comes from ``variant``.
        variant: ``"positive"``, ``"negative"`` or ``"centered"``.
        random_sign: draw the one-sided nudge's sign per batch (``variant`` is then only the one-sided kind).

    Example:
        >>> rule = EqProp(beta=0.2, variant="centered")
        >>> est = rule.gradients(net, SquaredError(), BlockCoordinate(iterations=15), x, y, out="grad")
        >>> optimizer.step()
    """

    kind: ClassVar[str] = "eqprop"

    beta: float = 0.2
    variant: Variant = "centered"
    random_sign: bool = False

    def __post_init__(self) -> None:
        check_beta_and_variant("EqProp", self.beta, self.variant)
        if not isinstance(self.random_sign, bool):
            raise ConfigError(f"EqProp(random_sign={self.random_sign!r}): need true or false")
        if self.random_sign and self.variant == "centered":
            raise ConfigError(
                "EqProp(random_sign=True, variant='centered'): the random sign picks one side of a one-sided "
                "estimate per batch, and the centered one already nudges both ways",
                hint="use variant='positive' with random_sign=True, or the centered variant alone",
            )

    @property
    def bias_order(self) -> int:  # type: ignore[override]
        return 2 if self.variant == "centered" else 1

    @property
    def betas(self) -> tuple[float, float]:
        """``(β₁, β₂)`` of the two phases."""
        return phase_betas(self.variant, self.beta)

    def draw_betas(self) -> tuple[float, float]:
        """``(β₁, β₂)`` of this batch's phases: :attr:`betas`, or with ``random_sign`` one side drawn at random."""
        b1, b2 = self.betas
        if self.random_sign and bool(torch.randint(0, 2, ())):  # the global CPU generator: no device sync
            b1, b2 = -b2, -b1  # (0, +β) <-> (−β, 0)
        return b1, b2

    def _contrast(
        self,
        phases: Phases,
        free: Equilibrium,
        lo: Equilibrium,
        hi: Equilibrium,
        scale: float,
        out: Mapping[str, Tensor] | None,
    ) -> dict[str, Tensor]:
        """The system's part of the estimate: the contrast of ``∂E/∂θ`` between the two phases."""
        return phases.system.param_grad_difference(phases.x, lo.state, hi.state, scale=scale, out=out)

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        b1, b2 = self.draw_betas()
        cost = phases.cost
        with torch.no_grad():
            free = phases.free
            lo, hi = phases.nudged(b1), phases.nudged(b2)
            used = (free, lo, hi) if b1 != 0.0 and b2 != 0.0 else (free, hi if b1 == 0.0 else lo)
            raise_if_diverged(*used)
            scale = 1.0 / (b2 - b1)
            contrast = self._contrast(phases, free, lo, hi, scale, out)
            grads = {f"system.{n}": g for n, g in contrast.items()}
            target = phases.target
            loss = cost(free.state, target).mean()
            scores = cost.predict(free.state)
        if has_parameters(cost):  # a readout: trained from the cost term of F
            with torch.enable_grad():
                objective = (b2 * cost(hi.state, target).mean() - b1 * cost(lo.state, target).mean()) * scale
                grads.update(cost_param_grads(cost, objective))
        residuals = torch.stack([eq.stats.residual for eq in used]).amax(1)
        return Estimate(grads=grads, loss=loss, scores=scores, phases=used, metrics={"residual": residuals})
