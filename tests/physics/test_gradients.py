"""Every rule estimates the same gradient: that of the loss at the free equilibrium."""

from __future__ import annotations

import pytest
import torch

from eqprop import (
    AgnosticEqProp,
    BackpropThroughSolver,
    BlockCoordinate,
    ContrastiveLearning,
    CoupledLearning,
    CrossEntropyReadout,
    EqProp,
    GradientFlow,
    ImplicitDiff,
    SquaredError,
    solve,
)
from eqprop.rules import (
    RULES,
    ContinualEqProp,
    HamiltonianEcho,
    HolomorphicEqProp,
    ThermalEqProp,
    VectorFieldEqProp,
    named_parameters,
)
from eqprop.solvers import Leapfrog
from eqprop.systems import HamiltonianRNN, SmoothHopfield, VectorFieldHopfield
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


def test_out_grad_writes_the_estimate_into_grad():
    net, x, y = SMALL_SYSTEMS["2h-boxed-output"]()
    cost = readout(4, 4)
    est = EqProp(beta=1e-2).gradients(net, cost, SOLVER, x, y, out="grad")
    for name, p in named_parameters(net, cost).items():
        torch.testing.assert_close(p.grad, est.grads[name], rtol=0, atol=0)


ONE_OF_EACH_KIND = {
    "eqprop": EqProp(beta=0.1, variant="positive"),
    "continual": ContinualEqProp(beta=0.1, variant="centered"),
    "vector_field": VectorFieldEqProp(beta=0.1, variant="centered"),
    "holomorphic": HolomorphicEqProp(beta=0.1, points=4),
    "thermal": ThermalEqProp(beta=0.1, samples=3),  # with a deterministic solver: EqProp on repeated chains
    "aeqprop": AgnosticEqProp(beta=0.1, epsilon=0.2),
    "contrastive": ContrastiveLearning(),
    "coupled": CoupledLearning(beta=0.25, variant="negative"),
    "implicit": ImplicitDiff(),
    "backprop": BackpropThroughSolver(steps=50),
    "echo": HamiltonianEcho(beta=1e-3),
}
READOUT_KINDS = ("eqprop", "implicit", "backprop")
"""The kinds that also train a cost's own parameters (a readout); the others refuse one."""


def test_every_rule_kind_is_checked_below():
    assert set(ONE_OF_EACH_KIND) == set(RULES)
    assert all(type(rule) is RULES[kind] for kind, rule in ONE_OF_EACH_KIND.items())


@pytest.mark.parametrize("kind", ONE_OF_EACH_KIND)
def test_out_none_is_pure_and_out_grad_writes_grad_in_place(kind):
    """``out=None`` writes nothing (θ and ``.grad`` untouched); ``out="grad"`` writes the same estimate into
    every parameter's ``.grad``, replacing (not adding to) what was there, in the existing buffers."""
    rule = ONE_OF_EACH_KIND[kind]
    solver = (
        GradientFlow(iterations=100, step_size=0.5) if kind == "holomorphic" else SOLVER
    )  # no block minimiser
    if kind == "echo":  # a trajectory from initial conditions, read at its end by a softmax readout
        g = torch.Generator().manual_seed(0)
        net = HamiltonianRNN(4, outputs=4, input_shape=(11, 3), observe="final", generator=g).double()
        x, y = torch.randn(5, 11, 3, generator=g, dtype=torch.float64), torch.randint(0, 4, (5,), generator=g)
        cost, solver = readout(4, 4), Leapfrog()
    elif kind in READOUT_KINDS:
        net, x, y = SMALL_SYSTEMS["2h-boxed-output"]()
        cost = readout(4, 4)
    elif kind == "holomorphic":  # needs a holomorphic energy
        _, x, y = SMALL_SYSTEMS["2h"]()
        net = SmoothHopfield([6, 8, 7, 4], generator=torch.Generator().manual_seed(0)).double()
        cost = SquaredError()
    elif kind == "vector_field":  # needs backward weights of the system's own
        _, x, y = SMALL_SYSTEMS["2h"]()
        net = VectorFieldHopfield([6, 8, 7, 4], generator=torch.Generator().manual_seed(0)).double()
        cost = SquaredError()
    else:
        (net, x, y), cost = SMALL_SYSTEMS["2h"](), SquaredError()
    params = named_parameters(net, cost)
    theta0 = {n: p.detach().clone() for n, p in params.items()}
    pure = rule.gradients(net, cost, solver, x, y)
    assert sorted(pure.grads) == sorted(params)
    assert all(p.grad is None for p in params.values())  # nothing written
    assert all(torch.equal(p, theta0[n]) for n, p in params.items())
    # the first call creates the .grad tensors
    est = rule.gradients(net, cost, solver, x, y, out="grad")
    for name, p in params.items():
        assert p.grad is not None and p.grad.dtype == p.dtype and p.grad.shape == p.shape
        torch.testing.assert_close(p.grad, pure.grads[name], rtol=0, atol=1e-14)
        torch.testing.assert_close(p.grad, est.grads[name], rtol=0, atol=0)
    assert all(torch.equal(p, theta0[n]) for n, p in params.items())  # θ itself is left to the optimizer
    # a second call overwrites whatever the buffers hold, in place
    buffers = {}
    for name, p in params.items():
        assert p.grad is not None
        p.grad.fill_(float("nan"))
        buffers[name] = p.grad
    est = rule.gradients(net, cost, solver, x, y, out="grad")
    for name, p in params.items():
        assert p.grad is buffers[name]
        torch.testing.assert_close(p.grad, pure.grads[name], rtol=0, atol=1e-14)
        torch.testing.assert_close(p.grad, est.grads[name], rtol=0, atol=0)
    # ... and a pure call after that leaves them alone
    for p in params.values():
        assert p.grad is not None
        p.grad.fill_(7.0)
    rule.gradients(net, cost, solver, x, y, out=None)
    assert all(bool((p.grad == 7.0).all()) for p in params.values() if p.grad is not None)
