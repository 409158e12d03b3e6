"""ConvHopfield: its fast paths equal autograd, its block updates minimise (avg pool) or reach KKT fixed points
(max pool), EqProp on it matches implicit differentiation, and bad shapes are refused."""

from __future__ import annotations

import copy
import pickle
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from eqprop import (
    BackpropThroughSolver,
    BlockCoordinate,
    ConfigError,
    EnergySystem,
    EqProp,
    ImplicitDiff,
    SquaredError,
    TotalEnergy,
    solve,
)
from eqprop.systems import ConvHopfield
from helpers import ALL_ORDERS, DESCENT_ORDERS, cosine, default_dtype, kkt_violation, random_state, rel_err

TOL = 1e-10
POOLS = ("avg", "max")

LAYOUTS = {
    # 1×12×12 → conv5 → 3×8×8 → pool → 3×4×4 → dense 4 (the output)
    "1c": {"input_shape": (1, 12, 12), "channels": [3], "dense": [4], "kernel_size": 5},
    # 2×11×11 → conv3(pad 1) → 3×11×11 → pool → 3×5×5 (odd: last row/column unpooled) → conv2 → 4×4×4
    # → pool → 4×2×2 → dense 5 → dense 3
    "2c": {
        "input_shape": (2, 11, 11),
        "channels": [3, 4],
        "dense": [5, 3],
        "kernel_size": [3, 2],
        "padding": [1, 0],
    },
}


def make_conv(layout: str, pool: str, seed: int = 2, *, batch: int = 3, gains: float = 2.0):
    """A float64 :class:`ConvHopfield` with biases ``U(−0.8, 1.2)`` (with the default seed, some hidden units
    sit at each bound at equilibrium and some inside), inputs ``U(0, 1)`` and integer labels."""
    gen = torch.Generator().manual_seed(seed)
    with default_dtype(torch.float64):
        net = ConvHopfield(**LAYOUTS[layout], pool=pool, gains=gains, generator=gen)
        with torch.no_grad():
            for b in net.biases:
                b.uniform_(-0.8, 1.2, generator=gen)
        x = torch.rand(batch, *net.input_shape, generator=gen)
        y = torch.randint(0, net.dense[-1], (batch,), generator=gen)
    return net, x, y


CASES = [pytest.param(layout, pool, id=f"{layout}-{pool}") for layout in LAYOUTS for pool in POOLS]
cases = pytest.mark.parametrize(("layout", "pool"), CASES)


def assert_all_close(a, b, atol=TOL):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        a, b = [a[k] for k in sorted(a)], [b[k] for k in sorted(b)]
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=atol)


def problem_and_state(layout: str, pool: str, gen: torch.Generator, spread: float = 0.3):
    """A system and a generic random state (continuous, so max-pool ties have probability zero)."""
    net, x, y = make_conv(layout, pool)
    return net, x, y, random_state(net, x.shape[0], gen, spread=spread)


# -- the construction -------------------------------------------------------------------------------------------
def test_shapes_parameters_and_init(f64):
    net = ConvHopfield((1, 28, 28), [32, 64], [10], kernel_size=5, gains=[0.5, 0.6, 0.7])
    assert net.shapes == ((32, 12, 12), (64, 4, 4), (10,))
    assert [v.bounds for v in net.variables] == [(0.0, 1.0), (0.0, 1.0), (None, None)]
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
    assert shapes == {
        "weights.0": (32, 1, 5, 5),
        "weights.1": (64, 32, 5, 5),
        "weights.2": (10, 1024),
        "biases.0": (32,),
        "biases.1": (64,),
        "biases.2": (10,),
    }
    for w, gain, fan_in in zip(net.weights, [0.5, 0.6, 0.7], [25, 800, 1024], strict=True):
        assert 0.9 * gain / fan_in**0.5 < float(w.detach().abs().max()) <= gain / fan_in**0.5
    assert all(float(b.detach().abs().max()) == 0.0 for b in net.biases)
    assert "1×28×28 → 32×12×12 → 64×4×4 → 10" in net._label()


@pytest.mark.parametrize("pool", POOLS)
def test_energy_matches_hand_computation(pool, f64):
    # 1×4×4 input, one 2×2 kernel → 1×3×3 conv output → 2×2 pooling keeps its top-left 2×2 → 1×1×1 layer,
    # then a dense output of 2 units. Conv is a cross-correlation (no kernel flip), as in torch.
    net = ConvHopfield((1, 4, 4), [1], [2], kernel_size=2, pool=pool)
    kernel = [[0.5, -1.0], [2.0, 0.25]]
    dense = [[1.5], [-0.7]]
    with torch.no_grad():
        net.weights[0].copy_(torch.tensor(kernel).view(1, 1, 2, 2))
        net.weights[1].copy_(torch.tensor(dense))
        net.biases[0].fill_(0.3)
        net.biases[1].copy_(torch.tensor([-0.2, 0.4]))
    image = [[0.1 * (4 * i + j) - 0.5 * (i == j) for j in range(4)] for i in range(4)]
    s1, out = 0.8, [0.6, -1.2]
    conv = [
        [sum(kernel[a][b] * image[i + a][j + b] for a in range(2) for b in range(2)) for j in range(3)]
        for i in range(3)
    ]
    window = [conv[0][0], conv[0][1], conv[1][0], conv[1][1]]
    pooled = sum(window) / 4 if pool == "avg" else max(window)
    expected = (
        0.5 * s1 * s1
        + 0.5 * sum(o * o for o in out)
        - 0.3 * s1
        - (-0.2 * out[0] + 0.4 * out[1])
        - pooled * s1
        - sum(o * row[0] * s1 for o, row in zip(out, dense, strict=True))
    )
    x = torch.tensor(image).view(1, 1, 4, 4)
    state = (torch.tensor([[[[s1]]]]), torch.tensor([out]))
    torch.testing.assert_close(net.energy(x, state), torch.tensor([expected]), rtol=0, atol=1e-14)


def test_conv_bias_gradient_is_the_spatial_sum(gen):
    net, x, _, state = problem_and_state("1c", "avg", gen)
    grads = net.param_grads(x, state)
    torch.testing.assert_close(grads["biases.0"], -state[0].sum((2, 3)).mean(0), rtol=0, atol=1e-14)


# -- fast path == autograd --------------------------------------------------------------------------------------
@cases
def test_state_grad_matches_autograd(layout, pool, gen):
    net, x, _, state = problem_and_state(layout, pool, gen)
    assert_all_close(net.state_grad(x, state), EnergySystem.state_grad(net, x, state))
    assert_all_close(net.state_grad(x, state, net.prepare(x)), EnergySystem.state_grad(net, x, state))


@cases
def test_block_field_is_minus_the_interaction_gradient(layout, pool, gen):
    # E = ½‖s_k‖² − h_k·s_k + (terms without s_k): h_k = −∂(E − ½‖s_k‖²)/∂s_k = s_k − ∂E/∂s_k.
    net, x, _, state = problem_and_state(layout, pool, gen)
    grads, drive = EnergySystem.state_grad(net, x, state), net.prepare(x)
    for k, (s, g) in enumerate(zip(state, grads, strict=True)):
        assert net.block_curvature(k) == 1.0
        torch.testing.assert_close(net.block_field(k, state, drive), s - g, rtol=0, atol=TOL)


@cases
def test_param_grads_match_autograd(layout, pool, gen):
    net, x, _, state = problem_and_state(layout, pool, gen)
    assert_all_close(net.param_grads(x, state), EnergySystem.param_grads(net, x, state))


@pytest.mark.parametrize("scale", [1.0, -2.5])
@cases
def test_param_grad_difference_matches_autograd(layout, pool, scale, gen):
    net, x, _, a = problem_and_state(layout, pool, gen)
    b = random_state(net, x.shape[0], gen, spread=0.3)
    ga, gb = EnergySystem.param_grads(net, x, a), EnergySystem.param_grads(net, x, b)
    expected = {n: scale * (gb[n] - ga[n]) for n in ga}
    assert_all_close(net.param_grad_difference(x, a, b, scale=scale), expected)


@pytest.mark.parametrize("nudge", [None, (0.3, 1 / 1.3), (-0.2, 2.0), "per-unit"])
@cases
def test_block_minimizer_matches_generic_composition(layout, pool, nudge, gen):
    net, x, _, state = problem_and_state(layout, pool, gen)
    drive = net.prepare(x)
    for k in range(len(state)):
        kwargs = {}
        if nudge == "per-unit":
            kwargs = {"scale": 0.5 + torch.rand(state[k].shape[1:], generator=gen, dtype=torch.float64)}
        elif nudge is not None:
            shift = nudge[0] * torch.rand(state[k].shape, generator=gen, dtype=torch.float64)
            kwargs = {"shift": shift, "scale": nudge[1]}
        fast = net.block_minimizer(k, drive, **kwargs)(state)
        generic = EnergySystem.block_minimizer(net, k, drive, **kwargs)(state)
        torch.testing.assert_close(fast, generic, rtol=0, atol=TOL)


# -- relaxation -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.0, 0.3, -0.3])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_avg_pool_block_minimizer_is_the_exact_layer_minimizer(layout, beta, gen):
    net, x, y, state = problem_and_state(layout, "avg", gen, spread=0.0)
    problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=beta)
    for k in range(len(state)):
        best = (*state[:k], problem.block_minimize(k, state), *state[k + 1 :])
        assert kkt_violation(problem, best, layers=[k]) <= TOL
        f_best = problem.energy(best)
        for _ in range(10):  # no other value of the layer does better
            other = random_state(net, x.shape[0], gen)
            assert (problem.energy((*best[:k], other[k], *best[k + 1 :])) >= f_best - TOL).all()


@pytest.mark.parametrize("beta", [0.0, 0.3, -0.3])
@pytest.mark.parametrize("order", DESCENT_ORDERS)
@cases
def test_block_sweep_never_increases_total_energy(layout, pool, order, beta, gen):
    # Exact block descent for avg pooling; for max pooling (hidden box [0, 1], so the pooled layer is ≥ 0)
    # a majorise-minimise step, which cannot increase the energy either.
    net, x, y, state = problem_and_state(layout, pool, gen, spread=0.0)
    problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=beta)
    solver = BlockCoordinate(order=order)
    f = problem.energy(state)
    for _ in range(12):
        state = solver.step(problem, state)
        f_new = problem.energy(state)
        assert (f_new <= f + 1e-12).all(), (f_new - f).max()
        f = f_new


@pytest.mark.parametrize("beta", [0.0, 0.3])
@cases
def test_long_relaxation_is_a_kkt_fixed_point(layout, pool, beta):
    # For max pooling the block update uses the argmax at the current state: at the end the state is a
    # fixed point of the updates with the argmax *at that state*, which is the KKT system of E there.
    net, x, y = make_conv(layout, pool)
    eq = solve(net, x, BlockCoordinate(500), cost=SquaredError(), y=y, beta=beta)
    problem = eq.problem
    for k, s in enumerate(eq.state):
        torch.testing.assert_close(problem.block_minimize(k, eq.state), s, rtol=0, atol=TOL)
    assert kkt_violation(problem, eq.state) <= TOL
    # Not a degenerate equilibrium: hidden units sit at both bounds and inside the box.
    hidden = torch.cat([s.flatten() for s in eq.state[:-1]])
    assert (hidden == 0).any() and (hidden == 1).any() and ((hidden > 0) & (hidden < 1)).any()


# -- EqProp on a conv net ---------------------------------------------------------------------------------------
SOLVER = BlockCoordinate(300)
tiny = partial(make_conv, "1c", seed=9, batch=4)
"""Every hidden field of its free equilibrium is over 0.01 away from a bound (for both pools)."""


@pytest.mark.parametrize("pool", POOLS)
def test_centered_eqprop_matches_implicit_diff(pool):
    net, x, y = tiny(pool)
    est = EqProp(beta=1e-3, variant="centered").gradients(net, SquaredError(), SOLVER, x, y)
    ref = ImplicitDiff().gradients(net, SquaredError(), SOLVER, x, y).grads
    assert all(float(eq.stats.residual.max()) <= 1e-12 for eq in est.phases)
    assert cosine(est.grads, ref) >= 0.9999
    assert rel_err(est.grads, ref) <= 1e-4


@pytest.mark.parametrize("pool", POOLS)
def test_backprop_through_the_solver_matches_implicit_diff(pool):
    net, x, y = tiny(pool)
    ref = ImplicitDiff().gradients(net, SquaredError(), SOLVER, x, y).grads
    est = BackpropThroughSolver(steps=100).gradients(net, SquaredError(), SOLVER, x, y).grads
    assert rel_err(est, ref) <= 1e-8


BETAS = np.geomspace(1e-4, 3e-3, 5)


@pytest.mark.parametrize("variant", ["positive", "negative", "centered"])
@pytest.mark.parametrize("pool", POOLS)
def test_eqprop_bias_shrinks_at_the_variants_order(pool, variant):
    net, x, y = tiny(pool)
    exact = ImplicitDiff().gradients(net, SquaredError(), SOLVER, x, y).grads
    errors = []
    for beta in BETAS:
        est = EqProp(beta=float(beta), variant=variant).gradients(net, SquaredError(), SOLVER, x, y)
        free_set = net.active_mask(est.phases[0].state)  # no nudged phase moves a unit across a bound
        for eq in est.phases[1:]:
            assert all(torch.equal(a, b) for a, b in zip(net.active_mask(eq.state), free_set, strict=True))
        errors.append(rel_err(est.grads, exact))
    slope = float(np.polyfit(np.log(BETAS), np.log(errors), 1)[0])
    assert slope == pytest.approx(EqProp(variant=variant).bias_order, abs=0.2)


# -- errors -----------------------------------------------------------------------------------------------------
def test_wrong_input_shape_is_a_config_error(f64):
    net = ConvHopfield((1, 12, 12), [3], [4])
    with pytest.raises(ConfigError, match=r"expects x of shape \(batch, 1, 12, 12\), got \(2, 144\)"):
        solve(net, torch.rand(2, 144), BlockCoordinate(5))
    with pytest.raises(ConfigError, match=r"got \(2, 1, 13, 12\)"):
        net.check_input(torch.rand(2, 1, 13, 12))


def test_too_deep_conv_stack_is_a_config_error_with_the_shapes():
    with pytest.raises(
        ConfigError, match=r"conv layer 2 .*1×12×12 → conv5 → 3×8×8 → pool → 3×4×4 → conv5 → 3×0×0"
    ):
        ConvHopfield((1, 12, 12), [3, 3], [4], kernel_size=5)
    with pytest.raises(ConfigError, match=r"conv layer 1 .*1×5×5 → conv5 → 2×1×1"):
        ConvHopfield((1, 5, 5), [2], [4], kernel_size=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pool": "mean"}, "pool='mean'"),
        ({"input_shape": (28, 28)}, r"input_shape=\[28, 28\]"),
        ({"channels": []}, "channels=\\[\\]"),
        ({"dense": [10, 0]}, r"dense=\[10, 0\]"),
        ({"kernel_size": [5]}, "kernel_size"),
        ({"padding": -1}, "padding"),
        ({"gains": [0.5, 0.5]}, "one gain per weight"),
        ({"bounds": (1.0, 0.0)}, "low must be < high"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    args = {"input_shape": (1, 28, 28), "channels": [4, 4], "dense": [10]} | kwargs
    with pytest.raises(ConfigError, match=match):
        ConvHopfield(**args)


def test_contrast_of_a_state_with_itself_is_zero_and_detached(gen):
    # The closed forms read states and parameters but are not a training graph: EqProp writes them to .grad.
    net, x, _, state = problem_and_state("2c", "max", gen)
    grads: dict[str, Tensor] = net.param_grad_difference(x, state, state)
    assert all(not g.requires_grad for g in grads.values())
    assert all(float(g.abs().max()) <= 1e-15 for g in grads.values())


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_contrast_of_states_relaxed_under_bf16_autocast_is_in_the_parameters_dtype(pool):
    """Under autocast the relaxed states come out bf16 while the clamped input stays float32; the weight
    contrast must still run (it used to fail in the input conv's correlation) and land in θ's dtype."""
    from eqprop import BlockCoordinate, ConvHopfield, SquaredError, solve

    gen = torch.Generator().manual_seed(0)
    net = ConvHopfield((1, 12, 12), [4], [5], kernel_size=3, padding=1, pool=pool, generator=gen)
    x = torch.rand(3, 1, 12, 12, generator=gen)
    y = torch.tensor([0, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        free = solve(net, x, BlockCoordinate(5))
        nudged = solve(net, x, BlockCoordinate(5), cost=SquaredError(), y=y, beta=0.5, init=free.state)
    states_a = tuple(s.to(torch.bfloat16) for s in free.state)
    states_b = tuple(s.to(torch.bfloat16) for s in nudged.state)
    grads = net.param_grad_difference(x, states_a, states_b, scale=2.0)
    for name, p in net.named_parameters():
        assert grads[name].dtype == p.dtype and bool(torch.isfinite(grads[name]).all()), name
    exact = net.param_grad_difference(
        x, tuple(s.float() for s in states_a), tuple(s.float() for s in states_b), scale=2.0
    )
    for name in exact:
        torch.testing.assert_close(grads[name], exact[name], rtol=1e-5, atol=1e-6)


# -- max pooling: the drive's argmax reused by the feedback ------------------------------------------------------
# Three conv layers, so that conv layers sit in both odd-even colours and one has conv layers on both sides:
# 2×16×16 → conv3(pad 1) → 4×16×16 → pool → 4×8×8 → 5×4×4 → 6×2×2 → dense 5 → dense 3.
TIES = {"input_shape": (2, 16, 16), "channels": [4, 5, 6], "dense": [5, 3], "kernel_size": 3, "padding": 1}


def tie_problem(layout: str, dtype: torch.dtype, seed: int = 7, batch: int = 3):
    """A max-pool net with many exact ties in its pooling windows: biases ``U(−1.5, 0.5)`` put most hidden
    units on the box's lower bound 0, the top half of every image and of every conv layer's initial state is
    black, and the rest of the initial state is 60% exact zeros, so ``W ⋆ s`` is exactly 0 over every all-zero
    patch (a 2×2 window of equal maxima). With the default seed, ties remain after 25 sweeps of every order,
    free or nudged, in float32 and float64."""
    gen = torch.Generator().manual_seed(seed)
    kwargs = TIES if layout == "ties" else LAYOUTS[layout]
    net = ConvHopfield(**kwargs, pool="max", gains=2.0, generator=gen).to(dtype)
    with torch.no_grad():
        for b in net.biases:
            b.uniform_(-1.5, 0.5, generator=gen)
    x = torch.rand(batch, *net.input_shape, generator=gen, dtype=dtype)
    x[:, :, : x.shape[2] // 2] = 0
    y = torch.randint(0, net.dense[-1], (batch,), generator=gen)
    init = [s.to(dtype) * (torch.rand(s.shape, generator=gen) > 0.6) for s in random_state(net, batch, gen)]
    for s in init[: len(net.channels)]:
        s[:, :, : s.shape[2] // 2] = 0
    return net, x, y, tuple(init)


def tied_windows(net: ConvHopfield, state) -> int:
    """How many 2×2 pooling windows of ``W_j ⋆ s_{j−1}`` (conv layers j ≥ 2) hold their maximum more than once."""
    count = 0
    for j in range(1, len(net.channels)):
        z = F.conv2d(state[j - 1], net.weights[j].detach(), padding=net.padding[j])
        z = z[..., : z.shape[-2] // 2 * 2, : z.shape[-1] // 2 * 2]
        pooled = F.max_pool2d(z, 2)
        top = z == F.interpolate(pooled, scale_factor=2.0, mode="nearest")
        count += int((F.avg_pool2d(top.to(z.dtype), 2) * 4 > 1).sum())
    return count


def count_convs(monkeypatch) -> list[int]:
    """Count the calls of ``F.conv2d`` (the forward convolutions; the feedback is ``conv_transpose2d``)."""
    calls = [0]
    conv2d = F.conv2d

    def counting(*args, **kwargs):
        calls[0] += 1
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(F, "conv2d", counting)
    return calls


def relax(net, x, y, init, order, kind, sweeps, *, reuse: bool) -> tuple[Tensor, ...]:
    """``sweeps`` block sweeps of a free, nudged or clamped problem, with or without the argmax memo."""
    net._reuse_argmax = reuse
    if kind == "free":
        problem = TotalEnergy(net, x)
    elif kind == "nudged":
        problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=0.3)
    else:  # the middle conv layer held at its initial value: its update returns the same tensor every sweep
        problem = TotalEnergy(net, x, clamp={1: init[1]})
    sweep = BlockCoordinate(order=order).make_sweep(problem)
    state = init
    with torch.no_grad():  # as `solve` runs it (with autograd on, every convolution is recomputed)
        for _ in range(sweeps):
            state = sweep(state)
    return state


@pytest.mark.parametrize("kind", ["free", "nudged", "clamped"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("order", ALL_ORDERS)
@pytest.mark.parametrize("layout", ["ties", "2c"])
def test_argmax_reuse_is_bit_identical_to_recomputing_it(layout, order, dtype, kind, monkeypatch):
    net, x, y, init = tie_problem(layout, dtype)
    calls = count_convs(monkeypatch)
    sweeps = 25
    fast = relax(net, x, y, init, order, kind, sweeps, reuse=True)
    fast_convs, calls[0] = calls[0], 0
    slow = relax(net, x, y, init, order, kind, sweeps, reuse=False)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert all(a.dtype == dtype for a in fast)
    # The recomputation is gone: one convolution per conv layer j ≥ 2 and sweep instead of two (plus the
    # input's in `prepare`, and the first sweep's misses). A held layer's drive is computed once.
    pooled_convs = len(net.channels) - 1
    if kind != "clamped":
        assert calls[0] == 1 + 2 * pooled_convs * sweeps
        assert fast_convs <= 1 + pooled_convs * (sweeps + 1)
    else:
        assert fast_convs <= calls[0] - (sweeps - 1) * (layout == "ties")
    # Exact ties were there to break, at the start and at the end (most units sit at 0).
    if layout == "ties":
        assert tied_windows(net, init) > 0 and tied_windows(net, fast) > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("order", DESCENT_ORDERS)
def test_block_sweeps_with_reused_argmax_never_increase_the_energy(order, dtype):
    net, x, y, init = tie_problem("ties", dtype)
    for beta in (0.0, 0.3):
        problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=beta)
        sweep = BlockCoordinate(order=order).make_sweep(problem)  # one set of closures: the memo is used
        with torch.no_grad():
            state, f = init, problem.energy(init)
            tol = 1e-12 if dtype == torch.float64 else 1e-5 * float(f.abs().max())
            for _ in range(20):
                state = sweep(state)
                f_new = problem.energy(state)
                assert (f_new <= f + tol).all(), (f_new - f).max()
                f = f_new
            assert tied_windows(net, state) > 0


def test_argmax_memo_recomputes_after_in_place_changes():
    # The memo is keyed on the tensor object *and* its version counter, and on the weight's: writing into a
    # state or a weight between sweeps must not reuse the argmax of the old values.
    @torch.no_grad()
    def run(reuse: bool) -> tuple[Tensor, ...]:
        net, x, _, init = tie_problem("ties", torch.float64, seed=5)
        net._reuse_argmax = reuse
        sweep = BlockCoordinate(order="odd-even").make_sweep(TotalEnergy(net, x))
        gen = torch.Generator().manual_seed(0)
        state = sweep(init)
        for layer in (0, 1):
            state = sweep(state)
            with torch.no_grad():
                state[layer].copy_(torch.rand(state[layer].shape, generator=gen, dtype=torch.float64))
        state = sweep(state)
        with torch.no_grad():
            net.weights[1].mul_(-1.0)
            net.weights[2].copy_(torch.randn(net.weights[2].shape, generator=gen, dtype=torch.float64))
        for _ in range(3):
            state = sweep(state)
        return state

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False), strict=True))


def test_argmax_memo_is_off_under_autograd(monkeypatch):
    # Backprop through the solver runs the sweeps with autograd on: every convolution is recomputed (the
    # graph is the one of block_field), and the states are the same.
    net, x, _, init = tie_problem("ties", torch.float64)
    calls = count_convs(monkeypatch)
    problem = TotalEnergy(net, x)
    sweep = BlockCoordinate(order="odd-even").make_sweep(problem)
    with torch.enable_grad():
        state = init
        for _ in range(4):
            state = sweep(state)
    assert calls[0] == 1 + 2 * 2 * 4
    assert state[0].requires_grad
    net._reuse_argmax = False
    slow = relax(net, x, None, init, "odd-even", "free", 4, reuse=False)
    assert all(torch.equal(a.detach(), b) for a, b in zip(state, slow, strict=True))


def test_argmax_memo_under_autocast_and_inference_mode():
    # Whole relaxations under bf16 autocast and under inference mode (whose tensors have no version counter:
    # nothing is remembered for them) come out as when recomputing.
    net, x, _, init = tie_problem("ties", torch.float32)

    def run(reuse: bool) -> list[tuple[Tensor, ...]]:
        net._reuse_argmax = reuse
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = solve(net, x, BlockCoordinate(8, "forward"), init=init).state
        with torch.inference_mode():
            inference = solve(net, x, BlockCoordinate(8), init=init).state
        return [bf16, inference]

    for fast, slow in zip(run(True), run(False), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert run(True)[0][0].dtype == torch.bfloat16


@torch.no_grad()
def test_argmax_memo_keys_on_the_autocast_dtype():
    # The same state read with and without autocast: the convolution runs in a different dtype, so the
    # remembered pooling of one is not reused for the other.
    net, x, _, init = tie_problem("ties", torch.float32)
    memo = net._argmax_memo(1, net.prepare(x))
    assert memo is not None
    s = init[0]
    exact = F.max_pool2d(F.conv2d(s, net.weights[1], padding=1), 2, return_indices=True)
    for autocast in (False, True, False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pooled, idx = memo.pool(1, s)
            again = memo.pool(1, s)
            assert again[0] is pooled and again[1] is idx  # reused within the same setting
        assert pooled.dtype == (torch.bfloat16 if autocast else torch.float32)
        if not autocast:
            assert torch.equal(pooled, exact[0]) and torch.equal(idx, exact[1])


def test_a_system_with_a_memo_copies_and_pickles():
    net, x, _, _ = tie_problem("ties", torch.float64)
    eq = solve(net, x, BlockCoordinate(5))  # the memo lives with eq's closures
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert other._memo_handoff.ref is None
        assert all(
            torch.equal(a, b)
            for a, b in zip(solve(other, x, BlockCoordinate(5)).state, eq.state, strict=True)
        )
