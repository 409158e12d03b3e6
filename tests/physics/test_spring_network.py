"""Elastic spring networks: the quadratic form is the energy's, the direct solve balances every force, and EqProp
tends to implicit differentiation."""

from __future__ import annotations

import pytest
import torch

from eqprop import EqProp, ImplicitDiff, SquaredError, solve
from eqprop.analysis.gradcheck import compare, loglog_slope
from eqprop.errors import ConfigError
from eqprop.solvers import DirectSolver
from eqprop.systems import SpringNetwork
from eqprop.systems.base import EnergySystem
from eqprop.systems.spring_network import pick_nodes, triangulated_network


def network(seed: int = 0, nodes: int = 14) -> tuple[SpringNetwork, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos, pairs = triangulated_network(nodes, g)
    pinned, sources, targets = pick_nodes(nodes, [3, 3, 2], g)
    net = SpringNetwork(
        pos, pairs, pinned=pinned, sources=sources, targets=targets, stiffness=(1.0, 0.8), generator=g
    )
    x = torch.rand(5, 3, generator=g, dtype=torch.float64)
    y = 0.1 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    return net, x, y


def test_the_quadratic_form_and_the_fast_paths_are_the_energys():
    net, x, _ = network()
    state = tuple(torch.randn(5, *v.shape, dtype=torch.float64) for v in net.variables)
    flat = torch.cat(state, 1)[0].clone().requires_grad_(True)
    sizes = [v.shape[0] for v in net.variables]

    def e(z: torch.Tensor) -> torch.Tensor:
        return net.energy(x[:1], tuple(t.unsqueeze(0) for t in z.split(sizes)))[0]

    h = torch.autograd.functional.hessian(e, flat)
    torch.testing.assert_close(net.hessian(), h, rtol=1e-12, atol=1e-12)
    for a, b in zip(net.state_grad(x, state), EnergySystem.state_grad(net, x, state), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    other = tuple(t + 0.3 for t in state)
    fast = net.param_grad_difference(x, state, other, scale=0.5)
    slow = EnergySystem.param_grad_difference(net, x, state, other, scale=0.5)
    torch.testing.assert_close(fast["stiffness"], slow["stiffness"], rtol=1e-12, atol=1e-12)


def test_the_direct_solve_balances_every_force():
    """At equilibrium the spring forces and the loads cancel on every free degree of freedom (‖∂E/∂u‖ ~ round-off),
    and any displacement raises the energy (the form is positive definite: a triangulated network, pinned)."""
    net, x, _ = network()
    eq = solve(net, x, DirectSolver())
    with torch.no_grad():
        residual = torch.cat(net.state_grad(x, eq.state), 1).abs().max()
        smallest = torch.linalg.eigvalsh(net.hessian()).min()
    assert float(residual) < 1e-10
    assert float(smallest) > 0
    bumped = tuple(s + 1e-3 * torch.randn_like(s) for s in eq.state)
    with torch.no_grad():
        assert bool((net.energy(x, bumped) > net.energy(x, eq.state)).all())


def test_eqprop_tends_to_implicit_differentiation():
    net, x, y = network(seed=1)
    cost, solver = SquaredError(), DirectSolver()
    ref = ImplicitDiff().gradients(net, cost, solver, x, y)
    betas = [1e-1, 1e-2, 1e-3]
    for variant, slope in (("positive", 1.0), ("centered", 2.0)):
        errors = [
            compare(EqProp(beta=b, variant=variant).gradients(net, cost, solver, x, y).grads, ref.grads)[
                "relative_error"
            ]
            for b in betas
        ]
        assert loglog_slope(betas, errors) == pytest.approx(slope, abs=0.2), (variant, errors)
    est = EqProp(beta=1e-3, variant="centered").gradients(net, cost, solver, x, y)
    assert compare(est.grads, ref.grads)["cosine"] >= 0.9999


def test_bad_networks_are_refused():
    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3]])
    with pytest.raises(ConfigError, match="distinct"):
        SpringNetwork(pos, pairs, pinned=[0], sources=[0], targets=[3])
    with pytest.raises(ConfigError, match="zero length"):
        SpringNetwork(torch.zeros(4, 2), pairs, pinned=[0], sources=[1], targets=[3])
    with pytest.raises(ConfigError, match="two different nodes"):
        SpringNetwork(pos, torch.tensor([[0, 0]]), pinned=[0], sources=[1], targets=[3])
