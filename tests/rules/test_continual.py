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


def test_continual_vector_field_tends_to_its_fixed_weight_sum(f64: torch.dtype) -> None:
    """C-VF: one step per nudged step of -(post[t+1] - post[t]) x pre[t] / beta. As the rate vanishes, the summed
    update over a batch tends to that sum along the nudged trajectory with the weights held fixed, at rate O(lr)."""
    from eqprop import TotalEnergy
    from eqprop.systems import VectorFieldHopfield

    gen = torch.Generator().manual_seed(3)
    net = VectorFieldHopfield([6, 8, 4], gains=0.8, generator=gen).double()
    x, y = torch.rand(5, 6, generator=gen, dtype=torch.float64), torch.randint(0, 4, (5,), generator=gen)
    rule = ContinualEqProp(beta=0.1, variant="positive", update="vector_field")
    with (
        torch.no_grad()
    ):  # the reference: the nudged trajectory at fixed weights, its per-step VF contrasts summed
        state = EqProp().gradients(net, SquaredError(), FREE, x, y).phases[0].state
        problem = TotalEnergy(net, x, cost=SquaredError(), y=y, beta=0.1)
        ref = None
        for _ in range(NUDGED.iterations):
            new = GradientFlow(iterations=1, step_size=1.0).step(problem, state)
            g = net.vector_field_contrast(x, state, state, new, scale=1 / 0.1)
            ref = g if ref is None else {k: ref[k] + g[k] for k in g}
            state = new
    errors = []
    for lr in (1e-3, 1e-4, 1e-5):
        moved_net = copy.deepcopy(net)
        before = {n: p.detach().clone() for n, p in moved_net.named_parameters()}
        opt = torch.optim.SGD(moved_net.parameters(), lr=lr)
        rule.gradients(
            moved_net, SquaredError(), FREE, x, y, nudged_solver=NUDGED, out="grad", apply=opt.step
        )
        moved = {n: (before[n] - p.detach()) / lr for n, p in moved_net.named_parameters()}
        num = sum(float((moved[n] - ref[n]).norm() ** 2) for n in ref) ** 0.5
        errors.append(num / sum(float(g.norm() ** 2) for g in ref.values()) ** 0.5)
    assert errors[2] < 1e-3
    assert 5 < errors[0] / errors[1] < 20 and 5 < errors[1] / errors[2] < 20
    with pytest.raises(ConfigError, match="backward weights"):
        rule.gradients(
            make_hopfield([6, 8, 4])[0], SquaredError(), FREE, x, y, out="grad", apply=lambda: None
        )
