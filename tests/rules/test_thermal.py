"""Thermal EqProp: Gibbs averages by Langevin chains, against the exact gradient of the expected cost of a Gaussian."""

from __future__ import annotations

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
