"""Every rule estimates the same gradient: that of the loss at the free equilibrium."""

from __future__ import annotations

import pytest
import torch

from eqprop import (
    BackpropThroughSolver,
    BlockCoordinate,
    CrossEntropyReadout,
    EqProp,
    GradientFlow,
    ImplicitDiff,
    SquaredError,
    solve,
)
from eqprop.rules import named_parameters
from helpers import SMALL_SYSTEMS, cosine, fd_loss_grad, kink_margin, rel_err, tiny_problem

SOLVER = BlockCoordinate(300)


def implicit(net, cost, x, y, solver=SOLVER):
    return ImplicitDiff().gradients(net, cost, solver, x, y).grads


def readout(in_features: int, classes: int) -> CrossEntropyReadout:
    return CrossEntropyReadout(in_features, classes, generator=torch.Generator().manual_seed(3)).double()


@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_centered_eqprop_matches_implicit_diff(name):
    net, x, y = SMALL_SYSTEMS[name]()
    est = EqProp(beta=1e-3, variant="centered").gradients(net, SquaredError(), SOLVER, x, y).grads
    ref = implicit(net, SquaredError(), x, y)
    assert cosine(est, ref) >= 0.9999
    assert rel_err(est, ref) <= 1e-4


@pytest.mark.parametrize("with_readout", [False, True], ids=["squared-error", "readout"])
def test_implicit_diff_matches_finite_differences(with_readout):
    if with_readout:
        (net, x, y), cost = tiny_problem(output_bounds=(0.0, 1.0)), readout(2, 2)
    else:
        (net, x, y), cost = tiny_problem(), SquaredError()
    # Central differences are only exact away from the kinks of s*(θ) (a field crossing a bound).
    assert kink_margin(net, x, solve(net, x, SOLVER).state) >= 1e-2
    ref = implicit(net, cost, x, y)
    assert sorted(ref) == sorted(named_parameters(net, cost))
    assert rel_err(ref, fd_loss_grad(net, cost, SOLVER, x, y, eps=1e-6)) <= 1e-5


@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_backprop_through_block_solver_matches_implicit_diff(name):
    net, x, y = SMALL_SYSTEMS[name]()
    ref = implicit(net, SquaredError(), x, y)
    truncated = BackpropThroughSolver(steps=200).gradients(net, SquaredError(), SOLVER, x, y).grads
    full = BackpropThroughSolver().gradients(net, SquaredError(), SOLVER, x, y).grads
    assert rel_err(truncated, ref) <= 1e-8
    assert rel_err(full, ref) <= 1e-8


def test_backprop_through_gradient_flow_matches_implicit_diff():
    net, x, y = SMALL_SYSTEMS["2h"]()
    full = BackpropThroughSolver().gradients(net, SquaredError(), GradientFlow(2000), x, y).grads
    assert rel_err(full, implicit(net, SquaredError(), x, y)) <= 1e-8


def unrolled_flow_grads(net, cost, x, y, steps: int, step_size: float) -> dict[str, torch.Tensor]:
    """Reference BPTT: ``steps`` projected Euler steps written out with autograd's ∂E/∂s, differentiated."""
    params = named_parameters(net, cost)
    state = tuple(s.requires_grad_() for s in net.init_state(x))
    for _ in range(steps):
        grads = torch.autograd.grad(net.energy(x, state).sum(), state, create_graph=True)
        state = tuple(
            net.project(s - step_size * g, v) for s, g, v in zip(state, grads, net.variables, strict=True)
        )
    loss = cost(state, cost.prepare_target(y, state[-1])).mean()
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))


@pytest.mark.parametrize(
    "name",
    [
        "2h",
        "2h-rho",
    ],
)
def test_backprop_through_gradient_flow_differentiates_every_step(name):
    net, x, y = SMALL_SYSTEMS[name]()
    est = BackpropThroughSolver().gradients(net, SquaredError(), GradientFlow(5, step_size=0.2), x, y).grads
    ref = unrolled_flow_grads(net, SquaredError(), x, y, steps=5, step_size=0.2)
    assert rel_err(est, ref) <= 1e-12


def test_centered_eqprop_trains_system_and_readout():
    net, x, y = SMALL_SYSTEMS["2h-boxed-output"]()
    cost = readout(4, 4)
    # The readout's nudge is a fixed-point step (re-linearised every sweep): give it room to converge.
    est = EqProp(beta=1e-3).gradients(net, cost, SOLVER, x, y)
    assert all(float(eq.stats.residual.max()) <= 1e-12 for eq in est.phases)
    ref = implicit(net, cost, x, y)
    for part in ("system.", "cost."):
        keys = [k for k in ref if k.startswith(part)]
        assert keys
        assert cosine({k: est.grads[k] for k in keys}, {k: ref[k] for k in keys}) >= 0.9999


def test_compute_gradients_writes_the_estimate_into_grad():
    net, x, y = SMALL_SYSTEMS["2h-boxed-output"]()
    cost = readout(4, 4)
    est = EqProp(beta=1e-2).compute_gradients(net, cost, SOLVER, x, y)
    for name, p in named_parameters(net, cost).items():
        torch.testing.assert_close(p.grad, est.grads[name], rtol=0, atol=0)
