"""Equilibria: what a relaxation reaches, and what it reports about it."""

from __future__ import annotations

import pytest
import torch

from eqprop import (
    BlockCoordinate,
    ConvergenceError,
    CrossEntropyReadout,
    DivergenceError,
    GradientFlow,
    SquaredError,
    solve,
)
from eqprop.solvers.block import ORDERS
from helpers import ALL_ORDERS, BOXED_SYSTEMS, SMALL_SYSTEMS, kkt_violation

RELAXED = BlockCoordinate(500)


def assert_same_state(a, b, atol):
    for sa, sb in zip(a, b, strict=True):
        torch.testing.assert_close(sa, sb, rtol=0, atol=atol)


@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_catalogue_equilibria_clip_units_at_both_bounds(name):
    # Otherwise the laws below would never meet the box constraints.
    net, x, _ = SMALL_SYSTEMS[name]()
    hidden = solve(net, x, RELAXED).state[:-1]
    assert sum(int((s == 0).sum()) for s in hidden) > 0
    assert sum(int((s == 1).sum()) for s in hidden) > 0
    assert sum(int(((s > 0) & (s < 1)).sum()) for s in hidden) > 0


@pytest.mark.parametrize("beta", [0.0, 0.2, -0.2])
@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_equilibrium_satisfies_kkt_conditions(name, beta):
    net, x, y = SMALL_SYSTEMS[name]()
    eq = solve(net, x, RELAXED, cost=SquaredError(), y=y, beta=beta)
    assert kkt_violation(eq.problem, eq.state) <= 1e-9


@pytest.mark.parametrize("beta", [0.0, 0.2, -0.2])
def test_readout_nudged_fixed_point_satisfies_kkt_conditions(beta):
    # The cross-entropy nudge is re-linearised every sweep: its fixed point must still be a minimum of F.
    net, x, y = SMALL_SYSTEMS["2h-boxed-output"]()
    cost = CrossEntropyReadout(4, 4, generator=torch.Generator().manual_seed(3)).double()
    eq = solve(net, x, RELAXED, cost=cost, y=y, beta=beta)
    assert kkt_violation(eq.problem, eq.state) <= 1e-9


def test_catalogue_lists_every_order():
    assert sorted(ALL_ORDERS) == sorted(ORDERS)


@pytest.mark.parametrize("beta", [0.0, 0.2])
@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_all_orders_reach_the_same_equilibrium(name, beta):
    net, x, y = SMALL_SYSTEMS[name]()
    states = [
        solve(net, x, BlockCoordinate(500, order=order), cost=SquaredError(), y=y, beta=beta).state
        for order in ALL_ORDERS
    ]
    for state in states[1:]:
        assert_same_state(state, states[0], atol=1e-9)


@pytest.mark.parametrize("beta", [0.0, 0.2])
@pytest.mark.parametrize("name", BOXED_SYSTEMS)
def test_gradient_flow_reaches_the_block_coordinate_equilibrium(name, beta):
    net, x, y = SMALL_SYSTEMS[name]()
    kwargs = {"cost": SquaredError(), "y": y, "beta": beta}
    flow = solve(net, x, GradientFlow(5000), **kwargs)
    assert_same_state(flow.state, solve(net, x, RELAXED, **kwargs).state, atol=1e-6)


def test_gradient_flow_reaches_the_block_coordinate_equilibrium_rho_form():
    net, x, _ = SMALL_SYSTEMS["2h-rho"]()
    flow = solve(net, x, GradientFlow(1000))
    assert_same_state(flow.state, solve(net, x, RELAXED).state, atol=1e-6)


@pytest.mark.parametrize("solver", [BlockCoordinate(1000, tol=1e-10), GradientFlow(20000, tol=1e-10)])
def test_tolerance_stops_the_relaxation_early(solver):
    net, x, _ = SMALL_SYSTEMS["2h"]()
    eq = solve(net, x, solver)
    assert eq.stats.iterations < solver.iterations
    assert eq.stats.iterations % solver.check_every == 0
    assert eq.stats.converged.all()
    assert (eq.stats.residual <= solver.tol).all()


def test_unmet_tolerance_raises_convergence_error():
    net, x, _ = SMALL_SYSTEMS["2h"]()
    solver = BlockCoordinate(iterations=1, tol=1e-12)
    with pytest.raises(ConvergenceError, match=r"5 of 5 examples above tol=1e-12 after 1 sweeps") as info:
        solve(net, x, solver)
    assert type(info.value) is ConvergenceError  # not its subclass DivergenceError: the state is finite
    eq = solve(net, x, solver, throw=False)
    assert not eq.stats.converged.any()
    assert eq.stats.finite.all()


@pytest.mark.parametrize("solver_type", [BlockCoordinate, GradientFlow])
def test_residual_is_the_largest_change_in_the_last_sweep(solver_type):
    net, x, _ = SMALL_SYSTEMS["3h"]()
    before = solve(net, x, solver_type(iterations=6)).state
    eq = solve(net, x, solver_type(iterations=7))
    change = torch.stack([(a - b).abs().amax(1) for a, b in zip(before, eq.state, strict=True)]).amax(0)
    assert eq.stats.iterations == 7
    torch.testing.assert_close(eq.stats.residual, change, rtol=0, atol=0)
    assert (eq.stats.residual > 0).all()


@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_equilibrium_is_a_fixed_point_with_zero_residual(name):
    net, x, _ = SMALL_SYSTEMS[name]()
    eq = solve(net, x, RELAXED)
    assert eq.stats.residual.max() <= 1e-12
    again = solve(net, x, BlockCoordinate(1), init=eq.state)
    assert again.stats.residual.max() <= 1e-12
    assert_same_state(again.state, eq.state, atol=1e-12)


@pytest.mark.parametrize("solver", [BlockCoordinate(20), GradientFlow(20)])
def test_nan_input_is_flagged_and_raises_divergence_error(solver):
    net, x, _ = SMALL_SYSTEMS["2h"]()
    x[1, 0] = float("nan")
    eq = solve(net, x, solver, throw=False)
    assert eq.stats.finite.tolist() == [True, False, True, True, True]
    with pytest.raises(DivergenceError, match=r"non-finite state in 1 of 5 examples after 20 sweeps"):
        solve(net, x, solver)
