"""Deep resistive networks obey circuit laws: Kirchhoff's current law and diode complementarity at the steady
state, the co-content never rises along a sweep, the fast paths equal autograd, the exact QP reference agrees,
and EqProp's conductance gradient converges to the true one at O(β) one-sided and O(β²) centered — through the
ideal-diode kinks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqprop import BlockCoordinate, ConfigError, DeepResistive, EqProp, ImplicitDiff, SquaredError, solve
from eqprop.solvers.base import TotalEnergy
from eqprop.solvers.reference import solve_qp
from eqprop.systems.base import EnergySystem
from helpers import fd_loss_grad, kkt_violation, rel_err


def make_drn(sizes=(6, 8, 6, 3), gain=2.0, seed=0, batch=5, bias=1.0):
    gen = torch.Generator().manual_seed(seed)
    net = DeepResistive(list(sizes), input_gain=gain, generator=gen).double()
    with torch.no_grad():
        for b in net.biases:
            b.copy_(bias * torch.randn(b.shape, generator=gen, dtype=b.dtype))
    x = torch.rand(batch, sizes[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, sizes[-1], (batch,), generator=gen)
    return net, x, y


def naive_energy(net: DeepResistive, x, state):
    """Σ ½ g (V_i − V_j)² − Σ b·V by brute force over every resistor (no algebra shared with the system)."""
    v = (torch.cat((x, -x), 1) * net.input_gain, *state)
    e = torch.zeros(x.shape[0], dtype=x.dtype)
    for g, below, above in zip(net.conductances, v[:-1], v[1:], strict=True):
        drop = above[:, :, None] - below[:, None, :]  # (batch, out, in)
        e = e + 0.5 * (g * drop**2).sum((1, 2))
    for b, s in zip(net.biases, state, strict=True):
        e = e - s @ b
    return e


def test_inputs_are_duplicated_with_a_sign_flip_and_amplified():
    net, x, _ = make_drn(gain=3.0)
    v = net.input_potentials(x)
    assert torch.equal(v, torch.cat((3.0 * x, -3.0 * x), 1))


def test_energy_is_the_co_content_of_the_resistors_and_sources():
    net, x, _ = make_drn()
    gen = torch.Generator().manual_seed(3)
    state = tuple(torch.randn(x.shape[0], *v.shape, generator=gen, dtype=x.dtype) for v in net.variables)
    torch.testing.assert_close(net.energy(x, state), naive_energy(net, x, state), rtol=1e-12, atol=1e-12)


def test_hidden_nodes_are_half_excitatory_half_inhibitory_and_the_output_is_free():
    net, x, _ = make_drn(sizes=(6, 8, 4, 3))
    v1, v2, out = net.variables
    assert torch.equal(v1.bounds[0], torch.tensor([0.0] * 4 + [-math.inf] * 4, dtype=torch.float64))
    assert torch.equal(v1.bounds[1], torch.tensor([math.inf] * 4 + [0.0] * 4, dtype=torch.float64))
    assert v2.shape == (4,) and out.bounds == (None, None)
    eq = solve(net, x, BlockCoordinate(50))
    assert (eq.state[0][:, :4] >= 0).all() and (eq.state[0][:, 4:] <= 0).all()
    # the diodes conduct somewhere: some nodes sit exactly at 0 (the kinks are exercised)
    assert (eq.state[0] == 0).any() and (eq.state[0] != 0).any()


@settings(max_examples=15, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 4).map(lambda n: 2 * n), min_size=0, max_size=3),
    seed=st.integers(0, 10_000),
)
def test_fast_paths_equal_autograd(hidden, seed):
    net, x, _ = make_drn(sizes=(5, *hidden, 3), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    sa = tuple(torch.randn(x.shape[0], *v.shape, generator=gen, dtype=x.dtype) for v in net.variables)
    sb = tuple(torch.randn(x.shape[0], *v.shape, generator=gen, dtype=x.dtype) for v in net.variables)
    for fast, slow in zip(net.state_grad(x, sa), EnergySystem.state_grad(net, x, sa), strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    fast_p, slow_p = net.param_grads(x, sa), EnergySystem.param_grads(net, x, sa)
    for name in slow_p:
        torch.testing.assert_close(fast_p[name], slow_p[name], rtol=1e-10, atol=1e-10)
    fast_d = net.param_grad_difference(x, sa, sb, scale=0.37)
    slow_d = EnergySystem.param_grad_difference(net, x, sa, sb, scale=0.37)
    for name in slow_d:
        torch.testing.assert_close(fast_d[name], slow_d[name], rtol=1e-10, atol=1e-10)
    # written into given buffers, as EqProp does with .grad
    out = {n: torch.full_like(t, 7.0) for n, t in slow_d.items()}
    net.param_grad_difference(x, sa, sb, scale=0.37, out=out)
    for name in slow_d:
        torch.testing.assert_close(out[name], slow_d[name], rtol=1e-10, atol=1e-10)


def test_block_minimiser_is_the_node_voltage_rule():
    """V_j ← clip((Σ g_ij V_i + b_j) / Σ g_ij): the potential a node takes given its neighbours."""
    net, x, _ = make_drn()
    gen = torch.Generator().manual_seed(1)
    state = tuple(torch.randn(x.shape[0], *v.shape, generator=gen, dtype=x.dtype) for v in net.variables)
    problem = TotalEnergy(net, x)
    g0, g1 = net.conductances[0], net.conductances[1]
    num = net.input_potentials(x) @ g0.t() + state[1] @ g1 + net.biases[0]
    den = g0.sum(1) + g1.sum(0)
    expected = (num / den).detach()
    expected[:, :4] = expected[:, :4].clamp(min=0)
    expected[:, 4:] = expected[:, 4:].clamp(max=0)
    with torch.no_grad():
        torch.testing.assert_close(problem.block_minimize(0, state), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.5, -0.05])
def test_steady_state_satisfies_kirchhoff_and_matches_the_exact_qp(beta):
    net, x, y = make_drn(sizes=(6, 10, 8, 3))
    cost = SquaredError()
    eq = solve(net, x, BlockCoordinate(400), cost=cost, y=y, beta=beta)
    if beta == 0.0:
        assert float(net.kcl_residual(x, eq.state).max()) < 1e-9
    assert kkt_violation(eq.problem, eq.state) < 1e-9
    ref = solve_qp(net, x, cost=cost, y=y, beta=beta)
    for a, b in zip(eq.state, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_kcl_residual_detects_a_state_that_is_not_steady():
    net, x, _ = make_drn()
    eq = solve(net, x, BlockCoordinate(400))
    moved = (eq.state[0], eq.state[1] + 0.1, eq.state[2])
    assert float(net.kcl_residual(x, moved).min()) > 1e-3
    wrong_side = (eq.state[0].abs().neg(), eq.state[1], eq.state[2])  # excitatory nodes below 0
    assert float(net.kcl_residual(x, wrong_side).max()) > 1e-3


@pytest.mark.parametrize("order", ["odd-even", "forward", "backward"])
def test_energy_never_increases_along_sweeps(order):
    net, x, y = make_drn(sizes=(6, 8, 6, 4, 3), bias=2.0)
    problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=0.3)
    sweep = BlockCoordinate(1, order=order).make_sweep(problem)
    state = tuple(torch.randn_like(s) for s in net.init_state(x))
    state = tuple(EnergySystem.project(s, v) for s, v in zip(state, net.variables, strict=True))
    with torch.no_grad():
        energies = [problem.energy(state)]
        for _ in range(30):
            state = sweep(state)
            energies.append(problem.energy(state))
    e = torch.stack(energies)
    assert ((e[1:] - e[:-1]) <= 1e-10 * e.abs().max()).all()
    assert float(e[-1].sum()) < float(e[0].sum())


def test_eqprop_conductance_gradient_matches_finite_differences_through_the_kinks():
    """The verified sanity check of the research notes: 2×6 inputs, 8 hidden, 3 outputs, biases."""
    net, x, y = make_drn(sizes=(6, 8, 3), seed=4)
    cost, solver = SquaredError(), BlockCoordinate(400)
    eq = solve(net, x, solver)
    assert (eq.state[0] == 0).any()  # some diodes conduct
    fd = fd_loss_grad(net, cost, solver, x, y, eps=1e-6)
    exact = ImplicitDiff().gradients(net, cost, solver, x, y).grads
    assert rel_err(exact, fd) < 1e-6
    errors = {}
    for variant in ("positive", "centered"):
        errors[variant] = [
            rel_err(EqProp(beta=b, variant=variant).gradients(net, cost, solver, x, y).grads, fd)
            for b in (1e-2, 1e-3)
        ]
    # one-sided: 10× smaller β → about 10× smaller error; centered: about 100×
    assert 6 < errors["positive"][0] / errors["positive"][1] < 15
    assert 50 < errors["centered"][0] / errors["centered"][1] < 200
    assert errors["centered"][1] < 1e-4


@pytest.mark.parametrize(("variant", "order"), [("positive", 1), ("negative", 1), ("centered", 2)])
def test_eqprop_bias_slope(variant, order):
    net, x, y = make_drn(sizes=(6, 10, 8, 3), seed=2)
    cost, solver = SquaredError(), BlockCoordinate(400)
    exact = ImplicitDiff().gradients(net, cost, solver, x, y).grads
    betas = np.geomspace(1e-4, 3e-3, 4)
    errors = [
        rel_err(EqProp(beta=float(b), variant=variant).gradients(net, cost, solver, x, y).grads, exact)
        for b in betas
    ]
    slope = float(np.polyfit(np.log(betas), np.log(errors), 1)[0])
    assert slope == pytest.approx(order, abs=0.2)


def test_constrain_parameters_clips_conductances_only():
    net, _, _ = make_drn()
    with torch.no_grad():
        for p in net.parameters():
            p.sub_(1.0)
    net.constrain_parameters()
    assert all(bool((g >= 0).all()) for g in net.conductances)
    assert any(bool((b < 0).any()) for b in net.biases)  # bias currents are signed


def test_initial_conductances_are_non_negative_with_zeros():
    net = DeepResistive([20, 30, 4], generator=torch.Generator().manual_seed(0))
    g = net.conductances[0].detach()
    assert (g >= 0).all() and 0.3 < float((g == 0).float().mean()) < 0.7
    assert float(g.max()) <= 1.0 / math.sqrt(40) + 1e-6  # float32


def test_curvature_cache_follows_in_place_updates():
    net, _, _ = make_drn()
    before = net.block_curvature(0).clone()
    with torch.no_grad():
        net.conductances[0].mul_(2.0)
        expected = net.conductances[0].sum(1) + net.conductances[1].sum(0)  # the doubled g0
        torch.testing.assert_close(net.block_curvature(0), expected)
    assert not torch.equal(before, net.block_curvature(0))


def test_negative_nudging_beyond_the_output_conductance_is_refused():
    net, x, y = make_drn()
    a = float(net.block_curvature(2).detach().min())
    with pytest.raises(ConfigError, match="a \\+ beta > 0"):
        solve(net, x, BlockCoordinate(4), cost=SquaredError(), y=y, beta=-(a + 0.1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": [4, 3, 2]}, "even"),
        ({"sizes": [4]}, "at least two"),
        ({"sizes": [4, 2, 2], "input_gain": 0.0}, "input_gain"),
        ({"sizes": [4, 2, 2], "gains": [1.0]}, "one positive gain"),
    ],
)
def test_bad_construction_is_a_config_error(kwargs, match):
    sizes = kwargs.pop("sizes")
    with pytest.raises(ConfigError, match=match):
        DeepResistive(sizes, **kwargs)


def test_runs_on_float32_and_moves_its_diode_bounds_with_the_module():
    net = DeepResistive([5, 4, 2], input_gain=2.0, generator=torch.Generator().manual_seed(0)).to(
        torch.float64
    )
    assert net.variables[0].bounds[0].dtype == torch.float64
    eq = solve(net, torch.rand(3, 5, dtype=torch.float64), BlockCoordinate(10))
    assert eq.state[0].dtype == torch.float64


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_equilibrium_kkt_residual_is_the_kirchhoff_imbalance(beta):
    """``Equilibrium.kkt_residual`` (generic, any system) is the circuit's current imbalance in amperes at
    β = 0, agrees with the independent autograd check, and shrinks to round-off as the sweeps converge."""
    net, x, y = make_drn(sizes=(6, 10, 8, 3))
    cost = SquaredError()
    rough = solve(net, x, BlockCoordinate(3), cost=cost, y=y, beta=beta)
    exact = solve(net, x, BlockCoordinate(300), cost=cost, y=y, beta=beta)
    if beta == 0.0:
        torch.testing.assert_close(rough.kkt_residual, net.kcl_residual(x, rough.state))
    assert float(rough.kkt_residual.max()) == pytest.approx(
        kkt_violation(rough.problem, rough.state), rel=1e-9
    )
    assert float(rough.kkt_residual.min()) > 1e-4
    assert float(exact.kkt_residual.max()) < 1e-12


def test_ill_posed_networks_are_refused_before_they_are_solved():
    """All conductances 0 with bias currents used to 'converge' to 4e306 V; a hidden node cut off from the inputs
    with a current its diode does not stop runs off; one its diode stops (or with no current) is harmless."""
    net, x, _ = make_drn(sizes=(4, 6, 2), bias=0.0)
    with torch.no_grad():
        for g in net.conductances:
            g.zero_()
        for b in net.biases:
            b.fill_(0.1)
    with pytest.raises(ConfigError, match="output node"):
        solve(net, x, BlockCoordinate(10))
    net, x, _ = make_drn(sizes=(4, 6, 2), bias=0.0)
    with torch.no_grad():
        net.conductances[0][1].zero_()  # excitatory node h1_1: nothing below ...
        net.conductances[1][:, 1].zero_()  # ... nor above it
        net.biases[0][1] = 0.3  # pushed up, and its diode only stops it going down
    with pytest.raises(ConfigError, match=r"h1_1.*without bound"):
        solve(net, x, BlockCoordinate(10))
    with torch.no_grad():
        net.biases[0][1] = -0.3  # pushed down: its diode holds it at 0
    eq = solve(net, x, BlockCoordinate(50))
    assert bool((eq.state[0][:, 1] == 0).all())
    with torch.no_grad():
        net.conductances[1][:, 1] = 0.5  # joined to the (anchored) outputs again: the current is absorbed
        net.biases[0][1] = 0.3
    solve(net, x, BlockCoordinate(50))
