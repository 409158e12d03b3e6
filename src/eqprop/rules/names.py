"""The literature's names of the energy-based learning rules, in one table.

The names are those of the comparative study of Scellier, Ernoult, Kendall & Kumar (NeurIPS 2023,
"Energy-based learning algorithms for analog computing: a comparative study", Table 1). Each maps onto a
rule class (:data:`RULES`, keyed by the run configuration's ``rule.kind``) and a ``variant``
(``eqprop train --rule NAME`` sets both), and :func:`by_name` builds the rule.

Name clash: ``CEP`` here is *centered* EqProp (β₁ = −β, β₂ = +β; Laborieux et al. 2021 call it "symmetric
nudging"). In Laborieux et al.'s code (``Laborieux-Axel/Equilibrium-Propagation``) ``CEP`` means *continual*
EqProp (parameters updated during the nudged phase), which is ``rule.kind = "continual"`` here
(:class:`~eqprop.rules.ContinualEqProp`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from eqprop.errors import ConfigError
from eqprop.rules.agnostic import AgnosticEqProp
from eqprop.rules.base import Rule
from eqprop.rules.continual import ContinualEqProp
from eqprop.rules.contrastive import ContrastiveLearning, CoupledLearning
from eqprop.rules.echo import HamiltonianEcho
from eqprop.rules.eqprop import EqProp
from eqprop.rules.holomorphic import HolomorphicEqProp
from eqprop.rules.implicit import ImplicitDiff
from eqprop.rules.thermal import ThermalEqProp
from eqprop.rules.unrolled import BackpropThroughSolver
from eqprop.rules.vector_field import VectorFieldEqProp

__all__ = ["RULES", "RULE_NAMES", "RuleName", "by_name", "lookup"]

RULES: dict[str, type[Rule]] = {
    cls.kind: cls
    for cls in (
        EqProp,
        ContinualEqProp,
        VectorFieldEqProp,
        HolomorphicEqProp,
        ThermalEqProp,
        AgnosticEqProp,
        ContrastiveLearning,
        CoupledLearning,
        ImplicitDiff,
        BackpropThroughSolver,
        HamiltonianEcho,
    )
}
"""``rule.kind`` → rule class: the one table from a configuration's strings to the rules."""


@dataclass(frozen=True)
class RuleName:
    """One row of :data:`RULE_NAMES`.

    Attributes:
        name: the literature's name, e.g. ``"CEP"``.
        kind: the ``rule.kind`` of the run configuration (``eqprop``, ``contrastive``, ``coupled``,
            ``backprop``, ``implicit``, ``continual``, ``vector_field``, ``holomorphic``).
        variant: the ``rule.variant`` (``positive``, ``negative``, ``centered``) or ``None``.
        title: the algorithm's full name.
        computes: what its parameter update is, in one line.
        steps_of_nudged_phase: truncated backprop: unless ``rule.steps`` is set, differentiate as many sweeps
            as the nudged phase has (the study's setting).
    """

    name: str
    kind: str
    variant: str | None
    title: str
    computes: str
    steps_of_nudged_phase: bool = False


RULE_NAMES: dict[str, RuleName] = {
    r.name: r
    for r in (
        RuleName(
            "CL",
            "contrastive",
            None,
            "contrastive learning",
            "dE/dθ(output clamped at y) − dE/dθ(output clamped at o*): the gradient of the contrastive "
            "objective, not of the loss",
        ),
        RuleName(
            "PEP",
            "eqprop",
            "positive",
            "EqProp, positively perturbed",
            "[dE/dθ(s^β) − dE/dθ(s^0)]/β, nudged at (0, +β); bias O(β)",
        ),
        RuleName(
            "NEP",
            "eqprop",
            "negative",
            "EqProp, negatively perturbed",
            "[dE/dθ(s^0) − dE/dθ(s^−β)]/β, nudged at (−β, 0); bias O(β)",
        ),
        RuleName(
            "CEP",
            "eqprop",
            "centered",
            "EqProp, centered",
            "[dE/dθ(s^β) − dE/dθ(s^−β)]/(2β), nudged at (−β, +β); bias O(β²) "
            "(not Laborieux's continual EqProp)",
        ),
        RuleName(
            "PCpL",
            "coupled",
            "positive",
            "coupled learning, positively perturbed",
            "[dE/dθ(s²) − dE/dθ(s¹)]/β with the output clamped at o* and o* + β(y − o*)",
        ),
        RuleName(
            "NCpL",
            "coupled",
            "negative",
            "coupled learning, negatively perturbed",
            "[dE/dθ(s²) − dE/dθ(s¹)]/β with the output clamped at o* − β(y − o*) and o*",
        ),
        RuleName(
            "CCpL",
            "coupled",
            "centered",
            "coupled learning, centered",
            "[dE/dθ(s²) − dE/dθ(s¹)]/(2β) with the output clamped at o* − β(y − o*) and o* + β(y − o*)",
        ),
        RuleName(
            "TBP",
            "backprop",
            None,
            "truncated backpropagation",
            "backprop through rule.steps sweeps from the free equilibrium (default: the nudged phase's "
            "sweeps)",
            steps_of_nudged_phase=True,
        ),
        RuleName(
            "RBP",
            "implicit",
            None,
            "recurrent backpropagation",
            "the exact gradient at the free equilibrium by implicit differentiation (Almeida–Pineda's "
            "fixed point, solved by conjugate gradients)",
        ),
        RuleName(
            "C-EP",
            "continual",
            "positive",
            "continual EqProp (Ernoult et al. 2020; Laborieux et al.'s code calls it CEP)",
            "one optimizer step per nudged step, by ±[dE/dθ(s[t+1]) − dE/dθ(s[t])]/β; → PEP as lr → 0",
        ),
        RuleName(
            "VF",
            "vector_field",
            "positive",
            "vector-field EqProp (Scellier et al. 2018), on a system with backward weights",
            "−(s_post^β − s_post^0) ⊗ s_pre^0 / β per weight, forward and backward",
        ),
        RuleName(
            "hEP",
            "holomorphic",
            None,
            "holomorphic EqProp (Laborieux & Zenke 2022), on a holomorphic energy",
            "Re Σ_j e^(−2πij/N) dE/dθ(s^(β_j)) / (N|β|) with β_j = |β|e^(2πij/N) (rule.points = N, 4 by "
            "default); N = 2 is CEP",
        ),
    )
}
"""name → :class:`RuleName`: the comparative study's Table 1 in its order, then the rules of learning through
time (C-EP, VF) and holomorphic EqProp."""


def lookup(name: str) -> RuleName:
    """The row of ``name`` (case-insensitive: ``"ccpl"`` is ``"CCpL"``).

    Raises:
        ConfigError: for an unknown name; the message lists the valid ones.
    """
    if name in RULE_NAMES:
        return RULE_NAMES[name]
    folded = {k.casefold(): v for k, v in RULE_NAMES.items()}
    if isinstance(name, str) and name.casefold() in folded:
        return folded[name.casefold()]
    close = difflib.get_close_matches(str(name), list(RULE_NAMES), n=1)
    raise ConfigError(
        f"unknown rule name {name!r}: choose one of {', '.join(RULE_NAMES)}",
        hint=(f"did you mean {close[0]!r}? " if close else "")
        + "; ".join(f"{r.name} = {r.title}" for r in RULE_NAMES.values()),
    )


def by_name(name: str, *, beta: float = 0.2, steps: int = 15, cg_iterations: int = 500) -> Rule:
    """The rule the literature calls ``name``, e.g. ``by_name("CEP", beta=0.25)`` is
    ``EqProp(beta=0.25, variant="centered")``.

    Args:
        name: one of :data:`RULE_NAMES` (case-insensitive).
        beta: β of the EqProp and coupled-learning rules (ignored by the others). The comparative study
            used 0.25.
        steps: sweeps that TBP differentiates from the free equilibrium (the study: 15, the nudged phase's).
        cg_iterations: conjugate-gradient cap of RBP.

    Returns:
        A :class:`~eqprop.rules.Rule`.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones) or a bad ``beta`` / ``steps``.
    """
    row = lookup(name)
    cls = RULES[row.kind]
    given = {"beta": beta, "variant": row.variant, "steps": steps, "cg_iterations": cg_iterations}
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in given.items() if k in fields and v is not None})
