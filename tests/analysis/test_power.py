"""The energy table: power as Σ g ΔV² at each equilibrium, checked on small circuits computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqprop import BlockCoordinate, DeepResistive, EqProp, SquaredError, solve
from eqprop.analysis.energy import energy_table
from eqprop.errors import ConfigError
from eqprop.systems import DeepHopfield
from eqprop.systems.netlist import Netlist, ResistiveCircuit


def _independent_power(net: Netlist, potentials: np.ndarray) -> np.ndarray:
    """Σ g (V_a − V_b)² over the netlist's resistors, from node potentials (ground first), one row per example."""
    a, b = net.resistors[:, 0].numpy(), net.resistors[:, 1].numpy()
    g = net.conductances.numpy()
    return (((potentials[:, a] - potentials[:, b]) ** 2) * g).sum(1)


def test_circuit_power_is_the_sum_over_its_resistors(f64: torch.dtype) -> None:
    net = Netlist(
        4,
        resistors=[(1, 2), (2, 3), (3, 0), (2, 4), (4, 0)],
        conductances=[1e-3, 2e-3, 5e-4, 1e-3, 3e-3],
        diodes=[(0, 4)],
        sources=[1],
        voltages=[0.0],
        outputs=[3],
    )
    circuit = ResistiveCircuit(net, inputs=[(0, 0, 1.0)], dtype=torch.float64)
    x, y = torch.tensor([[0.5], [1.0], [-0.7]]), torch.tensor([[0.1], [0.2], [0.0]])
    solver = BlockCoordinate(400, order="forward")
    table = energy_table(
        circuit, SquaredError(), solver, EqProp(beta=1e-3, variant="centered"), x, y, settling_time=2e-6
    )
    free = solve(circuit, x, solver)
    expect = _independent_power(net, circuit.node_potentials(x, free.state).numpy()).mean()
    assert abs(table["power_w"]["free"] - expect) < 1e-15
    assert abs(table["energy_per_inference_j"] - expect * 2e-6) < 1e-20
    assert set(table["power_w"]) == {"free", "nudged β=-0.001", "nudged β=0.001"}
    assert abs(table["energy_per_training_step_j"] - 2e-6 * sum(table["power_w"].values())) < 1e-20
    scaled = energy_table(
        circuit, SquaredError(), solver, EqProp(beta=1e-3), x, y, siemens_per_unit=1e-6, volts_per_unit=0.5
    )
    assert abs(scaled["power_w"]["free"] - 1e-6 * 0.25 * expect) < 1e-20


def test_deep_resistive_power_matches_its_netlist(f64: torch.dtype, gen: torch.Generator) -> None:
    net = DeepResistive([5, 8, 3], input_gain=2.0, generator=gen)
    x = torch.rand(4, 5, generator=gen)
    eq = solve(net, x, BlockCoordinate(100))
    with torch.no_grad():
        power = net.dissipated_power(x, eq.state)
    for i in range(4):  # one netlist per example, its potentials from the system's own numbering
        circuit = net.to_netlist(x[i]) if hasattr(net, "to_netlist") else None
        assert circuit is not None
        v = net.node_potentials(x[i : i + 1], tuple(s[i : i + 1] for s in eq.state)).numpy()
        assert abs(float(power[i]) - _independent_power(circuit, v)[0]) < 1e-10 * max(1.0, float(power[i]))


def test_refusals(f64: torch.dtype) -> None:
    net = DeepHopfield([3, 2])
    x, y = torch.rand(2, 3), torch.rand(2, 2)
    with pytest.raises(ConfigError, match="no dissipated power"):
        energy_table(net, SquaredError(), BlockCoordinate(5), EqProp(), x, y)
    circuit = DeepResistive([3, 4, 2])
    with pytest.raises(ConfigError, match="must be > 0"):
        energy_table(circuit, SquaredError(), BlockCoordinate(5), EqProp(), x, y, settling_time=0.0)


def test_an_analog_network_fixes_the_volt(f64: torch.dtype) -> None:
    """Shockley junctions: the conductance scale applies, a volts-per-unit scale is refused."""
    from eqprop import AnalogResistive

    net = AnalogResistive([3, 4, 2])
    x, y = torch.rand(2, 3), torch.randint(0, 2, (2,))
    table = energy_table(net, SquaredError(), BlockCoordinate(20), EqProp(), x, y, siemens_per_unit=1e-3)
    ref = energy_table(net, SquaredError(), BlockCoordinate(20), EqProp(), x, y)
    assert table["power_w"]["free"] == pytest.approx(1e-3 * ref["power_w"]["free"], rel=1e-12)
    with pytest.raises(ConfigError, match="fixes the volt"):
        energy_table(net, SquaredError(), BlockCoordinate(20), EqProp(), x, y, volts_per_unit=0.1)
