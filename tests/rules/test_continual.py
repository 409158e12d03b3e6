"""Continual EqProp: one parameter update per nudged step; C-EP → EqProp as the learning rate → 0."""

from __future__ import annotations

import copy

import pytest
import torch

from eqprop import CrossEntropyReadout, EqProp, GradientFlow, SquaredError
from eqprop.errors import ConfigError
from eqprop.rules import ContinualEqProp
from helpers import make_hopfield

FREE, NUDGED = GradientFlow(iterations=80, step_size=1.0), GradientFlow(iterations=6, step_size=1.0)


def _cep_step(net, x, y, variant: str, lr: float) -> tuple[dict[str, torch.Tensor], int]:
    """Parameters' change after one C-EP batch with SGD at ``lr``, divided by −lr, and the number of updates."""
    net = copy.deepcopy(net)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    calls = []

    def apply() -> None:
        calls.append(1)
        opt.step()

    est = ContinualEqProp(beta=0.1, variant=variant).gradients(
        net, SquaredError(), FREE, x, y, nudged_solver=NUDGED, out="grad", apply=apply
    )
    assert est.applied
    moved = {n: (before[n] - p.detach()) / lr for n, p in net.named_parameters()}
    for n, g in moved.items():  # the estimate sums what was applied
        assert torch.allclose(est.grads[f"system.{n}"], g, atol=1e-9 * (1 + float(g.abs().max())))
    return moved, len(calls)


@pytest.mark.parametrize(("variant", "updates"), [("positive", 6), ("negative", 6), ("centered", 12)])
def test_cep_tends_to_eqprop_as_the_learning_rate_vanishes(
    f64: torch.dtype, variant: str, updates: int
) -> None:
    net, x, y = make_hopfield([6, 8, 4], gains=0.8)
    ep = (
        EqProp(beta=0.1, variant=variant)
        .gradients(net, SquaredError(), FREE, x, y, nudged_solver=NUDGED)
        .grads
    )
    errors = []
    for lr in (1e-3, 1e-4, 1e-5):
        moved, calls = _cep_step(net, x, y, variant, lr)
        assert calls == updates
        num = sum(float((moved[n] - ep[f"system.{n}"]).norm() ** 2) for n in moved) ** 0.5
        den = sum(float(ep[f"system.{n}"].norm() ** 2) for n in moved) ** 0.5
        errors.append(num / den)
    assert errors[2] < 1e-3
    assert 5 < errors[0] / errors[1] < 20 and 5 < errors[1] / errors[2] < 20  # O(lr)


def test_without_a_callback_it_is_the_eqprop_estimate(f64: torch.dtype) -> None:
    net, x, y = make_hopfield([6, 8, 4])
    cep = ContinualEqProp(beta=0.1, variant="centered").gradients(net, SquaredError(), FREE, x, y)
    ep = EqProp(beta=0.1, variant="centered").gradients(net, SquaredError(), FREE, x, y)
    assert not cep.applied
    for k in ep.grads:
        assert torch.equal(cep.grads[k], ep.grads[k])


def test_bad_settings(f64: torch.dtype) -> None:
    net, x, y = make_hopfield([6, 8, 4])
    with pytest.raises(ConfigError, match="readout"):
        ContinualEqProp().gradients(
            net, CrossEntropyReadout(4, 3), FREE, x, y % 3, out="grad", apply=lambda: None
        )
    with pytest.raises(ConfigError, match="all-reduce"):
        ContinualEqProp().check_data_parallel(2)
    with pytest.raises(ConfigError, match="beta"):
        ContinualEqProp(beta=float("nan"))
