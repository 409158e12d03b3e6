"""Phase oscillator networks (oscillator Ising machines, XY networks) by their laws: the energy is Gower's written
out pair by pair, the fast paths are autograd's, the Euler dynamics never raise the energy at a small step, the
energy is 2π-periodic, and EqProp tends to implicit differentiation at O(β) / O(β²)."""

from __future__ import annotations

import math

import pytest
import torch

from eqprop import EqProp, GradientFlow, ImplicitDiff, PhaseNetwork, PhaseSquaredError, solve
from eqprop.analysis.gradcheck import compare, loglog_slope
from eqprop.errors import ConfigError
from eqprop.solvers import BlockCoordinate
from eqprop.systems.base import EnergySystem

CASES = {
    "oim": {"sizes": [6, 5, 3]},
    "oim-deep": {"sizes": [6, 5, 4, 3]},
    "xy": {"sizes": [6, 5, 3], "input": "phase", "sync": False, "field_phases": True},
    "all-to-all": {"sizes": [6, 5, 3], "topology": "all_to_all", "field_phases": True},
}


@pytest.fixture(autouse=True)
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def make(name: str, seed: int = 0, batch: int = 4):
    kw = dict(CASES[name])
    sizes = kw.pop("sizes")
    g = torch.Generator().manual_seed(seed)
    net = PhaseNetwork(sizes, gains=2.0, generator=g, **kw)
    with torch.no_grad():  # fields, field phases and sync terms away from their zero start
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    x = torch.rand(batch, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (batch,), generator=g)
    phases = tuple(2 * math.pi * torch.rand(batch, n, generator=g) for n in sizes[1:])
    return net, x, y, phases


def energy_pair_by_pair(net: PhaseNetwork, x, phases):
    """Gower's OIM energy (and the XY one) written out with explicit pairwise phase differences."""
    e = torch.zeros(x.shape[0])
    w0 = net.weights[0]
    flat = torch.cat(phases, -1)
    first = flat if net.topology == "all_to_all" else phases[0]
    if net.input_kind == "amplitude":
        e = e - ((x @ w0.T) * torch.cos(first)).sum(-1)
    else:
        psi = math.pi * x
        e = e - (w0 * torch.cos(first[:, :, None] - psi[:, None, :])).sum((1, 2))
    if net.topology == "layered":
        for k in range(1, len(phases)):
            diff = phases[k - 1][:, :, None] - phases[k][:, None, :]  # (batch, n_k, n_{k+1})
            e = e - (torch.cos(diff) * net.weights[k].T).sum((1, 2))
    else:
        j = net._pair()
        n = flat.shape[1]
        for a in range(n):
            for b in range(a + 1, n):  # each pair once
                e = e - j[a, b] * torch.cos(flat[:, a] - flat[:, b])
    for k, p in enumerate(phases):
        e = e - (net.fields[k] * torch.cos(p)).sum(-1)
        if net.field_phases is not None:
            e = e - (net.field_phases[k] * torch.sin(p)).sum(-1)
        if net.syncs is not None:
            e = e - 0.5 * (net.syncs[k] * torch.cos(2 * p)).sum(-1)
    return e


@pytest.mark.parametrize("name", CASES)
def test_the_energy_is_the_pairwise_one_and_2pi_periodic(name):
    net, x, _, phases = make(name)
    torch.testing.assert_close(
        net.energy(x, phases), energy_pair_by_pair(net, x, phases), rtol=1e-12, atol=1e-12
    )
    shifted = tuple(p + 2 * math.pi * torch.randint(-2, 3, p.shape).double() for p in phases)
    torch.testing.assert_close(net.energy(x, shifted), net.energy(x, phases), rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("name", CASES)
def test_fast_paths_equal_autograd(name):
    net, x, _, phases = make(name)
    for a, b in zip(net.state_grad(x, phases), EnergySystem.state_grad(net, x, phases), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    other = tuple(p + 0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) for p in phases)
    fast = net.param_grad_difference(x, phases, other, scale=0.7)
    slow = EnergySystem.param_grad_difference(net, x, phases, other, scale=0.7)
    assert sorted(fast) == sorted(slow)
    for k in slow:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-12, atol=1e-12, msg=k)


@pytest.mark.parametrize("name", CASES)
def test_euler_steps_never_raise_the_energy_at_a_small_step(name):
    """dφ/dt = −∂E/∂φ: an Euler step η decreases E by η‖∇E‖² − O(η²·‖∇E‖²·L), L the largest curvature; at η = 0.01
    (far below 1/L for these couplings) every step of every example must not raise it (up to round-off)."""
    net, x, _, phases = make(name, seed=3)
    state = phases
    e = net.energy(x, state)
    for _ in range(300):
        g = net.state_grad(x, state)
        state = tuple(p - 0.01 * d for p, d in zip(state, g, strict=True))
        e_new = net.energy(x, state)
        assert bool((e_new <= e + 1e-12).all())
        e = e_new


@pytest.mark.parametrize("name", CASES)
def test_eqprop_tends_to_implicit_differentiation(name):
    """At a converged free phase (residual < 1e-9) the two-phase estimates approach the implicit-differentiation
    gradient with slopes 1 (one-sided) and 2 (centered); centered cosine >= 0.9999 at β = 1e-3."""
    net, x, y, _ = make(name, seed=5)
    cost, solver = (
        PhaseSquaredError(),
        GradientFlow(iterations=6000, step_size=0.1, tol=1e-13, check_every=50),
    )
    ref = ImplicitDiff().gradients(net, cost, solver, x, y)
    assert float(ref.phases[0].stats.residual.max()) < 1e-9
    betas = [1e-2, 1e-3, 1e-4]
    for variant, slope in (("positive", 1.0), ("centered", 2.0)):
        errors = []
        for beta in betas:
            est = EqProp(beta=beta, variant=variant).gradients(net, cost, solver, x, y)
            errors.append(compare(est.grads, ref.grads)["relative_error"])
            if variant == "centered" and beta == 1e-3:
                assert compare(est.grads, ref.grads)["cosine"] >= 0.9999
        assert loglog_slope(betas, errors) == pytest.approx(slope, abs=0.2), (variant, errors)


def test_phase_readout_cost_targets_and_refusals():
    cost = PhaseSquaredError()
    state = (torch.zeros(2, 4), torch.tensor([[0.0, math.pi, math.pi / 2, 0.0]] * 2))
    target = cost.prepare_target(torch.tensor([0, 1]), state[-1])
    assert target.tolist() == [[1, -1, -1, -1], [-1, 1, -1, -1]]
    assert cost(state, target).tolist() == pytest.approx([0.5 * (0 + 0 + 1 + 4), 0.5 * (4 + 4 + 1 + 4)])
    torch.testing.assert_close(cost.predict(state), torch.cos(state[-1]))
    net, x, y, _ = make("oim")
    with pytest.raises(ConfigError, match="no exact block minimiser"):
        EqProp(beta=0.1).gradients(net, cost, BlockCoordinate(iterations=3), x, y)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="amplitude"):
        PhaseNetwork([4, 3], input="spin")
    with pytest.raises(ConfigError, match=r"\[inputs, hidden, outputs\]"):
        PhaseNetwork([4, 3, 3, 2], topology="all_to_all")
    with pytest.raises(ConfigError, match="random"):
        PhaseNetwork([4, 3], initial_phase=float("nan"))


def test_random_initial_phases_differ_per_example_and_the_fixed_start_is_pi_over_2():
    net = PhaseNetwork([4, 3, 2], initial_phase="random")
    a = net.init_state(torch.zeros(5, 4))
    assert not torch.equal(a[0][0], a[0][1]) and bool(((a[0] >= 0) & (a[0] < 2 * math.pi)).all())
    fixed = PhaseNetwork([4, 3, 2]).init_state(torch.zeros(5, 4))
    assert all(bool((p == math.pi / 2).all()) for p in fixed)
    eq = solve(
        PhaseNetwork([4, 3, 2], gains=3.0), torch.rand(5, 4), GradientFlow(iterations=50, step_size=0.1)
    )
    assert all(bool(torch.isfinite(p).all()) for p in eq.state)


def test_multistability_counts_the_distinct_equilibria():
    """One unit with a sync term and no field has two minima, φ = 0 and π (a double well): random starts find both.
    With a strong field and no sync term there is one minimum: every start lands on it."""
    from eqprop.analysis.multistability import multistability

    double = PhaseNetwork([1, 1], sync=True)
    with torch.no_grad():
        double.weights[0].zero_()
        double.syncs[0].fill_(1.0)
    solver = GradientFlow(iterations=400, step_size=0.1)
    x = torch.zeros(6, 1)
    two = multistability(double, solver, x, cost=PhaseSquaredError(), restarts=12, tol=1e-3)
    assert two["distinct_equilibria_mean"] == 2.0 and two["examples_with_several_equilibria"] == 1.0
    assert two["energy_spread_mean"] < 1e-9  # 0 and π have the same energy
    single = PhaseNetwork([1, 1], sync=False)
    with torch.no_grad():
        single.weights[0].fill_(2.0)
    one = multistability(single, solver, torch.ones(6, 1), cost=PhaseSquaredError(), restarts=12, tol=1e-3)
    assert one["distinct_equilibria_mean"] == 1.0 and one["prediction_depends_on_start"] == 0.0


def test_quantised_phase_readout_rounds_to_levels_around_the_circle():
    """Gower's 4-bit phase measurement: 16 levels k·2π/16, wrapped; [hardware] read_bits / read_range / read_periodic."""
    from eqprop.devices.config import HardwareConfig

    hardware = HardwareConfig(read_bits=4, read_range=[0.0, 2 * math.pi], read_periodic=True)
    net = PhaseNetwork([4, 3, 2], gains=3.0)
    solver = hardware.build(net, torch.Generator().manual_seed(0)).wrap(
        GradientFlow(iterations=30, step_size=0.1)
    )
    x = torch.rand(5, 4)
    exact = solve(net, x, GradientFlow(iterations=30, step_size=0.1)).state
    read = solve(net, x, solver).state
    step = 2 * math.pi / 16
    for e, r in zip(exact, read, strict=True):
        assert bool(((r >= 0) & (r < 2 * math.pi)).all())
        k = r / step
        torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)  # on a level
        gap = torch.atan2(torch.sin(r - e), torch.cos(r - e)).abs()
        assert float(gap.max()) <= step / 2 + 1e-9  # the nearest level on the circle
    with pytest.raises(ConfigError, match="read_range"):
        HardwareConfig(read_bits=4)


def test_the_phase_costs_closed_form_gradient_is_autograds():
    cost = PhaseSquaredError()
    phi = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    target = cost.prepare_target(torch.tensor([0, 1, 2, 0, 1]), phi)
    (auto,) = torch.autograd.grad(cost((phi,), target).sum(), phi)
    torch.testing.assert_close(cost.output_grad(phi.detach(), target), auto, rtol=1e-12, atol=1e-12)


def test_langevin_phase_noise_samples_the_von_mises_distribution():
    """One phase in a field h at temperature T: the Gibbs distribution ∝ exp(h cos φ / T) is von Mises(κ = h/T).
    5,000 Langevin chains (η = 0.01, 2,000 steps: 20 relaxation times) pass a KS test against it at α = 0.001
    (critical distance 1.95/√5000 = 0.028), and the same test rejects κ off by 30 % (power shown, not assumed)."""
    from scipy import stats

    from eqprop.solvers import Langevin

    net = PhaseNetwork([1, 1], sync=False)
    with torch.no_grad():
        net.weights[0].fill_(0.4)
    t = 0.2
    torch.manual_seed(0)
    x = torch.ones(5000, 1)
    phi = solve(net, x, Langevin(temperature=t, step_size=0.01, iterations=2000)).state[0][:, 0]
    wrapped = torch.atan2(torch.sin(phi), torch.cos(phi)).numpy()
    kappa = 0.4 / t
    assert stats.kstest(wrapped, stats.vonmises(kappa).cdf).pvalue > 1e-3
    assert stats.kstest(wrapped, stats.vonmises(1.3 * kappa).cdf).pvalue < 1e-3
