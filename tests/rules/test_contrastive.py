"""Contrastive learning (CL) and coupled learning (PCpL, NCpL, CCpL) against their published update formulas."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eqprop import (
    BlockCoordinate,
    ConfigError,
    ContrastiveLearning,
    CoupledLearning,
    CrossEntropyReadout,
    ImplicitDiff,
    SquaredError,
    solve,
)
from eqprop.rules import named_parameters
from helpers import PROPERTY, SMALL_SYSTEMS, make_hopfield, rel_err

SOLVER = BlockCoordinate(1000, tol=1e-13, check_every=10)
PHASES = {"positive": lambda b: (0.0, b), "negative": lambda b: (-b, 0.0), "centered": lambda b: (-b, b)}


def relax_hidden_by_hand(net, x, start, output, *, step=0.5, max_steps=20000):
    """Projected gradient descent on the hidden variables with the output held at ``output``, ``∂E/∂s`` by
    autograd on ``net.energy`` (independent of the solvers and of the clamp machinery)."""
    hidden = [s.detach().clone() for s in start[:-1]]
    bounds = [net.variables[k].bounds for k in range(len(hidden))]
    for it in range(max_steps):
        leaves = [h.detach().requires_grad_(True) for h in hidden]
        grads = torch.autograd.grad(net.energy(x, (*leaves, output)).sum(), leaves)
        new = [(h - step * g).clamp(*b) for h, g, b in zip(hidden, grads, bounds, strict=True)]
        done = (
            it % 20 == 0 and max(float((a - b).abs().max()) for a, b in zip(new, hidden, strict=True)) < 1e-14
        )
        hidden = new
        if done:
            break
    return (*hidden, output)


def energy_param_grads(net, x, state):
    """``∂E/∂θ`` at ``state`` by autograd on ``net.energy`` (batch mean), keyed like the rules' estimates."""
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(net.energy(x, tuple(state)).mean(), list(params.values()))
    return {f"system.{n}": g for n, g in zip(params, grads, strict=True)}


def published_update(net, x, y, b1, b2):
    """``[∂θE(s²) − ∂θE(s¹)]/(β₂ − β₁)``, each ``sⁱ`` relaxed by hand with the output held at
    ``o* + βᵢ(y − o*)`` (phase 1 relaxed too, even at β₁ = 0)."""
    free = solve(net, x, SOLVER)
    out = free.state[-1]
    target = torch.nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
    states = [relax_hidden_by_hand(net, x, free.state, out + b * (target - out)) for b in (b1, b2)]
    g1, g2 = (energy_param_grads(net, x, s) for s in states)
    return {k: (g2[k] - g1[k]) / (b2 - b1) for k in g1}


@pytest.mark.parametrize("name", ["1h", "2h", "2h-boxed-output"])
def test_contrastive_learning_is_the_published_update(name):
    net, x, y = SMALL_SYSTEMS[name]()
    est = ContrastiveLearning().gradients(net, SquaredError(), SOLVER, x, y)
    assert rel_err(est.grads, published_update(net, x, y, 0.0, 1.0)) <= 1e-9


@PROPERTY
@given(
    name=st.sampled_from(["1h", "2h", "3h", "2h-rho"]),
    variant=st.sampled_from(sorted(PHASES)),
    beta=st.floats(0.05, 1.0),
)
def test_coupled_learning_is_the_published_update(name, variant, beta):
    net, x, y = SMALL_SYSTEMS[name]()
    est = CoupledLearning(beta=beta, variant=variant).gradients(net, SquaredError(), SOLVER, x, y)
    assert sorted(est.grads) == sorted(named_parameters(net, None))
    assert rel_err(est.grads, published_update(net, x, y, *PHASES[variant](beta))) <= 1e-8


@pytest.mark.parametrize("beta", [1e-3, 0.3])
def test_centered_coupled_learning_is_the_mean_of_the_one_sided_ones(beta):
    net, x, y = SMALL_SYSTEMS["2h"]()
    grads = {
        v: CoupledLearning(beta=beta, variant=v).gradients(net, SquaredError(), SOLVER, x, y).grads
        for v in PHASES
    }
    symmetric = {k: (grads["positive"][k] + grads["negative"][k]) / 2 for k in grads["positive"]}
    assert rel_err(grads["centered"], symmetric) <= 1e-9
    # ... and the one-sided ones genuinely differ, so that the identity above says something.
    assert rel_err(grads["positive"], grads["negative"]) >= 0.1 * beta


def test_contrastive_learning_is_positive_coupled_learning_at_beta_one():
    net, x, y = SMALL_SYSTEMS["3h"]()
    cl = ContrastiveLearning().gradients(net, SquaredError(), SOLVER, x, y).grads
    cpl = CoupledLearning(beta=1.0, variant="positive").gradients(net, SquaredError(), SOLVER, x, y).grads
    assert rel_err(cl, cpl) <= 1e-14


@pytest.mark.parametrize(
    "rule",
    [ContrastiveLearning(), *(CoupledLearning(beta=b, variant=v) for v in PHASES for b in (0.1, 0.7))],
    ids=repr,
)
def test_without_hidden_layers_the_clamping_rules_give_the_loss_gradient(rule):
    """With a linear output and no hidden layer the output's curvature is the identity: CL and CpL are then the
    exact gradient of the squared error, for any β (see CoupledLearning's docstring)."""
    net, x, y = make_hopfield([5, 3], seed=4)
    est = rule.gradients(net, SquaredError(), SOLVER, x, y).grads
    ref = ImplicitDiff().gradients(net, SquaredError(), SOLVER, x, y).grads
    assert rel_err(est, ref) <= 1e-10


def test_with_hidden_layers_coupled_learning_is_not_the_loss_gradient():
    """bias_order = None: as β → 0 CpL does not approach ∂L/∂θ (its preconditioner is the identity)."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    est = CoupledLearning(beta=1e-4).gradients(net, SquaredError(), SOLVER, x, y).grads
    ref = ImplicitDiff().gradients(net, SquaredError(), SOLVER, x, y).grads
    assert rel_err(est, ref) >= 1e-2
    assert CoupledLearning.bias_order is None and ContrastiveLearning.bias_order is None


def test_phases_and_free_phase_outputs():
    net, x, y = SMALL_SYSTEMS["2h"]()
    est = CoupledLearning(beta=0.25, variant="centered").gradients(net, SquaredError(), SOLVER, x, y)
    free, lo, hi = est.phases
    target = torch.nn.functional.one_hot(y, 4).double()
    out = free.state[-1]
    torch.testing.assert_close(lo.state[-1], out - 0.25 * (target - out), rtol=0, atol=1e-15)
    torch.testing.assert_close(hi.state[-1], out + 0.25 * (target - out), rtol=0, atol=1e-15)
    torch.testing.assert_close(est.scores, out)
    torch.testing.assert_close(est.loss, SquaredError()(free.state, target).mean())
    assert len(ContrastiveLearning().gradients(net, SquaredError(), SOLVER, x, y).phases) == 2


@pytest.mark.parametrize(
    "rule", [ContrastiveLearning(), CoupledLearning(beta=0.3, variant="negative")], ids=repr
)
def test_out_grad_writes_the_estimate_into_grad(rule):
    net, x, y = SMALL_SYSTEMS["2h"]()
    est = rule.gradients(net, SquaredError(), SOLVER, x, y, out="grad")
    first = {k: v.clone() for k, v in est.grads.items()}
    with torch.no_grad():
        net.weights[1].mul_(0.5)  # a second step at other weights reuses the buffers
    est = rule.gradients(net, SquaredError(), SOLVER, x, y, out="grad")
    fresh = rule.gradients(net, SquaredError(), SOLVER, x, y).grads
    for name, p in named_parameters(net, None).items():
        torch.testing.assert_close(p.grad, fresh[name], rtol=0, atol=1e-15)
        assert p.grad is est.grads[name]
    assert rel_err(first, fresh) > 1e-3


def test_a_cost_with_parameters_is_refused():
    net, x, y = SMALL_SYSTEMS["2h-boxed-output"]()
    readout = CrossEntropyReadout(4, 4, generator=torch.Generator().manual_seed(0)).double()
    for rule in (ContrastiveLearning(), CoupledLearning()):
        with pytest.raises(ConfigError, match="SquaredError"):
            rule.gradients(net, readout, SOLVER, x, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 0.0}, "beta must be"),
        ({"beta": -0.1}, "beta must be"),
        ({"beta": float("nan")}, "beta must be"),
        ({"variant": "symmetric"}, "choose 'positive'"),
    ],
)
def test_bad_settings_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CoupledLearning(**kwargs)
