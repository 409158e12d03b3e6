"""SPICE export and cross-check (eqprop.analysis.spice): the deck says what the netlist says (R = 1/g, current-source
sign, diode orientation), and ngspice's steady state agrees with ours within the tolerance the module states
(forward drop and leakage of its near-ideal diodes): on hand-solved circuits, on a random DeepResistive and on a
random non-layered ResistiveCircuit; a deck with a deliberate mistake does not. The tests that run ngspice
skip where it is not installed."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from eqprop import BlockCoordinate, ConfigError, DeepResistive, solve
from eqprop.analysis.spice import (
    DiodeModel,
    NgspiceNotFoundError,
    SpiceError,
    random_deep_resistive,
    run_ngspice,
    spice_check,
    spice_tolerance,
    to_spice,
)
from eqprop.cli import main
from eqprop.systems.netlist import Netlist, ResistiveCircuit

needs_ngspice = pytest.mark.skipif(
    shutil.which("ngspice") is None,
    reason="ngspice is not installed (apt-get install ngspice; scripts/test installs it when run as root)",
)


def element_lines(deck: str) -> set[str]:
    return {ln for ln in deck.splitlines() if ln[:1] in ("R", "V", "I", "D")}


def tiny_netlist() -> Netlist:
    """vin (1.5 V) -2 Ω- n2 -(open)- n3 -0.25 Ω- ground; 0.25 A into n2; diodes ground->n2 and n3->ground."""
    return Netlist(
        3,
        resistors=[(1, 2), (2, 3), (3, 0)],
        conductances=[0.5, 0.0, 4.0],
        diodes=[(0, 2), (3, 0)],
        sources=[1],
        voltages=[1.5],
        injections=[2],
        currents=[0.25],
        outputs=[3],
        names={1: "vin"},
    )


# -- the deck (no ngspice needed) ---------------------------------------------------------------------------------
def test_deck_has_one_element_per_part_with_spice_conventions():
    deck = to_spice(tiny_netlist(), title="tiny")
    assert deck.splitlines()[0] == "tiny"
    assert element_lines(deck) == {
        "V0 vin 0 DC 1.5",
        "I0 0 n2 DC 0.25",  # SPICE pushes current from its first node through the source into the second
        "R0 vin n2 2.0",  # R = 1/g
        "R2 n3 0 0.25",  # R1 (g = 0) is an open circuit: left out
        "D0 0 n2 dideal",  # anode ground, cathode n2: V(n2) >= 0
        "D1 n3 0 dideal",  # anode n3, cathode ground: V(n3) <= 0
    }
    assert ".model dideal d(is=1e-09 n=0.0001)" in deck
    assert ".op" in deck.splitlines() and deck.rstrip().endswith(".end")
    options = next(ln for ln in deck.splitlines() if ln.startswith(".options"))
    for key in ("reltol=1e-09", "vntol=1e-12", "abstol=1e-15", "gmin=1e-15"):
        assert key in options.split()


def test_deck_values_read_back_exactly():
    g = 1.0 / 3.0
    net = Netlist(2, resistors=[(1, 2), (2, 0)], conductances=[g, 0.7], sources=[1], voltages=[math.pi])
    lines = element_lines(to_spice(net))
    r0 = next(ln for ln in lines if ln.startswith("R0"))
    assert float(r0.split()[-1]) == 1.0 / g
    assert float(next(ln for ln in lines if ln.startswith("V0")).split()[-1]) == math.pi


@pytest.mark.parametrize(
    ("names", "match"),
    [({1: "in put"}, "letters"), ({1: "A", 2: "a"}, "same SPICE name"), ({2: "gnd"}, "gnd")],
)
def test_node_names_must_be_spice_safe(names, match):
    net = Netlist(2, resistors=[(1, 2), (2, 0)], conductances=[1.0, 1.0], names=names)
    with pytest.raises(ConfigError, match=match):
        to_spice(net)


def test_diode_model_forward_drop_is_shockley():
    model = DiodeModel(saturation_current=1e-9, emission=1e-4)
    vt = 1.380649e-23 * 300.15 / 1.602176634e-19
    assert model.forward_drop(1.0) == pytest.approx(1e-4 * vt * math.log(1 + 1e9), rel=1e-12)
    assert model.forward_drop(0.0) == 0.0
    with pytest.raises(ConfigError):
        DiodeModel(emission=0.0)


def test_missing_ngspice_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(NgspiceNotFoundError, match="not installed") as err:
        run_ngspice(to_spice(tiny_netlist()))
    assert "apt-get install ngspice" in (err.value.hint or "")
    with pytest.raises(NgspiceNotFoundError):
        run_ngspice("x", executable="/nonexistent/ngspice")


def test_spice_check_wants_a_resistive_network():
    from eqprop import DeepHopfield

    with pytest.raises(ConfigError, match="not a resistive network"):
        spice_check(DeepHopfield([3, 4, 2]), torch.rand(3))


def test_tolerance_is_infinite_where_its_argument_does_not_apply():
    net = Netlist(
        3, resistors=[(1, 2), (2, 3)], conductances=[1.0, 1.0], diodes=[(2, 3)], sources=[1], voltages=[1.0]
    )
    bound = spice_tolerance(net, torch.zeros(4))
    assert bound["tolerance"] == math.inf and "two free nodes" in bound["note"]


# -- against ngspice ------------------------------------------------------------------------------------------------
@needs_ngspice
def test_ngspice_errors_carry_its_output():
    bad = to_spice(tiny_netlist()).replace("R0 vin n2 2.0", "R0 vin n2 bogus")
    with pytest.raises(SpiceError, match="ngspice failed") as err:
        run_ngspice(bad)
    assert "bogus" in str(err.value)


def hand_circuit() -> tuple[Netlist, torch.Tensor]:
    """Hand-solved: a divider with a current source, a diode clamping a node, and a diode that blocks.

    - n2: 2 V -(1 S)- n2 -(3 S)- ground, 0.5 A into n2: V = (2·1 + 0.5)/(1 + 3) = 0.625 V.
    - n5: n3 -(2 S)- n5 -(2 S)- vin, diode n5 -> ref (a 0.5 V source; V ≤ 0.5): the divider would give 1 V
      (with n3 at 0), so the diode clamps n5 at 0.5 V, carrying 2·(2 − 0.5) + 2·(0 − 0.5) = 2 A.
    - n3: 2 V -(0.5 S)- n3 -(0.5 S)- ground, n3 -(2 S)- n5, diode n3 -> ground (V ≤ 0): unclamped it would
      sit at (0.5·2 + 2·0.5)/3 V > 0, so the diode clamps it at 0, carrying 0.5·2 + 2·0.5 = 2 A.
    - n4: 2 V -(1 S)- n4 -(1 S)- ground, diode ground -> n4 (V ≥ 0): blocks, V = 1 V.
    """
    net = Netlist(
        6,
        resistors=[(1, 2), (2, 0), (1, 3), (3, 0), (1, 4), (4, 0), (3, 5), (5, 1)],
        conductances=[1.0, 3.0, 0.5, 0.5, 1.0, 1.0, 2.0, 2.0],
        diodes=[(3, 0), (0, 4), (5, 6)],
        sources=[1, 6],
        voltages=[2.0, 0.5],
        injections=[2],
        currents=[0.5],
        outputs=[2],
        names={1: "vin", 6: "ref"},
    )
    exact = torch.tensor([0.0, 2.0, 0.625, 0.0, 1.0, 0.5, 0.5], dtype=torch.float64)
    return net, exact


@needs_ngspice
def test_hand_solved_circuit_agrees_with_ngspice():
    net, exact = hand_circuit()
    volts = run_ngspice(to_spice(net))
    spice = torch.tensor([0.0] + [volts[net.name(i).lower()] for i in range(1, 7)], dtype=torch.float64)
    bound = spice_tolerance(net, exact)
    assert bound["kcl_residual"] < 1e-12 and bound["conducting_diodes"] == 2
    assert bound["max_diode_current"] == pytest.approx(2.0)
    err = (spice - exact).abs()
    assert float(err.max()) <= bound["tolerance"] < 1e-4
    # where no diode conducts, SPICE is exact to its own tolerance; the clamped nodes sit one forward drop off
    assert float(err[[1, 2, 4, 6]].max()) < 1e-8
    drop = DiodeModel().forward_drop
    assert float(spice[3]) == pytest.approx(drop(2.0), rel=1e-3)  # n3 -> ground conducts 2 A
    assert float(spice[5]) - 0.5 == pytest.approx(drop(2.0), rel=1e-3)
    # and through the trainable system compiled from the same netlist, solved by our block solver
    circuit = ResistiveCircuit(net, inputs=[(0, 0, 1.0)], dtype=torch.float64)
    result = spice_check(circuit, torch.tensor([2.0], dtype=torch.float64))
    assert result["passed"], result
    assert result["max_abs_dv"] == pytest.approx(float(err.max()), rel=1e-6)


def random_netlist(n: int, seed: int) -> tuple[ResistiveCircuit, torch.Tensor]:
    """A random non-layered circuit of ``n`` nodes: a random spanning tree (with ground) plus ``2n`` random
    edges, 10 % of them open; 6 voltage sources (4 driven by the input, 2 constant); diodes to ground or to a
    constant source, either way round, at 40 % of the free nodes; current sources at half of them; three
    output nodes."""
    gen = torch.Generator().manual_seed(seed)
    perm = (torch.randperm(n, generator=gen) + 1).tolist()
    sources, free = perm[:6], perm[6:]
    nodes = [0, *perm]
    edges: set[tuple[int, int]] = set()
    tree = set()
    for k in range(1, len(nodes)):
        a, b = nodes[k], nodes[int(torch.randint(0, k, (1,), generator=gen))]
        tree.add((min(a, b), max(a, b)))
    edges |= tree
    while len(edges) < len(tree) + 2 * n:
        a, b = torch.randint(0, n + 1, (2,), generator=gen).tolist()
        if a != b:
            edges.add((min(a, b), max(a, b)))
    edge_list = sorted(edges)
    g = 0.05 + 2 * torch.rand(len(edge_list), generator=gen, dtype=torch.float64)
    opened = (torch.rand(len(edge_list), generator=gen) < 0.1) & torch.tensor(
        [e not in tree for e in edge_list]
    )
    g[opened] = 0.0
    const = sources[4:]
    diodes = []
    for v in free:
        if float(torch.rand(1, generator=gen)) < 0.4:
            to_ground = float(torch.rand(1, generator=gen)) < 0.7
            ref = 0 if to_ground else const[int(torch.randint(0, 2, (1,), generator=gen))]
            diodes.append((ref, v) if float(torch.rand(1, generator=gen)) < 0.5 else (v, ref))
    injections = [v for v in free if float(torch.rand(1, generator=gen)) < 0.5]
    with_diode = {v for d in diodes for v in d}
    neighbours = {v: {b if a == v else a for a, b in edge_list if v in (a, b)} for v in free}
    outputs: list[int] = []
    for v in free:
        if v not in with_diode and not neighbours[v] & set(outputs) and len(outputs) < 3:
            outputs.append(v)
    net = Netlist(
        n,
        resistors=edge_list,
        conductances=g,
        diodes=diodes,
        sources=sources,
        voltages=6 * torch.rand(6, generator=gen, dtype=torch.float64) - 3,
        injections=injections,
        currents=torch.randn(len(injections), generator=gen, dtype=torch.float64),
        outputs=outputs,
    )
    circuit = ResistiveCircuit(net, inputs=[(s, s, 2.0) for s in range(4)], dtype=torch.float64)
    return circuit, torch.rand(4, generator=gen, dtype=torch.float64)


def random_drn(seed: int = 0) -> tuple[DeepResistive, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    net = DeepResistive([10, 24, 16, 4], input_gain=3.0, generator=gen).double()
    with torch.no_grad():
        for b in net.biases:
            b.copy_(0.5 * torch.randn(b.shape, generator=gen, dtype=torch.float64))
    return net, torch.rand(10, generator=gen, dtype=torch.float64)


@needs_ngspice
@pytest.mark.parametrize("seed", [0, 1])
def test_random_deep_resistive_network_agrees_with_ngspice(seed):
    net, x = random_drn(seed)
    result = spice_check(net, x)
    assert result["nodes"] == 64 and result["diodes"] == 40
    assert 0 < result["conducting_diodes"] < 40  # the diodes' kinks are exercised both ways
    assert result["passed"], result
    assert result["max_abs_dv"] > 0 and result["tolerance"] < 1e-4
    assert result["kcl_residual"] < 1e-9


@needs_ngspice
def test_a_sharper_diode_gives_a_sharper_agreement():
    """With N = 1e-6 the forward drop, and so the stated tolerance, falls below a microvolt (on 3 V inputs)."""
    net, x = random_drn(0)
    result = spice_check(net, x, diode_model=DiodeModel(emission=1e-6))
    assert result["passed"], result
    assert result["tolerance"] < 1e-6


@needs_ngspice
def test_a_given_float32_state_is_checked_with_its_rounding():
    net, x = random_drn(0)
    net32 = net.float()
    eq = solve(net32, x.float()[None], BlockCoordinate(200, order="odd-even"))
    result = spice_check(net32, x.float(), eq.state)
    assert result["passed"], result
    assert result["kcl_residual"] > 1e-9  # float32 rounding, bounded by the solver term
    assert result["solver"] > 0


@needs_ngspice
@pytest.mark.parametrize(("n", "seed"), [(60, 0), (90, 7)])
def test_random_non_layered_circuit_agrees_with_ngspice(n, seed):
    circuit, x = random_netlist(n, seed)
    result = spice_check(circuit, x)
    assert result["nodes"] == n and result["diodes"] >= 10
    assert 0 < result["conducting_diodes"] < result["diodes"]
    assert result["passed"], result
    assert result["tolerance"] < 1e-4


@needs_ngspice
def test_a_wrong_deck_is_caught():
    """The check has teeth: flip the current sources' sign in the deck and SPICE lands far off."""
    circuit, x = random_netlist(60, 0)
    net = circuit.to_netlist(x)
    eq = solve(circuit, x[None], BlockCoordinate(5000, order="forward", tol=1e-14))
    ours = circuit.node_potentials(x[None], eq.state)[0].detach()
    flipped = Netlist(
        net.n_nodes,
        resistors=net.resistors,
        conductances=net.conductances,
        diodes=net.diodes,
        sources=net.sources,
        voltages=net.voltages,
        injections=net.injections,
        currents=-net.currents,
        outputs=net.outputs,
    )
    volts = run_ngspice(to_spice(flipped))
    spice = torch.tensor([0.0] + [volts[net.name(i)] for i in range(1, net.n_nodes + 1)], dtype=torch.float64)
    assert float((spice - ours).abs().max()) > 1000 * spice_tolerance(net, ours)["tolerance"]


@needs_ngspice
def test_floating_nodes_are_left_out():
    net = Netlist(
        3,
        resistors=[(1, 2), (2, 0), (2, 3)],
        conductances=[1.0, 1.0, 0.0],
        sources=[1],
        voltages=[1.0],
        outputs=[2],
    )
    circuit = ResistiveCircuit(net, inputs=[(0, 0, 1.0)], dtype=torch.float64)
    result = spice_check(circuit, torch.ones(1, dtype=torch.float64))
    assert result["floating_nodes"] == ["n3"] and result["passed"]
    assert result["max_abs_dv"] < 1e-8


@needs_ngspice
def test_cli_spice_check_random(capsys, tmp_path):
    deck = tmp_path / "circuit.cir"
    assert main(["spice-check", "--random", "60", "--netlist-out", str(deck)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["passed"] and result["random"] == 60 and result["nodes"] == 60
    assert result["max_abs_dv"] <= result["tolerance"]
    assert "PASS" in captured.err and "spice-check" in captured.err
    assert deck.read_text().startswith("eqprop DeepResistive")


def test_cli_spice_check_rejects_a_non_resistive_preset(capsys):
    assert main(["spice-check", "--preset", "fmnist-quick"]) == 2
    err = capsys.readouterr().err
    assert "'fmnist-quick' is a DeepHopfield, which has no netlist" in err
    assert "resistive-network preset" in err


def test_random_deep_resistive_has_about_the_nodes_asked_for():
    for n in (12, 60, 200, 1000):
        net, x = random_deep_resistive(n, seed=1)
        total = 2 * net.sizes[0] + sum(net.sizes[1:])
        assert abs(total - n) <= max(3, n // 20) and x.shape == (net.sizes[0],)
    with pytest.raises(ConfigError):
        random_deep_resistive(5)


@needs_ngspice
def test_cli_spice_check_a_trained_checkpoint(capsys, tmp_path, fake_data):
    run = tmp_path / "run"
    train = ["train", "--preset", "drn-xs", "--set", "system.sizes=[784,8,10]", "--set", "rule.beta=0.1"]
    train += ["--epochs", "1", "--batch-size", "64"]
    train += ["--data-dir", str(fake_data), "--out", str(run), "--no-progress", "--threads", "1"]
    assert main(train) == 0
    capsys.readouterr()
    assert (
        main(["spice-check", "--checkpoint", str(run), "--example", "3", "--data-dir", str(fake_data)]) == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["passed"] and result["preset"] == "drn-xs" and result["example"] == 3
    assert result["epoch"] == 1 and result["system"] == "DeepResistive([784, 8, 10])"
    assert (
        main(["spice-check", "--checkpoint", str(run), "--example", "64", "--data-dir", str(fake_data)]) == 2
    )
    assert "--example 64" in capsys.readouterr().err


def test_sparse_and_dense_conductance_solves_agree(monkeypatch):
    import eqprop.analysis.spice as spice

    circuit, x = random_netlist(90, 7)
    net = circuit.to_netlist(x)
    potentials = torch.linspace(-1, 1, net.n_nodes + 1, dtype=torch.float64)
    dense = spice_tolerance(net, potentials)
    monkeypatch.setattr(spice, "DENSE_LIMIT", 0)
    sparse = spice_tolerance(net, potentials)
    for key in ("leakage", "solver", "tolerance"):
        assert sparse[key] == pytest.approx(dense[key], rel=1e-9)


@needs_ngspice
def test_no_pass_on_an_infinite_tolerance():
    """Nodes 3-4 form an island with no path to a fixed potential: the tolerance's bound does not apply there (it
    is infinite, with a note), so the check cannot pass, however small the difference."""
    net = Netlist(
        4,
        resistors=[(1, 2), (2, 0), (3, 4)],
        conductances=[1.0, 1.0, 1.0],
        sources=[1],
        voltages=[0.0],
        outputs=[2],
    )
    circuit = ResistiveCircuit(net, inputs=[(0, 0, 1.0)], dtype=torch.float64)
    result = spice_check(circuit, torch.ones(1, dtype=torch.float64))
    assert math.isinf(result["tolerance"]) and result["note"]
    assert result["max_abs_dv"] < 1e-8 and not result["passed"]
