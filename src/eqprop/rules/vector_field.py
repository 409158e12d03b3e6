"""Vector-field EqProp (Scellier, Goyal, Binas & Bengio 2018): EqProp for dynamics with separate forward and
backward weights, which have no energy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Variant
from eqprop.rules.eqprop import EqProp
from eqprop.solvers.base import Equilibrium
from eqprop.solvers.phases import Phases
from eqprop.systems.base import EnergySystem

__all__ = ["VectorFieldEqProp"]


@dataclass(frozen=True)
class VectorFieldEqProp(EqProp):
    r"""EqProp's two phases on a system with backward weights of its own
    (:class:`~eqprop.systems.VectorFieldHopfield`), and the vector-field update: each weight moves by its
    presynaptic activity at the free fixed point times the change of its postsynaptic unit between the phases,

    .. math::
        \widehat{∇}_{W_{ij}} = −\frac{s_j^{*}\,(s_i^{β_2} − s_i^{β_1})}{β_2 − β_1},

    for the forward weights (post unit in the layer above) and the backward ones (post unit in the layer below)
    alike; biases ``−(s^{β₂} − s^{β₁})/(β₂ − β₁)``. With ``same_update=True`` both get the mean of their Hebbian
    contrasts instead (Laborieux et al.'s ``--same-update``): weights that start tied then stay tied, and the run
    is symmetric EqProp exactly. The nudging (``beta``, ``variant``, ``random_sign``) is EqProp's.

    Raises:
        ConfigError: a system without backward weights (use ``rule.kind = "eqprop"`` there).
    """

    kind: ClassVar[str] = "vector_field"

    variant: Variant = "positive"
    same_update: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.same_update, bool):
            raise ConfigError(f"VectorFieldEqProp(same_update={self.same_update!r}): need true or false")

    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        if not hasattr(system, "vector_field_contrast"):
            raise ConfigError(
                f"vector-field EqProp trains backward weights, and {type(system).__name__} has none",
                hint="use system.kind = 'vector_field' (separate forward and backward weights), or rule.kind = "
                "'eqprop' for this symmetric system",
            )

    def _contrast(
        self,
        phases: Phases,
        free: Equilibrium,
        lo: Equilibrium,
        hi: Equilibrium,
        scale: float,
        out: Mapping[str, Tensor] | None,
    ) -> dict[str, Tensor]:
        if self.same_update:
            grads = super()._contrast(phases, free, lo, hi, scale, out)
            for name in [n for n in grads if n.startswith("feedback.")]:
                # Laborieux et al.'s common update: the mean of the two Hebbian contrasts (equal for dense
                # weights; with max pooling the backward term pools its own argmax)
                forward, backward = grads["weights." + name.partition(".")[2]], grads[name]
                forward.add_(backward).mul_(0.5)
                backward.copy_(forward)
            return grads
        system = phases.system
        return system.vector_field_contrast(  # type: ignore[attr-defined]
            phases.x, free.state, lo.state, hi.state, scale=scale, out=out
        )
