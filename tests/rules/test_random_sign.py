"""EqProp with a random sign (Laborieux et al. 2021): each batch's one-sided nudge goes one way or the other."""

from __future__ import annotations

import pytest
import torch

from eqprop import BlockCoordinate, EqProp, SquaredError
from eqprop.errors import ConfigError
from helpers import assert_same, make_hopfield


def test_each_batch_is_the_positive_or_the_negative_estimate(f64: torch.dtype) -> None:
    net, x, y = make_hopfield([6, 8, 4])
    solver, cost = BlockCoordinate(iterations=60), SquaredError()
    pos = EqProp(beta=0.1, variant="positive").gradients(net, cost, solver, x, y).grads
    neg = EqProp(beta=0.1, variant="negative").gradients(net, cost, solver, x, y).grads
    rule = EqProp(beta=0.1, variant="positive", random_sign=True)
    torch.manual_seed(0)
    draws = [rule.gradients(net, cost, solver, x, y).grads for _ in range(12)]
    sides = ["+" if torch.equal(d["system.weights.0"], pos["system.weights.0"]) else "-" for d in draws]
    for d, side in zip(draws, sides, strict=True):
        assert_same(d, pos if side == "+" else neg)
    assert set(sides) == {"+", "-"}  # both signs in 12 draws (probability 1 - 2**-11)
    torch.manual_seed(0)  # the draws come from torch's global generator: reproducible
    again = [
        "+"
        if torch.equal(
            rule.gradients(net, cost, solver, x, y).grads["system.weights.0"], pos["system.weights.0"]
        )
        else "-"
        for _ in range(12)
    ]
    assert again == sides


def test_random_sign_needs_a_one_sided_variant() -> None:
    with pytest.raises(ConfigError, match="one-sided"):
        EqProp(beta=0.1, variant="centered", random_sign=True)
    with pytest.raises(ConfigError, match="random_sign"):
        EqProp(beta=0.1, variant="positive", random_sign=1)  # type: ignore[arg-type]
