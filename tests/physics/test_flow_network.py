"""Flow (resistor) networks on graphs, the direct solver, and Stern et al.'s coupled learning on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqprop import DirectSolver, EqProp, ImplicitDiff, SquaredError, solve
from eqprop.errors import ConfigError
from eqprop.rules import CoupledLearning
from eqprop.systems import FlowNetwork
from eqprop.systems.flow_network import pick_terminals, random_graph


def _net(gen: torch.Generator, *, nodes: bool = False) -> FlowNetwork:
    """A 40-node, 160-edge random network: inputs on 6 edges (or 6 nodes), outputs on 3 edges."""
    pairs = random_graph(40, 160, gen)
    on = "nodes" if nodes else "edges"
    sources, targets = pick_terminals(40, pairs, [0], (on, 6, None), ("edges", 3, None), gen)
    return FlowNetwork(
        40,
        pairs,
        ground=[0],
        source_nodes=sources if nodes else (),
        source_edges=() if nodes else sources,
        target_edges=targets,
        generator=gen,
    )


def _kkt(net: FlowNetwork, x: torch.Tensor, clamp: torch.Tensor | None = None, beta: float = 0.0, y=None):
    """The textbook answer: minimise ½Σk(Bp)² (+ β/2‖o − y‖²) over all node pressures under the constraints, by a
    dense KKT solve with Lagrange multipliers, one example at a time; returns the output drops/pressures."""
    pairs = net.edge_index.numpy()
    n, e = net.n_nodes, len(pairs)
    b = np.zeros((e, n))
    b[np.arange(e), pairs[:, 0]] += 1
    b[np.arange(e), pairs[:, 1]] -= 1
    lap = b.T @ (net.conductances.detach().numpy()[:, None] * b)
    t = net.terminals
    rows = []
    for node in t["ground"] + t["source_nodes"]:
        rows.append(np.eye(n)[node])
    rows += [b[edge] for edge in t["source_edges"]]
    readout = np.array(
        [np.eye(n)[node] for node in t["target_nodes"]] + [b[edge] for edge in t["target_edges"]]
    )
    if clamp is not None:
        rows += list(readout)
    c = np.array(rows)
    hess = lap + beta * readout.T @ readout
    kkt = np.block([[hess, c.T], [c, np.zeros((len(c), len(c)))]])
    outs = []
    for i in range(len(x)):
        d = np.r_[np.zeros(len(t["ground"])), x[i].numpy()]
        if clamp is not None:
            d = np.r_[d, clamp[i].numpy()]
        force = beta * readout.T @ y[i].numpy() if beta else np.zeros(n)
        p = np.linalg.solve(kkt, np.r_[force, d])[:n]
        outs.append(readout @ p)
    return np.array(outs)


@pytest.mark.parametrize("nodes", [False, True])
def test_the_batched_solve_is_the_constrained_minimum(
    f64: torch.dtype, gen: torch.Generator, nodes: bool
) -> None:
    """Free, nudged and clamped: the outputs of one factorisation per phase, every example a right-hand side,
    equal a dense KKT solve per example to 1e-10; the sparse factorisation equals the dense one."""
    net = _net(gen, nodes=nodes)
    x, y = torch.rand(7, 6, generator=gen), torch.rand(7, 3, generator=gen)
    free = solve(net, x, DirectSolver())
    assert np.abs(free.state[1].numpy() - _kkt(net, x)).max() < 1e-10
    nudged = solve(net, x, DirectSolver(), cost=SquaredError(), y=y, beta=0.7)
    assert np.abs(nudged.state[1].numpy() - _kkt(net, x, beta=0.7, y=y)).max() < 1e-10
    clamped = solve(net, x, DirectSolver(), clamp={1: y})
    assert torch.equal(clamped.state[1], y)
    assert (
        np.abs(net.drops(x, clamped.state).numpy()[:, net.terminals["target_edges"]] - y.numpy()).max()
        < 1e-12
    )
    for eq in (free, nudged, clamped):
        assert float(eq.stats.residual.max()) < 1e-10  # ∂F/∂s = 0 on the free variables
    for kw in ({}, {"cost": SquaredError(), "y": y, "beta": 0.7}, {"clamp": {1: y}}):
        a = solve(net, x, DirectSolver(factor="sparse"), **kw).state
        b = solve(net, x, DirectSolver(factor="dense"), **kw).state
        assert max(float((u - v).abs().max()) for u, v in zip(a, b, strict=True)) < 1e-10
    # the input edges carry the imposed drops
    drops = net.drops(x, free.state)[:, net.terminals["source_edges"]]
    if not nodes:
        assert float((drops - x).abs().max()) < 1e-12


def test_eqprop_matches_implicit_differentiation(f64: torch.dtype, gen: torch.Generator) -> None:
    """Cosine >= 0.9999 at β = 1e-3, error O(β) one-sided and O(β²) centered (float64)."""
    net = _net(gen)
    x, y = torch.rand(8, 6, generator=gen), torch.rand(8, 3, generator=gen)
    solver = DirectSolver()
    ref = ImplicitDiff().gradients(net, SquaredError(), solver, x, y).grads["system.conductances"]
    for variant, rate in (("positive", 10), ("centered", 100)):
        errs = []
        for beta in (1e-2, 1e-3):
            est = EqProp(beta=beta, variant=variant).gradients(net, SquaredError(), solver, x, y)
            g = est.grads["system.conductances"]
            errs.append(float((g - ref).norm() / ref.norm()))
            if beta == 1e-3:
                assert float(g @ ref / (g.norm() * ref.norm())) >= 0.9999
        assert rate / 1.5 < errs[0] / errs[1] < rate * 1.5, (variant, errs)


def test_coupled_learning_is_sterns_update(f64: torch.dtype, gen: torch.Generator) -> None:
    """Stern's notebook, written out: ``ΔK = −lr·mean((½(Δp_C² − Δp_F²)/η)·wrong)·B/(#wrong)``, with the outputs
    clamped at ``o_F + η(y − o_F)`` and ``wrong`` the examples whose output is not nearest their class target."""
    net = _net(gen)
    x, labels = torch.rand(12, 6, generator=gen), torch.randint(0, 3, (12,), generator=gen)
    cost = SquaredError(class_means=3, spread=2.0, outputs=3)
    free = solve(net, x, DirectSolver())
    cost.calibrate(free.state[1], labels)
    eta, lr = 1e-3, 1e-4
    targets = cost.class_targets[labels]
    o_f = free.state[1]
    clamped = solve(net, x, DirectSolver(), clamp={1: o_f + eta * (targets - o_f)})
    d_f, d_c = net.drops(x, free.state), net.drops(x, clamped.state)
    dist = torch.cdist(o_f, cost.class_targets)
    wrong = (dist.argmin(1) != labels).double()
    assert 0 < wrong.sum() < len(wrong)  # some right, some wrong: the averaging is exercised
    dkl = 0.5 * (d_c**2 - d_f**2) / eta
    expect = -lr * (dkl * wrong[:, None]).mean(0) * len(wrong) / wrong.sum()
    rule = CoupledLearning(beta=eta, variant="positive", misclassified_only=True)
    grads = rule.gradients(net, cost, DirectSolver(), x, labels).grads["system.conductances"]
    assert torch.allclose(-lr * grads, expect, rtol=1e-6, atol=1e-18)
    everyone = CoupledLearning(beta=eta, variant="positive").gradients(net, cost, DirectSolver(), x, labels)
    assert torch.allclose(everyone.grads["system.conductances"], dkl.mean(0), rtol=1e-6, atol=1e-18)


def test_class_targets(f64: torch.dtype) -> None:
    cost = SquaredError(class_means=2, spread=2.0, outputs=2)
    assert cost.needs_calibration
    outputs = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]])
    cost.calibrate(outputs, torch.tensor([0, 0, 1, 1]))
    assert not cost.needs_calibration
    # m = (1, 2); m0 = (1, 0), m1 = (1, 4): T = m + 2(m_c − m)
    assert torch.equal(cost.class_targets, torch.tensor([[1.0, -2.0], [1.0, 6.0]]))
    scores = cost.predict((torch.tensor([[1.0, -1.0], [1.0, 5.0]]),))
    assert scores.argmax(1).tolist() == [0, 1]
    with pytest.raises(ConfigError, match="not set"):
        SquaredError(class_means=2, outputs=2).prepare_target(torch.tensor([0]), torch.zeros(1, 2))


def test_bounds_are_enforced_and_bad_graphs_refused(f64: torch.dtype, gen: torch.Generator) -> None:
    net = _net(gen)
    with torch.no_grad():
        net.conductances[:3] = torch.tensor([-1.0, 0.0, 1e9])
    net.constrain_parameters()
    assert net.conductances[:3].tolist() == [1e-6, 1e-6, 1e4]
    square = [[0, 1], [1, 2], [2, 3], [3, 0]]
    with pytest.raises(ConfigError, match="no path to a ground"):  # node 4 hangs on nothing
        FlowNetwork(5, square, target_edges=[1])
    with pytest.raises(ConfigError, match="no path to a ground"):  # two pieces, one grounded
        FlowNetwork(6, [*square, [4, 5]], target_edges=[1])
    with pytest.raises(ConfigError, match="self-loop"):
        FlowNetwork(4, [[0, 1], [2, 2]], target_edges=[0])
    with pytest.raises(ConfigError, match="loop of source/target edges"):
        FlowNetwork(4, square, source_edges=[0, 1, 2], target_edges=[3])
    with pytest.raises(ConfigError, match="over-determined"):  # edge 0 ties the ground to the source node
        FlowNetwork(4, square, source_nodes=[1], source_edges=[0], target_edges=[2])
    with pytest.raises(ConfigError, match="both a ground and a target"):
        FlowNetwork(4, square, source_nodes=[1], target_nodes=[0])
    with pytest.raises(ConfigError, match="k_min"):
        FlowNetwork(4, square, target_edges=[0], bounds=(-1.0, 1.0))
    with pytest.raises(ConfigError, match="no output"):
        FlowNetwork(4, square)
    with pytest.raises(ConfigError, match="outside"):
        FlowNetwork(4, [[0, 1], [1, 7]], target_edges=[0])
