"""Finite settling: a circuit's transient followed for a physical time."""

from __future__ import annotations

import math

import pytest
import torch

from eqprop import BlockCoordinate, DeepResistive, SquaredError, solve
from eqprop.errors import ConfigError
from eqprop.solvers import Settling
from eqprop.systems import DeepHopfield
from eqprop.systems.netlist import Netlist, ResistiveCircuit


def test_one_node_follows_its_exponential(f64: torch.dtype) -> None:
    """A node between a 1 V source (1 mS) and ground (3 mS) with 2 nF charges as 0.25 V·(1 − e^(−a t/C)), a = 4 mS,
    whatever the number of steps (its neighbours are fixed)."""
    net = Netlist(
        2, resistors=[(1, 2), (2, 0)], conductances=[1e-3, 3e-3], sources=[1], voltages=[0.0], outputs=[2]
    )
    circuit = ResistiveCircuit(net, inputs=[(0, 0, 1.0)], dtype=torch.float64)
    x = torch.ones(1, 1)
    for t in (1e-7, 5e-7, 2e-6):
        for steps in (1, 7):
            v = solve(circuit, x, Settling(time=t, capacitance=2e-9, iterations=steps)).state[-1]
            assert abs(float(v) - 0.25 * (1 - math.exp(-4e-3 * t / 2e-9))) < 1e-14


def test_a_long_settling_reaches_the_equilibrium_and_a_short_one_does_not(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    net = DeepResistive([6, 8, 3], input_gain=2.0, generator=gen)
    x, y = torch.rand(5, 6, generator=gen), torch.rand(5, 3, generator=gen)
    for beta in (0.0, 0.3):
        exact = solve(net, x, BlockCoordinate(400), cost=SquaredError(), y=y, beta=beta).state
        settled = solve(
            net, x, Settling(time=1.0, capacitance=1e-3, iterations=400), cost=SquaredError(), y=y, beta=beta
        )
        assert max(float((a - b).abs().max()) for a, b in zip(settled.state, exact, strict=True)) < 1e-9
        short = solve(
            net, x, Settling(time=1e-3, capacitance=1e-3, iterations=20), cost=SquaredError(), y=y, beta=beta
        )
        assert max(float((a - b).abs().max()) for a, b in zip(short.state, exact, strict=True)) > 1e-3


def test_bad_settings(f64: torch.dtype) -> None:
    with pytest.raises(ConfigError, match="time"):
        Settling(time=0.0)
    with pytest.raises(ConfigError, match="capacitance"):
        Settling(capacitance=-1.0)
    net = DeepHopfield([3, 4, 2], activation="sigmoid", output_bounds=(0, 1))
    with pytest.raises(ConfigError, match="node currents"):
        solve(net, torch.rand(2, 3), Settling())
