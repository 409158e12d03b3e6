"""Analog networks of Shockley diodes and bidirectional amplifiers obey circuit laws: each neuron's solve is the exact
minimiser of its node's co-content, the energy never rises along a sweep, Newton and block coordinate descent
reach the same steady state, where Kirchhoff's current law holds node by node when counted from the netlist
(resistor, diode and source currents, and what each amplifier's backward source draws), the fast paths equal
autograd, and EqProp converges to the implicit-differentiation gradient at O(β) one-sided and O(β²) centered."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqprop import (
    AnalogResistive,
    BlockCoordinate,
    ConfigError,
    EqProp,
    ImplicitDiff,
    Newton,
    Settling,
    ShockleyDiode,
    SquaredError,
    solve,
)
from eqprop.analysis.spice import DEFAULT_OPTIONS, run_ngspice, spice_check, to_spice
from eqprop.analysis.spice_analog import analog_tolerance
from eqprop.systems.junction import MAX_EXPONENT, lambert_w_exp
from eqprop.systems.netlist import Netlist, ResistiveCircuit
from helpers import fd_loss_grad, rel_err


def make_net(sizes=(6, 8, 6, 3), gain=5.0, seed=3, batch=5, bias=0.05, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    net = AnalogResistive(list(sizes), input_gain=gain, generator=gen, **kwargs).double()
    with torch.no_grad():
        for b in net.biases:
            b.copy_(bias * torch.randn(b.shape, generator=gen, dtype=b.dtype))
    x = torch.rand(batch, sizes[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, sizes[-1], (batch,), generator=gen)
    return net, x, y


NEWTON = Newton(iterations=100, tol=1e-13)


# -- the junction ----------------------------------------------------------------------------------------------------
def test_the_junction_current_is_the_derivative_of_its_co_content_and_its_conductance_of_the_current():
    d = ShockleyDiode(saturation_current=1e-9, emission=1.3)
    v = torch.linspace(
        -1.0, 2.5, 301, dtype=torch.float64, requires_grad=True
    )  # past the linear continuation
    (di,) = torch.autograd.grad(d.co_content(v).sum(), v)
    assert torch.allclose(di, d.current(v), rtol=1e-12, atol=1e-18)
    (dg,) = torch.autograd.grad(d.current(v).sum(), v)
    assert torch.allclose(dg, d.conductance(v), rtol=1e-12, atol=1e-18)
    # Shockley's law below the continuation, and Vt = kT/q at 27 °C
    low = v.detach()[v.detach() / d.slope < MAX_EXPONENT]
    assert torch.allclose(d.current(low), 1e-9 * torch.expm1(low / (1.3 * 0.025864926)), rtol=1e-6)
    assert d.forward_drop(1e-3) == pytest.approx(1.3 * d.thermal_voltage * math.log1p(1e-3 / 1e-9))


def test_a_junction_far_in_forward_bias_stays_finite_in_float32():
    d = ShockleyDiode()
    v = torch.tensor([0.0, 1.0, 10.0, 1e3], dtype=torch.float32)
    for f in (d.current, d.conductance, d.co_content):
        assert bool(torch.isfinite(f(v)).all())


@given(st.floats(-200.0, 5000.0))
@settings(max_examples=60, deadline=None)
def test_lambert_w_solves_its_equation_in_the_log_domain(log_z: float):
    w = float(lambert_w_exp(torch.tensor([log_z], dtype=torch.float64))[0])
    if log_z < -30:
        assert w == pytest.approx(math.exp(log_z), rel=1e-12)
    else:
        assert w > 0 and w + math.log(w) == pytest.approx(log_z, abs=1e-12 * max(1.0, abs(log_z)))


# -- the steady state ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_neuron_solve_is_the_exact_minimiser_of_its_node(dtype):
    """For fields placing h/a from −100 V to +100 V, the solve zeroes the node's current balance to round-off."""
    net = AnalogResistive([2, 3, 1]).to(dtype)
    a = torch.tensor(0.37, dtype=dtype)
    h = torch.linspace(-37.0, 37.0, 2001, dtype=dtype)
    v = net._neuron(h, a)
    up, down = net._diode_terms(v)
    d = net.diode
    balance = a * v - h + d.current(up) - d.current(down)
    scale = h.abs() + 1.0
    assert float((balance.abs() / scale).max()) < (1e-13 if dtype == torch.float64 else 2e-5)
    assert bool((v > -1.2).all() and (v < 1.2).all())  # clipped near the levels by the forward drop


@pytest.mark.parametrize("order", ["odd-even", "forward", "backward"])
def test_energy_never_increases_along_sweeps(order):
    net, x, _ = make_net(gain=20.0)
    state = net.init_state(x)
    energies = [net.energy(x, state)]
    for _ in range(25):
        state = solve(net, x, BlockCoordinate(1, order=order), init=state, throw=False).state
        energies.append(net.energy(x, state))
    e = torch.stack(energies).detach()
    rises = (e[1:] - e[:-1]) / e.abs().max(0).values
    assert float(rises.max()) < 1e-14


@pytest.mark.parametrize("gain", [1.0, 5.0, 50.0])
def test_newton_and_block_coordinate_reach_the_same_steady_state(gain):
    net, x, _ = make_net(gain=gain)
    newton = solve(net, x, NEWTON)
    block = solve(net, x, BlockCoordinate(3000, order="odd-even", tol=1e-13))
    for a, b in zip(newton.state, block.state, strict=True):
        assert torch.allclose(a, b, atol=1e-11, rtol=0)
    assert float(net.kcl_residual(x, newton.state).max()) < 1e-12


@pytest.mark.parametrize("inverting", [True, False])
def test_kirchhoff_holds_at_every_node_counted_from_the_netlist(inverting):
    """Independently of the energy: at each free node, resistor + diode currents out, minus the injected current,
    plus back_gain × what each amplifier it drives delivers, is zero."""
    net, x, _ = make_net(gain=8.0, batch=1, inverting=inverting, backward_gain=0.5)
    eq = solve(net, x, NEWTON)
    netlist = net.to_netlist(x[0])
    v = net.node_potentials(x, eq.state)[0]
    out = torch.zeros(netlist.n_nodes + 1, dtype=torch.float64)
    for (a, b), g in zip(netlist.resistors.tolist(), netlist.conductances.tolist(), strict=True):
        i = g * (v[a] - v[b])
        out[a] += i
        out[b] -= i
    for a, c in netlist.diodes.tolist():
        i = netlist.diode_model.current(v[a] - v[c])
        out[a] += i
        out[c] -= i
    for node, i in zip(netlist.injections.tolist(), netlist.currents.tolist(), strict=True):
        out[node] -= i
    balance = out.clone()
    for (i, o), gain, back in zip(
        netlist.amplifiers.tolist(), netlist.gains.tolist(), netlist.back_gains.tolist(), strict=True
    ):
        assert float(v[o]) == pytest.approx(gain * float(v[i]), abs=1e-12)  # the VCVS
        balance[i] += back * out[o]  # the CCCS draws back_gain × the delivered current
    free = netlist.free_nodes()
    assert float(balance[free].abs().max()) < 1e-12
    assert float(out[free].abs().max()) > 1e-4  # (not a circuit at rest)


def test_ideal_diodes_clip_to_the_levels_and_are_the_small_emission_limit():
    ideal, x, _ = make_net(gain=8.0, diode=None)
    eq_ideal = solve(ideal, x, BlockCoordinate(3000, order="odd-even", tol=1e-13))
    for s in eq_ideal.state[:-1]:
        assert float(s.min()) >= -0.5 and float(s.max()) <= 0.5
    assert float(ideal.kcl_residual(x, eq_ideal.state).max()) < 1e-11
    sharp, *_ = make_net(gain=8.0, diode=ShockleyDiode(1e-8, emission=1e-3))
    eq_sharp = solve(sharp, x, NEWTON)
    # the Shockley equilibrium lies within a forward drop N·Vt·ln(1 + I/IS) ≈ 1e-3·26 mV·20 of the ideal one
    gap = max(float((a - b).abs().max()) for a, b in zip(eq_sharp.state, eq_ideal.state, strict=True))
    assert gap < 4 * 1e-3 * 0.0259 * 25
    assert gap > 1e-6  # (and it is a real junction, not the clip)


def test_newton_refuses_ideal_diodes_and_settling_refuses_shockley_ones():
    ideal, x, _ = make_net(diode=None)
    with pytest.raises(ConfigError, match="newton"):
        solve(ideal, x, NEWTON)
    net, x, _ = make_net()
    with pytest.raises(ConfigError, match="Shockley"):
        solve(net, x, Settling(time=1.0, capacitance=1.0, iterations=5))


# -- fast paths and gradients ----------------------------------------------------------------------------------------
def test_fast_paths_equal_autograd():
    net, x, _ = make_net(gain=6.0)
    eq = solve(net, x, NEWTON)
    state = tuple(s + 0.05 * torch.randn_like(s) for s in eq.state)  # away from the steady state too
    fast = net.state_grad(x, state)
    leaves = tuple(s.clone().requires_grad_(True) for s in state)
    auto = torch.autograd.grad(net.energy(x, leaves).sum(), leaves)
    for f, a in zip(fast, auto, strict=True):
        assert torch.allclose(f, a, rtol=1e-10, atol=1e-13)
    params = dict(net.named_parameters())
    auto_p = torch.autograd.grad(net.energy(x, state).mean(), list(params.values()))
    closed = net.param_grads(x, state)
    for (name, _), g in zip(params.items(), auto_p, strict=True):
        assert torch.allclose(closed[name], g, rtol=1e-10, atol=1e-13), name
    # the Hessian solve against autograd's Hessian
    rhs = tuple(torch.randn_like(s) for s in state)
    z = net.hessian_solve(x, state, rhs)
    flat = torch.cat(state, 1)
    sizes = [s.shape[1] for s in state]
    for b in range(x.shape[0]):

        def e(v, b=b):
            parts = tuple(p[None] for p in v.split(sizes))
            return net.energy(x[b : b + 1], parts)[0]

        hess = torch.autograd.functional.hessian(e, flat[b])
        assert torch.allclose(hess @ torch.cat([t[b] for t in z]), torch.cat([r[b] for r in rhs]), atol=1e-9)


def test_eqprop_converges_to_the_implicit_gradient_at_the_predicted_rates():
    net, x, y = make_net(gain=5.0)
    cost = SquaredError()
    exact = ImplicitDiff().gradients(net, cost, NEWTON, x, y).grads
    fd = fd_loss_grad(net, cost, NEWTON, x, y, eps=1e-6)
    assert rel_err(exact, fd) < 1e-7
    betas = np.array([1e-2, 1e-3, 1e-4])
    for variant, order in (("positive", 1), ("centered", 2)):
        errors = [
            rel_err(EqProp(beta=float(b), variant=variant).gradients(net, cost, NEWTON, x, y).grads, exact)
            for b in betas
        ]
        slope = float(np.polyfit(np.log(betas), np.log(errors), 1)[0])
        assert slope == pytest.approx(order, abs=0.1)
    est = EqProp(beta=1e-3, variant="centered").gradients(net, cost, NEWTON, x, y).grads
    u = torch.cat([est[k].flatten() for k in exact])
    v = torch.cat([exact[k].flatten() for k in exact])
    assert float(u @ v / (u.norm() * v.norm())) >= 0.9999


def test_dissipated_power_is_the_sum_over_resistors_and_diodes_of_the_netlist():
    net, x, _ = make_net(gain=8.0, batch=2)
    eq = solve(net, x, NEWTON)
    for b in range(2):
        netlist = net.to_netlist(x[b])
        v = net.node_potentials(x[b : b + 1], tuple(s[b : b + 1] for s in eq.state))[0]
        drop = v[netlist.resistors[:, 0]] - v[netlist.resistors[:, 1]]
        vd = v[netlist.diodes[:, 0]] - v[netlist.diodes[:, 1]]
        expected = float(
            (netlist.conductances * drop**2).sum() + (netlist.diode_model.current(vd) * vd).sum()
        )
        assert float(
            net.dissipated_power(x[b : b + 1], tuple(s[b : b + 1] for s in eq.state))[0].detach()
        ) == (pytest.approx(expected, rel=1e-12))


# -- bad input -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"amplifier_gain": 4.0, "backward_gain": -0.25}, "unbounded below"),
        ({"amplifier_gain": 4.0, "backward_gain": 0.0}, "unbounded below"),
        ({"amplifier_gain": 0.0}, "!= 0"),
        ({"levels": (0.5, -0.5)}, "lo < hi"),
        ({"input_gain": -1.0}, "> 0"),
        ({"gains": [1.0]}, "one positive gain per conductance matrix"),
    ],
)
def test_bad_construction_is_one_clear_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AnalogResistive([4, 6, 2], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"saturation_current": 0.0}, "saturation_current"),
        ({"emission": -1.0}, "emission"),
        ({"temperature": -300.0}, "absolute zero"),
    ],
)
def test_bad_junctions_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ShockleyDiode(**kwargs)


def _amp_netlist(**changes):
    fields = {
        "n_nodes": 4,
        "resistors": [(1, 2), (3, 4), (4, 0)],
        "conductances": [1.0, 1.0, 1.0],
        "sources": [1],
        "voltages": [1.0],
        "outputs": [4],
        "amplifiers": [(2, 3)],
        "gains": [2.0],
        "back_gains": [0.5],
    }
    fields.update(changes)
    return Netlist(**fields)


def test_netlist_amplifiers_are_checked():
    net = _amp_netlist()
    assert net.free_nodes().tolist() == [2, 4]  # the amplifier's output is driven
    assert net.energy_weights()[[2, 4]].tolist() == [4.0, 1.0]  # w_in / w_out = gain / back_gain
    with pytest.raises(ConfigError, match="unbounded below"):
        _amp_netlist(back_gains=[-0.5])
    with pytest.raises(ConfigError, match="no voltage source"):
        _amp_netlist(amplifiers=[(2, 1)])
    with pytest.raises(ConfigError, match="free nodes"):
        _amp_netlist(outputs=[3])
    with pytest.raises(ConfigError, match="ideal elements"):
        ResistiveCircuit(net, inputs=[(0, 0, 1.0)])
    with pytest.raises(ConfigError, match="ideal elements"):
        ResistiveCircuit(
            dataclasses.replace(
                _amp_netlist(amplifiers=[], gains=[], back_gains=[]), diode_model=ShockleyDiode()
            ),
            inputs=[(0, 0, 1.0)],
        )


# -- against ngspice -----------------------------------------------------------------------------------------------
needs_ngspice = pytest.mark.skipif(
    shutil.which("ngspice") is None,
    reason="ngspice is not installed (apt-get install ngspice; scripts/test installs it when run as root)",
)


def test_the_deck_writes_each_amplifier_as_a_vcvs_a_sensor_and_a_cccs():
    net, x, _ = make_net(sizes=(2, 2, 1), batch=1)
    netlist = net.to_netlist(x[0])
    deck = to_spice(netlist)
    lines = deck.splitlines()
    assert (
        "E0 xamp0 0 h1_0 0 4.0" in lines and "VA0 xamp0 a1p0 DC 0" in lines and "F0 h1_0 0 VA0 0.25" in lines
    )
    assert "E2 xamp2 0 h1_0 0 -4.0" in lines and "F2 h1_0 0 VA2 -0.25" in lines  # the inverting copy
    assert any(ln.startswith(".model dshockley d(is=1e-08 n=") for ln in lines)
    assert sum(ln.startswith("D") for ln in lines) == 4  # two per neuron


@needs_ngspice
@pytest.mark.parametrize(("gain", "seed"), [(1.0, 0), (5.0, 1), (20.0, 2)])
def test_an_analog_network_agrees_with_ngspice(gain, seed):
    net, x, _ = make_net(sizes=(6, 10, 8, 3), gain=gain, seed=seed, batch=1)
    result = spice_check(net, x[0])
    assert result["passed"], result
    assert result["max_abs_dv"] < 1e-8 and result["tolerance"] < 1e-6  # the same equations, solved twice
    assert result["amplifiers"] == 2 * (10 + 8) and result["diodes"] == 2 * (10 + 8)


@needs_ngspice
def test_a_deck_with_another_junction_is_caught():
    """The bound reads SPICE's answer only for the diodes' curvature: a solution of other equations fails it."""
    net, x, _ = make_net(sizes=(6, 10, 3), gain=5.0, batch=1)
    eq = solve(net, x, NEWTON)
    netlist = net.to_netlist(x[0])
    ours = net.node_potentials(x, eq.state)[0]
    names = [netlist.name(i).lower() for i in range(netlist.n_nodes + 1)]
    for wrong in (
        dataclasses.replace(netlist, diode_model=ShockleyDiode(1.01e-8)),
        dataclasses.replace(netlist, back_gains=1.2 * netlist.back_gains),
    ):
        volts = run_ngspice(to_spice(wrong))
        theirs = torch.tensor([0.0] + [volts[n] for n in names[1:]], dtype=torch.float64)
        bound = analog_tolerance(netlist, ours, theirs, options=DEFAULT_OPTIONS)
        assert float((theirs - ours).abs().max()) > 10 * bound["tolerance"]


def test_an_output_cut_off_by_zero_conductances_is_refused_before_it_is_solved():
    net, x, _ = make_net(batch=2)
    with torch.no_grad():
        net.conductances[-1][1].zero_()
    with pytest.raises(ConfigError, match="out1"):
        solve(net, x, BlockCoordinate(10))
