"""An Ising machine as Laydevant et al. train it: ±1 spins (a Hopfield net boxed to [−1, 1]), output duplication,
±1 one-hot targets, and couplings and fields clipped to [−1, 1]."""

from __future__ import annotations

import pytest
import torch

from eqprop import DeepHopfield, EqProp, SquaredError
from eqprop.errors import ConfigError
from eqprop.solvers import GibbsSampler


def test_duplicated_outputs_with_plus_minus_one_targets():
    cost = SquaredError(off_target=-1.0, duplicates=2)
    like = torch.zeros(2, 6)
    target = cost.prepare_target(torch.tensor([0, 2]), like)
    assert target.tolist() == [[1, 1, -1, -1, -1, -1], [-1, -1, -1, -1, 1, 1]]
    out = torch.tensor([[1.0, 1.0, -1.0, 1.0, -1.0, -1.0]])
    assert cost.predict((out,)).tolist() == [[2.0, 0.0, -2.0]]  # each class's block votes
    assert float(cost((out,), target[:1])) == pytest.approx(0.5 * 4)
    with pytest.raises(ConfigError, match="do not split"):
        cost.prepare_target(torch.tensor([0]), torch.zeros(1, 5))
    with pytest.raises(ConfigError, match="duplicates"):
        SquaredError(duplicates=0)
    plain = SquaredError()  # the defaults are the plain one-hot, bit for bit
    assert plain.prepare_target(torch.tensor([1]), torch.zeros(1, 3)).tolist() == [[0.0, 1.0, 0.0]]


def test_clipped_couplings_stay_within_their_bound_after_any_update():
    net = DeepHopfield([6, 5, 4], bounds=(-1.0, 1.0), output_bounds=(-1.0, 1.0), gains=5.0, clip=0.5)
    assert all(float(p.detach().abs().max()) <= 0.5 for p in net.parameters())  # clipped at construction too
    with torch.no_grad():
        for p in net.parameters():
            p.add_(3.0)
    net.constrain_parameters()
    assert all(float(p.detach().max()) == 0.5 for p in net.parameters())
    with pytest.raises(ConfigError, match="clip"):
        DeepHopfield([6, 4], clip=-1.0)


def test_a_spin_machine_learns_a_separable_toy_task_with_eqprop_and_annealing():
    """Two classes told apart by the sign of the first input: 600 single-example EqProp steps with a
    Gibbs anneal for the free phase and a reverse anneal from the free sample for the nudged one (β = 5) reach
    >= 80 % on fresh examples (chance: 50 %; this seed: above 90 %)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = DeepHopfield(
        [4, 8, 4], bounds=(-1.0, 1.0), output_bounds=(-1.0, 1.0), gains=1.0, clip=1.0, generator=g
    )
    cost = SquaredError(off_target=-1.0, duplicates=2)
    free = GibbsSampler(temperature=0.05, anneal_from=2.0, iterations=20)
    nudged = GibbsSampler(temperature=0.05, anneal_from=0.5, iterations=20)
    rule = EqProp(beta=5.0, variant="positive")
    opt = torch.optim.SGD(net.parameters(), lr=0.05)

    def batch(n: int):
        x = torch.randn(n, 4, generator=g)
        return x, (x[:, 0] > 0).long()

    def accuracy() -> float:
        x, y = batch(400)
        from eqprop import solve

        return float((cost.predict(solve(net, x, free).state).argmax(-1) == y).double().mean())

    for _ in range(600):
        x, y = batch(1)
        rule.gradients(net, cost, free, x, y, nudged_solver=nudged, out="grad")
        opt.step()
        net.constrain_parameters()
    assert accuracy() >= 0.8
