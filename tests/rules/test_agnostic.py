"""Agnostic Equilibrium Propagation (AEqprop): the laws the physical learning step must obey.

The step is learned by physics only (relax, homeostatic control of the knobs, change of the nudging), yet its
displacement is ``Δθ = −ε(β₂ − β₁)·ĝ_EqProp`` to first order in ε, exactly so when the parameters relax once
in closed form. Every test is a law that a wrong implementation breaks: equivalence with EqProp, the β-order
of the bias against implicit differentiation, homeostasis, descent of the joint energy, the secant Lyapunov
function, agnosticism (a slim proxy and a toy system with no energy or autograd), purity, the config and the
command line. Tiny float64 nets, converged relaxations.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from collections.abc import Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from eqprop import (
    AgnosticEqProp,
    BlockCoordinate,
    ConfigError,
    ConvergenceError,
    CoupledLearning,
    CrossEntropyReadout,
    DeepHopfield,
    DivergenceError,
    EqProp,
    Homeostat,
    HomeostaticSystem,
    ImplicitDiff,
    PhysicalSystem,
    SpringCoupled,
    SquaredError,
    TotalEnergy,
    solve,
)
from eqprop.cli import main
from eqprop.rules import VARIANTS, agnostic_step, phase_betas
from eqprop.rules.physical import has_homeostat
from eqprop.train import apply_overrides, build, config_to_dict, load_preset
from helpers import BOXED_SYSTEMS, SMALL_SYSTEMS, cosine, kkt_violation, make_hopfield, rel_err

SOLVER = BlockCoordinate(300)
"""Odd-even sweeps, no tolerance: every phase of the tiny float64 nets converges to rounding."""

PROTOCOL = ("set_nudging", "relax", "read_knobs", "set_knobs", "read_parameters", "read_output")
HOMEOSTAT = ("hold_parameters", "read_displacement")
"""What a system may add to PROTOCOL: its own homeostatic controller and that controller's error signal."""


def per_tensor_epsilon(net: DeepHopfield, scale: float = 1.0) -> dict[str, float]:
    """A different ε for every tensor (so that a mix-up of names shows)."""
    return {n: scale * (0.2 + 0.1 * i) for i, (n, _) in enumerate(net.named_parameters())}


def twin(rule: AgnosticEqProp) -> EqProp:
    """The EqProp rule with the same pair of nudgings (β₁, β₂): one β convention, so the same beta and variant."""
    return EqProp(beta=rule.beta, variant=rule.variant)


def max_abs_diff(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def params_of(net: DeepHopfield) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters()}


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def spring(net: DeepHopfield, x: Tensor, y: Tensor, eps: Mapping[str, float], **kwargs: Any) -> SpringCoupled:
    """The rule's simulation, started at the free equilibrium (as :meth:`AgnosticEqProp.gradients` does)."""
    free = solve(net, x, SOLVER)
    return SpringCoupled(net, SquaredError(), SOLVER, x, y, eps, state=free.state, **kwargs)


# -- 1. the displacement is the EqProp step --------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", SMALL_SYSTEMS)
def test_one_exact_round_is_exactly_the_eqprop_contrast(name, variant):
    """Closed-form parameter relaxation, one round: θ' − θ = −ε[∂E/∂θ(s₂) − ∂E/∂θ(s₁)] whatever ε, so the
    equivalent gradient is EqProp's with the same nudgings (the same beta and variant)."""
    net, x, y = SMALL_SYSTEMS[name]()
    rule = AgnosticEqProp(beta=0.3, variant=variant, epsilon=per_tensor_epsilon(net))
    a = rule.gradients(net, SquaredError(), SOLVER, x, y)
    e = twin(rule).gradients(net, SquaredError(), SOLVER, x, y)
    assert max_abs_diff(a.grads, e.grads) < 1e-12
    assert float(a.loss) == pytest.approx(float(e.loss), abs=1e-14)
    assert torch.equal(a.scores.argmax(1), e.scores.argmax(1))


@pytest.mark.parametrize("relaxation", ["exact", "flow"])
def test_joint_relaxation_departs_from_eqprop_at_first_order_in_epsilon(relaxation):
    """With several rounds (states, then parameters) in phase 2 the states feel the moved θ: the difference
    from EqProp is O(ε) — it halves when ε halves."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    ref = EqProp(beta=0.1, variant="centered").gradients(net, SquaredError(), SOLVER, x, y).grads
    epsilons = [4e-3, 2e-3, 1e-3]
    diffs = []
    for eps in epsilons:
        rule = AgnosticEqProp(beta=0.1, epsilon=eps, parameter_iterations=3, parameter_relaxation=relaxation)
        diffs.append(rel_err(rule.gradients(net, SquaredError(), SOLVER, x, y).grads, ref))
    assert diffs[-1] < 1e-2
    assert slope(epsilons, diffs) == pytest.approx(1.0, abs=0.1)  # measured 1.00 (exact and flow)


@pytest.mark.parametrize(("steps", "step_size"), [(10, 0.5), (4, 0.8), (1, 1.0)])
def test_unsettled_parameter_flow_shrinks_the_step_by_its_unsettled_fraction(steps, step_size):
    """One round of ``flow`` relaxation moves θ the fraction ``1 − (1 − h)^k`` of the way to its rest point:
    the step is EqProp's times that fraction, for every ε (not an O(ε) difference: an unsettled θ)."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    ref = EqProp(beta=0.1, variant="centered").gradients(net, SquaredError(), SOLVER, x, y).grads
    fraction = 1 - (1 - step_size) ** steps
    for eps in (0.3, 0.01):
        rule = AgnosticEqProp(
            beta=0.1,
            epsilon=eps,
            parameter_relaxation="flow",
            flow_steps=steps,
            flow_step_size=step_size,
            controller_iterations=60,  # an unsettled flow needs more controller rounds to hold θ
            controller_rtol=1e-13,
        )
        got = rule.gradients(net, SquaredError(), SOLVER, x, y).grads
        assert max_abs_diff(got, {k: fraction * g for k, g in ref.items()}) < 1e-10


def test_epsilon_scale_is_a_factor_on_every_epsilon():
    """``epsilon_scale`` (the training loop's per-epoch decay) is the same as scaling every ε."""
    net, x, y = SMALL_SYSTEMS["1h"]()
    eps = per_tensor_epsilon(net, 0.1)
    scaled = AgnosticEqProp(epsilon=eps, epsilon_scale=0.37, parameter_iterations=2)
    plain = AgnosticEqProp(epsilon={n: e * 0.37 for n, e in eps.items()}, parameter_iterations=2)
    assert scaled.epsilons(net) == plain.epsilons(net)
    a = scaled.gradients(net, SquaredError(), SOLVER, x, y).grads
    b = plain.gradients(net, SquaredError(), SOLVER, x, y).grads
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- 2. the estimate converges to the true gradient at the variant's order ----------------------------------------
BETAS = np.geomspace(1e-4, 3e-3, 5)
"""Small enough that no nudged phase moves a unit across a bound (checked below)."""


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["1h", "2h", "2h-boxed-output"])
def test_bias_against_implicit_differentiation_shrinks_at_the_variants_order(name, variant):
    net, x, y = SMALL_SYSTEMS[name]()
    cost = SquaredError()
    exact = ImplicitDiff().gradients(net, cost, SOLVER, x, y)
    free_set = net.active_mask(exact.phases[0].state)
    errors = []
    for beta in BETAS:
        rule = AgnosticEqProp(beta=float(beta), variant=variant, epsilon=per_tensor_epsilon(net))
        for b in rule.betas:  # the active set is the free one at both nudgings
            eq = solve(net, x, SOLVER, cost=cost, y=y, beta=b, init=exact.phases[0].state)
            assert all(torch.equal(m, f) for m, f in zip(net.active_mask(eq.state), free_set, strict=True))
        est = rule.gradients(net, cost, SOLVER, x, y).grads
        assert cosine(est, exact.grads) >= 0.999
        errors.append(rel_err(est, exact.grads))
    # measured: slopes 1.00 (one-sided) and 2.00 (centered); cosine ≥ 1 − 1e-6 at β = 3e-3
    assert slope(BETAS, errors) == pytest.approx(AgnosticEqProp(variant=variant).bias_order, abs=0.2)


def test_bias_orders_are_declared():
    assert [AgnosticEqProp(variant=v).bias_order for v in ("positive", "negative", "centered")] == [1, 1, 2]
    # the library's one convention: centered nudges at (−β, +β), a spread of 2β (the paper's β is the spread)
    assert [AgnosticEqProp(beta=0.4, variant=v).betas for v in VARIANTS] == [
        (0.0, 0.4),
        (-0.4, 0.0),
        (-0.4, 0.4),
    ]
    assert (AgnosticEqProp().beta, AgnosticEqProp().variant, AgnosticEqProp().betas) == (
        0.25,
        "centered",
        (-0.25, 0.25),
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("beta", [0.05, 0.25, 1.0])
def test_the_two_phase_rules_share_one_beta_convention(beta, variant):
    """The same ``beta`` and ``variant`` give the same (β₁, β₂) for EqProp, coupled learning and AEqprop."""
    expected = {"positive": (0.0, beta), "negative": (-beta, 0.0), "centered": (-beta, beta)}[variant]
    rules = (
        EqProp(beta=beta, variant=variant),
        CoupledLearning(beta=beta, variant=variant),
        AgnosticEqProp(beta=beta, variant=variant),
    )
    assert [r.betas for r in rules] == [expected] * 3
    assert phase_betas(variant, beta) == expected
    assert rules[0].bias_order == rules[2].bias_order  # the two estimators of ∂L/∂θ: the same order


def test_learning_rates_are_eps_times_the_spread_and_the_schedule_scales_the_epsilons():
    """``learning_rates`` is ε·(β₂ − β₁) per tensor (what SGD needs to apply the physical step), and
    ``follow_schedule(f)`` is the rule with every ε scaled by f (relative to the start of training)."""
    net, x, y = SMALL_SYSTEMS["2h"]()  # 3 layers
    eps = per_tensor_epsilon(net)
    for variant, spread in (("positive", 0.3), ("negative", 0.3), ("centered", 0.6)):
        rule = AgnosticEqProp(beta=0.3, variant=variant, epsilon=eps)
        assert rule.learning_rates(net) == pytest.approx({n: e * spread for n, e in eps.items()}, rel=1e-15)
    # per-layer lists: layer k holds weights.k and biases.k
    rule = AgnosticEqProp(beta=0.25, epsilon=[0.1, 0.05, 0.02], epsilon_biases=[0.01, 0.005, 0.002])
    layered = {
        "weights.0": 0.1,
        "weights.1": 0.05,
        "weights.2": 0.02,
        "biases.0": 0.01,
        "biases.1": 0.005,
        "biases.2": 0.002,
    }
    assert rule.epsilons(net) == pytest.approx(layered, rel=1e-15)
    assert sorted(rule.epsilons(net)) == sorted(n for n, _ in net.named_parameters())
    assert rule.learning_rates(net) == pytest.approx({n: e * 0.5 for n, e in layered.items()}, rel=1e-15)
    # the schedule: the springs' compliances decay; the rates stay the ones the optimizer was built with
    decayed = rule.follow_schedule(0.37)
    assert isinstance(decayed, AgnosticEqProp) and decayed.epsilon_scale == 0.37
    assert rule.epsilon_scale == 1.0  # a new rule, the old one unchanged
    assert decayed.epsilons(net) == pytest.approx({n: 0.37 * e for n, e in layered.items()}, rel=1e-15)
    assert decayed.learning_rates(net) == rule.learning_rates(net)
    assert dataclasses.replace(decayed, epsilon_scale=1.0) == rule
    assert decayed.follow_schedule(0.5).epsilon_scale == 0.5  # relative to the start, not compounded
    # and the decayed rule's step is that of springs 0.37 times as compliant
    scaled = AgnosticEqProp(beta=0.25, epsilon={n: 0.37 * e for n, e in layered.items()})
    a = decayed.gradients(net, SquaredError(), SOLVER, x, y).grads
    b = scaled.gradients(net, SquaredError(), SOLVER, x, y).grads
    assert max_abs_diff(a, b) < 1e-12
    # rules that imply no rates of their own leave them to the run's optimizer settings
    assert EqProp().learning_rates(net) is None and EqProp().follow_schedule(0.37) == EqProp()


# -- 3. homeostasis: phase 1 holds θ still and sets the knobs to θ + ε∂E/∂θ(s₁) ----------------------------------
def homeostatic_phase(physical: SpringCoupled, beta1: float, iterations: int = 10) -> dict[str, Tensor]:
    """The pieces of :func:`agnostic_step`'s free phase and phase 1, driven by hand; returns θ₀."""
    physical.set_nudging(0.0)
    physical.relax()
    theta0 = physical.read_parameters()
    physical.set_nudging(beta1)
    physical.relax()
    for _ in range(iterations):  # the controller: cancel the drift of the released parameters
        physical.relax(states=False, parameters=True)
        drift = {n: p - theta0[n] for n, p in physical.read_parameters().items()}
        knobs = physical.read_knobs()
        physical.set_knobs({n: knobs[n] - drift[n] for n in knobs})
    return theta0


@pytest.mark.parametrize("relaxation", ["exact", "flow"])
@pytest.mark.parametrize("beta1", [-0.25, 0.0])
def test_homeostatic_phase_leaves_the_parameters_where_they_were(beta1, relaxation):
    net, x, y = SMALL_SYSTEMS["2h"]()
    eps = per_tensor_epsilon(net)
    physical = SpringCoupled(
        net, SquaredError(), SOLVER, x, y, eps, parameter_relaxation=relaxation, flow_steps=10
    )
    theta0 = homeostatic_phase(physical, beta1)
    theta = physical.read_parameters()
    assert max_abs_diff(theta, theta0) < 1e-12
    assert max_abs_diff(params_of(net), theta0) < 1e-12  # the system's own tensors too
    # the knobs hold θ at rest against the force of the phase-1 states (the test may ask the physics)
    force = net.param_grads(x, physical.state)
    expected = {n: theta0[n] + eps[n] * force[n] for n in theta0}
    assert max_abs_diff(physical.read_knobs(), expected) < 1e-12
    # and released once more, θ stays put
    physical.relax(states=False, parameters=True)
    assert max_abs_diff(physical.read_parameters(), theta0) < 1e-12


class Recorder:
    """A PhysicalSystem that forwards to a SpringCoupled and records what it saw at each nudging change."""

    def __init__(self, inner: SpringCoupled) -> None:
        self.inner = inner
        self.seen: list[tuple[float, dict[str, Tensor], dict[str, Tensor], tuple[Tensor, ...]]] = []

    def set_nudging(self, beta: float) -> None:
        i = self.inner
        self.seen.append((beta, i.read_parameters(), i.read_knobs(), tuple(s.clone() for s in i.state)))
        i.set_nudging(beta)

    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        self.inner.relax(states=states, parameters=parameters)

    def read_knobs(self) -> dict[str, Tensor]:
        return self.inner.read_knobs()

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        self.inner.set_knobs(knobs)

    def read_parameters(self) -> dict[str, Tensor]:
        return self.inner.read_parameters()

    def read_output(self) -> Tensor:
        return self.inner.read_output()


@pytest.mark.parametrize("variant", VARIANTS)
def test_agnostic_step_enters_phase_2_with_theta_unmoved_and_the_knobs_set(variant):
    """Spy on :func:`agnostic_step` itself: when it switches to β₂, θ is θ₀ and u = θ₀ + ε∂E/∂θ(s₁)."""
    net, x, y = SMALL_SYSTEMS["3h"]()
    eps = per_tensor_epsilon(net)
    rec = Recorder(SpringCoupled(net, SquaredError(), SOLVER, x, y, eps))
    b1, b2 = AgnosticEqProp(beta=0.3, variant=variant).betas
    step = agnostic_step(rec, b1, b2)
    assert [b for b, *_ in rec.seen] == [0.0, b1, b2]
    _, theta0, _, _ = rec.seen[1]  # when phase 1 starts: θ₀
    _, theta, knobs, s1 = rec.seen[2]  # when phase 2 starts
    assert max_abs_diff(theta, theta0) < 1e-12
    force = net.param_grads(x, s1)
    assert max_abs_diff(knobs, {n: theta0[n] + eps[n] * force[n] for n in theta0}) < 1e-12
    # the step: knobs clamped, θ settles against the phase-2 states
    force2 = net.param_grads(x, rec.inner.state)
    assert max_abs_diff(step, {n: -eps[n] * (force2[n] - force[n]) for n in step}) < 1e-12


class ParameterRelaxCounter(Recorder):
    def __init__(self, inner: SpringCoupled) -> None:
        super().__init__(inner)
        self.parameter_relaxations = 0

    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        self.parameter_relaxations += parameters
        super().relax(states=states, parameters=parameters)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_controller_stops_once_theta_is_at_rest(dtype):
    net, x, y = SMALL_SYSTEMS["2h"]()
    net.to(dtype)
    physical = ParameterRelaxCounter(
        SpringCoupled(net, SquaredError(), SOLVER, x.to(dtype), y, per_tensor_epsilon(net))
    )
    agnostic_step(physical, -0.1, 0.1)
    # measure the drift, cancel it, see θ stay at rest; then phase 2
    assert physical.parameter_relaxations == 3 + 1


@pytest.mark.parametrize(("steps", "step_size"), [(1, 0.5), (2, 0.2)])
def test_an_unsettled_controller_is_not_silently_accepted(steps, step_size):
    """Expected: the step obeys the flow law (see the test above), or the rule raises ConvergenceError."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    ref = EqProp(beta=0.1, variant="centered").gradients(net, SquaredError(), SOLVER, x, y).grads
    rule = AgnosticEqProp(
        beta=0.1, epsilon=0.05, parameter_relaxation="flow", flow_steps=steps, flow_step_size=step_size
    )
    try:
        got = rule.gradients(net, SquaredError(), SOLVER, x, y).grads
    except ConvergenceError:
        return
    fraction = 1 - (1 - step_size) ** steps
    assert rel_err(got, {k: fraction * g for k, g in ref.items()}) < 1e-6


# -- 4. phase 2 descends the joint energy ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("relaxation", "step_size"),
    [("exact", 0.5), ("flow", 0.3), ("flow", 1.0)],
    ids=["exact", "flow", "flow1"],
)
@pytest.mark.parametrize("name", BOXED_SYSTEMS)
def test_joint_energy_never_increases_in_phase_2(name, relaxation, step_size):
    net, x, y = SMALL_SYSTEMS[name]()
    solver = BlockCoordinate(20, order="backward")  # unconverged on purpose: every sweep is a descent step
    physical = SpringCoupled(
        net,
        SquaredError(),
        solver,
        x,
        y,
        per_tensor_epsilon(net, 2.0),  # large ε: θ moves enough to displace the states
        parameter_relaxation=relaxation,
        flow_steps=3,
        flow_step_size=step_size,
    )
    homeostatic_phase(physical, -0.25)
    physical.set_nudging(0.25)  # phase 2: knobs clamped from here on
    knobs = physical.read_knobs()
    energies = [float(physical.joint_energy())]
    theta = physical.read_parameters()
    for _ in range(4):
        physical.relax()
        energies.append(float(physical.joint_energy()))
        physical.relax(states=False, parameters=True)
        energies.append(float(physical.joint_energy()))
    assert max_abs_diff(physical.read_knobs(), knobs) == 0.0
    assert max_abs_diff(physical.read_parameters(), theta) > 1e-3  # θ did move
    steps = np.diff(energies)
    assert (steps <= 1e-12 * max(1.0, abs(energies[0]))).all(), steps
    assert energies[-1] < energies[0]


@pytest.mark.parametrize("relaxation", ["exact", "flow"])
def test_iterated_phase_2_settles_at_a_joint_equilibrium(relaxation):
    """Enough rounds of phase 2 reach a joint equilibrium of G: the states minimise F_β₂ at the *new* θ (KKT)
    and θ rests on its springs, θ = u − ε∂E/∂θ(s)."""
    net, x, y = make_hopfield([5, 9, 3], 3, gains=0.5)
    eps = per_tensor_epsilon(net, 0.3)
    physical = SpringCoupled(net, SquaredError(), SOLVER, x, y, eps, parameter_relaxation=relaxation)
    step = agnostic_step(physical, -0.2, 0.2, parameter_iterations=80)
    assert max_abs_diff(step, {k: torch.zeros_like(v) for k, v in step.items()}) > 1e-3
    assert kkt_violation(TotalEnergy(net, x, cost=SquaredError(), y=y, beta=0.2), physical.state) < 1e-10
    force, knobs = net.param_grads(x, physical.state), physical.read_knobs()
    assert max_abs_diff(params_of(net), {n: knobs[n] - eps[n] * force[n] for n in knobs}) < 1e-10


# -- the secant function (Φ_β₂ − Φ_β₁)/(β₂ − β₁) cannot increase over a converged step ----------------------------
def secant(net: DeepHopfield, x: Tensor, y: Tensor, b1: float, b2: float) -> float:
    def phi(b: float) -> float:  # Φ_β(θ) = mean over the batch of min_s F_β
        with torch.no_grad():
            return float(solve(net, x, SOLVER, cost=SquaredError(), y=y, beta=b).energy.mean())

    return (phi(b2) - phi(b1)) / (b2 - b1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("beta", [0.5, 0.1])
def test_secant_lyapunov_function_does_not_increase(beta, variant):
    """Phase 1 is a joint minimum of U + F_β₁, phase 2 (iterated to convergence) one of U + F_β₂ with the same
    knobs: adding the two optimality inequalities cancels U, so the secant function of (β₁, β₂) cannot go up,
    for finite β and ε. Small weights keep F convex in the state, and a stiff spring
    (1/ε above the states' curvature) keeps the joint energy bounded below."""
    net, x, y = make_hopfield([5, 9, 3], 3, gains=0.5)
    eps = 0.1
    rule = AgnosticEqProp(beta=beta, variant=variant, epsilon=eps, parameter_iterations=60)
    b1, b2 = rule.betas
    before = secant(net, x, y, b1, b2)
    est = rule.gradients(net, SquaredError(), SOLVER, x, y)
    longer = dataclasses.replace(rule, parameter_iterations=120).gradients(net, SquaredError(), SOLVER, x, y)
    assert max_abs_diff(est.grads, longer.grads) < 1e-9  # phase 2 reached the joint equilibrium
    with torch.no_grad():
        for n, p in net.named_parameters():  # apply the physical step θ' = θ − ε(β₂ − β₁)·ĝ
            p.sub_(eps * (b2 - b1) * est.grads[f"system.{n}"])
    after = secant(net, x, y, b1, b2)
    assert after < before  # measured: decreases of 2.1 % (β 0.1, positive) to 25 % (β 0.5, centered)


# -- 5. agnosticism ------------------------------------------------------------------------------------------------
class Slim:
    """Exactly the PhysicalSystem interface in front of a SpringCoupled, and nothing else."""

    __slots__ = ("_inner", "calls")

    def __init__(self, inner: SpringCoupled) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def set_nudging(self, beta: float) -> None:
        self.calls.append("set_nudging")
        self._inner.set_nudging(beta)

    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        self.calls.append("relax")
        self._inner.relax(states=states, parameters=parameters)

    def read_knobs(self) -> dict[str, Tensor]:
        self.calls.append("read_knobs")
        return self._inner.read_knobs()

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        self.calls.append("set_knobs")
        self._inner.set_knobs(knobs)

    def read_parameters(self) -> dict[str, Tensor]:
        self.calls.append("read_parameters")
        return self._inner.read_parameters()

    def read_output(self) -> Tensor:
        self.calls.append("read_output")
        return self._inner.read_output()

    def __getattr__(self, name: str) -> Any:
        if name in HOMEOSTAT:  # the learner may ask whether the system has its own controller: it has not
            raise AttributeError(name)
        raise AssertionError(f"the learner asked the physical system for {name!r}, outside PhysicalSystem")


class SlimHomeostatic(Slim):
    """The bare protocol plus a built-in homeostatic controller and its displacement sensor, and nothing else."""

    __slots__ = ()

    def hold_parameters(self) -> None:
        self.calls.append("hold_parameters")
        self._inner.hold_parameters()

    def read_displacement(self, *, gains=None, out=None) -> dict[str, Tensor]:
        self.calls.append("read_displacement")
        return self._inner.read_displacement(gains=gains, out=out)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the learner asked the physical system for {name!r}, outside HomeostaticSystem")


def test_the_protocol_is_six_methods_and_a_homeostat_two_more():
    assert {n for n in dir(PhysicalSystem) if not n.startswith("_")} == set(PROTOCOL)
    assert {n for n in dir(HomeostaticSystem) if not n.startswith("_")} == set(PROTOCOL + HOMEOSTAT)
    net, x, y = SMALL_SYSTEMS["1h"]()
    physical = SpringCoupled(net, SquaredError(), SOLVER, x, y, per_tensor_epsilon(net))
    assert isinstance(physical, HomeostaticSystem) and has_homeostat(physical)
    assert not has_homeostat(Slim(physical)) and has_homeostat(SlimHomeostatic(physical))
    assert isinstance(Homeostat(Slim(physical)), HomeostaticSystem)


@pytest.mark.parametrize("parameter_iterations", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_agnostic_step_works_through_the_bare_protocol(variant, parameter_iterations):
    """Through the six basic methods (the step builds its own controller from them), through those plus a
    built-in controller, and on the simulation itself (whose controller is exact and lazy): the same step."""
    b1, b2 = AgnosticEqProp(beta=0.3, variant=variant).betas
    steps = []
    for proxy_type in (None, Slim, SlimHomeostatic):
        net, x, y = SMALL_SYSTEMS["2h"]()
        physical = SpringCoupled(net, SquaredError(), SOLVER, x, y, per_tensor_epsilon(net))
        proxy = physical if proxy_type is None else proxy_type(physical)
        assert isinstance(proxy, PhysicalSystem)
        steps.append(agnostic_step(proxy, b1, b2, parameter_iterations=parameter_iterations))
        if proxy_type is Slim:
            assert set(proxy.calls) <= set(PROTOCOL)
            assert "set_knobs" in proxy.calls  # the step's own controller turned the knobs
            with pytest.raises(AssertionError, match="outside PhysicalSystem"):
                _ = proxy.system  # the guard itself works
        if proxy_type is SlimHomeostatic:
            assert set(proxy.calls) <= set(PROTOCOL + HOMEOSTAT)
            assert proxy.calls.count("hold_parameters") == 1 and "set_knobs" not in proxy.calls
    assert max_abs_diff(steps[0], steps[1]) < 1e-13
    assert all(torch.equal(steps[0][k], steps[2][k]) for k in steps[0])
    assert max_abs_diff(steps[0], {k: torch.zeros_like(v) for k, v in steps[0].items()}) > 1e-4


@pytest.mark.parametrize("relaxation", ["exact", "flow"])
def test_built_in_controller_is_the_fixed_point_of_the_protocol_controller(relaxation):
    """SpringCoupled's own controller sets the knobs where the step's proportional controller (built from the
    six methods) converges: u = θ + ε∂E/∂θ(s₁), θ unmoved; and reading the displacement after phase 2 is
    θ' − θ measured with the basic sensors."""
    knobs, params, steps = [], [], []
    for built_in in (True, False):
        net, x, y = SMALL_SYSTEMS["2h"]()
        physical = SpringCoupled(
            net, SquaredError(), SOLVER, x, y, per_tensor_epsilon(net), parameter_relaxation=relaxation
        )
        system = physical if built_in else Homeostat(Slim(physical), iterations=60, rtol=1e-13)
        theta0 = params_of(net)
        system.set_nudging(-0.2)
        system.relax()
        system.hold_parameters()
        knobs.append(physical.read_knobs())
        params.append(physical.read_parameters())
        assert max_abs_diff(params[-1], theta0) < 1e-12
        system.set_nudging(0.2)
        system.relax()
        system.relax(states=False, parameters=True)
        gains = {n: 0.5 + i for i, n in enumerate(theta0)}
        step = system.read_displacement(gains=gains)
        moved = physical.read_parameters()
        assert max_abs_diff(step, {n: gains[n] * (moved[n] - theta0[n]) for n in step}) < 1e-12
        steps.append(step)
    assert max_abs_diff(knobs[0], knobs[1]) < 1e-12
    assert max_abs_diff(steps[0], steps[1]) < 1e-12


PHYSICS = {
    code.__code__
    for code in vars(SpringCoupled).values()
    if hasattr(code, "__code__") and code.__name__.startswith("_") and not code.__name__.startswith("__")
}
"""The simulation's private physics methods: the only code allowed to evaluate the force ∂E/∂θ."""


@pytest.mark.parametrize("parameter_iterations", [1, 2])
def test_the_rule_reaches_the_force_only_through_the_physics(monkeypatch, parameter_iterations):
    """During ``AgnosticEqProp.gradients`` the energy's parameter gradient (alone, or as the contrast of two
    states that the simulation's displacement sensor reads) is evaluated only inside SpringCoupled's private
    physics methods (the force the states exert on the springs), never by the rule nor by the protocol
    methods themselves."""
    calls: list[str] = []

    def spy(name):
        original = getattr(DeepHopfield, name)

        def spied(self, *args, **kwargs):
            caller = sys._getframe(1).f_code
            calls.append(f"{name} from {caller.co_name}")
            assert caller in PHYSICS, f"{name} called from {caller.co_name} ({caller.co_filename})"
            return original(self, *args, **kwargs)

        monkeypatch.setattr(DeepHopfield, name, spied)

    spy("param_grads")
    spy("param_grad_difference")
    net, x, y = SMALL_SYSTEMS["2h"]()
    rule = AgnosticEqProp(
        beta=0.3, epsilon=per_tensor_epsilon(net), parameter_iterations=parameter_iterations
    )
    rule.gradients(net, SquaredError(), SOLVER, x, y)
    assert calls


class Balance:
    """A black box that is no energy-based model of this library: a balance with one output per example,
    ``o = θ·x``, settling in ``½(o − θ·x)² + β·½(o − y)²``; its parameters hang on springs ``‖θ − u‖²/(2ε)``
    and feel the pull of the settled outputs. No autograd, no eqprop class: closed forms on plain tensors."""

    def __init__(self, x: Tensor, y: Tensor, theta: Tensor, epsilon: float) -> None:
        self.x, self.y, self.eps = x, y, epsilon
        self.theta, self.knob = theta.clone(), theta.clone()
        self.beta = 0.0
        self.o = torch.zeros_like(y)

    def set_nudging(self, beta: float) -> None:
        self.beta = float(beta)

    def relax(self, *, states: bool = True, parameters: bool = False) -> None:
        if states:
            self.o = (self.x @ self.theta + self.beta * self.y) / (1 + self.beta)
        if parameters:  # argmin_θ ‖θ − u‖²/(2ε) + mean ½(o − θ·x)²
            n, d = self.x.shape
            a = torch.eye(d) / self.eps + self.x.T @ self.x / n
            self.theta = torch.linalg.solve(a, self.knob / self.eps + self.x.T @ self.o / n)

    def read_knobs(self) -> dict[str, Tensor]:
        return {"theta": self.knob.clone()}

    def set_knobs(self, knobs: Mapping[str, Tensor]) -> None:
        self.knob = knobs["theta"].clone()

    def read_parameters(self) -> dict[str, Tensor]:
        return {"theta": self.theta.clone()}

    def read_output(self) -> Tensor:
        return self.o[:, None].clone()


@pytest.mark.parametrize("variant", VARIANTS)
def test_agnostic_step_trains_a_black_box_it_knows_nothing_about(f64, gen, variant):
    x = torch.rand(8, 3, generator=gen)
    y = torch.randn(8, generator=gen)
    theta0 = torch.randn(3, generator=gen)
    grad_loss = x.T @ (x @ theta0 - y) / 8  # L(θ) = mean ½(θ·x − y)², at the free equilibrium o = θ·x
    sigma = x.T @ x / 8
    errors = []
    for eps, beta in ((0.02, 0.02), (0.002, 0.002)):
        box = Balance(x, y, theta0, eps)
        assert isinstance(box, PhysicalSystem)
        b1, b2 = AgnosticEqProp(beta=beta, variant=variant).betas
        step = agnostic_step(box, b1, b2, controller_iterations=30, controller_rtol=1e-10)["theta"]
        # exact: Δθ = −ε·c·(I + εΣ)⁻¹∇L with c = β₂/(1+β₂) − β₁/(1+β₁)
        c = b2 / (1 + b2) - b1 / (1 + b1)
        exact = -eps * c * torch.linalg.solve(torch.eye(3) + eps * sigma, grad_loss)
        assert torch.allclose(step, exact, rtol=1e-9, atol=1e-15)
        errors.append(float((step / (-eps * (b2 - b1)) - grad_loss).norm() / grad_loss.norm()))
    # first order: Δθ = −ε(β₂ − β₁)∇L (1 + O(ε) + O(β)); the error falls 10× when ε and β do
    assert errors[1] < 0.01
    assert errors[1] / errors[0] == pytest.approx(0.1, abs=0.02)


# -- 6. the rule is pure; SGD at lr = ε·(β₂ − β₁) applies exactly the physical step ---------------------------------
@pytest.mark.parametrize("parameter_iterations", [1, 3])
def test_rule_is_pure_and_sgd_at_eps_spread_lands_on_the_physical_step(parameter_iterations):
    net, x, y = SMALL_SYSTEMS["2h"]()
    eps = per_tensor_epsilon(net)
    rule = AgnosticEqProp(beta=0.2, epsilon=eps, parameter_iterations=parameter_iterations)
    b1, b2 = rule.betas
    theta0 = params_of(net)
    est = rule.gradients(net, SquaredError(), SOLVER, x, y)
    assert all(torch.equal(p, theta0[n]) for n, p in net.named_parameters())  # θ went back, bit for bit
    assert all(p.grad is None for p in net.parameters())  # and no .grad was written
    assert set(est.grads) == {f"system.{n}" for n in theta0}
    assert int(est.metrics["state_sweeps"]) > 0
    # the physical step, measured independently on the same simulation
    step = agnostic_step(
        spring(net, x, y, eps), b1, b2, parameter_iterations=parameter_iterations, free_phase=False
    )
    with torch.no_grad():
        for n, p in net.named_parameters():
            p.copy_(theta0[n])
    lrs = {n: eps[n] * (b2 - b1) for n in eps}
    assert rule.learning_rates(net) == pytest.approx(lrs, rel=1e-15)  # the rates the training run builds
    groups = [{"params": [p], "lr": lrs[n]} for n, p in net.named_parameters()]
    optimizer = torch.optim.SGD(groups, lr=1.0)
    rule.gradients(net, SquaredError(), SOLVER, x, y, out="grad")
    optimizer.step()
    for n, p in net.named_parameters():
        assert torch.allclose(p.detach(), theta0[n] + step[n], rtol=0, atol=1e-12), n


def test_a_diverging_step_raises_and_leaves_theta_where_it_was():
    """Springs far too soft: the second round of phase 2 relaxes states at an absurd θ and blows up."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    theta0 = params_of(net)
    with pytest.raises(DivergenceError, match="non-finite"):
        AgnosticEqProp(epsilon=1e300, parameter_iterations=2).gradients(net, SquaredError(), SOLVER, x, y)
    assert all(torch.equal(p, theta0[n]) for n, p in net.named_parameters())


def test_free_phase_of_agnostic_step_matches_the_rules_shortcut():
    """The rule skips the step's free phase by starting the physics at the free equilibrium: same step."""
    net, x, y = SMALL_SYSTEMS["1h"]()
    eps = per_tensor_epsilon(net)
    physical = SpringCoupled(net, SquaredError(), SOLVER, x, y, eps)
    from_zero = agnostic_step(physical, -0.15, 0.15)
    physical.restore_parameters()  # agnostic_step moved θ: put it back
    from_free = agnostic_step(spring(net, x, y, eps), -0.15, 0.15, free_phase=False)
    assert max_abs_diff(from_zero, from_free) < 1e-13


# -- where phase 2 starts ------------------------------------------------------------------------------------------
SHORT = BlockCoordinate(4, order="backward")
"""Nudged phases far from converged, so that where phase 2 starts shows in the step."""


@pytest.mark.parametrize("variant", VARIANTS)
def test_phase2_from_free_is_the_contrast_of_two_relaxations_from_the_free_state(variant):
    """``phase2_start="free"``: θ' − θ = −ε[∂E/∂θ(s₂) − ∂E/∂θ(s₁)] with s₁ and s₂ both relaxed from the free
    state s₀ (s₁ at β₁, s₂ at β₂), i.e. the equivalent gradient is EqProp's with the same two phases, even
    unconverged; ``"phase1"`` relaxes s₂ from s₁ instead."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    cost = SquaredError()
    eps = per_tensor_epsilon(net)
    free = solve(net, x, SOLVER)

    def relax(beta: float, init) -> tuple[Tensor, ...]:
        if beta == 0.0:
            return free.state
        return solve(net, x, SHORT, cost=cost, y=y, beta=beta, init=init, throw=False).state

    def formula(s1, s2) -> dict[str, Tensor]:
        f1, f2 = net.param_grads(x, s1), net.param_grads(x, s2)
        return {f"system.{n}": (f2[n] - f1[n]) / (b2 - b1) for n in f1}

    rule = AgnosticEqProp(beta=0.3, variant=variant, epsilon=eps, phase2_start="free")
    b1, b2 = rule.betas
    s1 = relax(b1, free.state)
    got = rule.gradients(net, cost, SOLVER, x, y, nudged_solver=SHORT).grads
    assert max_abs_diff(got, formula(s1, relax(b2, free.state))) < 1e-12
    assert max_abs_diff(got, twin(rule).gradients(net, cost, SOLVER, x, y, nudged_solver=SHORT).grads) < 1e-12
    physical = dataclasses.replace(rule, phase2_start="phase1").gradients(
        net, cost, SOLVER, x, y, nudged_solver=SHORT
    )
    assert max_abs_diff(physical.grads, formula(s1, relax(b2, s1))) < 1e-12
    if variant == "centered":  # from s₁ ≠ s₀ the unconverged phase 2 ends elsewhere (one-sided variants have
        assert max_abs_diff(physical.grads, got) > 1e-4  # a phase at β = 0, which is the free state itself)


def test_phase2_from_free_through_the_bare_protocol_passes_through_the_free_equilibrium():
    """Through the six methods the states go back to the free equilibrium physically (nudging 0, θ held);
    the simulation jumps there. Converged relaxations: the same step."""
    net, x, y = SMALL_SYSTEMS["3h"]()
    eps = per_tensor_epsilon(net)
    rec = Recorder(SpringCoupled(net, SquaredError(), SOLVER, x, y, eps))
    bare = agnostic_step(rec, -0.15, 0.15, phase2_start="free")
    assert [b for b, *_ in rec.seen] == [0.0, -0.15, 0.0, 0.15]
    rec.inner.restore_parameters()
    jumped = agnostic_step(
        spring(net, x, y, eps, free=True), -0.15, 0.15, phase2_start="free", free_phase=False
    )
    assert max_abs_diff(bare, jumped) < 1e-12
    with pytest.raises(ConfigError, match="phase2_start"):
        agnostic_step(spring(net, x, y, eps), -0.15, 0.15, phase2_start="middle")  # type: ignore[arg-type]


def test_a_known_free_equilibrium_is_returned_to_without_sweeping_while_theta_is_unmoved():
    net, x, y = SMALL_SYSTEMS["2h"]()
    physical = spring(net, x, y, per_tensor_epsilon(net), free=True)
    free = physical.state
    physical.set_nudging(-0.2)
    physical.relax()
    sweeps = physical.state_sweeps
    assert sweeps > 0 and physical.state is not free
    physical.hold_parameters()
    physical.set_nudging(0.0)
    physical.relax()
    assert physical.state is free and physical.state_sweeps == sweeps  # back, no sweep
    physical.set_nudging(0.2)
    physical.relax()
    physical.relax(states=False, parameters=True)  # θ moves: the known free equilibrium is no longer valid
    physical.set_nudging(0.0)
    physical.relax()
    assert physical.state is not free and physical.state_sweeps > sweeps


# -- the simulation is lazy, the physics is not ------------------------------------------------------------------------
def test_lazy_springs_read_exactly_what_the_physics_says():
    """After the built-in controller and an exact relaxation nothing parameter-sized has been computed, yet every
    reading is the physics: u = θ₀ + ε∂E/∂θ(s₁), θ' = u − ε∂E/∂θ(s₂); reading θ' moves the system's own tensors,
    and restore_parameters puts them back bit for bit."""
    net, x, y = SMALL_SYSTEMS["2h"]()
    eps = per_tensor_epsilon(net)
    theta0 = params_of(net)
    physical = spring(net, x, y, eps)
    physical.set_nudging(-0.2)
    physical.relax()
    s1 = physical.state
    physical.hold_parameters()
    physical.set_nudging(0.2)
    physical.relax()
    physical.relax(states=False, parameters=True)
    s2 = physical.state
    assert all(torch.equal(p, theta0[n]) for n, p in net.named_parameters())  # nothing moved yet
    f1, f2 = net.param_grads(x, s1), net.param_grads(x, s2)
    knobs = {n: theta0[n] + eps[n] * f1[n] for n in theta0}
    assert max_abs_diff(physical.read_knobs(), knobs) < 1e-13
    moved = {n: knobs[n] - eps[n] * f2[n] for n in theta0}
    assert max_abs_diff(physical.read_displacement(), {n: moved[n] - theta0[n] for n in theta0}) < 1e-13
    assert max_abs_diff(physical.read_parameters(), moved) < 1e-13
    assert max_abs_diff(params_of(net), moved) < 1e-13  # now the tensors are there
    assert max_abs_diff(physical.read_displacement(), {n: moved[n] - theta0[n] for n in theta0}) < 1e-13
    physical.set_knobs({"biases.0": knobs["biases.0"] + 1.0})  # explicit knobs from here on
    assert max_abs_diff(physical.read_knobs(), {**knobs, "biases.0": knobs["biases.0"] + 1.0}) < 1e-13
    physical.restore_parameters()
    assert all(torch.equal(p, theta0[n]) for n, p in net.named_parameters())


def test_the_default_step_leaves_theta_untouched_and_reads_one_contrast(monkeypatch):
    """The training step (exact relaxation, one round): θ is never written (its version counter does not move),
    no force is evaluated on its own, and the displacement is read as one contrast of the two phase states."""
    calls: list[str] = []
    for name in ("param_grads", "param_grad_difference"):
        original = getattr(DeepHopfield, name)

        def spied(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(DeepHopfield, name, spied)
    net, x, y = SMALL_SYSTEMS["2h"]()
    versions = {n: p._version for n, p in net.named_parameters()}
    for start in ("phase1", "free"):
        AgnosticEqProp(beta=0.3, epsilon=per_tensor_epsilon(net), phase2_start=start).gradients(
            net, SquaredError(), SOLVER, x, y, out="grad"
        )
    assert calls == ["param_grad_difference"] * 2
    assert {n: p._version for n, p in net.named_parameters()} == versions


# -- 7. configuration ---------------------------------------------------------------------------------------------
PRESET_EPS = {"weights.0": 0.1, "weights.1": 0.05, "biases.0": 0.02, "biases.1": 0.01}


def test_preset_builds_the_official_aeqprop_rule():
    config = load_preset("fmnist-aeqprop-1h")
    run = build(config)
    system, cost, solver, nudged, rule = run.system, run.cost, run.solver, run.nudged_solver, run.rule
    assert isinstance(rule, AgnosticEqProp)
    # the official centered --nudging 0.5 is the spread β₂ − β₁: nudgings ±0.25, i.e. beta = 0.25
    assert (rule.beta, rule.variant, rule.betas) == (0.25, "centered", (-0.25, 0.25))
    assert (rule.epsilon, rule.epsilon_biases) == ([0.1, 0.05], [0.02, 0.01])  # per layer
    assert rule.epsilons(system) == PRESET_EPS
    assert (rule.parameter_iterations, rule.parameter_relaxation) == (1, "exact")
    # the official trainer: phase 2 restarts from the free state, and each free phase from the last batch's state
    assert rule.phase2_start == "free" and config.train.warm_start
    assert system.sizes == (784, 2048, 10)
    assert (system.hidden_bounds, system.output_bounds) == ((0.0, 1.0), (-1.0, 2.0))
    assert isinstance(cost, SquaredError)
    assert (solver.order, solver.iterations, solver.tol, solver.norm) == ("forward", 100, 1e-3, "layer-l1")
    assert (nudged.order, nudged.iterations, nudged.tol, nudged.norm) == ("backward", 100, 1e-3, "layer-l1")
    assert (config.train.batch_size, config.schedule.kind, config.schedule.gamma) == (32, "exponential", 0.99)
    lrs = {g["name"]: g["lr"] for g in run.optimizer.param_groups}
    assert lrs == pytest.approx({n: e * 0.5 for n, e in PRESET_EPS.items()}, rel=1e-15)  # ε·(β₂ − β₁)
    assert lrs == rule.learning_rates(system)
    optimizer = run.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["momentum"] == 0 and g["weight_decay"] == 0 for g in optimizer.param_groups)


def test_eqprop_twin_preset_uses_the_same_network_and_step_sizes():
    """fmnist-aeqprop-1h-eqprop: centered EqProp at the same β with lr = ε·2β — AEqprop's first-order
    equivalent."""
    a, e = load_preset("fmnist-aeqprop-1h"), load_preset("fmnist-aeqprop-1h-eqprop")
    da, de = config_to_dict(a), config_to_dict(e)
    for section in ("data", "system", "cost", "solver", "nudged_solver", "schedule", "train"):
        assert da[section] == de[section], section
    ra, re_ = build(a), build(e)
    assert re_.rule == twin(ra.rule)
    lra = {g["name"]: g["lr"] for g in ra.optimizer.param_groups}
    lre = {g["name"]: g["lr"] for g in re_.optimizer.param_groups}
    assert lra == pytest.approx(lre, rel=1e-15)


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        (["rule.epsilon=[0.1]"], "one per layer"),
        (["rule.epsilon_biases=[0.02, 0.0]"], "> 0"),
        (["rule.epsilon=0"], "> 0"),
        (["rule.variant=sideways"], "rule.variant"),
        (["rule.variant=optimistic"], "rule.variant"),  # the paper's name: the library says positive
        (["rule.mode=centered"], "unknown setting 'mode'"),  # mode= became variant=
        (["rule.parameter_relaxation=bogus"], "rule.parameter_relaxation"),
        (["rule.phase2_start=middle"], "rule.phase2_start"),
        (["train.warm_start=1"], "train.warm_start"),
    ],
)
def test_config_rejects_what_aeqprop_cannot_do(sets, fragment):
    with pytest.raises(ConfigError, match=fragment):
        apply_overrides(load_preset("fmnist-aeqprop-1h"), sets)


@pytest.mark.parametrize(
    ("sets", "fragment", "hint"),
    [
        (["optimizer.momentum=0.9"], "plain SGD", "optimizer.momentum=0"),
        (["optimizer.kind=adam"], "plain SGD", "optimizer.kind=sgd"),
        (["optimizer.weight_decay=0.001"], "plain SGD", "optimizer.weight_decay=0"),
        (["cost.kind=cross_entropy_readout"], "readout", "squared_error"),
    ],
)
def test_build_rejects_what_aeqprop_cannot_train(sets, fragment, hint):
    """What needs the built optimizer or cost is refused by ``build`` (the rule's ``check``)."""
    config = apply_overrides(load_preset("fmnist-aeqprop-1h"), [*sets, "system.sizes=[784,8,10]"])
    with pytest.raises(ConfigError, match=fragment) as info:
        build(config)
    assert hint in info.value.hint


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta": 0.0},
        {"beta": -0.5},
        {"beta": math.nan},
        {"beta": math.inf},
        {"variant": "sideways"},
        {"variant": "optimistic"},
        {"epsilon": [0.1, 0.0]},
        {"epsilon_biases": [0.02, -0.01]},
        {"controller_iterations": 2},
        {"parameter_iterations": 0},
        {"epsilon": 0.0},
        {"epsilon": -0.1},
        {"epsilon": {"weights.0": 0.1, "biases.0": 0.0}},
        {"epsilon_scale": 0.0},
        {"phase2_start": "middle"},
    ],
)
def test_rule_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        AgnosticEqProp(**kwargs)


def test_the_mode_keyword_is_gone():
    with pytest.raises(TypeError, match="mode"):
        AgnosticEqProp(mode="centered")  # type: ignore[call-arg]


def test_rule_rejects_what_is_not_a_physical_system():
    net, x, y = SMALL_SYSTEMS["1h"]()
    with pytest.raises(ConfigError, match=r"no epsilon for \['weights.1'"):
        AgnosticEqProp(epsilon={"weights.0": 0.1, "biases.0": 0.1, "biases.1": 0.1}).gradients(
            net, SquaredError(), SOLVER, x, y
        )
    readout = CrossEntropyReadout(3, 3, generator=torch.Generator().manual_seed(0)).double()
    with pytest.raises(ConfigError, match="readout"):
        AgnosticEqProp().gradients(net, readout, SOLVER, x, y)
    with pytest.raises(ConfigError, match="beta > 0"):  # negative β₁ = −1: no output minimiser
        AgnosticEqProp(beta=1.0, variant="negative").gradients(net, SquaredError(), SOLVER, x, y)
    with pytest.raises(ConfigError, match=r"one per layer \(2 for this system\)"):
        AgnosticEqProp(epsilon=[0.1, 0.05, 0.02]).gradients(net, SquaredError(), SOLVER, x, y)
    with pytest.raises(ConfigError, match="plain SGD"):
        AgnosticEqProp().check(net, SquaredError(), torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    plain = torch.optim.SGD(net.parameters(), lr=0.1)
    AgnosticEqProp().check(net, SquaredError(), plain)  # plain SGD is fine
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_spring_coupled_rejects_bad_springs():
    net, x, y = SMALL_SYSTEMS["1h"]()
    eps = per_tensor_epsilon(net)
    args = (net, SquaredError(), SOLVER, x, y)
    with pytest.raises(ConfigError, match="no epsilon"):
        SpringCoupled(*args, {"weights.0": 0.1})
    with pytest.raises(ConfigError, match="> 0"):
        SpringCoupled(*args, {**eps, "biases.1": 0.0})
    with pytest.raises(ConfigError, match="exact"):
        SpringCoupled(*args, eps, parameter_relaxation="bogus")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="flow_step_size"):
        SpringCoupled(*args, eps, parameter_relaxation="flow", flow_step_size=1.5)
    with pytest.raises(ConfigError, match="no knob named"):
        SpringCoupled(*args, eps).set_knobs({"weights.9": torch.zeros(1)})


# -- 8. end to end ------------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.mark.usefixtures("quiet_torch")
def test_cli_trains_the_aeqprop_preset(fake_data: Path, tmp_path: Path, monkeypatch):
    scales: list[float] = []  # the springs' ε decays with the schedule, like the SGD step ε·(β₂ − β₁)
    original = AgnosticEqProp.gradients

    def spied(self, *args, **kwargs):
        scales.append(self.epsilon_scale)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AgnosticEqProp, "gradients", spied)
    run = tmp_path / "run"
    argv = ["train", "--preset", "fmnist-aeqprop-1h", "--data-dir", str(fake_data)]
    argv += ["--set", "system.sizes=[784,32,10]", "--set", "train.epochs=2", "--set", "train.batch_size=16"]
    code, out = run_cli([*argv, "--no-progress", "--out", str(run)])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads(out.strip().splitlines()[-1])["test_accuracy"] == summary["test_accuracy"]
    assert summary["epochs"] == 2
    assert summary["test_accuracy"] >= 0.3  # chance is 0.1; measured 0.44 after 2 epochs
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    lr = {n: e * 0.5 * 0.99 for n, e in PRESET_EPS.items()}  # ε·(β₂ − β₁) = ε·2β, decayed once after epoch 1
    assert epochs[0]["lr"] == pytest.approx(
        [lr[n] for n in ("weights.0", "weights.1", "biases.0", "biases.1")]
    )
    assert json.loads((run / "config.json").read_text())["rule"]["kind"] == "aeqprop"
    assert len(scales) == 2 * 256 // 16
    assert scales[:16] == [1.0] * 16 and scales[16:] == pytest.approx([0.99] * 16, rel=1e-12)


@pytest.mark.usefixtures("quiet_torch")
def test_cli_gradcheck_reports_the_three_variants(fake_data: Path):
    """Seed 3: at seed 0 an output unit of the batch sits 7e-5 from its box bound, so β ≥ 1e-3 crosses the
    kink for a negative nudging (the EqProp twin shows the same flat slopes there)."""
    betas = [0.004, 0.002, 0.001]
    argv = ["gradcheck", "--preset", "fmnist-aeqprop-1h", "--set", "system.sizes=[784,16,10]", "--seed", "3"]
    argv += ["--batch-size", "4", "--iterations", "200", "--betas", *map(str, betas)]
    code, out = run_cli([*argv, "--data-dir", str(fake_data), "--json"])
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["rule"] == "aeqprop"
    assert result["reference"]["free_residual"] < 1e-10
    rows = {(r["variant"], r["beta"]): r for r in result["eqprop"]}
    assert set(rows) == {(v, b) for v in ("positive", "negative", "centered") for b in betas}
    assert result["expected_slopes"] == {"positive": 1, "negative": 1, "centered": 2}
    # measured: slopes 0.996 / 1.004 / 2.000; centered error 1e-6 at β = 1e-3
    for variant, order in result["expected_slopes"].items():
        assert result["slopes"][variant] == pytest.approx(order, abs=0.2), variant
        assert all(rows[variant, b]["cosine"] > 0.9999 for b in betas)
    assert rows["centered", 0.001]["relative_error"] < 1e-4


@pytest.mark.usefixtures("quiet_torch")
def test_cli_trains_the_conv_aeqprop_preset(fake_data: Path, tmp_path: Path):
    """The conv preset (conv + average pooling, per-tensor ε with the documented batch scaling) runs end to
    end on images read unflattened, and learns the fake data (chance is 0.1; measured 0.58 after 2 epochs)."""
    run = tmp_path / "run"
    argv = ["train", "--preset", "fmnist-aeqprop-conv", "--data-dir", str(fake_data), "--no-progress"]
    argv += ["--set", "train.epochs=2", "--out", str(run)]  # the preset's ε suit its own widths: keep them
    code, out = run_cli(argv)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 2
    assert summary["test_accuracy"] >= 0.3
    config = load_preset("fmnist-aeqprop-conv")
    run = build(config)
    assert run.rule.epsilons(run.system) == pytest.approx(
        {
            "weights.0": 2.048,
            "weights.1": 0.016,
            "weights.2": 0.008,
            "biases.0": 0.032 / 144,
            "biases.1": 0.0005,
            "biases.2": 0.002,
        }
    )
