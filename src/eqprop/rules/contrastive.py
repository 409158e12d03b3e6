"""Contrastive and coupled learning: the output is *clamped* at a target, instead of nudged by a cost.

Both rules measure, like EqProp, the local contrast ``∂E/∂θ`` between two equilibria, but they reach the second
equilibrium by holding the output variable ``o`` at a chosen value while the hidden variables relax (the
``clamp=`` of :func:`~eqprop.solve`). Naming and phases follow the comparative study of Scellier, Ernoult,
Kendall & Kumar (NeurIPS 2023), Table 1: ``CL``, ``PCpL``, ``NCpL``, ``CCpL``.

Write ``G(θ, o) = min_h E(θ, x, h, o)`` for the energy with the output held at ``o`` and the hidden variables
``h`` relaxed; the free output ``o*`` minimises ``G`` in ``o``. By the envelope theorem
``∂_θG(θ, o) = ∂_θE(θ, x, s^o)``, with ``s^o`` the equilibrium clamped at ``o``: that is what both rules read.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate, Rule, Variant, check_beta_and_variant, has_parameters, phase_betas
from eqprop.solvers.base import Equilibrium
from eqprop.solvers.phases import Phases, raise_if_diverged
from eqprop.systems.base import EnergySystem

__all__ = ["ContrastiveLearning", "CoupledLearning"]


class _OutputClamping(Rule):
    """What CL and CpL share: clamp the output at ``o* + β_i·(y − o*)`` for two ``β_i``, contrast ``∂E/∂θ``.

    Subclasses give :attr:`betas`, the pair ``(β₁, β₂)`` of clamping fractions (0 = the free output,
    1 = the target).
    """

    bias_order = None  # not estimators of ∂L/∂θ in the β → 0 sense (see each class)

    @property
    @abstractmethod
    def betas(self) -> tuple[float, float]:
        """``(β₁, β₂)``: where each phase clamps the output, as a fraction of the way from ``o*`` to ``y``."""

    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if has_parameters(cost):
            raise ConfigError(
                f"{type(self).__name__} clamps the output layer at the target, so it needs a cost without "
                f"parameters whose target lives in the output variable (SquaredError); got {type(cost).__name__}",
                hint="use cost.kind = squared_error, or EqProp, which nudges through any cost",
            )

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        b1, b2 = self.betas
        system, cost = phases.system, phases.cost
        with torch.no_grad():
            free = phases.free
            k = cost.target_index % len(system.variables)
            output = free.state[k]  # o*, (batch, *output shape)
            target = phases.target
            if target.shape != output.shape:
                raise ConfigError(
                    f"{type(self).__name__} clamps variable {system.variables[k].name} at the target, but the "
                    f"target has shape {tuple(target.shape)} and the variable {tuple(output.shape)}",
                    hint="use a cost whose target lives in the output variable (SquaredError)",
                )
            error = target - output  # y − o*
            scale = 1.0
            if getattr(self, "misclassified_only", False):
                # Stern et al.'s rule: only the misclassified examples move the parameters, averaged over them
                labels = phases.y if not phases.y.is_floating_point() else phases.y.argmax(-1)
                wrong = cost.predict(free.state).argmax(-1) != labels
                count = int(wrong.sum())  # host sync
                error = error * wrong.view(-1, *([1] * (error.dim() - 1))).to(error.dtype)
                scale = output.shape[0] / count if count else 0.0

            def phase(b: float) -> Equilibrium:
                if b == 0.0:
                    # Clamped at o* the free state is already the hidden layers' equilibrium: reuse it (as
                    # EqProp reuses its β = 0 phase) instead of relaxing to the same state again.
                    return free
                return phases.clamped({k: torch.add(output, error, alpha=b)})  # o* + β·(y − o*)

            lo, hi = phase(b1), phase(b2)
            used = (free, lo, hi) if b1 != 0.0 and b2 != 0.0 else (free, hi if b1 == 0.0 else lo)
            raise_if_diverged(*used)
            contrast = system.param_grad_difference(
                phases.x, lo.state, hi.state, scale=scale / (b2 - b1), out=out
            )
            grads = {f"system.{n}": g for n, g in contrast.items()}
            loss = cost(free.state, target).mean()
            scores = cost.predict(free.state)
        residuals = torch.stack([eq.stats.residual for eq in used]).amax(1)
        return Estimate(grads=grads, loss=loss, scores=scores, phases=used, metrics={"residual": residuals})


@dataclass(frozen=True)
class ContrastiveLearning(_OutputClamping):
    r"""Contrastive learning (CL; Movellan 1991, Baldi & Pineda 1991; "CL" in Scellier et al. 2023):

    .. math::
        \widehat{∇}_θ = ∂_θE(θ, x, s^{\mathrm{clamp}\,y}) − ∂_θE(θ, x, s^{\mathrm{clamp}\,o^*})

    Phase 1 holds the output at its free value ``o*`` (which is the free equilibrium itself, so it is not
    relaxed again); phase 2 holds it at the target ``y`` (one-hot for labels) while the hidden layers relax
    from the free state. This is the exact gradient of the *contrastive* objective
    ``J(θ) = G(θ, y) − G(θ, o*) ≥ 0`` (the energy the target costs over the free state; see the module
    docstring for ``G``), not of the loss ``C(o*, y)``: the two agree only without hidden layers. Hence
    ``bias_order = None``. It equals ``CoupledLearning(beta=1.0, variant="positive")``.

    Only for a cost without parameters whose target lives in the output variable (:class:`SquaredError`);
    other costs raise :class:`~eqprop.ConfigError`.

    Example:
        >>> rule = ContrastiveLearning()
        >>> est = rule.gradients(net, SquaredError(), BlockCoordinate(iterations=15), x, y, out="grad")
        >>> optimizer.step()

    References:
        Scellier, Ernoult, Kendall & Kumar, "Energy-based learning algorithms for analog computing: a
        comparative study", NeurIPS 2023.
    """

    kind: ClassVar[str] = "contrastive"

    @property
    def betas(self) -> tuple[float, float]:
        return (0.0, 1.0)


@dataclass(frozen=True)
class CoupledLearning(_OutputClamping):
    r"""Coupled learning (CpL; Stern, Hexner, Rocks & Liu 2021; "PCpL", "NCpL", "CCpL" in Scellier et al. 2023):

    .. math::
        \widehat{∇}_θ = \frac{∂_θE(θ, x, s^{2}) − ∂_θE(θ, x, s^{1})}{β_2 − β_1},
        \qquad s^{i}: \text{output clamped at } o^* + β_i (y − o^*)

    with ``(β₁, β₂) = (0, β)`` (``"positive"``, PCpL), ``(−β, 0)`` (``"negative"``, NCpL) or ``(−β, +β)``
    (``"centered"``, CCpL). The output is pushed a fraction ``β`` of the way from its free value ``o*`` to the
    target (or away from it) and *held* there, while the hidden layers relax from the free state. CCpL is
    exactly the mean of PCpL and NCpL at the same ``β``.

    What it computes: as ``β → 0`` the estimate tends to ``∂²G/∂θ∂o · (y − o*)``, whereas the loss gradient
    (what EqProp's nudging recovers) is ``∂²G/∂θ∂o · (∂²G/∂o²)⁻¹ (y − o*)``, with ``G`` the energy with the
    output held (module docstring). CpL replaces the output's effective curvature by the identity, so it is
    not an estimator of ``∂L/∂θ`` (``bias_order = None``); it is exact when that curvature is the identity
    (no hidden layer, a linear output). Only for a cost without parameters whose target lives in the output
    variable (:class:`SquaredError`).

    Args:
        beta: the clamping fraction ``β > 0``; the sign of each phase comes from ``variant``
            (``beta = 1``, ``"positive"`` is contrastive learning). The comparative study used 0.25.
        variant: ``"positive"``, ``"negative"`` or ``"centered"``.
        misclassified_only: average the update over the misclassified examples of the batch only (the others
            are clamped at their free output, so they contribute nothing): Stern et al.'s "cross-entropy-like"
            rule for their digit network. No example misclassified: no update.

    Example:
        >>> rule = CoupledLearning(beta=0.25, variant="centered")
        >>> est = rule.gradients(net, SquaredError(), BlockCoordinate(iterations=15), x, y, out="grad")
        >>> optimizer.step()

    References:
        Stern, Hexner, Rocks & Liu, "Supervised learning in physical networks: from machine learning to
        learning machines", Phys. Rev. X 11, 021045 (2021). Scellier et al., NeurIPS 2023 (as above).
    """

    kind: ClassVar[str] = "coupled"

    beta: float = 0.2
    variant: Variant = "centered"
    misclassified_only: bool = False

    def __post_init__(self) -> None:
        check_beta_and_variant("CoupledLearning", self.beta, self.variant)
        if not isinstance(self.misclassified_only, bool):
            raise ConfigError(
                f"CoupledLearning(misclassified_only={self.misclassified_only!r}): need true or false"
            )

    @property
    def betas(self) -> tuple[float, float]:
        return phase_betas(self.variant, self.beta)
