"""The bias of EqProp shrinks with β at the order it claims: O(β) one-sided, O(β²) centered.

Like an ODE solver's order test: measure the error against the exact gradient over a geometric range of β
and fit the slope of log(error) against log(β).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqprop import BlockCoordinate, EqProp, ImplicitDiff, SquaredError
from helpers import SMALL_SYSTEMS, rel_err

SOLVER = BlockCoordinate(300)
BETAS = np.geomspace(1e-4, 3e-3, 5)
"""Small enough that no nudged phase moves a unit across a bound (that would add a kink to s*(β))."""


def bias_slope(name: str, variant: str) -> float:
    net, x, y = SMALL_SYSTEMS[name]()
    cost = SquaredError()
    exact = ImplicitDiff().gradients(net, cost, SOLVER, x, y).grads
    errors = []
    for beta in BETAS:
        est = EqProp(beta=float(beta), variant=variant).gradients(net, cost, SOLVER, x, y)
        free_set = net.active_mask(est.phases[0].state)
        for eq in est.phases[1:]:
            assert all(torch.equal(a, b) for a, b in zip(net.active_mask(eq.state), free_set, strict=True))
        errors.append(rel_err(est.grads, exact))
    return float(np.polyfit(np.log(BETAS), np.log(errors), 1)[0])


@pytest.mark.parametrize("variant", ["positive", "negative", "centered"])
@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_eqprop_bias_shrinks_at_the_variants_order(name, variant):
    assert bias_slope(name, variant) == pytest.approx(EqProp(variant=variant).bias_order, abs=0.2)


def test_bias_orders_are_declared():
    assert [EqProp(variant=v).bias_order for v in ("positive", "negative", "centered")] == [1, 1, 2]
    assert ImplicitDiff.bias_order is None
