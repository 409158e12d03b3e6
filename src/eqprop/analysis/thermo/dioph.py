"""The Diophantine layer: families of architectures with a fixed neuron count or a fixed energy.

Internal module of :mod:`eqprop.analysis.thermo`. Two integer equations in the hidden widths:

- iso-neuron: ``Σ_l n_l = N`` (linear; its solutions are the compositions of ``N``);
- iso-energetic: ``Σ_{l=0}^{L} (n_l + β_b) n_{l+1} = W`` with ``n_0``, ``n_{L+1}`` fixed (quadratic), solved
  exactly or within a tolerance band ``|U − W| ≤ tol·W``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from eqprop.analysis.thermo.arch import Arch, energy
from eqprop.errors import ConfigError

__all__ = [
    "SHAPES",
    "compositions",
    "count_compositions",
    "iso_energetic",
    "sample_iso_energetic",
    "shaped_family",
]


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def count_compositions(neurons: int, depth: int, *, n_min: int = 1, n_max: int | None = None) -> int:
    """The number of width vectors ``(n_1, …, n_L)`` with ``Σ n_l = N`` and ``n_min ≤ n_l ≤ n_max``.

    Without a cap this is the binomial ``C(N − L·n_min + L − 1, L − 1)`` (``C(N − 1, L − 1)`` for
    ``n_min = 1``); with one, inclusion–exclusion over the parts that exceed it.
    """
    _check_int("neurons", neurons, 0)
    _check_int("depth", depth, 0)
    _check_int("n_min", n_min, 1)
    if depth == 0:
        return 1 if neurons == 0 else 0
    free = neurons - depth * n_min  # distribute `free` extra neurons over `depth` parts, each <= span
    if free < 0:
        return 0
    if n_max is None:
        return math.comb(free + depth - 1, depth - 1)
    span = n_max - n_min + 1
    if span <= 0:
        return 0
    total = 0
    for k in range(depth + 1):
        rest = free - k * span
        if rest < 0:
            break
        total += (-1) ** k * math.comb(depth, k) * math.comb(rest + depth - 1, depth - 1)
    return total


def compositions(
    neurons: int, depth: int, *, n_min: int = 1, n_max: int | None = None
) -> Iterator[tuple[int, ...]]:
    """All width vectors ``(n_1, …, n_L)`` with ``Σ n_l = N`` and ``n_min ≤ n_l ≤ n_max``, in lexicographic
    order: the iso-neuron family. There are :func:`count_compositions` of them (``C(N−1, L−1)``)."""
    _check_int("neurons", neurons, 0)
    _check_int("depth", depth, 0)
    _check_int("n_min", n_min, 1)
    top = neurons if n_max is None else n_max

    def rec(left: int, parts: int) -> Iterator[tuple[int, ...]]:
        if parts == 0:
            if left == 0:
                yield ()
            return
        lo = max(n_min, left - (parts - 1) * top)
        hi = min(top, left - (parts - 1) * n_min)
        for first in range(lo, hi + 1):
            for rest in rec(left - first, parts - 1):
                yield (first, *rest)

    yield from rec(neurons, depth)


def _band(budget: int, tol: float) -> tuple[int, int]:
    _check_int("budget", budget, 1)
    if not (isinstance(tol, int | float) and math.isfinite(tol) and 0 <= tol < 1):
        raise ConfigError(f"tol must be a fraction in [0, 1), got {tol!r}", hint="e.g. --tol 0.02 for ±2%")
    if tol == 0:
        return budget, budget
    return math.ceil(budget * (1 - tol) - 1e-9), math.floor(budget * (1 + tol) + 1e-9)


def _depth_list(depths: int | Iterable[int]) -> list[int]:
    items = [depths] if isinstance(depths, int) else list(depths)
    for d in items:
        _check_int("depth", d, 0)
    return sorted(set(items))


class _Search:
    """Interval bounds of the depth-first search for ``lo ≤ Σ (n_l + β) n_{l+1} ≤ hi``."""

    def __init__(self, n_out: int, lo: int, hi: int, b: int, n_min: int, n_max: int) -> None:
        self.n_out, self.lo, self.hi, self.b, self.a, self.top = n_out, lo, hi, b, n_min, n_max

    def tail(self, r: int, w: int) -> int:
        """Cost of ``r`` further layers after the next one, all of width ``w``, plus the output bonds."""
        return (r - 1) * (w + self.b) * w + (w + self.b) * self.n_out

    def interval(self, spent: int, prev: int, left: int) -> tuple[int, int]:
        """Feasible widths ``x`` of the next layer after ``prev``, with ``left`` layers still to choose
        (this one included), ``spent`` the cost of the bonds so far."""
        a, top, b = self.a, self.top, self.b
        if left == 1:  # the last layer closes the equation: spent + (prev+b)x + (x+b)n_out in [lo, hi]
            c = prev + b + self.n_out
            base = spent + b * self.n_out
            return max(a, -((base - self.lo) // c)), min(top, (self.hi - base) // c)
        # all later layers at n_min must still fit under hi; all at n_max must still reach lo
        hi_x = (self.hi - spent - b * a - self.tail(left - 1, a)) // (prev + b + a)
        lo_x = -((spent + b * top + self.tail(left - 1, top) - self.lo) // (prev + b + top))
        return max(a, lo_x), min(top, hi_x)


def iso_energetic(
    n_in: int,
    n_out: int,
    budget: int,
    depths: int | Iterable[int],
    *,
    tol: float = 0.0,
    n_min: int = 1,
    n_max: int = 1024,
    bias: bool = True,
) -> Iterator[Arch]:
    """All architectures whose energy (parameter count with ``bias``) solves ``U(a) = W``.

    A quadratic Diophantine equation in the hidden widths; with ``tol > 0`` the band
    ``|U(a) − W| ≤ tol·W``. Depth-first search over ``n_1 … n_{L−1}`` in which every level keeps only the
    widths whose cheapest and dearest completions bracket the band, and the last width solves a linear
    equation (a divisibility test when exact). Lazy: stop iterating whenever you have enough.

    Args:
        n_in: input width ``n_0``.
        n_out: output width ``n_{L+1}``.
        budget: the energy ``W`` (parameters with ``bias``, interactions without).
        depths: one depth or several (searched in increasing order).
        tol: relative half-width of the band (0 for exact solutions).
        n_min: smallest hidden width.
        n_max: largest hidden width.
        bias: count biases in the energy.

    Returns:
        An iterator of :class:`Arch`, by depth, then lexicographically in the hidden widths.

    Raises:
        ConfigError: for non-positive widths or budget, a negative depth, or ``tol`` outside [0, 1).

    Example:
        >>> from eqprop.analysis.thermo import iso_energetic
        >>> [a.hidden for a in iso_energetic(784, 10, 60000, 2)]
        [(34, 740), (50, 340), (64, 130)]
    """
    _check_int("n_in", n_in, 1)
    _check_int("n_out", n_out, 1)
    _check_int("n_min", n_min, 1)
    _check_int("n_max", n_max, n_min)
    lo, hi = _band(budget, tol)
    levels = _depth_list(depths)
    b = 1 if bias else 0
    search = _Search(n_out, lo, hi, b, n_min, n_max)

    def rec(prefix: tuple[int, ...], spent: int, prev: int, left: int) -> Iterator[tuple[int, ...]]:
        first, last = search.interval(spent, prev, left)
        for x in range(first, last + 1):
            if left == 1:
                yield (*prefix, x)
            else:
                yield from rec((*prefix, x), spent + (prev + b) * x, x, left - 1)

    for depth in levels:
        if depth == 0:
            if lo <= (n_in + b) * n_out <= hi:
                yield Arch((n_in, n_out))
            continue
        for hidden in rec((), 0, n_in, depth):
            yield Arch((n_in, *hidden, n_out))


def sample_iso_energetic(
    n_in: int,
    n_out: int,
    budget: int,
    depth: int,
    samples: int,
    *,
    tol: float = 0.0,
    n_min: int = 1,
    n_max: int = 1024,
    bias: bool = True,
    seed: int = 0,
    max_tries: int | None = None,
) -> list[Arch]:
    """Up to ``samples`` distinct members of the :func:`iso_energetic` family of one depth, drawn at random.

    For families too large to enumerate (deep nets in a tolerance band). Each draw descends the same
    search as :func:`iso_energetic`, choosing every width uniformly among the feasible ones: every
    member can be drawn, but not with equal probability (members under sparsely branching prefixes
    are favoured). Deterministic for a given ``seed``.

    Returns:
        The distinct architectures found, sorted; fewer than ``samples`` when the family is smaller or
        ``max_tries`` draws (default ``50 × samples``) run out.
    """
    _check_int("samples", samples, 0)
    _check_int("depth", depth, 1)
    _check_int("n_max", n_max, n_min)
    lo, hi = _band(budget, tol)
    b = 1 if bias else 0
    search = _Search(n_out, lo, hi, b, n_min, n_max)
    rng = random.Random(seed)
    found: set[tuple[int, ...]] = set()
    tries = max_tries if max_tries is not None else 50 * samples
    for _ in range(tries):
        if len(found) >= samples:
            break
        widths: list[int] = []
        spent, prev = 0, n_in
        for left in range(depth, 0, -1):
            first, last = search.interval(spent, prev, left)
            if first > last:
                break
            x = rng.randint(first, last)
            widths.append(x)
            spent, prev = spent + (prev + b) * x, x
        if len(widths) == depth:
            found.add(tuple(widths))
    return [Arch((n_in, *h, n_out)) for h in sorted(found)]


SHAPES: dict[str, str] = {
    "constant": "all hidden layers equally wide",
    "decreasing": "widths fall linearly 3:1 from the first to the last hidden layer",
    "increasing": "widths rise linearly 1:3",
    "bottleneck": "wide – narrow – wide (3:1:3)",
    "diamond": "narrow – wide – narrow (1:3:1)",
}
"""The named width profiles of :func:`shaped_family`."""


def _profile(shape: str, depth: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, depth) if depth > 1 else np.zeros(1)
    if shape == "constant":
        return np.ones(depth)
    if shape == "decreasing":
        return 3.0 - 2.0 * t
    if shape == "increasing":
        return 1.0 + 2.0 * t
    if shape == "bottleneck":
        return 1.0 + 2.0 * np.abs(2.0 * t - 1.0)
    if shape == "diamond":
        return 3.0 - 2.0 * np.abs(2.0 * t - 1.0)
    raise ConfigError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def _fit_profile(
    n_in: int,
    n_out: int,
    budget: int,
    profile: np.ndarray,
    n_min: int,
    n_max: int,
    bias: bool,
    *,
    slack: float,
) -> Arch:
    """The integer widths ``≈ s·profile`` whose energy is closest to ``budget`` (the shape is kept when
    within ``slack`` of it, else one layer is adjusted)."""

    def arch(scale: float) -> Arch:
        hidden = np.clip(np.rint(scale * profile), n_min, n_max).astype(int)
        return Arch((n_in, *map(int, hidden), n_out))

    lo, hi = 0.0, 2.0 * n_max / float(profile.min())
    for _ in range(60):  # U(arch(s)) is non-decreasing in s: bisect for U ≈ budget
        mid = 0.5 * (lo + hi)
        if energy(arch(mid), bias=bias) <= budget:
            lo = mid
        else:
            hi = mid
    best = min((arch(lo), arch(hi)), key=lambda a: abs(energy(a, bias=bias) - budget))
    if abs(energy(best, bias=bias) - budget) <= slack:
        return best  # the profile itself fits the band: keep its shape
    # Else finish on the layer whose width moves U by the smallest step (its coupling n_{k-1} + n_{k+1} + β).
    w = list(best.widths)
    b = 1 if bias else 0
    k = min(range(1, len(w) - 1), key=lambda i: w[i - 1] + w[i + 1] + b)
    rest = energy(best, bias=bias) - (w[k - 1] + w[k + 1] + b) * w[k]
    exact = (budget - rest) / (w[k - 1] + w[k + 1] + b)
    for x in (math.floor(exact), math.ceil(exact)):
        if n_min <= x <= n_max:
            cand = Arch((*w[:k], x, *w[k + 1 :]))
            if abs(energy(cand, bias=bias) - budget) < abs(energy(best, bias=bias) - budget):
                best = cand
    return best


def shaped_family(
    n_in: int,
    n_out: int,
    budget: int,
    depths: int | Iterable[int],
    *,
    shapes: Sequence[str] = tuple(SHAPES),
    random_shapes: int = 0,
    tol: float = 0.02,
    n_min: int = 1,
    n_max: int = 1024,
    bias: bool = True,
    seed: int = 0,
) -> list[tuple[Arch, str]]:
    """An iso-energetic family built from width profiles (the pilot study's construction).

    For every depth and profile (the named :data:`SHAPES` plus ``random_shapes`` log-normal ones), the
    profile is scaled until the integer widths bring ``U`` closest to ``budget``, then the layer with
    the finest energy step is adjusted. Members outside ``|U − W| ≤ tol·W`` and duplicates are dropped.

    Returns:
        ``(arch, shape name)`` pairs sorted by depth, then widths (a duplicate keeps its first name).
    """
    lo, hi = _band(budget, tol)
    rng = np.random.default_rng(seed)
    members: dict[Arch, str] = {}
    for depth in _depth_list(depths):
        if depth == 0:
            a = Arch((n_in, n_out))
            if lo <= energy(a, bias=bias) <= hi:
                members.setdefault(a, "linear")
            continue
        named = [(s, _profile(s, depth)) for s in shapes]
        randoms = [("random", np.exp(0.6 * rng.standard_normal(depth))) for _ in range(random_shapes)]
        for name, profile in itertools.chain(named, randoms):
            a = _fit_profile(n_in, n_out, budget, profile, n_min, n_max, bias, slack=tol * budget)
            if lo <= energy(a, bias=bias) <= hi:
                members.setdefault(a, name)
    return sorted(members.items(), key=lambda m: (m[0].depth, m[0].hidden))
