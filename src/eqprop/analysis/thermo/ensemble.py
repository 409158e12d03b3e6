"""The architecture ensemble: density of states and temperature; free energy, stability, efficiency.

Internal module of :mod:`eqprop.analysis.thermo` (a reconstruction, see
``docs/architecture-thermodynamics.md``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eqprop.analysis.thermo.arch import Arch, Move, apply_move, delta_energy, energy, neighbours
from eqprop.analysis.thermo.dioph import count_compositions
from eqprop.analysis.thermo.entropy import EntropyKind, entropy
from eqprop.errors import ConfigError

__all__ = [
    "DensityOfStates",
    "Stability",
    "density_of_states",
    "efficiency",
    "ensemble_temperature",
    "free_energy",
    "stability",
]


@dataclass(frozen=True, eq=False)
class DensityOfStates:
    """``g_L(N, U)``: how many architectures of ``N`` hidden neurons in ``L`` layers have energy ``U``.

    Attributes:
        n_in: input width.
        n_out: output width.
        neurons: ``N``.
        depth: ``L``.
        edges: the energy bins, ``(bins + 1,)``.
        counts: the members (exact) or draws (sampled) in each bin, ``(bins,)``.
        total: the size of the ensemble (:func:`count_compositions`).
        drawn: how many members were counted (``total`` when exact).
        exact: every member was enumerated (else uniform random draws).
    """

    n_in: int
    n_out: int
    neurons: int
    depth: int
    edges: np.ndarray
    counts: np.ndarray
    total: int
    drawn: int
    exact: bool

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def log_g(self) -> np.ndarray:
        """``ln g`` per bin: the log of the (estimated) number of members in the bin; ``-inf`` if empty."""
        out = np.full(self.counts.shape, -np.inf)
        hit = self.counts > 0
        out[hit] = math.log(self.total) + np.log(self.counts[hit] / self.drawn)
        return out

    def temperature(self, u: float, *, window: int = 9) -> float:
        r"""``T_arch(U) = 1 / (∂ ln g/∂U)`` at ``u``, from a count-weighted quadratic fit of ``ln g`` over the
        ``window`` populated bins nearest ``u`` (NaN when fewer than 3 bins are populated).

        Negative where ``g`` falls with ``U`` (above the peak): a bounded spectrum, as for spins.
        """
        hit = np.flatnonzero(self.counts > 0)
        if hit.size < 3:
            return math.nan
        centers = self.centers[hit]
        near = hit[np.argsort(np.abs(centers - u), kind="stable")[:window]]
        x = self.centers[near]
        scale = max(float(np.ptp(x)), 1.0)
        t = (x - u) / scale
        coef = np.polyfit(t, self.log_g[near], deg=min(2, near.size - 1), w=np.sqrt(self.counts[near]))
        slope = float(coef[-2]) / scale  # d ln g / dU at u (t = 0)
        return math.inf if slope == 0 else 1.0 / slope


def _energies(n_in: int, n_out: int, parts: np.ndarray, bias: bool) -> np.ndarray:
    """``U`` of each row of hidden widths ``parts`` (m, L), vectorised."""
    m = parts.shape[0]
    full = np.concatenate(
        [np.full((m, 1), n_in, dtype=np.int64), parts.astype(np.int64), np.full((m, 1), n_out, np.int64)],
        axis=1,
    )
    u = (full[:, :-1] * full[:, 1:]).sum(axis=1)
    if bias:
        u = u + full[:, 1:].sum(axis=1)
    return u.astype(np.float64)


def _all_compositions(neurons: int, depth: int, n_max: int | None) -> np.ndarray:
    """Every composition (rows), from the ``C(N−1, L−1)`` sets of cut points (C-speed itertools)."""
    if depth == 1:
        return np.array([[neurons]] if n_max is None or neurons <= n_max else [], np.int64).reshape(-1, 1)
    flat = itertools.chain.from_iterable(itertools.combinations(range(1, neurons), depth - 1))
    cuts = np.fromiter(flat, dtype=np.int64).reshape(-1, depth - 1)
    edges = np.concatenate(
        [np.zeros((len(cuts), 1), np.int64), cuts, np.full((len(cuts), 1), neurons, np.int64)], axis=1
    )
    parts = np.diff(edges, axis=1)
    return parts if n_max is None else parts[parts.max(axis=1) <= n_max]


def _random_compositions(
    neurons: int, depth: int, draws: int, rng: np.random.Generator, n_max: int | None
) -> np.ndarray:
    """Uniform random compositions (rows), by sorted distinct cut points; rejection for the cap."""
    rows: list[np.ndarray] = []
    got = 0
    for _ in range(1000):
        cuts = np.sort(rng.integers(1, neurons, size=(draws + draws // 4 + 8, depth - 1)), axis=1)
        if depth > 2:
            cuts = cuts[np.all(cuts[:, 1:] > cuts[:, :-1], axis=1)]
        edges = np.concatenate([np.zeros((len(cuts), 1), int), cuts, np.full((len(cuts), 1), neurons)], 1)
        parts = np.diff(edges, axis=1)
        if n_max is not None:
            parts = parts[parts.max(axis=1) <= n_max]
        rows.append(parts)
        got += len(parts)
        if got >= draws:
            break
    return np.concatenate(rows)[:draws]


def density_of_states(
    n_in: int,
    n_out: int,
    neurons: int,
    depth: int,
    *,
    bins: int = 40,
    bias: bool = True,
    n_max: int | None = None,
    samples: int = 20000,
    seed: int = 0,
    exact_limit: int = 50000,
) -> DensityOfStates:
    r"""The density of states ``g_L(N, U) = #{a ∈ A_{N,L} : U(a) ∈ bin}`` of the iso-neuron ensemble.

    Its log is the microcanonical entropy of the *architecture ensemble*, ``S_arch = ln g``, and its slope
    the ensemble temperature ``1/T_arch = ∂S_arch/∂U``. Every composition is enumerated when there are at
    most ``exact_limit``; otherwise ``samples`` uniform random ones are drawn (seeded) and the counts
    scaled by ``total / drawn``.

    Raises:
        ConfigError: if ``depth < 1`` or the ensemble is empty.
    """
    if depth < 1:
        raise ConfigError(f"density_of_states needs depth >= 1, got {depth}")
    total = count_compositions(neurons, depth, n_max=n_max)
    if total == 0:
        raise ConfigError(f"no architecture has {neurons} neurons in {depth} layers (n_max={n_max})")
    if total <= exact_limit:
        parts = _all_compositions(neurons, depth, n_max)
        exact = True
    else:
        rng = np.random.default_rng(seed)
        parts = _random_compositions(neurons, depth, samples, rng, n_max)
        exact = False
    u = _energies(n_in, n_out, parts, bias)
    lo, hi = float(u.min()), float(u.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    counts, _ = np.histogram(u, bins=edges)
    return DensityOfStates(
        n_in=n_in,
        n_out=n_out,
        neurons=neurons,
        depth=depth,
        edges=edges,
        counts=counts,
        total=total,
        drawn=len(u),
        exact=exact,
    )


def ensemble_temperature(
    arch: Arch,
    *,
    bias: bool = True,
    n_max: int | None = None,
    samples: int = 2048,
    bins: int = 20,
    seed: int = 0,
) -> float:
    """``T_arch`` of the iso-neuron ensemble ``A_{N(a), L(a)}`` (widths ``≤ n_max``) at ``U(a)`` (NaN for
    L ≤ 1: one member). Exact when the ensemble has at most ``samples`` members, else sampled.

    Where the architecture sits in its ensemble: positive below the peak of ``g`` (most arrangements of
    its neurons cost more), negative above it.
    """
    if arch.depth <= 1:
        return math.nan
    dos = density_of_states(
        arch.n_in,
        arch.n_out,
        arch.neurons,
        arch.depth,
        bins=bins,
        bias=bias,
        n_max=n_max,
        samples=samples,
        seed=seed,
        exact_limit=samples,
    )
    return dos.temperature(energy(arch, bias=bias))


def _check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ConfigError(
            f"temperature must be > 0 (math.inf for pure entropy), got {temperature!r}",
            hint="the design temperature weighs disorder against energy in F = U − T·S",
        )


def free_energy(
    arch: Arch, temperature: float, *, entropy_kind: EntropyKind = "gauss", bias: bool = True
) -> float:
    """``F_T(a) = U(a) − T·S(a)`` at the design temperature ``T`` (a Lagrange multiplier trading energy
    against disorder).

    Raises:
        ConfigError: if ``temperature`` is not a finite positive number.
    """
    _check_temperature(temperature)
    if math.isinf(temperature):
        raise ConfigError("free_energy needs a finite temperature", hint="use -S(a) for T → ∞")
    return energy(arch, bias=bias) - temperature * entropy(arch, entropy_kind)


@dataclass(frozen=True)
class Stability:
    """The local stability of an equilibrium state under the elementary moves.

    Attributes:
        margin: ``min over admissible moves of [F_T(a') − F_T(a)] / T`` in nats, i.e. ``ΔU/T − ΔS``
            (``−ΔS`` at ``T = ∞``); ``inf`` if no move is admissible. Positive: stable.
        worst_move: the most destabilising move (``None`` if none is admissible).
        moves: how many admissible moves were examined.
    """

    margin: float
    worst_move: Move | None
    moves: int

    @property
    def stable(self) -> bool:
        return self.margin > 0


def stability(
    arch: Arch,
    *,
    temperature: float = math.inf,
    entropy_kind: EntropyKind = "gauss",
    band: tuple[float, float] | None = None,
    bias: bool = True,
    n_min: int = 1,
    n_max: int | None = None,
    depths: Sequence[int] | None = None,
    insert_widths: Sequence[int] | None = None,
) -> Stability:
    r"""The stability margin of ``arch`` at design temperature ``T``.

    ``a`` is stable when no admissible elementary move lowers ``F_T = U − T S``; the margin is
    ``min_{a'} [F_T(a') − F_T(a)]/T = min_{a'} [ΔU/T − ΔS]`` (nats, finite also at ``T = ∞``). ``ΔU`` comes
    from the closed forms of :func:`delta_energy`. With ``band = (U_lo, U_hi)`` only moves that stay in the
    band are admissible (the iso-energetic phase space); at ``T = ∞`` this asks whether ``a`` is a local
    maximum of ``S`` in the band.

    Args:
        arch: the state.
        temperature: ``T > 0``; ``math.inf`` for pure entropy.
        entropy_kind: which entropy ``S``.
        band: admissible energy interval, or ``None`` for no energy constraint.
        bias: count biases in ``U``.
        n_min, n_max, depths, insert_widths: the admissible moves (see :func:`neighbours`).

    Raises:
        ConfigError: if ``temperature`` is not positive.
    """
    _check_temperature(temperature)
    u0 = energy(arch, bias=bias)
    s0 = entropy(arch, entropy_kind)
    worst: Move | None = None
    margin = math.inf
    count = 0
    for move in neighbours(arch, n_min=n_min, n_max=n_max, depths=depths, insert_widths=insert_widths):
        du = delta_energy(arch, move, bias=bias)
        if band is not None and not band[0] <= u0 + du <= band[1]:
            continue
        count += 1
        value = (0.0 if math.isinf(temperature) else du / temperature) - (
            entropy(apply_move(arch, move), entropy_kind) - s0
        )
        if value < margin:
            margin, worst = value, move
    return Stability(margin=margin, worst_move=worst, moves=count)


def efficiency(
    arch: Arch,
    *,
    entropy_kind: EntropyKind = "regions",
    bias: bool = True,
    family: Sequence[Arch] | None = None,
    bits: bool = False,
) -> float:
    """Thermodynamic efficiency of information processing.

    ``η = S(a)/U(a)`` (nats of disorder per interaction; bits with ``bits=True``, which for
    ``"regions"`` is the Landauer-style "bits of attainable configuration per coupling"), or, given the
    iso-energetic ``family``, the relative efficiency ``η_rel = S(a) / max_{a'∈family} S(a')`` — the
    analogue of an efficiency against the reversible (maximum-entropy) bound.
    """
    s = entropy(arch, entropy_kind)
    if family is not None:
        best = max(itertools.chain((s,), (entropy(a, entropy_kind) for a in family)))
        return s / best if best != 0 else math.nan
    value = s / energy(arch, bias=bias)
    return value / math.log(2.0) if bits else value
