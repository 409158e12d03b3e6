r"""Supervised quantum phase recognition: is a transverse-field Ising chain ordered or disordered?

The data system is the chain ``H_d = −Σ_i Z_iZ_{i+1} − g Σ_i X_i`` on ``n_sites`` qubits (periodic by default),
with ``g ~ U(g_range)``; its ground state is computed exactly (dense ``eigh``, Lanczos above 8 sites). The label is
``0`` for the ordered (ferromagnetic) phase ``g < 1`` and ``1`` for the disordered (paramagnetic) one. The input is
a small probe of the data ground state, the local expectation values in a window of ``window`` neighbouring sites:
``⟨Z_iZ_{i+1}⟩`` on its ``window − 1`` bonds, then ``⟨X_i⟩`` on its sites, optionally estimated from ``probe_shots``
measurements each. A learning :class:`~eqprop.systems.quantum.QuantumSystem` takes them as fields.

Everything is computed, nothing is downloaded; the draw is fixed by ``seed``. The generated dataset ``tfim-phases``
(:func:`load_phase_dataset`, ``data.dataset = "tfim-phases"`` in a run) is this task at fixed settings: 8-site periodic
chains, a 2-site probe (3 features), ``g ~ U(0.2, 1.8)``, 128 training and 256 test chains from seed 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from eqprop.data.split import Dataset, Split
from eqprop.errors import ConfigError

if TYPE_CHECKING:
    from eqprop.systems.quantum import SparseOperator

# The quantum operators are imported inside the functions that use them: loading data does not load the systems.

__all__ = [
    "PHASE_DATASETS",
    "PROBE_NAMES",
    "ising_chain",
    "load_phase_dataset",
    "phase_recognition",
    "probe_features",
]

PHASE_DATASETS: tuple[str, ...] = ("tfim-phases",)
"""The generated phase-recognition datasets (classification: 2 classes, feature vectors)."""

TRAIN, TEST, SITES, WINDOW, SEED = 128, 256, 8, 2, 0
"""The settings of ``tfim-phases``: training and test chains, sites per chain, probe window, seed."""

PROBE_NAMES = ("ZZ", "X")
"""The probed observables, in the order of the features: bond correlations, then transverse magnetisations."""


def ising_chain(n_sites: int, g: float, *, periodic: bool = True) -> SparseOperator:
    """``−Σ Z_iZ_{i+1} − g Σ X_i`` on ``n_sites`` qubits (the bond ``(n−1, 0)`` too when ``periodic``)."""
    from eqprop.systems.quantum import SparseOperator

    if n_sites < 2:
        raise ConfigError(f"ising_chain(n_sites={n_sites}): need at least 2 sites")
    bonds = [(i, i + 1) for i in range(n_sites - 1)] + (
        [(n_sites - 1, 0)] if periodic and n_sites > 2 else []
    )
    terms = [(-1.0, {i: "Z", j: "Z"}) for i, j in bonds] + [(-float(g), {i: "X"}) for i in range(n_sites)]
    return SparseOperator.from_terms(terms, n_sites)


def probe_features(psi: np.ndarray, n_sites: int, window: int) -> np.ndarray:
    """``[⟨Z_iZ_{i+1}⟩ for the window's bonds] + [⟨X_i⟩ for its sites]``, sites ``0 … window − 1``."""
    from eqprop.systems.quantum import SparseOperator

    probes = [SparseOperator.from_terms([(1.0, {i: "Z", i + 1: "Z"})], n_sites) for i in range(window - 1)]
    probes += [SparseOperator.from_terms([(1.0, {i: "X"})], n_sites) for i in range(window)]
    return np.array([p.expectation(psi) for p in probes])


def phase_recognition(
    n_train: int = 64,
    n_test: int = 128,
    *,
    n_sites: int = 8,
    window: int = 2,
    g_range: tuple[float, float] = (0.2, 1.8),
    periodic: bool = True,
    probe_shots: int | None = None,
    standardize: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""``(x_train, y_train, x_test, y_test)`` for the ordered / disordered Ising-chain task.

    Args:
        n_train, n_test: examples (independent draws of ``g``).
        n_sites: qubits of the data chain (up to 14).
        window: sites the probe sees (2–3 typical): ``2·window − 1`` features.
        g_range: where ``g`` is drawn uniformly; it should straddle the critical point ``g = 1``.
        periodic: periodic boundary conditions (all sites alike) or an open chain.
        probe_shots: estimate each probe from that many ±1 measurements (binomial), or exactly (``None``).
        standardize: shift and scale every feature by the training set's mean and standard deviation.
        seed: fixes ``g``, the split and the probe's shot noise.

    Returns:
        Features ``(n, 2·window − 1)`` of ``dtype`` and labels ``(n,)`` (int64: 0 ordered, 1 disordered).
    """
    if not 2 <= window <= n_sites:
        raise ConfigError(f"phase_recognition(window={window}): need 2 <= window <= n_sites = {n_sites}")
    lo, hi = g_range
    if not 0 <= lo < 1 < hi:
        raise ConfigError(
            f"phase_recognition(g_range={g_range}): need 0 <= low < 1 < high (straddling g = 1)"
        )
    if n_train < 2 or n_test < 1:
        raise ConfigError(f"phase_recognition(n_train={n_train}, n_test={n_test}): need >= 2 and >= 1")
    from eqprop.systems.quantum import lowest_eigenpairs

    rng = np.random.default_rng(seed)
    g = rng.uniform(lo, hi, n_train + n_test)
    feats = []
    for gi in g:
        _, psi = lowest_eigenpairs(ising_chain(n_sites, gi, periodic=periodic).to_sparse())
        feats.append(probe_features(psi, n_sites, window))
    x = np.array(feats)
    if probe_shots is not None:
        if probe_shots < 1:
            raise ConfigError(f"phase_recognition(probe_shots={probe_shots}): need >= 1 or None")
        counts = rng.binomial(probe_shots, np.clip((1.0 + x) / 2.0, 0.0, 1.0))
        x = 2.0 * counts / probe_shots - 1.0
    y = (g >= 1.0).astype(np.int64)
    if standardize:
        mean, std = x[:n_train].mean(0), x[:n_train].std(0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    xt = torch.as_tensor(x, dtype=dtype)
    yt = torch.as_tensor(y)
    return xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:]


def load_phase_dataset(name: str, *, dtype: torch.dtype = torch.float32) -> Dataset:
    """The generated dataset ``name`` (one of :data:`PHASE_DATASETS`): :func:`phase_recognition` at the fixed settings
    above, x ``(n, 3)`` standardised probes ``(⟨Z₀Z₁⟩, ⟨X₀⟩, ⟨X₁⟩)``, y ``(n,)`` int64 (0 ordered, 1 disordered); the
    same on every machine (about 2 s to compute: one exact 256-state ground state per chain)."""
    if name not in PHASE_DATASETS:
        raise ConfigError(f"unknown phase-recognition dataset {name!r}; known: {', '.join(PHASE_DATASETS)}")
    x_train, y_train, x_test, y_test = phase_recognition(
        TRAIN, TEST, n_sites=SITES, window=WINDOW, seed=SEED, dtype=dtype
    )
    return Dataset(
        name=name,
        train=Split(x=x_train, y=y_train),
        test=Split(x=x_test, y=y_test),
        validation=None,
        classes=2,
        image_shape=None,
    )
