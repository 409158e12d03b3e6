"""Warm start: every rule's free phase may start from a given state (``init``), e.g. where the previous
mini-batch left the system (``Estimate.last_state``), as the official AEqprop code does. At an exact equilibrium
the start changes nothing; before convergence it is honoured; and ``last_state`` is where each rule leaves the
system. Tiny float64 nets, converged relaxations (as in test_agnostic.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from eqprop import (
    AgnosticEqProp,
    BackpropThroughSolver,
    BlockCoordinate,
    ContrastiveLearning,
    CoupledLearning,
    EqProp,
    ImplicitDiff,
    SquaredError,
    solve,
)
from helpers import SMALL_SYSTEMS, random_state

SOLVER = BlockCoordinate(300)
"""Odd-even sweeps, no tolerance: every phase of the tiny float64 nets converges to rounding."""

RULES = {
    "eqprop": EqProp(beta=0.2, variant="centered"),
    "eqprop-positive": EqProp(beta=0.2, variant="positive"),
    "aeqprop": AgnosticEqProp(beta=0.15, epsilon=0.2),
    "aeqprop-phase2-from-free": AgnosticEqProp(beta=0.15, epsilon=0.2, phase2_start="free"),
    "aeqprop-flow-2-rounds": AgnosticEqProp(
        beta=0.15, epsilon=0.05, parameter_relaxation="flow", parameter_iterations=2, controller_iterations=60
    ),
    "contrastive": ContrastiveLearning(),
    "coupled": CoupledLearning(beta=0.25, variant="centered"),
    "implicit": ImplicitDiff(),
    "backprop-truncated": BackpropThroughSolver(steps=200),
}


def max_abs_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("name", RULES)
def test_warm_start_changes_nothing_at_an_exact_equilibrium(name, gen):
    """From zero or from an unrelated state in the box (another batch's, say): the same equilibrium, so the
    same estimate, loss and scores, to rounding."""
    rule = RULES[name]
    net, x, y = SMALL_SYSTEMS["2h"]()
    cold = rule.gradients(net, SquaredError(), SOLVER, x, y)
    warm = rule.gradients(net, SquaredError(), SOLVER, x, y, init=random_state(net, x.shape[0], gen))
    assert max_abs_diff(cold.grads, warm.grads) < 1e-10
    assert float(cold.loss) == pytest.approx(float(warm.loss), abs=1e-12)
    assert torch.allclose(cold.scores, warm.scores, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in RULES if not n.startswith("backprop")] + ["backprop-full"])
def test_the_free_phase_starts_where_it_is_told(name, gen):
    """Before convergence the start shows: the free phase is the solver's run from ``init``."""
    rule = RULES.get(name, BackpropThroughSolver())
    net, x, y = SMALL_SYSTEMS["2h"]()
    short = BlockCoordinate(2)
    init = random_state(net, x.shape[0], gen)
    expected = solve(net, x, short, init=init, throw=False).state
    cold = solve(net, x, short, throw=False).state
    est = rule.gradients(net, SquaredError(), short, x, y, init=init)
    free = est.phases[0].state if est.phases else est.last_state  # full BPTT keeps no phase
    assert all(torch.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(free, expected, strict=True))
    assert max(float((a - b).abs().max()) for a, b in zip(free, cold, strict=True)) > 1e-3


def test_last_state_is_where_each_rule_leaves_the_system():
    net, x, y = SMALL_SYSTEMS["2h"]()
    cost = SquaredError()
    free = solve(net, x, SOLVER)

    def nudged(beta: float) -> tuple[Tensor, ...]:
        return solve(net, x, SOLVER, cost=cost, y=y, beta=beta, init=free.state).state

    def close(a, b) -> bool:
        return all(torch.allclose(u, v, rtol=0, atol=1e-12) for u, v in zip(a, b, strict=True))

    est = EqProp(beta=0.2, variant="centered").gradients(net, cost, SOLVER, x, y)
    assert est.last_state is est.phases[-1].state and close(est.last_state, nudged(0.2))  # the last phase
    for start in ("phase1", "free"):  # AEqprop (centered): the phase-2 equilibrium at β₂ = +β
        est = AgnosticEqProp(beta=0.15, epsilon=0.2, phase2_start=start).gradients(net, cost, SOLVER, x, y)
        assert close(est.last_state, nudged(0.15))
    est = ImplicitDiff().gradients(net, cost, SOLVER, x, y)
    assert close(est.last_state, free.state)
