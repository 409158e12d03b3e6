"""The energy: its value, and that relaxation only ever lowers it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eqprop import BlockCoordinate, DeepHopfield, GradientFlow, SquaredError, TotalEnergy
from helpers import BOXED_SYSTEMS, DESCENT_ORDERS, PROPERTY, SMALL_SYSTEMS, random_state

TOL = 1e-12
betas = st.one_of(st.just(0.0), st.floats(-0.3, 0.3))
seeds = st.integers(0, 2**16)


def nudged_problem(name: str, seed: int, beta: float) -> tuple[TotalEnergy, tuple[torch.Tensor, ...]]:
    """``F = E + β·C`` for a catalogue system, and a random starting state (off the box for the ρ form)."""
    net, x, y = SMALL_SYSTEMS[name](seed)
    problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=beta)
    spread = 0.5 if net.energy_form == "rho" else 0.0
    return problem, random_state(net, x.shape[0], torch.Generator().manual_seed(seed), spread=spread)


@PROPERTY
@given(
    name=st.sampled_from(list(SMALL_SYSTEMS)), order=st.sampled_from(DESCENT_ORDERS), beta=betas, seed=seeds
)
def test_block_sweep_never_increases_total_energy(name, order, beta, seed):
    problem, state = nudged_problem(name, seed, beta)
    solver = BlockCoordinate(order=order)
    f = problem.energy(state)
    for _ in range(15):
        state = solver.step(problem, state)
        f_new = problem.energy(state)
        assert (f_new <= f + TOL).all(), (f_new - f).max()
        f = f_new


@pytest.mark.parametrize("beta", [0.0, -0.3, 0.3])
@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_each_block_update_never_increases_total_energy(name, beta):
    problem, state = nudged_problem(name, 0, beta)
    f = problem.energy(state)
    for _ in range(3):
        for k in range(len(state)):
            state = (*state[:k], problem.block_minimize(k, state), *state[k + 1 :])
            f_new = problem.energy(state)
            assert (f_new <= f + TOL).all(), (k, (f_new - f).max())
            f = f_new


@PROPERTY
@given(name=st.sampled_from(BOXED_SYSTEMS), beta=betas, seed=seeds)
def test_gradient_flow_step_never_increases_total_energy(name, beta, seed):
    # Boxed systems only: the ρ form's energy has kinks, so no step size is safe there.
    problem, state = nudged_problem(name, seed, beta)
    solver = GradientFlow(step_size=0.2)
    f = problem.energy(state)
    for _ in range(30):
        state = solver.step(problem, state)
        f_new = problem.energy(state)
        assert (f_new <= f + TOL).all(), (f_new - f).max()
        f = f_new


def hand_energy(x, state, weights, biases, rho) -> list[float]:
    """``E = Σ½‖s‖² − Σ b·ρ(s) − Σ ρ(s_{k+1})·W_k ρ(s_k)``, one example at a time, in plain Python floats
    (``rho(v, k)`` is ρ of layer ``k``; layer 0 is the input)."""
    out = []
    for n in range(len(x)):
        layers = [x[n]] + [s[n] for s in state]
        e = 0.0
        for k, s in enumerate(layers[1:], start=1):
            e += sum(0.5 * v * v for v in s)
            e -= sum(b * rho(v, k) for b, v in zip(biases[k - 1], s, strict=True))
        for k, w in enumerate(weights):
            below, above = layers[k], layers[k + 1]
            for i, row in enumerate(w):
                for j, wij in enumerate(row):
                    e -= rho(above[i], k + 1) * wij * rho(below[j], k)
        out.append(e)
    return out


@pytest.mark.parametrize("form", ["boxed", "rho"])
def test_energy_matches_hand_computation(form, f64):
    net = DeepHopfield([2, 3, 2], energy_form=form)
    weights = [[[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]], [[1.0, -0.5, 0.3], [0.2, 0.8, -1.2]]]
    biases = [[0.1, -0.2, 0.3], [-0.4, 0.5]]
    with torch.no_grad():
        for p, v in zip([*net.weights, *net.biases], [*weights, *biases], strict=True):
            p.copy_(torch.tensor(v))
    x = torch.tensor([[0.3, -0.6], [1.0, 2.0]])
    # The second example leaves the hidden box (ρ clips it; the output layer is linear).
    state = (torch.tensor([[0.2, 0.9, 0.5], [1.5, -0.3, 0.4]]), torch.tensor([[0.7, -1.1], [2.0, 0.1]]))

    def rho(v: float, k: int) -> float:  # the ρ form clips the hidden layer; input and output are linear
        return min(max(v, 0.0), 1.0) if form == "rho" and k == 1 else v

    expected = torch.tensor(hand_energy(x.tolist(), [s.tolist() for s in state], weights, biases, rho))
    torch.testing.assert_close(net.energy(x, state), expected, rtol=0, atol=1e-14)
