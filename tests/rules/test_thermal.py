"""Thermal EqProp: Gibbs averages by Langevin chains, against the exact gradient of the expected cost of a Gaussian."""

from __future__ import annotations

import itertools

import pytest
import torch

from eqprop import DeepHopfield, EqProp, GradientFlow, SquaredError, solve
from eqprop.errors import ConfigError
from eqprop.rules import ThermalEqProp
from eqprop.solvers import Langevin

T = 0.2


def _gaussian_net(gen: torch.Generator) -> tuple[DeepHopfield, torch.Tensor, torch.Tensor]:
    """Unbounded units: E is quadratic, so the Gibbs distribution at T is N(H⁻¹h, T·H⁻¹)."""
    net = DeepHopfield([4, 5, 3], bounds=None, output_bounds=None, gains=0.8, generator=gen)
    with torch.no_grad():
        for b in net.biases:
            b.uniform_(-0.3, 0.3, generator=gen)
    return net, torch.rand(4, 4, generator=gen), torch.rand(4, 3, generator=gen)


def _moments(net: DeepHopfield, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w0, w1 = net.weights
    b1, b2 = net.biases
    top = torch.cat([torch.eye(5), -w1.t()], 1)
    hess = torch.cat([top, torch.cat([-w1, torch.eye(3)], 1)], 0)
    field = torch.cat([x @ w0.t() + b1, b2.expand(len(x), 3)], 1)
    return torch.linalg.solve(hess, field.t()).t(), T * torch.linalg.inv(hess)


def test_langevin_samples_the_gibbs_distribution(f64: torch.dtype, gen: torch.Generator) -> None:
    net, x, _ = _gaussian_net(gen)
    with torch.no_grad():
        mean, cov = _moments(net, x[:1])
    torch.manual_seed(0)
    chains = x[:1].repeat(20000, 1)
    s = torch.cat(solve(net, chains, Langevin(temperature=T, step_size=0.02, iterations=750)).state, 1)
    assert float((s.mean(0) - mean[0]).abs().max()) < 0.01
    # Euler–Maruyama's stationary covariance is T·H⁻¹ up to O(η): 2 % at η = 0.02
    assert float((torch.cov(s.t()) - cov).abs().max()) < 0.03 * float(cov.abs().max())


def test_thermal_eqprop_estimates_the_gradient_of_the_expected_cost(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """``L = ⟨½‖o − y‖²⟩ = ½‖μ_o − y‖² + ½T·tr Σ_oo``, differentiated exactly; the deterministic EqProp gradient
    (the T = 0 one) differs from it by 11 %, the thermal estimate by under 4 %."""
    net, x, y = _gaussian_net(gen)
    params = dict(net.named_parameters())
    mean, cov = _moments(net, x)
    loss = (0.5 * ((mean[:, 5:] - y) ** 2).sum(1) + 0.5 * torch.diagonal(cov)[5:].sum()).mean()
    ref = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))

    def flat(d: dict) -> torch.Tensor:
        return torch.cat([d[n].flatten() for n in sorted(d)])

    def rel(d: dict) -> float:
        return float(
            (flat({n.removeprefix("system."): g for n, g in d.items()}) - flat(ref)).norm() / flat(ref).norm()
        )

    det = EqProp(beta=1e-4).gradients(net, SquaredError(), GradientFlow(iterations=400, step_size=0.5), x, y)
    assert rel(det.grads) > 0.08
    torch.manual_seed(1)
    sampler = Langevin(temperature=T, step_size=0.02, iterations=750)
    est = ThermalEqProp(beta=0.02, samples=2000).gradients(net, SquaredError(), sampler, x, y)
    assert rel(est.grads) < 0.04
    assert est.scores.shape == (4, 3)


def test_at_zero_temperature_it_is_eqprop(f64: torch.dtype, gen: torch.Generator) -> None:
    net, x, y = _gaussian_net(gen)
    flow = GradientFlow(iterations=60, step_size=0.5)
    cold = Langevin(temperature=0.0, step_size=0.5, iterations=60)
    a = ThermalEqProp(beta=0.1, samples=3).gradients(net, SquaredError(), cold, x, y).grads
    b = EqProp(beta=0.1).gradients(net, SquaredError(), flow, x, y).grads
    assert all(torch.allclose(a[n], b[n], atol=1e-14) for n in b)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        Langevin(temperature=-1.0)
    with pytest.raises(ConfigError, match="samples"):
        ThermalEqProp(samples=0)


def _ising(gen: torch.Generator) -> tuple[DeepHopfield, torch.Tensor, torch.Tensor]:
    """An Ising machine of 6 spins (4 hidden, 2 output) driven by 3 real inputs: 64 states, enumerable."""
    net = DeepHopfield([3, 4, 2], bounds=(-1, 1), output_bounds=(-1, 1), gains=1.5, generator=gen)
    with torch.no_grad():
        for b in net.biases:
            b.uniform_(-0.5, 0.5, generator=gen)
    return net, torch.rand(3, 3, generator=gen) * 2 - 1, torch.tensor([0, 1, 1])


def test_thermal_eqprop_on_spins_converges_to_the_exact_gradient(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """The exact expected cost over all 2⁶ spin states (Boltzmann weights at T = 1), differentiated by autograd; the
    Gibbs-sampled estimate's error falls as 1/√samples (×~3 per ×10 chains) down to 5 % at 20,000 chains."""

    from eqprop.solvers import GibbsSampler

    net, x, y = _ising(gen)
    states = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=6)))
    total = x.new_zeros(())
    for i in range(len(x)):
        e = net.energy(x[i : i + 1].expand(len(states), 3), (states[:, :4], states[:, 4:]))
        target = torch.nn.functional.one_hot(y[i], 2).double()
        total = total + (torch.softmax(-e, 0) * 0.5 * ((states[:, 4:] - target) ** 2).sum(1)).sum()
    params = dict(net.named_parameters())
    ref = torch.cat([g.flatten() for g in torch.autograd.grad(total / len(x), list(params.values()))])
    errors = []
    for samples in (2000, 20000):
        torch.manual_seed(0)
        est = ThermalEqProp(beta=0.05, samples=samples).gradients(
            net, SquaredError(), GibbsSampler(temperature=1.0, iterations=30), x, y
        )
        flat = torch.cat([est.grads[f"system.{n}"].flatten() for n in params])
        errors.append(float((flat - ref).norm() / ref.norm()))
    assert errors[1] < 0.1
    assert 2.0 < errors[0] / errors[1] < 6.0  # √10 ≈ 3.2


def test_gibbs_sampler_at_zero_temperature_and_its_anneal(f64: torch.dtype, gen: torch.Generator) -> None:
    from eqprop.solvers import GibbsSampler

    net, x, _ = _ising(gen)
    state = solve(net, x, GibbsSampler(temperature=0.0, iterations=20)).state
    assert all(set(s.unique().tolist()) <= {-1.0, 1.0} for s in state)
    drive = net.prepare(x)
    assert torch.equal(state[0], torch.where(net.block_field(0, state, drive) >= 0, 1.0, -1.0))
    temps = GibbsSampler(temperature=0.1, iterations=5, anneal_from=10.0)._schedule()
    assert temps[0] == 10.0 and temps[-1] == 0.1 and all(a > b for a, b in itertools.pairwise(temps))
    with pytest.raises(ConfigError, match="anneal_from"):
        GibbsSampler(temperature=1.0, anneal_from=0.5)


@pytest.mark.parametrize("update", ["heat_bath", "metropolis"])
def test_spin_samplers_draw_the_boltzmann_distribution(
    update: str, f64: torch.dtype, gen: torch.Generator
) -> None:
    """20,000 chains of a 6-spin machine (64 states, enumerated) at T = 1: the states' counts pass a χ² test against
    the exact Boltzmann weights at α = 0.001 (states expected fewer than 5 times pooled), and the same test rejects the
    weights at T = 1.3 (its power shown, not assumed)."""
    from scipy import stats

    from eqprop.solvers import GibbsSampler

    net, x, _ = _ising(gen)
    states = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=6)))
    with torch.no_grad():
        e = net.energy(x[:1].expand(len(states), 3), (states[:, :4], states[:, 4:]))
    torch.manual_seed(1)
    n = 20000
    drawn = solve(net, x[:1].repeat(n, 1), GibbsSampler(temperature=1.0, iterations=40, update=update)).state
    codes = (torch.cat(drawn, 1) > 0).long() @ (2 ** torch.arange(5, -1, -1))
    counts = torch.bincount(codes, minlength=64).double()

    def pvalue(temperature: float) -> float:
        expected = torch.softmax(-e / temperature, 0) * n
        keep = expected >= 5
        obs, exp = counts[keep], expected[keep]
        if bool((~keep).any()):  # the rare states, pooled into one bin
            obs = torch.cat([obs, counts[~keep].sum().reshape(1)])
            exp = torch.cat([exp, expected[~keep].sum().reshape(1)])
        return float(stats.chisquare(obs.numpy(), exp.numpy() * obs.sum().item() / exp.sum().item()).pvalue)

    assert pvalue(1.0) > 1e-3
    assert pvalue(1.3) < 1e-3


def test_the_burn_in_diagnostic_says_when_the_sampler_did_not_mix(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """Half of each example's chains start at random spins: after 40 sweeps at T = 1 they agree with the others (no
    error, the estimate as usual); after 1 sweep at T = 0.02 (a quench: each chain stays near where it started)
    they do not, and the rule refuses to estimate."""
    from eqprop.errors import ConvergenceError
    from eqprop.solvers import GibbsSampler

    net, x, y = _ising(gen)
    torch.manual_seed(0)
    rule = ThermalEqProp(beta=0.05, samples=200, check_mixing=True)
    est = rule.gradients(net, SquaredError(), GibbsSampler(temperature=1.0, iterations=40), x, y)
    assert all(bool(torch.isfinite(g).all()) for g in est.grads.values())
    with pytest.raises(ConvergenceError, match="did not mix"):
        rule.gradients(net, SquaredError(), GibbsSampler(temperature=0.02, iterations=1), x, y)
    with pytest.raises(ConfigError, match="samples >= 4"):
        ThermalEqProp(samples=2, check_mixing=True)


def test_persistent_chains_continue_from_the_previous_batch(f64: torch.dtype, gen: torch.Generator) -> None:
    """The estimate hands back its free chains (samples per example); given as ``init`` (what ``train.warm_start``
    does) each chain continues its own state: with a zero-temperature sweep the continued chains are exactly one
    sweep from the handed-back ones."""
    from eqprop.solvers import GibbsSampler

    net, x, y = _ising(gen)
    rule = ThermalEqProp(beta=0.05, samples=5)
    torch.manual_seed(0)
    first = rule.gradients(net, SquaredError(), GibbsSampler(temperature=1.0, iterations=10), x, y)
    chains = first.last_state
    assert chains is not None and chains[0].shape[0] == len(x) * 5
    assert rule.fits_warm_start(chains, x) and not EqProp().fits_warm_start(chains, x)
    quench = GibbsSampler(temperature=0.0, iterations=1)
    second = rule.gradients(net, SquaredError(), quench, x, y, init=chains)
    expected = solve(net, x.repeat_interleave(5, 0), quench, init=chains).state
    assert second.last_state is not None
    assert all(torch.equal(a, b) for a, b in zip(second.last_state, expected, strict=True))
