"""Every fast path equals the generic autograd path it replaces, and the block minimiser minimises."""

from __future__ import annotations

import pytest
import torch

from eqprop import BlockCoordinate, EnergySystem, SquaredError, TotalEnergy, solve
from helpers import NO_HIDDEN, SMALL_SYSTEMS, kkt_violation, random_state

TOL = 1e-12
SYSTEMS = {**SMALL_SYSTEMS, "0h-boxed-output": NO_HIDDEN}


def assert_all_close(a, b, atol=TOL):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        a, b = [a[k] for k in sorted(a)], [b[k] for k in sorted(b)]
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=atol)


def problem_and_state(name: str, gen: torch.Generator, spread: float = 0.3):
    """A catalogue system with a random state that leaves the box by ``spread`` (exercises ρ's kinks)."""
    net, x, y = SYSTEMS[name]()
    return net, x, y, random_state(net, x.shape[0], gen, spread=spread)


@pytest.mark.parametrize("name", SYSTEMS)
def test_state_grad_matches_autograd(name, gen):
    net, x, _, state = problem_and_state(name, gen)
    assert_all_close(net.state_grad(x, state), EnergySystem.state_grad(net, x, state))
    assert_all_close(net.state_grad(x, state, net.prepare(x)), EnergySystem.state_grad(net, x, state))


@pytest.mark.parametrize("name", SYSTEMS)
def test_block_field_is_minus_the_energy_gradient_plus_curvature_term(name, gen):
    # E = ½a‖s_k‖² − h_k·s_k + … inside the box (where ρ is the identity): h_k = a·s_k − ∂E/∂s_k.
    net, x, _, state = problem_and_state(name, gen, spread=-0.01)
    grads, drive = EnergySystem.state_grad(net, x, state), net.prepare(x)
    for k, (s, g) in enumerate(zip(state, grads, strict=True)):
        torch.testing.assert_close(
            net.block_field(k, state, drive), net.block_curvature(k) * s - g, rtol=0, atol=TOL
        )


@pytest.mark.parametrize("name", SYSTEMS)
def test_param_grads_match_autograd(name, gen):
    net, x, _, state = problem_and_state(name, gen)
    assert_all_close(net.param_grads(x, state), EnergySystem.param_grads(net, x, state))


@pytest.mark.parametrize("scale", [1.0, -2.5])
@pytest.mark.parametrize("name", SYSTEMS)
def test_param_grad_difference_matches_autograd(name, scale, gen):
    net, x, _, a = problem_and_state(name, gen)
    b = random_state(net, x.shape[0], gen, spread=0.3)
    ga, gb = EnergySystem.param_grads(net, x, a), EnergySystem.param_grads(net, x, b)
    expected = {n: scale * (gb[n] - ga[n]) for n in ga}
    assert_all_close(net.param_grad_difference(x, a, b, scale=scale), expected)


@pytest.mark.parametrize(
    "nudge", [None, (0.3, 1 / 1.3), (-0.2, 2.0)], ids=["plain", "shift-scale", "negative"]
)
@pytest.mark.parametrize("name", SYSTEMS)
def test_block_minimizer_matches_generic_composition(name, nudge, gen):
    net, x, _, state = problem_and_state(name, gen)
    drive = net.prepare(x)
    for k in range(len(state)):
        kwargs = {}
        if nudge is not None:
            shift = nudge[0] * torch.rand(state[k].shape, generator=gen, dtype=torch.float64)
            kwargs = {"shift": shift, "scale": nudge[1]}
        fast = net.block_minimizer(k, drive, **kwargs)(state)
        generic = EnergySystem.block_minimizer(net, k, drive, **kwargs)(state)
        torch.testing.assert_close(fast, generic, rtol=0, atol=TOL)


def test_block_minimizer_accepts_a_per_unit_tensor_scale(gen):
    net, x, _, state = problem_and_state("2h", gen)
    drive = net.prepare(x)
    for k in range(len(state)):
        scale = 0.5 + torch.rand(state[k].shape[1:], generator=gen, dtype=torch.float64)
        fast = net.block_minimizer(k, drive, scale=scale)(state)
        generic = EnergySystem.block_minimizer(net, k, drive, scale=scale)(state)
        torch.testing.assert_close(fast, generic, rtol=0, atol=TOL)


@pytest.mark.parametrize("beta", [0.0, 0.3, -0.3])
@pytest.mark.parametrize("name", SYSTEMS)
def test_block_minimizer_is_the_exact_layer_minimizer(name, beta, gen):
    net, x, y, state = problem_and_state(name, gen)
    problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=beta)
    for k in range(len(state)):
        best = (*state[:k], problem.block_minimize(k, state), *state[k + 1 :])
        assert kkt_violation(problem, best, layers=[k]) <= TOL
        # No other value of the layer does better (random candidates, off the box for the ρ form).
        f_best = problem.energy(best)
        for _ in range(20):
            other = random_state(net, x.shape[0], gen, spread=0.5 if net.energy_form == "rho" else 0.0)
            f_other = problem.energy((*best[:k], other[k], *best[k + 1 :]))
            assert (f_other >= f_best - TOL).all()


def boxed_twin(name: str):
    """The ρ-form system of the catalogue and a boxed-form copy of it with the same parameters."""
    rho, x, y = SMALL_SYSTEMS[name]()
    boxed, _, _ = SMALL_SYSTEMS[name.removesuffix("-rho")]()
    boxed.load_state_dict(rho.state_dict())
    assert rho.energy_form == "rho" and boxed.energy_form == "boxed"
    return rho, boxed, x, y


@pytest.mark.parametrize("beta", [0.0, 0.2])
def test_rho_and_boxed_forms_have_the_same_block_equilibria(beta):
    rho, boxed, x, y = boxed_twin("2h-rho")
    kwargs = {"cost": SquaredError(), "y": y, "beta": beta}
    a, b = solve(rho, x, BlockCoordinate(500), **kwargs), solve(boxed, x, BlockCoordinate(500), **kwargs)
    assert_all_close(a.state, b.state)
    torch.testing.assert_close(a.energy, b.energy, rtol=0, atol=TOL)


def test_rho_and_boxed_forms_agree_inside_the_box(gen):
    rho, boxed, x, _ = boxed_twin("2h-rho")
    state = random_state(rho, x.shape[0], gen)
    torch.testing.assert_close(rho.energy(x, state), boxed.energy(x, state), rtol=0, atol=TOL)
    assert_all_close(rho.param_grads(x, state), boxed.param_grads(x, state))
    drive = rho.prepare(x)
    for k in range(len(state)):
        torch.testing.assert_close(
            rho.block_minimizer(k, drive)(state), boxed.block_minimizer(k, drive)(state), rtol=0, atol=TOL
        )


@pytest.mark.parametrize("name", ["1h", "2h", "2h-boxed-output"])
@pytest.mark.parametrize("cost_kind", ["squared", "readout"])
@pytest.mark.parametrize("beta", [0.0, 0.3, -0.2])
def test_gradient_flow_of_step_1_is_the_synchronous_block_update(name, cost_kind, beta, gen):
    """GradientFlow(step_size=1) takes a fused path (every layer's clip(h_k) from the old state, the cost's model
    for the nudge); it is the projected gradient step Π(s − ∂F/∂s), to round-off."""
    from eqprop import CrossEntropyReadout, GradientFlow

    net, x, y = SMALL_SYSTEMS[name]()
    width = net.variables[-1].shape[0]
    cost = SquaredError() if cost_kind == "squared" else CrossEntropyReadout(width, 3, generator=gen).double()
    y = y % (width if cost_kind == "squared" else 3)
    problem = TotalEnergy(net, x, cost=cost, y=y, beta=beta)
    state = random_state(net, x.shape[0], gen, spread=0.2)
    fast = GradientFlow(iterations=1, step_size=1.0).step(problem, state)
    grads = problem.grad(state)
    slow = tuple(net.project(s - g, v) for s, g, v in zip(state, grads, net.variables, strict=True))
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    held = torch.full_like(state[0], 0.25)  # a clamped variable keeps its value
    clamped = TotalEnergy(net, x, cost=cost, y=y, beta=beta, clamp={0: held})
    assert torch.equal(GradientFlow(iterations=1, step_size=1.0).step(clamped, state)[0], held)
