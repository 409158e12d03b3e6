"""Architecture thermodynamics: a statistical-mechanics analyzer of layered architectures.

After Chinea Manrique de Lara, "On the Theory of Deep Learning: A Theoretical Physics Perspective (Part
I)", Preprints 2020100285 (2020); Physica A 632 (2023). **The paper's equations were not available: every
definition here is a reconstruction from its abstract and keywords** (energy = interaction count, entropy =
degeneracy / attainable states, Diophantine iso-energetic families), built from standard statistical
mechanics and the closest published measures (DeepMAD, Serra et al.'s region bound, Szymanski et al.'s
symmetry count). See ``docs/architecture-thermodynamics.md``.

An architecture ``a = (n₀; n₁ … n_L; n_{L+1})`` is an equilibrium state of a body whose particles are the
hidden neurons and whose interactions are the couplings between adjacent layers (dense feed-forward nets
and layered Hopfield nets share this graph). Everything is topology only: no data, no training, no torch.

- energy :func:`energy` and the closed-form changes :func:`delta_energy` of the elementary :class:`Move`\\ s;
- the Diophantine families :func:`compositions` (fixed ``N``), :func:`iso_energetic` (fixed ``U``, exact or
  in a band), :func:`sample_iso_energetic`, :func:`shaped_family`;
- entropies :func:`permutation_entropy`, :func:`region_entropy`, :func:`gaussian_entropy` with
  :func:`effectiveness`; :func:`density_of_states` and :func:`ensemble_temperature` of the ensemble;
  :func:`free_energy`, :func:`stability`, :func:`efficiency`;
- :func:`analyze` scores and ranks a family; :func:`validate` and the rank statistics check a ranking
  against trained results (see :mod:`eqprop.analysis.study`).

Example:
    >>> from eqprop.analysis import thermo
    >>> family = list(thermo.iso_energetic(784, 10, 60000, [1, 2, 3]))
    >>> len(family)
    65
    >>> best = thermo.analyze(family, rho_max=0.02)[0]  # max H among members with ρ ≤ 0.02
    >>> best.arch.hidden, round(best.effectiveness, 4)
    ((34, 740), 0.0126)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eqprop.analysis.thermo.arch import (
    ENERGY_FORMS,
    MOVE_KINDS,
    Arch,
    Move,
    apply_move,
    delta_energy,
    energy,
    interactions,
    neighbours,
)
from eqprop.analysis.thermo.dioph import (
    SHAPES,
    compositions,
    count_compositions,
    iso_energetic,
    sample_iso_energetic,
    shaped_family,
)
from eqprop.analysis.thermo.ensemble import (
    DensityOfStates,
    Stability,
    density_of_states,
    efficiency,
    ensemble_temperature,
    free_energy,
    stability,
)
from eqprop.analysis.thermo.entropy import (
    ENTROPY_KINDS,
    EntropyKind,
    effectiveness,
    entropy,
    gaussian_entropy,
    permutation_entropy,
    region_entropy,
)
from eqprop.analysis.thermo.stats import (
    kendall_tau,
    partial_spearman,
    rankdata,
    spearman_rho,
    top_k,
    validate,
)
from eqprop.errors import ConfigError

__all__ = [
    "ENERGY_FORMS",
    "ENTROPY_KINDS",
    "MOVE_KINDS",
    "SHAPES",
    "Arch",
    "Assessment",
    "DensityOfStates",
    "Move",
    "Stability",
    "analyze",
    "apply_move",
    "compositions",
    "count_compositions",
    "delta_energy",
    "density_of_states",
    "effectiveness",
    "efficiency",
    "energy",
    "ensemble_temperature",
    "entropy",
    "free_energy",
    "gaussian_entropy",
    "interactions",
    "iso_energetic",
    "kendall_tau",
    "neighbours",
    "partial_spearman",
    "permutation_entropy",
    "rankdata",
    "region_entropy",
    "sample_iso_energetic",
    "shaped_family",
    "spearman_rho",
    "stability",
    "top_k",
    "validate",
]


@dataclass(frozen=True)
class Assessment:
    """Every measure of one architecture within a family, and its rank (see :func:`analyze`).

    Attributes:
        arch: the architecture.
        rank: 1 for the first under the ranking rule.
        energy: ``U`` (parameters with biases, interactions without).
        perm_entropy, region_entropy, gaussian_entropy: the three entropies (nats).
        effectiveness: DeepMAD's ``ρ``; ``feasible`` is ``ρ ≤ ρ₀``.
        score: the ranking entropy ``S`` (the kind passed to :func:`analyze`).
        efficiency: ``S/U``; ``relative_efficiency``: ``S / max S`` over the family;
            ``landauer_efficiency``: ``S_regions / (U ln 2)`` (bits per coupling).
        stability: margin and most destabilising move in the family's band.
        ensemble_temperature: ``T_arch`` of the iso-neuron ensemble at ``U(a)`` (NaN if not computed).
        free_energy: ``U − T·S`` at the design temperature (NaN at ``T = ∞``).
    """

    arch: Arch
    rank: int
    energy: float
    perm_entropy: float
    region_entropy: float
    gaussian_entropy: float
    effectiveness: float
    feasible: bool
    score: float
    efficiency: float
    relative_efficiency: float
    landauer_efficiency: float
    stability: Stability
    ensemble_temperature: float
    free_energy: float

    def as_row(self) -> dict[str, Any]:
        """A flat, JSON- and CSV-friendly dict."""
        return {
            "rank": self.rank,
            "arch": str(self.arch),
            "hidden": "-".join(map(str, self.arch.hidden)),
            "depth": self.arch.depth,
            "neurons": self.arch.neurons,
            "min_width": min(self.arch.hidden, default=0),
            "energy": self.energy,
            "interactions": interactions(self.arch),
            "perm_entropy": self.perm_entropy,
            "region_entropy": self.region_entropy,
            "gaussian_entropy": self.gaussian_entropy,
            "effectiveness": self.effectiveness,
            "feasible": self.feasible,
            "score": self.score,
            "efficiency": self.efficiency,
            "relative_efficiency": self.relative_efficiency,
            "landauer_efficiency": self.landauer_efficiency,
            "stability_margin": self.stability.margin,
            "worst_move": str(self.stability.worst_move) if self.stability.worst_move else "",
            "stable": self.stability.stable,
            "ensemble_temperature": self.ensemble_temperature,
            "free_energy": self.free_energy,
        }


def analyze(
    archs: Sequence[Arch],
    *,
    entropy_kind: EntropyKind = "gauss",
    rho_max: float | None = 0.02,
    temperature: float = math.inf,
    band: tuple[float, float] | None = None,
    bias: bool = True,
    n_min: int = 1,
    n_max: int | None = None,
    depths: Sequence[int] | None = None,
    ensemble: bool = True,
    ensemble_samples: int = 2048,
    seed: int = 0,
) -> list[Assessment]:
    r"""Score a family of architectures and rank it by constrained maximum entropy.

    The ranking rule is lexicographic: feasible first (effectiveness ``ρ ≤ ρ₀``, DeepMAD's constraint),
    then higher entropy ``S`` (``entropy_kind``), then the larger stability margin. Without the
    constraint every depth-growing entropy simply prefers the deepest member, which trained studies
    find wrong for small MLPs (see the docs); the rule and ``ρ₀`` are a hypothesis to validate.

    Main arguments:
        archs: the family (e.g. from :func:`iso_energetic`); duplicates are dropped.
        entropy_kind: the ranking entropy: ``"gauss"``, ``"regions"`` or ``"perm"``.
        rho_max: ``ρ₀`` (``None``: no constraint).

    Other arguments:
        temperature: design temperature of the free energy and the stability margin (``inf``: entropy).
        band: ``(U_lo, U_hi)``, the energy band in which stability moves must stay (``None``: any ``U``).
        bias: count biases in ``U``.
        n_min, n_max, depths: admissible widths and depths of the stability moves.
        ensemble: compute ``T_arch`` (one sampled density of states per member, ≈ 1 ms each).
        ensemble_samples, seed: its sampling.

    Returns:
        The assessments, best first.

    Raises:
        ConfigError: for an empty family, an unknown entropy kind, or ``rho_max`` ≤ 0.
    """
    members = list(dict.fromkeys(archs))
    if not members:
        raise ConfigError("analyze() got an empty family", hint="widen --tol or the depth range")
    if entropy_kind not in ENTROPY_KINDS:
        raise ConfigError(
            f"entropy kind {entropy_kind!r} is unknown; choose one of {', '.join(ENTROPY_KINDS)}"
        )
    if rho_max is not None and not rho_max > 0:
        raise ConfigError(f"rho_max must be > 0 (or None for no constraint), got {rho_max!r}")
    table = []
    for a in members:
        s = {"perm": permutation_entropy(a), "regions": region_entropy(a), "gauss": gaussian_entropy(a)}
        table.append((a, s))
    best = max(s[entropy_kind] for _, s in table)
    out: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for a, s in table:
        u = energy(a, bias=bias)
        rho = effectiveness(a)
        feasible = rho_max is None or rho <= rho_max
        stab = stability(
            a,
            temperature=temperature,
            entropy_kind=entropy_kind,
            band=band,
            bias=bias,
            n_min=n_min,
            n_max=n_max,
            depths=depths,
        )
        fields = {
            "arch": a,
            "energy": u,
            "perm_entropy": s["perm"],
            "region_entropy": s["regions"],
            "gaussian_entropy": s["gauss"],
            "effectiveness": rho,
            "feasible": feasible,
            "score": s[entropy_kind],
            "efficiency": s[entropy_kind] / u,
            "relative_efficiency": s[entropy_kind] / best if best != 0 else math.nan,
            "landauer_efficiency": s["regions"] / (u * math.log(2.0)),
            "stability": stab,
            "ensemble_temperature": (
                ensemble_temperature(a, bias=bias, n_max=n_max, samples=ensemble_samples, seed=seed)
                if ensemble
                else math.nan
            ),
            "free_energy": math.nan if math.isinf(temperature) else u - temperature * s[entropy_kind],
        }
        out.append(((not feasible, -s[entropy_kind], -stab.margin, a.widths), fields))
    out.sort(key=lambda item: item[0])
    return [Assessment(rank=i, **fields) for i, (_, fields) in enumerate(out, start=1)]
