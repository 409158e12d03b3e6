"""Rank statistics for validating architecture measures against trained results.

Internal module of :mod:`eqprop.analysis.thermo`: Kendall τ-b, Spearman ρ, Spearman ρ partialled on a
control variable (depth), top-k selection, and :func:`validate`, which crosses measures with targets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eqprop.errors import ConfigError

__all__ = ["kendall_tau", "partial_spearman", "rankdata", "spearman_rho", "top_k", "validate"]


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"rank statistics need two sequences of one length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks ``1 … n`` of ``x``, ties sharing their average rank."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size)
    sorted_a = a[order]
    start = 0
    for end in range(1, a.size + 1):
        if end == a.size or sorted_a[end] != sorted_a[start]:
            ranks[order[start:end]] = 0.5 * (start + end - 1) + 1.0
            start = end
    return ranks


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    r"""Kendall's τ-b: ``(C − D) / √((n₀ − n_x)(n₀ − n_y))`` over all pairs (ties corrected).

    Non-finite pairs are dropped; NaN when fewer than 2 remain or one variable is constant.
    """
    a, b = _pair(x, y)
    if a.size < 2:
        return math.nan
    sa = np.sign(a[:, None] - a[None, :])
    sb = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(a.size, k=1)
    s = (sa * sb)[upper].sum()
    pairs_a = np.count_nonzero(sa[upper])
    pairs_b = np.count_nonzero(sb[upper])
    if pairs_a == 0 or pairs_b == 0:
        return math.nan
    return float(s / math.sqrt(pairs_a * pairs_b))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float((da * da).sum() * (db * db).sum()))
    return float(np.clip((da * db).sum() / den, -1.0, 1.0)) if den > 0 else math.nan


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the (average) ranks. NaN for degenerate input."""
    a, b = _pair(x, y)
    if a.size < 2:
        return math.nan
    return _pearson(rankdata(a), rankdata(b))


def partial_spearman(x: Sequence[float], y: Sequence[float], control: Sequence[float]) -> float:
    r"""Spearman ρ of ``x`` and ``y`` partialled on ``control``:
    ``(ρ_xy − ρ_xz ρ_yz) / √((1 − ρ_xz²)(1 − ρ_yz²))``.

    How much of the association survives once the control (e.g. depth) is held fixed. NaN when the
    control is constant or fully determines ``x`` or ``y``.
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    if not a.shape == b.shape == c.shape:
        raise ConfigError(
            f"partial_spearman needs three sequences of one length, got {a.size}, {b.size}, {c.size}"
        )
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
    a, b, c = a[keep], b[keep], c[keep]
    if a.size < 3:
        return math.nan
    rxy, rxz, ryz = spearman_rho(a, b), spearman_rho(a, c), spearman_rho(b, c)
    den = (1 - rxz * rxz) * (1 - ryz * ryz)
    if not den > 1e-12:
        return math.nan
    return float(np.clip((rxy - rxz * ryz) / math.sqrt(den), -1.0, 1.0))  # rounding can leave ±1 by 1e-15


def top_k(
    scores: Sequence[float], target: Sequence[float], k: int, *, target_higher_is_better: bool = True
) -> dict[str, float]:
    """How good the ``k`` architectures a measure ranks highest turned out to be.

    Returns:
        ``mean`` (mean target of the k picked), ``best`` (best target among them), ``oracle`` (mean of
        the k truly best), ``all`` (mean over all), ``hit`` (1.0 if the truly best is among the k picked)
        and ``regret`` (truly best minus best picked, in the "better" direction; 0 is perfect).
    """
    s, t = _pair(scores, target)
    if s.size == 0 or k < 1:
        return dict.fromkeys(("mean", "best", "oracle", "all", "hit", "regret"), math.nan)
    k = min(k, s.size)
    sign = 1.0 if target_higher_is_better else -1.0
    picked = np.argsort(-s, kind="stable")[:k]
    best_order = np.argsort(-sign * t, kind="stable")
    best_picked = sign * (sign * t[picked]).max()
    return {
        "mean": float(t[picked].mean()),
        "best": float(best_picked),
        "oracle": float(t[best_order[:k]].mean()),
        "all": float(t.mean()),
        "hit": float(best_order[0] in set(picked.tolist())),
        "regret": float(sign * (t[best_order[0]] - best_picked)),
    }


TARGET_BETTER: dict[str, bool] = {"test_accuracy": True, "train_loss": False, "gap": False}
"""Whether a higher value of each study target is better."""


def validate(
    measures: Mapping[str, Sequence[float]],
    targets: Mapping[str, Sequence[Sequence[float]]],
    *,
    control: Sequence[float] | None = None,
    directions: Mapping[str, float] | None = None,
    k: int = 3,
) -> list[dict[str, Any]]:
    """Rank correlations of every measure with every target, with their seed spread.

    Args:
        measures: name → one value per architecture.
        targets: name → ``(architectures, seeds)`` values (NaN where a run is missing); the statistics
            use the seed means, and their spread is the standard deviation over the per-seed statistics.
        control: one value per architecture to partial out (depth), or ``None``.
        directions: name → ``+1`` if a higher measure predicts a better architecture, ``-1`` if lower
            does (default ``+1``); used for top-k only, the correlations keep their sign.
        k: the ``k`` of top-k.

    Returns:
        One row per (measure, target): ``tau``, ``rho``, ``rho_partial``, ``tau_sd``, ``rho_sd``
        (over seeds; NaN with one seed), ``top_k_mean``, ``top_k_best``, ``top_k_hit``, ``top_k_regret``,
        ``oracle_top_k_mean``, ``mean_all``, ``n``.
    """
    rows: list[dict[str, Any]] = []
    for tname, values in targets.items():
        grid = np.asarray(values, dtype=np.float64)
        if grid.ndim == 1:
            grid = grid[:, None]
        with np.errstate(invalid="ignore"):
            has = np.isfinite(grid).any(axis=1)
            mean = np.full(grid.shape[0], np.nan)
            mean[has] = np.nanmean(grid[has], axis=1)
        better = TARGET_BETTER.get(tname, True)
        for mname, mvalues in measures.items():
            m = np.asarray(mvalues, dtype=np.float64)
            if m.shape[0] != grid.shape[0]:
                raise ConfigError(
                    f"measure {mname!r} has {m.shape[0]} values for {grid.shape[0]} architectures"
                )
            per_seed_tau = [kendall_tau(m, grid[:, j]) for j in range(grid.shape[1])]
            per_seed_rho = [spearman_rho(m, grid[:, j]) for j in range(grid.shape[1])]
            direction = (directions or {}).get(mname, 1.0)
            sel = top_k(direction * m, mean, k, target_higher_is_better=better)
            rows.append(
                {
                    "measure": mname,
                    "target": tname,
                    "n": int(np.count_nonzero(np.isfinite(m) & np.isfinite(mean))),
                    "tau": kendall_tau(m, mean),
                    "rho": spearman_rho(m, mean),
                    "rho_partial": partial_spearman(m, mean, control) if control is not None else math.nan,
                    "tau_sd": _sd(per_seed_tau),
                    "rho_sd": _sd(per_seed_rho),
                    "direction": direction,
                    "top_k": k,
                    "top_k_mean": sel["mean"],
                    "top_k_best": sel["best"],
                    "top_k_hit": sel["hit"],
                    "top_k_regret": sel["regret"],
                    "oracle_top_k_mean": sel["oracle"],
                    "mean_all": sel["all"],
                }
            )
    return rows


def _sd(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    return float(v.std(ddof=1)) if v.size >= 2 else math.nan
