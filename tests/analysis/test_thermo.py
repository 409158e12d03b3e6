"""Architecture thermodynamics (eqprop.analysis.thermo): every closed form against brute force, the
fixtures of the research notes (chinea.md §3.9), the statistics against naive implementations, and the
`eqprop arch-thermo` command end to end."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqprop.analysis import thermo
from eqprop.analysis.thermo import Arch, Move
from eqprop.cli import main
from eqprop.cli.thermo import parse_depths
from eqprop.errors import ConfigError

FAST = settings(max_examples=60, deadline=None, database=None)

archs = st.builds(
    lambda n_in, hidden, n_out: Arch((n_in, *hidden, n_out)),
    st.integers(1, 40),
    st.lists(st.integers(1, 40), min_size=0, max_size=5),
    st.integers(1, 12),
)


def brute_energy(widths: tuple[int, ...], bias: bool) -> int:
    """U recomputed from scratch: one term per coupling, plus one per bias."""
    couplings = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    return couplings + (sum(widths[1:]) if bias else 0)


# -- Diophantine families ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("neurons", "depth"), [(n, d) for n in range(1, 13) for d in range(1, 6)])
def test_compositions_count_is_binomial(neurons, depth):
    found = list(thermo.compositions(neurons, depth))
    assert len(found) == math.comb(neurons - 1, depth - 1) == thermo.count_compositions(neurons, depth)
    assert len(set(found)) == len(found)
    assert all(len(c) == depth and sum(c) == neurons and min(c) >= 1 for c in found)
    assert found == sorted(found)


@pytest.mark.parametrize(
    ("neurons", "depth", "n_min", "n_max"), [(10, 3, 1, 4), (12, 4, 2, 5), (9, 2, 1, 3), (7, 3, 3, 9)]
)
def test_compositions_with_bounds_match_brute_force(neurons, depth, n_min, n_max):
    brute = [c for c in itertools.product(range(n_min, n_max + 1), repeat=depth) if sum(c) == neurons]
    assert list(thermo.compositions(neurons, depth, n_min=n_min, n_max=n_max)) == brute
    assert thermo.count_compositions(neurons, depth, n_min=n_min, n_max=n_max) == len(brute)


def test_iso_energetic_fixtures_of_the_notes():
    """chinea.md §3.3/§3.9: n_0 = 784, n_out = 10, biases counted, widths ≤ 1024."""
    family = {a.hidden for a in thermo.iso_energetic(784, 10, 60000, 2)}
    assert family == {(34, 740), (50, 340), (64, 130)}
    assert {a.hidden for a in thermo.iso_energetic(784, 10, 60010, 2)} == {(42, 510)}
    for budget, count in ((60000, 62), (60010, 74), (100000, 92)):
        assert sum(1 for _ in thermo.iso_energetic(784, 10, budget, 3)) == count
        assert not list(thermo.iso_energetic(784, 10, budget, 1))
    assert len(list(thermo.iso_energetic(784, 10, 100000, 2))) == 2


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("tol", [0.0, 0.08])
@pytest.mark.parametrize("budget", [150, 181, 240, 333])
def test_iso_energetic_matches_brute_force(budget, tol, bias):
    n_in, n_out, n_max = 5, 3, 14
    lo, hi = math.ceil(budget * (1 - tol) - 1e-9), math.floor(budget * (1 + tol) + 1e-9)
    for depth in (0, 1, 2, 3):
        brute = [
            h
            for h in itertools.product(range(1, n_max + 1), repeat=depth)
            if lo <= brute_energy((n_in, *h, n_out), bias) <= hi
        ]
        found = [
            a.hidden
            for a in thermo.iso_energetic(n_in, n_out, budget, depth, tol=tol, n_max=n_max, bias=bias)
        ]
        assert found == brute, (depth, budget, tol)


def test_sample_iso_energetic_draws_members_and_finds_them_all():
    family = set(thermo.iso_energetic(5, 3, 240, 3, tol=0.05, n_max=14))
    drawn = thermo.sample_iso_energetic(5, 3, 240, 3, 10, tol=0.05, n_max=14, seed=1)
    assert len(drawn) == 10 and set(drawn) <= family
    everything = thermo.sample_iso_energetic(
        5, 3, 240, 3, 10 * len(family), tol=0.05, n_max=14, max_tries=20000
    )
    assert set(everything) == family
    assert drawn == thermo.sample_iso_energetic(5, 3, 240, 3, 10, tol=0.05, n_max=14, seed=1)


def test_shaped_family_stays_in_band_and_keeps_shapes():
    members = thermo.shaped_family(784, 10, 60000, [1, 2, 3, 4], tol=0.02, random_shapes=2)
    assert members
    for arch, shape in members:
        assert abs(thermo.energy(arch) - 60000) <= 0.02 * 60000
        if shape == "increasing":
            assert list(arch.hidden) == sorted(arch.hidden)
        if shape == "decreasing":
            assert list(arch.hidden) == sorted(arch.hidden, reverse=True)
    assert len({a for a, _ in members}) == len(members)


# -- energy and moves ----------------------------------------------------------------------------------------


def test_energy_counts_parameters_and_interactions():
    a = Arch((784, 128, 64, 10))
    assert thermo.interactions(a) == 784 * 128 + 128 * 64 + 64 * 10
    assert thermo.energy(a) == thermo.interactions(a) + 128 + 64 + 10
    assert thermo.energy(a, bias=False) == thermo.interactions(a)
    assert thermo.energy(a, form="fan_in", gain=2.0, bias=False) == 2.0 * (128 + 64 + 10)


@FAST
@given(arch=archs, bias=st.booleans(), form=st.sampled_from(["count", "fan_in"]), width=st.integers(1, 30))
def test_every_move_closed_form_equals_recomputation(arch, bias, form, width):
    moves = thermo.neighbours(arch) + thermo.neighbours(arch, insert_widths=[width])
    for move in moves:
        after = thermo.apply_move(arch, move)
        expected = thermo.energy(after, bias=bias, form=form, gain=1.5) - thermo.energy(
            arch, bias=bias, form=form, gain=1.5
        )
        assert thermo.delta_energy(arch, move, bias=bias, form=form, gain=1.5) == pytest.approx(
            expected, abs=1e-9
        )
        if form == "count":
            assert thermo.energy(after, bias=bias) == brute_energy(after.widths, bias)


def test_neighbours_cover_every_kind_and_respect_bounds():
    a = Arch((6, 3, 1, 4, 2))
    moves = thermo.neighbours(a, n_max=4)
    kinds = {m.kind for m in moves}
    assert kinds == set(thermo.MOVE_KINDS)
    assert Move("add", 3) not in moves  # width 4 is at n_max
    assert Move("remove", 2) not in moves  # would empty the layer
    assert not [m for m in moves if m.kind == "move" and m.layer == 2]
    assert all(m.kind not in ("insert", "delete") for m in thermo.neighbours(a, depths=[3]))


@pytest.mark.parametrize(
    "move",
    [
        Move("remove", 1),
        Move("move", 1, to=2),
        Move("add", 3),
        Move("move", 2, to=2),
        Move("insert", 4, width=3),
    ],
)
def test_inadmissible_moves_raise(move):
    with pytest.raises(ConfigError):
        thermo.apply_move(Arch((5, 1, 4, 3)), move)


def test_bad_moves_and_archs_raise():
    with pytest.raises(ConfigError, match="at least two"):
        Arch((784,))
    with pytest.raises(ConfigError, match="positive integer"):
        Arch((784, 0, 10))
    with pytest.raises(ConfigError, match="to"):
        Move("add", 1, to=2)
    with pytest.raises(ConfigError, match="kind"):
        Move("grow", 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="form"):
        thermo.energy(Arch((3, 2)), form="weights")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tol"):
        list(thermo.iso_energetic(784, 10, 60000, 2, tol=1.5))
    with pytest.raises(ConfigError, match="depth"):
        list(thermo.iso_energetic(784, 10, 60000, -1))
    assert Arch.parse("784-128-10") == Arch((784, 128, 10))
    with pytest.raises(ConfigError, match="cannot read"):
        Arch.parse("784-a-10")


# -- entropies -----------------------------------------------------------------------------------------------


def serra_brute(n0: int, hidden: tuple[int, ...]) -> int:
    """The Serra et al. sum over J, enumerated with exact integers."""
    total = 0

    def rec(layer: int, cap: int, weight: int) -> None:
        nonlocal total
        if layer == len(hidden):
            total += weight
            return
        n = hidden[layer]
        for j in range(min(cap, n) + 1):
            rec(layer + 1, min(cap, n - j), weight * math.comb(n, j))

    rec(0, n0, 1)
    return total


@FAST
@given(hidden=st.lists(st.integers(2, 60), min_size=1, max_size=6))
def test_region_bound_is_exact_for_one_input(hidden):
    """One input: the bound is Π (n_l + 1) when every layer has ≥ 2 units (a 1-unit layer collapses it)."""
    value = math.exp(thermo.region_entropy(Arch((1, *hidden, 10))))
    assert value == pytest.approx(math.prod(n + 1 for n in hidden), rel=1e-9)


def test_region_bound_with_a_one_unit_layer():
    assert serra_brute(1, (3, 3)) == 16
    assert serra_brute(1, (1, 1)) == 3  # < (1+1)(1+1): the second unit sees a folded, one-sided line
    assert math.exp(thermo.region_entropy(Arch((1, 1, 1, 5)))) == pytest.approx(3.0)


@FAST
@given(n0=st.integers(1, 5), hidden=st.lists(st.integers(1, 7), min_size=0, max_size=4))
def test_region_bound_dynamic_programme_matches_enumeration(n0, hidden):
    arch = Arch((n0, *hidden, 2))
    assert thermo.region_entropy(arch) == pytest.approx(math.log(serra_brute(n0, tuple(hidden))), abs=1e-9)
    assert thermo.region_entropy(arch) <= thermo.region_entropy(arch, bound="raghu") + 1e-9


def test_region_bound_fixture_and_raghu():
    """chinea.md §3.9: n_0 = 784, [128, 128]: ln 176.80 (Serra) vs 177.45 (Raghu = 256 ln 2)."""
    a = Arch((784, 128, 128, 10))
    assert thermo.region_entropy(a) == pytest.approx(176.80, abs=0.005)
    assert thermo.region_entropy(a, bound="raghu") == pytest.approx(256 * math.log(2))
    assert thermo.region_entropy(Arch((784, 10))) == 0.0


def test_permutation_entropy_is_log_of_factorials():
    a = Arch((20, 5, 7, 3, 4))
    assert thermo.permutation_entropy(a) == pytest.approx(math.log(math.factorial(5) * math.factorial(7) * 6))
    assert thermo.permutation_entropy(a, odd=True) == pytest.approx(
        thermo.permutation_entropy(a) + 15 * math.log(2)
    )


def vasicek_entropy(samples: np.ndarray, m: int) -> float:
    """Vasicek's m-spacing estimate of a 1-D differential entropy (no Gaussian assumption)."""
    x = np.sort(samples)
    n = x.size
    upper = x[np.minimum(np.arange(n) + m, n - 1)]
    lower = x[np.maximum(np.arange(n) - m, 0)]
    return float(np.mean(np.log(n / (2 * m) * (upper - lower))))


@pytest.mark.parametrize("widths", [(8, 16, 32, 4), (12, 24, 3), (10, 32, 32, 32, 2)])
def test_gaussian_entropy_matches_monte_carlo(widths):
    """Random linear nets, N(0, 1) weights and inputs: Var(y) = n_0 Π n_l (averaged over 1000 nets), and
    the summed per-output entropies, estimated without assuming Gaussianity (Vasicek m-spacings, 12 nets
    of 20000 inputs), match the closed form within 5% (measured: 1.6%, 0.3% and 1.6% below it)."""
    rng = np.random.default_rng(7)
    arch = Arch(widths)
    y = rng.standard_normal((1000, 200, widths[0]))
    for a, b in itertools.pairwise(widths):
        y = y @ rng.standard_normal((1000, a, b))  # (nets, inputs, b)
    assert y.var(axis=1).mean() == pytest.approx(widths[0] * math.prod(arch.hidden), rel=0.05)
    entropies = []
    for _ in range(12):
        y = rng.standard_normal((20000, widths[0]))
        for a, b in itertools.pairwise(widths):
            y = y @ rng.standard_normal((a, b))
        entropies.append(sum(vasicek_entropy(y[:, k], m=40) for k in range(arch.n_out)))
    assert np.mean(entropies) == pytest.approx(thermo.gaussian_entropy(arch), rel=0.05)
    # For one net the outputs are exactly Gaussian with variance v(W); E ln v ≤ ln E v (Jensen), so the
    # closed form is the max-entropy upper bound, with a gap that grows like Σ 1/n_l.
    assert np.mean(entropies) <= thermo.gaussian_entropy(arch) * 1.005


def test_gaussian_entropy_and_effectiveness_closed_forms():
    a = Arch((784, 50, 200, 10))
    h = 5 * (math.log(2 * math.pi * math.e) + math.log(784) + math.log(50) + math.log(200))
    assert thermo.gaussian_entropy(a) == pytest.approx(h)
    assert thermo.effectiveness(a) == pytest.approx(2 / math.sqrt(50 * 200))
    assert thermo.effectiveness(Arch((784, 10))) == 0.0
    assert thermo.entropy(a, "gauss") == thermo.gaussian_entropy(a)
    with pytest.raises(ConfigError, match="entropy kind"):
        thermo.entropy(a, "shannon")  # type: ignore[arg-type]


# -- ensemble, free energy, stability, efficiency ------------------------------------------------------------


def test_density_of_states_exact_and_sampled_agree():
    exact = thermo.density_of_states(20, 5, 40, 3, bins=10)
    assert exact.exact and exact.counts.sum() == exact.total == math.comb(39, 2)
    brute = [brute_energy((20, *c, 5), True) for c in thermo.compositions(40, 3)]
    assert exact.edges[0] == min(brute) and exact.edges[-1] == max(brute)
    sampled = thermo.density_of_states(20, 5, 40, 3, bins=10, exact_limit=0, samples=200000, seed=3)
    assert not sampled.exact and sampled.drawn == 200000
    hit = exact.counts > 20
    assert np.allclose(sampled.log_g[hit], exact.log_g[hit], atol=0.15)


def test_density_of_states_respects_the_width_cap():
    dos = thermo.density_of_states(20, 5, 30, 3, n_max=12)
    assert dos.total == thermo.count_compositions(30, 3, n_max=12) == dos.counts.sum()


def test_temperature_is_the_inverse_slope_of_ln_g():
    u = np.linspace(0.0, 100.0, 21)
    counts = np.round(np.exp(5.0 + 0.05 * 0.5 * (u[1:] + u[:-1]))).astype(int)
    dos = thermo.DensityOfStates(
        3, 2, 10, 2, edges=u, counts=counts, total=int(counts.sum()), drawn=int(counts.sum()), exact=True
    )
    assert dos.temperature(50.0) == pytest.approx(1 / 0.05, rel=0.02)
    falling = thermo.DensityOfStates(
        3, 2, 10, 2, edges=u, counts=counts[::-1].copy(), total=1, drawn=1, exact=True
    )
    assert falling.temperature(50.0) == pytest.approx(-1 / 0.05, rel=0.02)
    assert math.isnan(thermo.ensemble_temperature(Arch((784, 64, 10))))
    assert math.isfinite(thermo.ensemble_temperature(Arch((784, 40, 30, 10))))


@pytest.mark.parametrize("temperature", [math.inf, 50.0])
@pytest.mark.parametrize("kind", ["gauss", "perm", "regions"])
def test_stability_margin_matches_brute_force(temperature, kind):
    arch = Arch((30, 12, 7, 9, 4))
    u0 = brute_energy(arch.widths, True)
    band = (u0 * 0.97, u0 * 1.03)
    result = thermo.stability(arch, temperature=temperature, entropy_kind=kind, band=band, n_max=20)
    values = []
    for move in thermo.neighbours(arch, n_max=20):
        after = thermo.apply_move(arch, move)
        u = brute_energy(after.widths, True)
        if band[0] <= u <= band[1]:
            ds = thermo.entropy(after, kind) - thermo.entropy(arch, kind)
            if math.isinf(temperature):
                values.append((-ds, move))
            else:
                df = thermo.free_energy(after, temperature, entropy_kind=kind) - thermo.free_energy(
                    arch, temperature, entropy_kind=kind
                )
                values.append((df / temperature, move))
    assert result.moves == len(values) > 0
    best = min(values, key=lambda v: v[0])
    assert result.margin == pytest.approx(best[0])
    assert result.stable == (best[0] > 0)


def test_stability_without_admissible_moves():
    result = thermo.stability(Arch((5, 1, 3)), band=(0, 1), n_max=1)
    assert result.margin == math.inf and result.worst_move is None and result.stable and result.moves == 0
    with pytest.raises(ConfigError, match="temperature"):
        thermo.stability(Arch((5, 2, 3)), temperature=0.0)
    with pytest.raises(ConfigError, match="finite"):
        thermo.free_energy(Arch((5, 2, 3)), math.inf)


def test_efficiency():
    family = list(thermo.iso_energetic(784, 10, 60000, [2, 3]))
    a = family[0]
    assert thermo.efficiency(a) == pytest.approx(thermo.region_entropy(a) / thermo.energy(a))
    assert thermo.efficiency(a, bits=True) == pytest.approx(thermo.efficiency(a) / math.log(2))
    relative = [thermo.efficiency(x, family=family) for x in family]
    assert max(relative) == pytest.approx(1.0) and all(0 < r <= 1 for r in relative)


def test_analyze_ranks_by_constrained_maximum_entropy():
    family = list(thermo.iso_energetic(784, 10, 60000, [1, 2, 3]))
    ranked = thermo.analyze(family + family[:3], rho_max=0.02, ensemble=False)
    assert [r.rank for r in ranked] == list(range(1, len(family) + 1))
    feasible = [r.feasible for r in ranked]
    assert feasible == sorted(feasible, reverse=True) and any(feasible) and not all(feasible)
    good = [r.score for r in ranked if r.feasible]
    assert good == sorted(good, reverse=True)
    assert ranked[0].arch.hidden == (34, 740)  # ρ ≤ 0.02 leaves the depth-2 solutions; (34, 740) has max H
    unconstrained = thermo.analyze(family, rho_max=None, ensemble=False)
    assert unconstrained[0].arch.depth == 3  # without the constraint the entropy prefers depth
    row = ranked[0].as_row()
    assert row["arch"] == "784-34-740-10" and row["energy"] == 60000
    with pytest.raises(ConfigError, match="empty"):
        thermo.analyze([])
    with pytest.raises(ConfigError, match="rho_max"):
        thermo.analyze(family, rho_max=0.0)


# -- rank statistics -----------------------------------------------------------------------------------------


def naive_tau_b(x, y):
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    den = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / den if den else math.nan


def naive_ranks(v):
    return [sum(1 for w in v if w < a) + (sum(1 for w in v if w == a) + 1) / 2 for a in v]


def naive_pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((p - ma) * (q - mb) for p, q in zip(a, b, strict=True))
    return cov / math.sqrt(sum((p - ma) ** 2 for p in a) * sum((q - mb) ** 2 for q in b))


pairs = st.integers(3, 25).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
    )
)


@FAST
@given(data=pairs)
def test_kendall_and_spearman_match_brute_force(data):
    x, y = data
    if len(set(x)) < 2 or len(set(y)) < 2:
        assert math.isnan(thermo.kendall_tau(x, y)) and math.isnan(thermo.spearman_rho(x, y))
        return
    assert thermo.kendall_tau(x, y) == pytest.approx(naive_tau_b(x, y), abs=1e-12)
    assert thermo.spearman_rho(x, y) == pytest.approx(
        naive_pearson(naive_ranks(x), naive_ranks(y)), abs=1e-12
    )
    assert list(thermo.rankdata(x)) == naive_ranks(x)


@FAST
@given(
    x=st.lists(st.integers(-500, 500).map(lambda i: i / 100), min_size=4, max_size=20, unique=True),
    seed=st.integers(0, 10**6),
)
def test_rank_statistics_are_invariant_to_monotone_transforms(x, seed):
    y = np.random.default_rng(seed).permutation(len(x)).astype(float)
    for f in (np.exp, lambda v: v**3 + 2 * v, lambda v: 10 * v - 7):
        assert thermo.spearman_rho(f(np.array(x)), y) == pytest.approx(thermo.spearman_rho(x, y))
        assert thermo.kendall_tau(f(np.array(x)), y) == pytest.approx(thermo.kendall_tau(x, y))


@FAST
@given(seed=st.integers(0, 10**6), n=st.integers(5, 30))
def test_partial_spearman_matches_residual_regression(seed, n):
    """The partial correlation formula equals the correlation of the residuals of the ranks after a
    linear regression of each on the ranks of the control."""
    rng = np.random.default_rng(seed)
    z = rng.integers(1, 5, n).astype(float)
    x = z + rng.normal(size=n)
    y = -z + rng.normal(size=n)
    rx, ry, rz = thermo.rankdata(x), thermo.rankdata(y), thermo.rankdata(z)
    if np.ptp(rz) == 0:
        assert math.isnan(thermo.partial_spearman(x, y, z))
        return
    design = np.column_stack([np.ones(n), rz])
    ex = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    ey = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    assert thermo.partial_spearman(x, y, z) == pytest.approx(naive_pearson(list(ex), list(ey)), abs=1e-9)


def test_top_k_and_validate():
    scores = [5.0, 4.0, 3.0, 2.0, 1.0]
    accuracy = [0.80, 0.90, 0.70, 0.85, 0.60]
    sel = thermo.top_k(scores, accuracy, 2)
    assert sel["mean"] == pytest.approx(0.85) and sel["best"] == pytest.approx(0.90) and sel["hit"] == 1.0
    assert sel["oracle"] == pytest.approx(0.875) and sel["regret"] == pytest.approx(0.0)
    loss = [0.5, 0.2, 0.9, 0.1, 1.0]
    sel = thermo.top_k(scores, loss, 2, target_higher_is_better=False)
    assert sel["best"] == pytest.approx(0.2) and sel["regret"] == pytest.approx(0.1) and sel["hit"] == 0.0
    depth = [1.0, 2.0, 3.0, 4.0, 5.0]
    per_seed = np.array([[0.9, 0.88], [0.85, 0.86], [0.8, np.nan], [0.7, 0.72], [0.6, 0.61]])
    rows = thermo.validate(
        {"depth": depth, "width": [9.0, 8.0, 7.0, 6.0, 5.0]},
        {"test_accuracy": per_seed},
        control=depth,
        directions={"depth": -1.0},
        k=2,
    )
    by = {r["measure"]: r for r in rows}
    assert by["depth"]["rho"] == pytest.approx(-1.0) and by["depth"]["tau"] == pytest.approx(-1.0)
    assert by["depth"]["top_k_mean"] == pytest.approx((0.89 + 0.855) / 2)
    assert by["width"]["rho"] == pytest.approx(1.0) and math.isnan(by["width"]["rho_partial"])
    assert by["depth"]["rho_sd"] == pytest.approx(0.0) and by["depth"]["n"] == 5


# -- the command ---------------------------------------------------------------------------------------------


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_parse_depths():
    assert parse_depths("1-8") == list(range(1, 9))
    assert parse_depths("1,2,4") == [1, 2, 4]
    assert parse_depths("1-3,6") == [1, 2, 3, 6]
    for bad in ("x", "3-1", "1-", "-2"):
        with pytest.raises(ConfigError, match="depth list"):
            parse_depths(bad)


def test_arch_thermo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "family"
    argv = ["arch-thermo", "--in", "784", "--out", "10", "--budget", "60000", "--depths", "1-4"]
    assert main([*argv, "--tol", "0.02", "--top", "5", "--max-per-depth", "60", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    result = _last_json(text)
    assert result["members"] == 3 + 3 * 60 and result["per_depth"]["1"]["mode"] == "enumerated"
    assert result["per_depth"]["3"]["mode"].startswith("sampled")
    assert len(result["top"]) == 5 and result["top"][0]["rank"] == 1
    assert " hidden widths " in text
    rows = (out / "family.csv").read_text().splitlines()
    assert len(rows) == 1 + result["members"] and rows[0].startswith("rank,arch,hidden,depth")
    written = ["family.csv"]
    if importlib.util.find_spec("matplotlib") is not None:  # optional: without it no PNG is written
        written += ["entropy_vs_depth.png", "density_of_states.png"]
    assert result["files"] == [str(out / name) for name in written]
    for name in written:
        assert (out / name).stat().st_size > 0


def test_arch_thermo_exact_family_matches_the_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["arch-thermo", "--budget", "60000", "--depths", "2", "--tol", "0", "--rho-max", "inf"]
    assert main([*argv, "--json", "--no-plots", "--out-dir", str(tmp_path)]) == 0
    result = _last_json(capsys.readouterr().out)
    assert (
        result["members"] == 3
        and result["rho_max"] is None
        and result["files"] == [str(tmp_path / "family.csv")]
    )
    assert {r["arch"] for r in result["top"]} == {"784-34-740-10", "784-50-340-10", "784-64-130-10"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--depths", "2-x"], "depth list"),
        (["--budget", "100", "--tol", "0"], "no architecture"),
        (["--tol", "2"], "tol"),
        (["--n-max", "0"], "n-max"),
    ],
)
def test_arch_thermo_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv, message):
    assert main(["arch-thermo", *argv, "--no-plots", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqprop: error:") and message in err
