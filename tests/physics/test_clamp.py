"""Clamping: ``solve(..., clamp={k: value})`` holds variables fixed and relaxes the others to their equilibrium."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eqprop import BlockCoordinate, ConfigError, GradientFlow, SquaredError, TotalEnergy, solve
from eqprop.solvers import Solver
from helpers import PROPERTY, SMALL_SYSTEMS, kkt_violation, random_state

SOLVERS = {
    "block": BlockCoordinate(1000, tol=1e-13, check_every=10),
    "flow": GradientFlow(20000, step_size=0.5, tol=1e-13, check_every=50),
}


@PROPERTY
@given(
    name=st.sampled_from(sorted(SMALL_SYSTEMS)),
    solver=st.sampled_from(sorted(SOLVERS)),
    held=st.sets(st.integers(0, 3), min_size=1),
    beta=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_clamped_variables_stay_fixed_and_the_others_reach_their_equilibrium(name, solver, held, beta, seed):
    net, x, y = SMALL_SYSTEMS[name]()
    n = len(net.variables)
    held = {k % n for k in held}
    if len(held) == n:  # keep at least one variable free
        held.discard(0)
    values = random_state(net, x.shape[0], torch.Generator().manual_seed(seed), spread=0.2)
    clamp = {k: values[k] for k in held}
    nudge = {"cost": SquaredError(), "y": y, "beta": beta} if beta else {}
    eq = solve(net, x, SOLVERS[solver], clamp=clamp, **nudge)
    for k in held:
        assert torch.equal(eq.state[k], clamp[k])  # exactly the given value, not projected onto the box
    free = [k for k in range(n) if k not in held]
    # KKT of min F over the free variables only, with the clamped ones as constants.
    assert kkt_violation(eq.problem, eq.state, layers=free) <= 1e-9


def test_without_the_clamp_the_kkt_conditions_fail():
    """The property above can fail: a clamped state is not an equilibrium of the unclamped problem."""
    net, x, _ = SMALL_SYSTEMS["2h"]()
    values = random_state(net, x.shape[0], torch.Generator().manual_seed(0))
    eq = solve(net, x, SOLVERS["block"], clamp={-1: values[-1]})
    assert kkt_violation(eq.problem, eq.state, layers=range(len(net.variables))) > 1e-3


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_clamping_at_the_free_output_leaves_the_free_equilibrium(solver):
    net, x, _ = SMALL_SYSTEMS["3h"]()
    free = solve(net, x, SOLVERS[solver])
    clamped = solve(net, x, SOLVERS[solver], clamp={-1: free.state[-1].clone()})  # from the zero state
    for a, b in zip(free.state, clamped.state, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_clamp_replaces_the_starting_state_and_the_update():
    net, x, _ = SMALL_SYSTEMS["1h"]()
    value = torch.full((x.shape[0], 3), 0.25, dtype=torch.float64)
    problem = TotalEnergy(net, x, clamp={1: value})
    state = net.init_state(x)
    assert problem.block_minimize(1, state) is value
    assert GradientFlow(1).step(problem, state)[1] is value
    eq = solve(net, x, BlockCoordinate(0), clamp={-1: value})  # no sweep: the start already holds it
    assert torch.equal(eq.state[1], value)


@pytest.mark.parametrize(
    ("clamp", "match"),
    [
        ({5: None}, "index of a state variable"),
        ({"s1": None}, "index of a state variable"),
        ({0: torch.zeros(5, 4)}, r"shape \(5, 9\)"),
        ({1: torch.zeros(5, 3), -1: torch.zeros(5, 3)}, "twice"),
    ],
)
def test_bad_clamps_raise_config_error(clamp, match):
    net, x, _ = SMALL_SYSTEMS["1h"]()
    with pytest.raises(ConfigError, match=match):
        solve(net, x, BlockCoordinate(3), clamp=clamp)


@dataclass(frozen=True)
class _Jacobi(Solver):
    """A solver that knows nothing of clamps (as a third-party one may not)."""

    iterations: int = 3
    tol: float | None = None
    check_every: int = 1
    norm: str = "max"

    def step(self, problem, state):
        return tuple(problem.block_minimize(k, state) for k in range(len(state)))


def test_a_solver_that_cannot_clamp_is_refused():
    net, x, _ = SMALL_SYSTEMS["1h"]()
    solve(net, x, _Jacobi())  # fine without a clamp
    with pytest.raises(ConfigError, match="cannot hold state variables fixed"):
        solve(net, x, _Jacobi(), clamp={-1: torch.zeros(5, 3, dtype=torch.float64)})
