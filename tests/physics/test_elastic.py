"""Nonlinear central-force spring networks obey mechanics: the reference configuration is stress-free, the closed-form
forces and Hessian equal autograd, Newton (energy merit) never raises the energy and reaches force balance, FIRE
reaches the same balance, EqProp converges to the implicit-differentiation gradient at O(β) one-sided and O(β²)
centered, and coupled learning's update is Stern et al.'s formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqprop import (
    BackpropThroughSolver,
    CentralForceNetwork,
    ConfigError,
    CoupledLearning,
    EqProp,
    Fire,
    ImplicitDiff,
    Newton,
    SquaredError,
    solve,
)
from eqprop.solvers.base import TotalEnergy
from eqprop.systems.spring_network import triangulated_network
from helpers import rel_err

NEWTON = Newton(iterations=100, tol=1e-12, merit="energy")


def make_net(nodes=24, seed=0, prestress=0.05, targets=2, batch=3):
    gen = torch.Generator().manual_seed(seed)
    pos, edges = triangulated_network(nodes, gen)
    e = edges.tolist()
    sources = [e[0], e[len(e) // 3]]
    used = set(sources[0]) | set(sources[1])
    pinned = [i for i in range(nodes) if i not in used][:3]
    tgt: list[list[int]] = []
    for a, b in reversed(e):
        if not ({a, b} & (used | set(pinned))):
            tgt.append([a, b])
            used |= {a, b}
        if len(tgt) == targets:
            break
    net = CentralForceNetwork(pos, edges, pinned=pinned, sources=sources, targets=tgt, generator=gen)
    with torch.no_grad():
        net.rest_length.mul_(1 + prestress * torch.randn(len(edges), generator=gen, dtype=torch.float64))
    x = 0.1 * (torch.rand(batch, 2, generator=gen, dtype=torch.float64) - 0.5)
    y = 0.05 * (torch.rand(batch, targets, generator=gen, dtype=torch.float64) - 0.5)
    return net, x, y


def test_the_reference_configuration_is_stress_free():
    net, x, _ = make_net(prestress=0.0)
    x0 = torch.zeros_like(x)
    state = net.init_state(x0)
    assert float(net.energy(x0, state).detach().abs().max()) < 1e-28
    with torch.no_grad():
        assert max(float(g.abs().max()) for g in net.state_grad(x0, state)) < 1e-14
    assert torch.allclose(net.positions(state)[0], net.reference)


def test_closed_form_forces_and_hessian_equal_autograd():
    net, x, _ = make_net()
    gen = torch.Generator().manual_seed(5)
    state = tuple(s + 0.02 * torch.randn(s.shape, generator=gen, dtype=s.dtype) for s in net.init_state(x))
    fast = net.state_grad(x, state)
    leaves = tuple(s.clone().requires_grad_(True) for s in state)
    auto = torch.autograd.grad(net.energy(x, leaves).sum(), leaves)
    for f, a in zip(fast, auto, strict=True):
        assert torch.allclose(f, a, rtol=1e-10, atol=1e-13)
    sizes = [s.shape[1] for s in state]
    flat = torch.cat(state, 1)
    with torch.no_grad():
        h = net.hessian(x, state)
    for b in range(x.shape[0]):

        def e(v, b=b):
            return net.energy(x[b : b + 1], tuple(p[None] for p in v.split(sizes)))[0]

        assert torch.allclose(h[b], torch.autograd.functional.hessian(e, flat[b]), rtol=1e-9, atol=1e-11)
    params = dict(net.named_parameters())
    auto_p = torch.autograd.grad(net.energy(x, state).mean(), list(params.values()))
    closed = net.param_grads(x, state)
    for (name, _), g in zip(params.items(), auto_p, strict=True):
        assert torch.allclose(closed[name], g, rtol=1e-10, atol=1e-14), name


def test_newton_never_raises_the_energy_and_reaches_force_balance():
    net, x, _ = make_net(prestress=0.1)
    problem = TotalEnergy(net, x)
    state = net.init_state(x)
    sweep = NEWTON.make_sweep(problem)
    energies = [problem.energy(state).detach()]
    for _ in range(30):
        state = sweep(state)
        energies.append(problem.energy(state).detach())
    e = torch.stack(energies)
    assert bool((e[1:] <= e[:-1] + 8 * torch.finfo(e.dtype).eps * e[:-1].abs()).all())  # up to its rounding
    with torch.no_grad():
        force = max(float(g.abs().max()) for g in problem.grad(state))
    assert force < 1e-11


def test_fire_reaches_the_same_force_balance():
    """(Without prestress: a prestressed network may have several minima, and the two may find different ones.)"""
    net, x, _ = make_net(prestress=0.0)
    fire = solve(net, x, Fire(iterations=20000, tol=1e-10))
    assert bool(fire.stats.converged.all()) and float(fire.stats.residual.max()) <= 1e-10
    newton = solve(net, x, NEWTON)
    # FIRE stops at a force within 1e-10: its distance to the minimum is at most ‖force‖₂/λ_min of the Hessian
    with torch.no_grad():
        force = torch.cat([g.flatten(1) for g in net.state_grad(x, fire.state)], 1).norm(dim=1)
        lam = torch.linalg.eigvalsh(net.hessian(x, newton.state))[:, 0]
    assert bool((lam > 0).all())
    bound = (force / lam).max()
    gap = torch.cat([(a - b).flatten(1) for a, b in zip(fire.state, newton.state, strict=True)], 1).norm(
        dim=1
    )
    assert float(gap.max()) <= 1.01 * float(bound) + 1e-12


def test_fire_keeps_a_clamped_output_where_it_is():
    net, x, _ = make_net()
    free = solve(net, x, NEWTON)
    held = free.state[-1] + 0.01
    problem = TotalEnergy(net, x, clamp={2: held})
    state, stats = Fire(iterations=20000, tol=1e-9).run(problem, free.state)
    assert torch.equal(state[-1], held) and bool(stats.converged.all())


def test_eqprop_converges_to_the_implicit_gradient_at_the_predicted_rates():
    """β is measured against the output strain's stiffness (``k·ℓ²``, about 5e-3 here: soft targets of a floppy
    network): β = 1e-4 here is a small nudge as β = 1e-3 is for a unit stiffness."""
    net, x, y = make_net(prestress=0.0)
    cost = SquaredError()
    exact = ImplicitDiff().gradients(net, cost, NEWTON, x, y).grads
    betas = np.array([1e-3, 3e-4, 1e-4])
    for variant, order in (("positive", 1), ("centered", 2)):
        errors = [
            rel_err(EqProp(beta=float(b), variant=variant).gradients(net, cost, NEWTON, x, y).grads, exact)
            for b in betas
        ]
        slope = float(np.polyfit(np.log(betas), np.log(errors), 1)[0])
        assert slope == pytest.approx(order, abs=0.15), (variant, errors)
    est = EqProp(beta=1e-4, variant="centered").gradients(net, cost, NEWTON, x, y).grads
    u = torch.cat([est[k].flatten() for k in exact])
    v = torch.cat([exact[k].flatten() for k in exact])
    assert float(u @ v / (u.norm() * v.norm())) >= 0.9999


def test_coupled_learning_is_sterns_update():
    """Δθ ∝ [∂E/∂θ(clamped) − ∂E/∂θ(free)]/η with the target strains clamped at ε_F + η(y − ε_F)."""
    net, x, y = make_net()
    eta = 0.5
    fire = Fire(iterations=20000, tol=1e-11)
    est = CoupledLearning(beta=eta, variant="positive").gradients(net, SquaredError(), fire, x, y).grads
    free = solve(net, x, fire)
    clamped = free.state[-1] + eta * (y - free.state[-1])
    problem = TotalEnergy(net, x, clamp={2: clamped})
    state, _ = fire.run(problem, free.state)
    g_free, g_clamp = net.param_grads(x, free.state), net.param_grads(x, state)
    for name in g_free:
        expected = (g_clamp[name] - g_free[name]) / eta
        assert torch.allclose(est[f"system.{name}"], expected, rtol=1e-6, atol=1e-12), name


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bounds": (-1.0, 10.0)}, "0 < k_min"),
        ({"stiffness": (-1.0, 0.1)}, "mean > 0"),
        ({"pinned": [0, 1, 2], "targets": [[0, 5]]}, "free"),
        ({"sources": [[3, 3]]}, "two different nodes"),
        ({"input_stiffness": 0.0}, "input_stiffness > 0"),
    ],
)
def test_bad_construction_is_one_clear_line(change, match):
    gen = torch.Generator().manual_seed(0)
    pos, edges = triangulated_network(12, gen)
    kwargs = {"pinned": [0, 1, 2], "sources": [[3, 4]], "targets": [[5, 6]]}
    kwargs.update(change)
    with pytest.raises(ConfigError, match=match):
        CentralForceNetwork(pos, edges, **kwargs)


def test_constraints_keep_stiffness_and_rest_lengths_physical():
    net, *_ = make_net()
    with torch.no_grad():
        net.stiffness.fill_(-3.0)
        net.rest_length.fill_(-1.0)
    net.constrain_parameters()
    assert float(net.stiffness.detach().min()) == net.bounds[0]
    assert torch.allclose(net.rest_length, net.min_length * net.reference_lengths)


def test_the_network_draws_itself_before_and_after(tmp_path):
    net, x, _ = make_net()
    with torch.no_grad():
        net.stiffness.mul_(2.0)
    path = net.plot(x, lambda system, xs: solve(system, xs, NEWTON).state, tmp_path / "network.png")
    assert path.exists() and path.stat().st_size > 5000


def test_rest_lengths_can_be_constants():
    gen = torch.Generator().manual_seed(0)
    pos, edges = triangulated_network(12, gen)
    net = CentralForceNetwork(
        pos, edges, pinned=[0, 1, 2], sources=[[3, 4]], targets=[[5, 6]], train_rest_length=False
    )
    assert [n for n, _ in net.named_parameters()] == ["stiffness"]
    x = torch.full((2, 1), 0.05, dtype=torch.float64)
    assert set(net.param_grads(x, solve(net, x, NEWTON).state)) == {"stiffness"}


def test_backprop_through_newton_from_the_equilibrium_is_the_implicit_gradient():
    """Near the minimum the energies of two states differ by their rounding only: Newton still takes its step there,
    so the unrolled solver carries the derivative (it used to refuse the step and read a derivative of 0)."""
    from eqprop.data.elastic_tasks import load_elastic_task
    from eqprop.train import build, load_preset

    net = build(
        load_preset("spring-allostery")
    ).system.double()  # where `eqprop gradcheck` found it (rel. error 0.37)
    test = load_elastic_task("allostery", dtype=torch.float64).test
    x, y = test.x[:32], test.y[:32]
    cost = SquaredError()
    exact = ImplicitDiff().gradients(net, cost, NEWTON, x, y).grads
    preset = Newton(
        iterations=50, tol=1e-10, merit="energy"
    )  # the preset's solver: a free state near round-off
    unrolled = BackpropThroughSolver(steps=5).gradients(net, cost, preset, x, y).grads
    assert rel_err(unrolled, exact) < 1e-3
