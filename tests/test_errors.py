"""Every bad input is refused with its own error class and a message that names the offending value."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from eqprop import (
    BackpropThroughSolver,
    BlockCoordinate,
    ConfigError,
    CrossEntropyReadout,
    DeepHopfield,
    EnergySystem,
    EqProp,
    EqpropError,
    GradientFlow,
    ImplicitDiff,
    SquaredError,
    Variable,
    solve,
)
from eqprop.rules import RULES as RULE_KINDS

NET_SIZES = [6, 8, 7, 4]


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(0)
    net = DeepHopfield(NET_SIZES, generator=gen)
    return net, torch.rand(5, 6, generator=gen), torch.tensor([0, 1, 2, 3, 0])


def raises(match: str):
    return pytest.raises(ConfigError, match=re.escape(match))


# -- inputs and states -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(5, 7), "expects x of shape (batch, 6), got (5, 7)"),
        (torch.rand(6), "expects x of shape (batch, 6), got (6,)"),
        (torch.rand(5, 6, 1), "expects x of shape (batch, 6), got (5, 6, 1)"),
        (torch.ones(5, 6, dtype=torch.int64), "expects a floating-point x, got dtype torch.int64"),
        (np.zeros((5, 6)), "expects x as a torch.Tensor, got ndarray"),
    ],
    ids=["width", "no-batch", "extra-dim", "integer", "numpy"],
)
def test_bad_input_is_refused(problem, x, match):
    net, _, _ = problem
    with raises(match):
        solve(net, x, BlockCoordinate(3))


@pytest.mark.parametrize(
    ("system_dtype", "x_dtype"), [(torch.float32, torch.float64), (torch.float64, torch.float32)]
)
def test_input_of_another_dtype_than_the_parameters_is_refused(problem, system_dtype, x_dtype):
    """A float64 x into a float32 system (or the reverse) is refused up front, in one line naming both dtypes,
    not deep in a matmul."""
    net, x, y = problem
    net.to(system_dtype)
    x = x.to(x_dtype)
    names = [str(d).removeprefix("torch.") for d in (system_dtype, x_dtype)]
    message = f"DeepHopfield([6, 8, 7, 4]) has {names[0]} parameters but x is {names[1]}"
    for attempt in (
        lambda: net.check_input(x),
        lambda: solve(net, x, BlockCoordinate(3)),
        lambda: EqProp(beta=0.1).gradients(net, SquaredError(), BlockCoordinate(3), x, y),
    ):
        with raises(message) as info:
            attempt()
        assert "\n" not in str(info.value)
        assert info.value.hint is not None and str(system_dtype) in info.value.hint
    net.check_input(x.to(system_dtype))  # the same x in the system's dtype is fine


def test_shape_error_says_what_to_do(problem):
    net, _, _ = problem
    with pytest.raises(ConfigError) as info:
        solve(net, torch.rand(5, 2, 3), BlockCoordinate(3))
    assert "flatten" in info.value.hint
    assert isinstance(info.value, EqpropError) and isinstance(info.value, ValueError)


def test_init_state_of_wrong_length_is_refused(problem):
    net, x, _ = problem
    state = net.init_state(x)
    with raises("has 3 state variables (s1, s2, s3), got a state of 2 tensors"):
        solve(net, x, BlockCoordinate(3), init=state[:2])


def test_init_state_of_wrong_shape_is_refused(problem):
    net, x, _ = problem
    s1, s2, s3 = net.init_state(x)
    with raises("state variable s2 must have shape (5, 7), got (4, 7)"):
        solve(net, x, BlockCoordinate(3), init=(s1, s2[:4], s3))


# -- nudging, labels and targets -----------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [-1.0, -1.5])
def test_squared_error_refuses_beta_with_one_plus_beta_not_positive(problem, beta):
    net, x, y = problem
    with raises("needs 1 + beta > 0"):
        solve(net, x, BlockCoordinate(3), cost=SquaredError(), y=y, beta=beta)


def test_eqprop_checks_the_sign_its_variant_gives_beta(problem):
    net, x, y = problem
    with raises("beta=-1.0 makes the nudged output's block minimiser undefined (needs 1 + beta > 0)"):
        EqProp(beta=1.0, variant="centered").gradients(net, SquaredError(), BlockCoordinate(3), x, y)


@pytest.mark.parametrize("beta", [float("nan"), float("inf")])
def test_non_finite_beta_is_refused(problem, beta):
    net, x, y = problem
    with raises(f"beta={beta} is not a finite number"):
        solve(net, x, BlockCoordinate(3), cost=SquaredError(), y=y, beta=beta)


@pytest.mark.parametrize("kwargs", [{}, {"cost": SquaredError()}, {"y": torch.zeros(5, dtype=torch.int64)}])
def test_nudging_needs_a_cost_and_a_target(problem, kwargs):
    net, x, _ = problem
    with raises("solve(beta=0.5) nudges the output: pass cost=... and y=..."):
        solve(net, x, BlockCoordinate(3), beta=0.5, **kwargs)


BAD_TARGETS = {
    "label-too-big": (SquaredError(), [0, 1, 2, 4, 0], "labels must lie in [0, 4), got values in [0, 4]"),
    "label-negative": (SquaredError(), [0, -1, 2, 3, 0], "labels must lie in [0, 4), got values in [-1, 3]"),
    "label-past-classes": (
        CrossEntropyReadout(4, 3),
        [0, 1, 2, 3, 0],
        "labels must lie in [0, 3), got values in [0, 3]",
    ),
    "label-2d": (
        SquaredError(),
        torch.zeros(5, 1, dtype=torch.int64),
        "integer labels must have shape (batch,), got (5, 1)",
    ),
    "target-width": (
        SquaredError(),
        torch.rand(5, 3),
        "float targets must have the output's shape (5, 4), got (5, 3)",
    ),
    "target-1d": (
        SquaredError(),
        torch.rand(5),
        "float targets must have the output's shape (5, 4), got (5,)",
    ),
    "soft-target-width": (
        CrossEntropyReadout(4, 3),
        torch.rand(5, 4),
        "soft targets must have shape (batch, 3), got (5, 4)",
    ),
    "batch-mismatch": (SquaredError(), [0, 1, 2, 3], "x has 5 examples but y has 4"),
}
RULES = {
    "solve": None,
    "EqProp": EqProp(beta=0.1),
    "ImplicitDiff": ImplicitDiff(),
    "BackpropThroughSolver": BackpropThroughSolver(steps=2),
}


@pytest.mark.parametrize(("rule", "case"), [(rule, case) for rule in RULES for case in BAD_TARGETS])
def test_bad_targets_are_refused(problem, rule, case):
    net, x, _ = problem
    cost, y, match = BAD_TARGETS[case]
    y = torch.tensor(y) if isinstance(y, list) else y
    with raises(match):
        if RULES[rule] is None:
            solve(net, x, BlockCoordinate(3), cost=cost, y=y, beta=0.1)
        else:
            RULES[rule].gradients(net, cost, BlockCoordinate(3), x, y)


@pytest.mark.parametrize("out", ["bogus", "grads", ""])
@pytest.mark.parametrize("kind", RULE_KINDS)
def test_gradients_refuse_an_unknown_out(problem, kind, out):
    net, x, y = problem
    with raises(f"gradients(out={out!r}): choose None (return the estimate) or 'grad'"):
        RULE_KINDS[kind]().gradients(net, SquaredError(), BlockCoordinate(3), x, y, out=out)
    assert all(p.grad is None for p in net.parameters())


# -- constructors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: EqProp(beta=0), "EqProp(beta=0): beta must be a finite number > 0"),
        (lambda: EqProp(beta=-1), "EqProp(beta=-1): beta must be a finite number > 0"),
        (lambda: EqProp(beta=float("nan")), "EqProp(beta=nan): beta must be a finite number > 0"),
        (lambda: EqProp(beta="0.1"), "EqProp(beta='0.1'): beta must be a finite number > 0"),
        (lambda: EqProp(variant="foo"), "EqProp(variant='foo'): choose 'positive', 'negative' or 'centered'"),
        (lambda: BlockCoordinate(order="foo"), "BlockCoordinate(order='foo'): choose one of 'odd-even'"),
        (lambda: BlockCoordinate(iterations=-1), "BlockCoordinate(iterations=-1): need an integer >= 0"),
        (lambda: BlockCoordinate(iterations=2.5), "BlockCoordinate(iterations=2.5): need an integer >= 0"),
        (lambda: BlockCoordinate(tol=0), "BlockCoordinate(tol=0): need tol > 0"),
        (lambda: BlockCoordinate(check_every=0), "BlockCoordinate(check_every=0): need an integer >= 1"),
        (lambda: GradientFlow(step_size=2), "GradientFlow(step_size=2): need 0 < step_size <= 1"),
        (lambda: GradientFlow(step_size=0), "GradientFlow(step_size=0): need 0 < step_size <= 1"),
        (lambda: GradientFlow(tol=-1e-3), "GradientFlow(tol=-0.001): need tol > 0"),
        (lambda: ImplicitDiff(cg_iterations=0), "ImplicitDiff(cg_iterations=0): need >= 1"),
        (lambda: ImplicitDiff(cg_tol=0.0), "ImplicitDiff(cg_tol=0.0): need > 0"),
        (
            lambda: BackpropThroughSolver(steps=0),
            "BackpropThroughSolver(steps=0): need an integer >= 1 or None",
        ),
        (lambda: DeepHopfield([784]), "DeepHopfield(sizes=[784]): give at least two positive integer widths"),
        (lambda: DeepHopfield([784, 0]), "DeepHopfield(sizes=[784, 0]): give at least two"),
        (lambda: DeepHopfield([784, 10.0]), "DeepHopfield(sizes=[784, 10.0]): give at least two"),
        (lambda: DeepHopfield([4, 3, 2], gains=[1.0]), "DeepHopfield(gains=[1.0]): need one gain per weight"),
        (lambda: DeepHopfield([4, 3, 2], bounds=(1, 0)), "DeepHopfield(bounds=(1, 0)): low must be < high"),
        (lambda: DeepHopfield([4, 3, 2], bounds=(0, 0)), "DeepHopfield(bounds=(0, 0)): low must be < high"),
        (lambda: DeepHopfield([4, 3, 2], bounds=(0, 1, 2)), "DeepHopfield(bounds=(0, 1, 2)): give a pair"),
        (
            lambda: DeepHopfield([4, 3], output_bounds=(2, 1)),
            "DeepHopfield(output_bounds=(2, 1)): low must be",
        ),
        (lambda: DeepHopfield([4, 3], energy_form="foo"), "DeepHopfield(energy_form='foo'): choose 'boxed'"),
        (lambda: CrossEntropyReadout(0, 10), "CrossEntropyReadout(in_features=0, classes=10): need"),
        (lambda: CrossEntropyReadout(4, 1), "CrossEntropyReadout(in_features=4, classes=1): need"),
    ],
)
def test_bad_constructor_argument_is_refused(build, match):
    with raises(match):
        build()


class Quadratic(EnergySystem):
    """``E = ½‖s‖² − x·s`` with no block minimiser: only gradient flow can relax it."""

    def __init__(self) -> None:
        super().__init__()
        self.variables = (Variable("s", (3,)),)
        self.input_shape = (3,)

    def energy(self, x, state):
        (s,) = state
        return 0.5 * (s * s).sum(-1) - (x * s).sum(-1)


def test_block_coordinate_needs_a_block_minimizer():
    x = torch.rand(2, 3)
    with pytest.raises(ConfigError, match="Quadratic has no exact block minimiser") as info:
        solve(Quadratic(), x, BlockCoordinate(3))
    assert "GradientFlow" in info.value.hint
    torch.testing.assert_close(solve(Quadratic(), x, GradientFlow(200, step_size=0.5)).state[0], x)
