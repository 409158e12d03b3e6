"""Holomorphic EqProp (Laborieux & Zenke 2022): complex nudging on a circle; N = 2 is centered EqProp, and the
error at a finite radius falls geometrically with the number of points N."""

from __future__ import annotations

import math

import pytest
import torch

from eqprop import CrossEntropyReadout, DeepHopfield, EqProp, GradientFlow, SquaredError
from eqprop.errors import ConfigError
from eqprop.rules import HolomorphicEqProp, ImplicitDiff
from eqprop.systems import SmoothHopfield
from helpers import rel_err

SOLVER = GradientFlow(iterations=400, step_size=0.5)


def _problem(activation: str = "sigmoid", gains: float = 0.1):
    gen = torch.Generator().manual_seed(0)
    net = SmoothHopfield([6, 8, 5], activation=activation, gains=gains, generator=gen).double()
    x = torch.rand(4, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (4,), generator=gen)
    return net, x, y


def test_two_points_are_centered_eqprop(f64: torch.dtype) -> None:
    net, x, y = _problem(gains=1.0)
    hep = HolomorphicEqProp(beta=0.5, points=2).gradients(net, SquaredError(), SOLVER, x, y).grads
    cep = EqProp(beta=0.5, variant="centered").gradients(net, SquaredError(), SOLVER, x, y).grads
    for k, g in cep.items():
        torch.testing.assert_close(hep[k], g, rtol=0, atol=1e-14)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_error_falls_geometrically_with_the_number_of_points(f64: torch.dtype, activation: str) -> None:
    net, x, y = _problem(activation)
    ref = ImplicitDiff(cg_tol=1e-14).gradients(net, SquaredError(), SOLVER, x, y).grads

    def errors(radius: float) -> list[float]:
        return [
            rel_err(
                HolomorphicEqProp(beta=radius, points=n).gradients(net, SquaredError(), SOLVER, x, y).grads,
                ref,
            )
            for n in (2, 4, 6, 8)
        ]

    # |beta| = 0.5 (the radius): measured 0.19, 0.063, 0.0054, 0.0052 (sigmoid), 0.086, 0.057, 0.032, 0.0025
    # (tanh): geometric on the whole, at a slow rate, since beta -> s^beta has singularities not far beyond 0.5
    half = errors(0.5)
    slope = _fit_slope([2, 4, 6, 8], [math.log(e) for e in half])
    assert slope < -0.4 and half[3] < half[0] / 15, half
    # |beta| = 0.25: measured 0.060, 0.0042, 7.9e-5, 2.0e-5 (sigmoid), 0.038, 0.0036, 5.2e-4, 9.3e-6 (tanh)
    quarter = errors(0.25)
    assert (
        _fit_slope([2, 4, 6, 8], [math.log(e) for e in quarter]) < -1.0 and quarter[3] < quarter[0] / 1000
    ), quarter


def _fit_slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / sum((a - mx) ** 2 for a in xs)


def test_bad_settings(f64: torch.dtype) -> None:
    net, x, y = _problem()
    with pytest.raises(ConfigError, match="not holomorphic"):
        HolomorphicEqProp().gradients(DeepHopfield([6, 8, 5]).double(), SquaredError(), SOLVER, x, y)
    with pytest.raises(ConfigError, match="readout"):
        HolomorphicEqProp().gradients(net, CrossEntropyReadout(5, 3).double(), SOLVER, x, y % 3)
    with pytest.raises(ConfigError, match="points"):
        HolomorphicEqProp(points=1)
    with pytest.raises(ConfigError, match="radius"):
        HolomorphicEqProp(beta=0.0)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_smooth_hopfield_fast_paths(f64: torch.dtype, activation: str) -> None:
    """Closed-form ∂E/∂s and ∂E/∂θ: autograd's for real states, the holomorphic derivative for complex ones."""
    net, x, _ = _problem(activation, gains=1.0)
    gen = torch.Generator().manual_seed(1)
    state = tuple(torch.randn(4, *v.shape, generator=gen, dtype=torch.float64) for v in net.variables)
    from eqprop.systems.base import EnergySystem

    for fast, slow in zip(net.state_grad(x, state), EnergySystem.state_grad(net, x, state), strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    for k, g in EnergySystem.param_grads(net, x, state).items():
        torch.testing.assert_close(net.param_grads(x, state)[k], g, rtol=1e-12, atol=1e-12)
    z = tuple(s + 0.3j * torch.randn(s.shape, generator=gen, dtype=torch.float64) for s in state)
    grads = net.state_grad(x, z)
    h = 1e-6
    for k in range(len(z)):  # central difference along a real direction: the complex derivative of E
        bump = torch.zeros_like(z[k])
        bump[0, 0] = h
        up = net.energy(x, tuple(s + bump if i == k else s for i, s in enumerate(z)))
        down = net.energy(x, tuple(s - bump if i == k else s for i, s in enumerate(z)))
        torch.testing.assert_close((up[0] - down[0]) / (2 * h), grads[k][0, 0], rtol=1e-6, atol=1e-8)
