"""Entropies of one equilibrium state (architecture): its "degree of disorder".

Internal module of :mod:`eqprop.analysis.thermo`. Three topology-only candidates, none known to be the
paper's (its equations were not available; see ``docs/architecture-thermodynamics.md``):

- ``"perm"``: permutation degeneracy ``Σ_l ln n_l!`` (Szymanski, McCane & Albert 2018);
- ``"regions"``: log of the Serra–Tjandraatmadja–Ramalingam (2018) bound on the linear regions of a ReLU
  net, i.e. the attainable activation patterns of the neurons seen as binary spins;
- ``"gauss"``: the differential entropy of the outputs of a random linear net (the max-entropy signal
  entropy behind DeepMAD, Shen et al. 2023), paired with its effectiveness ``ρ = L / (Π n_l)^{1/L}``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from eqprop.analysis.thermo.arch import Arch
from eqprop.errors import ConfigError

__all__ = [
    "ENTROPY_KINDS",
    "effectiveness",
    "entropy",
    "gaussian_entropy",
    "permutation_entropy",
    "region_entropy",
]

EntropyKind = Literal["perm", "regions", "gauss"]
ENTROPY_KINDS: tuple[str, ...] = ("perm", "regions", "gauss")


def permutation_entropy(arch: Arch, *, odd: bool = False) -> float:
    r"""``S_perm = Σ_{l=1}^{L} ln(n_l!)`` (+ ``ln 2 · Σ n_l`` for odd activations, e.g. tanh).

    The degeneracy of the state: the number of weight configurations (hidden-unit permutations, and sign
    flips for odd φ) that realise the same function.
    """
    s = sum(math.lgamma(n + 1) for n in arch.hidden)
    return s + (math.log(2.0) * arch.neurons if odd else 0.0)


def _log_binomials(n: int) -> np.ndarray:
    """``ln C(n, j)`` for ``j = 0 … n``."""
    logfact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))))
    return logfact[n] - logfact - logfact[::-1]


def _serra_log(n0: int, hidden: tuple[int, ...]) -> float:
    """ln of ``Σ_{j ∈ J} Π_l C(n_l, j_l)``, ``J = {0 ≤ j_l ≤ min(n_0, n_1 − j_1, …, n_{l−1} − j_{l−1}, n_l)}``.

    Dynamic programme over the running cap ``d = min(n_0, n_1 − j_1, …)``: ``f[d]`` is the (log) weight of
    the prefixes that leave cap ``d``. At a layer of width n, a prefix with cap d takes ``j ≤ min(d, n)``
    and leaves ``min(d, n − j)``: for ``j ≤ n − d`` the cap stays d (a prefix sum of ``C(n, j)``), for larger
    j it becomes ``n − j`` (a suffix sum of ``f``). O(n_0 + Σ n_l) per layer.
    """
    f = np.full(n0 + 1, -np.inf)
    f[n0] = 0.0
    for n in hidden:
        D = f.size - 1
        lc = _log_binomials(n)
        prefix = np.logaddexp.accumulate(lc)  # ln Σ_{j ≤ k} C(n, j)
        new = np.full(min(D, n) + 1, -np.inf)
        # j ≤ n − d: the cap d survives (only caps d ≤ n)
        d = np.arange(min(D, n) + 1)
        new[d] = f[d] + prefix[np.minimum(d, n - d)]
        # j > n − d: the cap becomes d' = n − j < d, from every d ≥ max(d' + 1, n − d')
        suffix = np.logaddexp.accumulate(f[::-1])[::-1]  # ln Σ_{d ≥ k} f[d]
        targets = np.arange(min(n, D - 1) + 1) if D >= 1 else np.arange(0)
        start = np.maximum(targets + 1, n - targets)
        ok = start <= D
        vals = np.full(targets.size, -np.inf)
        vals[ok] = lc[n - targets[ok]] + suffix[start[ok]]
        new[targets] = np.logaddexp(new[targets], vals)
        f = new
    return float(np.logaddexp.reduce(f))


def region_entropy(arch: Arch, *, bound: Literal["serra", "raghu"] = "serra") -> float:
    r"""``S_act = ln R(a)``: log of an upper bound on the linear regions of the ReLU net ``a``.

    .. math::
        R_\text{serra}(a) = \sum_{(j_1..j_L) \in J} \prod_{l=1}^{L} \binom{n_l}{j_l},\quad
        J = \{0 ≤ j_l ≤ \min(n_0, n_1 − j_1, …, n_{l−1} − j_{l−1}, n_l)\}

    (Serra, Tjandraatmadja & Ramalingam 2018, Thm. 1; exact for one input when every hidden layer has at
    least 2 units: then ``R = Π_l (n_l + 1)``). ``bound="raghu"`` gives the looser
    ``Π_l Σ_{j ≤ d_l} C(n_l, j)``, ``d_l = min(n_0, …, n_{l−1})``. The output layer adds no region.
    Read as the number of attainable activation patterns of the neurons seen as binary spins.

    Raises:
        ConfigError: for an unknown ``bound``.
    """
    if bound == "serra":
        return _serra_log(arch.n_in, arch.hidden)
    if bound != "raghu":
        raise ConfigError(f"bound {bound!r} is unknown; choose 'serra' or 'raghu'")
    total, d = 0.0, arch.n_in
    for n in arch.hidden:
        total += float(np.logaddexp.reduce(_log_binomials(n)[: min(d, n) + 1]))
        d = min(d, n)
    return total


def gaussian_entropy(arch: Arch, *, input_variance: float = 1.0) -> float:
    r"""Differential entropy of the outputs of a random linear net, outputs treated as independent.

    .. math::
        H(a) = \frac{n_{L+1}}{2} \ln\!\Big(2πe\, σ_x^2\, n_0 \prod_{l=1}^{L} n_l\Big)

    For i.i.d. ``N(0, 1)`` weights ``Var(y) = σ_x² n_0 Π_l n_l``; a Gaussian of that variance has
    entropy ``½ ln(2πe Var)``. Up to constants this is DeepMAD's MLP entropy ``n_{L+1} Σ_l ln n_l`` (halved),
    which rewards depth without bound: use it with :func:`effectiveness` ``≤ ρ₀``.

    Raises:
        ConfigError: if ``input_variance`` is not positive.
    """
    if not input_variance > 0:
        raise ConfigError(f"input_variance must be > 0, got {input_variance!r}")
    log_var = math.log(input_variance) + math.log(arch.n_in) + sum(math.log(n) for n in arch.hidden)
    return 0.5 * arch.n_out * (math.log(2 * math.pi * math.e) + log_var)


def effectiveness(arch: Arch) -> float:
    """DeepMAD's effectiveness ``ρ(a) = L / (Π_l n_l)^{1/L}`` (depth over geometric-mean width; 0 for L = 0).

    Large ρ means deep and narrow; DeepMAD maximises the entropy subject to ``ρ ≤ ρ₀``.
    """
    if arch.depth == 0:
        return 0.0
    return arch.depth / math.exp(sum(math.log(n) for n in arch.hidden) / arch.depth)


def entropy(arch: Arch, kind: EntropyKind = "gauss") -> float:
    """The entropy ``S(a)`` of kind ``"perm"`` (:func:`permutation_entropy`), ``"regions"``
    (:func:`region_entropy`) or ``"gauss"`` (:func:`gaussian_entropy`), with default options.

    Raises:
        ConfigError: for an unknown kind.
    """
    if kind == "perm":
        return permutation_entropy(arch)
    if kind == "regions":
        return region_entropy(arch)
    if kind == "gauss":
        return gaussian_entropy(arch)
    raise ConfigError(f"entropy kind {kind!r} is unknown; choose one of {', '.join(ENTROPY_KINDS)}")
