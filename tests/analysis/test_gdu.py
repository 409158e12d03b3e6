"""The GDU property (Ernoult et al. 2019): EqProp's per-step updates against BPTT's per-step gradients.

The theorem: for a dynamics ``s_{t+1} = ∂Φ/∂s(s_t)`` at a fixed point, EqProp's neural and synaptic updates at
step t of the nudged phase equal BPTT's gradients at step T − t up to O(β) one-sided and O(β²) centered. The
projected gradient step ``Π(s − η∂F/∂s)`` is such a dynamics wherever no unit sits on a kink of its box.
"""

from __future__ import annotations

import math

import pytest
import torch

import eqprop
from eqprop.analysis.gdu import gdu_check, plot_gdu, summarize
from eqprop.costs import CrossEntropyReadout, SquaredError
from eqprop.errors import ConfigError
from eqprop.systems import ConvHopfield


def _worst(summary: dict, key: str, field: str = "relative_error") -> float:
    values = [e for e in summary[key][field] if e is not None]
    assert values, f"BPTT never reached {key}"
    return max(values)


def _ratios(
    system, cost, x, y, variant: str, *, beta: float, steps: int, eta: float = 1.0
) -> dict[str, float]:
    """For every key: worst error over the steps at ``beta`` divided by that at ``beta / 10``."""
    solver = eqprop.GradientFlow(iterations=300, step_size=eta)
    big = summarize(gdu_check(system, cost, solver, x, y, steps=steps, beta=beta, variant=variant))
    small = summarize(gdu_check(system, cost, solver, x, y, steps=steps, beta=beta / 10, variant=variant))
    return {k: _worst(big, k) / _worst(small, k) for k in big}


@pytest.mark.parametrize(("variant", "order"), [("positive", 1), ("negative", 1), ("centered", 2)])
def test_dense_updates_match_bptt_at_every_step_at_the_predicted_rate(
    f64: torch.dtype, gen: torch.Generator, variant: str, order: int
) -> None:
    # unbounded units: the dynamics is a gradient map everywhere; the readout's softmax makes it nonlinear in β
    net = eqprop.DeepHopfield([12, 9, 7, 6], bounds=None, gains=0.5, generator=gen)
    cost = CrossEntropyReadout(6, 4, generator=gen)
    x, y = torch.randn(5, 12, generator=gen), torch.randint(0, 4, (5,), generator=gen)
    ratios = _ratios(net, cost, x, y, variant, beta=0.01, steps=7)
    assert set(ratios) == {
        "s1",
        "s2",
        "s3",
        "weights.0",
        "weights.1",
        "weights.2",
        "biases.0",
        "biases.1",
        "biases.2",
    }
    for key, r in ratios.items():  # error / 10**order when beta / 10
        assert 10**order / 1.5 < r < 10**order * 1.5, (key, r)


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_conv_updates_match_bptt_at_every_step(f64: torch.dtype, gen: torch.Generator, pool: str) -> None:
    net = ConvHopfield(
        (1, 8, 8), channels=[2], dense=[5], kernel_size=3, pool=pool, bounds=None, gains=0.5, generator=gen
    )
    cost = CrossEntropyReadout(5, 3, generator=gen)
    x, y = torch.randn(3, 1, 8, 8, generator=gen), torch.randint(0, 3, (3,), generator=gen)
    for variant, order in (("positive", 1), ("centered", 2)):
        for key, r in _ratios(net, cost, x, y, variant, beta=0.01, steps=4).items():
            assert 10**order / 1.5 < r < 10**order * 1.5, (variant, key, r)
    trace = gdu_check(
        net, cost, eqprop.GradientFlow(iterations=200), x, y, steps=4, beta=1e-4, variant="centered"
    )
    assert _worst(summarize(trace), "weights.0") < 1e-6


def test_step_size_is_part_of_the_dynamics(f64: torch.dtype, gen: torch.Generator) -> None:
    # η < 1: Φ = ½‖s‖² − ηF, the neural update is divided by ηβ; the error still vanishes as O(β)
    net = eqprop.DeepHopfield([6, 5, 4], bounds=None, gains=0.5, generator=gen)
    x, y = torch.randn(4, 6, generator=gen), torch.randint(0, 4, (4,), generator=gen)
    for key, r in _ratios(net, SquaredError(), x, y, "centered", beta=0.01, steps=6, eta=0.5).items():
        assert 70 < r < 150, (key, r)


def test_boxed_units(f64: torch.dtype, gen: torch.Generator) -> None:
    """On units held at a bound EqProp does not move and BPTT does: the neural check holds inside the box, the
    synaptic one everywhere (with β small enough that no unit crosses a kink)."""
    net = eqprop.DeepHopfield([10, 8, 6], output_bounds=(0.0, 1.0), gains=2.0, generator=gen)
    x, y = torch.randn(6, 10, generator=gen), torch.randint(0, 6, (6,), generator=gen)
    trace = gdu_check(
        net, SquaredError(), eqprop.GradientFlow(iterations=200, step_size=1.0), x, y, steps=5, beta=1e-6
    )
    s = summarize(trace)
    assert trace.free_residual == 0.0
    for k in ("s1", "s2"):
        assert 0.0 < s[k]["inside_fraction"] < 1.0  # some units on a bound, some inside
        assert _worst(s, k, "relative_error_inside") < 1e-4
        assert _worst(s, k) > 1e-2  # over all units: the bound units differ by construction
    for k in ("weights.0", "weights.1", "biases.0", "biases.1"):
        assert _worst(s, k) < 1e-4


def test_first_steps_follow_causality(f64: torch.dtype, gen: torch.Generator) -> None:
    """Step 0 moves only the output layer, with −∂C/∂s; the input weights move from step 2 on."""
    net = eqprop.DeepHopfield([6, 5, 4, 3], bounds=None, gains=0.5, generator=gen)
    x, y = torch.randn(4, 6, generator=gen), torch.randint(0, 3, (4,), generator=gen)
    trace = gdu_check(net, SquaredError(), eqprop.GradientFlow(iterations=200), x, y, steps=4, beta=0.1)
    assert trace.ep["s1"][0].abs().max() == 0 and trace.bptt["s1"][0].abs().max() == 0
    assert torch.allclose(trace.ep["s3"][0], trace.bptt["s3"][0], atol=1e-12)
    for key in ("weights.0", "biases.0"):
        assert trace.bptt[key][:2].abs().max() == 0 and trace.ep[key][:2].abs().max() < 1e-12
        assert trace.bptt[key][2].abs().max() > 0


def test_sums_over_the_steps_are_truncated_eqprop_and_bptt(f64: torch.dtype, gen: torch.Generator) -> None:
    """Σ_t ΔEP_θ(t) telescopes to the EqProp estimate after K nudged steps; Σ_t ∇BPTT_θ(t) is backprop through
    the last K steps of the free phase (BackpropThroughSolver with K steps). The phases need not converge."""
    net = eqprop.DeepHopfield([6, 5, 4], gains=0.8, generator=gen)
    cost = SquaredError()
    x, y = torch.rand(4, 6, generator=gen), torch.randint(0, 4, (4,), generator=gen)
    solver = eqprop.GradientFlow(iterations=60)
    trace = gdu_check(net, cost, solver, x, y, steps=6, beta=0.2, variant="centered")
    ep = eqprop.EqProp(beta=0.2, variant="centered").gradients(
        net, cost, solver, x, y, nudged_solver=eqprop.GradientFlow(iterations=6)
    )
    # TBP relaxes its free phase, then differentiates 6 more sweeps: 54 + 6 = the 60 steps of the GDU's free phase
    tbp = eqprop.BackpropThroughSolver(steps=6).gradients(net, cost, eqprop.GradientFlow(iterations=54), x, y)
    for name, _ in net.named_parameters():
        assert torch.allclose(trace.ep[name].sum(0), ep.grads[f"system.{name}"], atol=1e-12)
        assert torch.allclose(trace.bptt[name].sum(0), tbp.grads[f"system.{name}"], atol=1e-12)


def test_summary_and_plot(f64: torch.dtype, gen: torch.Generator, tmp_path) -> None:
    net = eqprop.DeepHopfield([6, 5, 4], gains=0.8, generator=gen)
    x, y = torch.rand(4, 6, generator=gen), torch.randint(0, 4, (4,), generator=gen)
    trace = gdu_check(net, SquaredError(), eqprop.GradientFlow(iterations=50), x, y, steps=5, beta=0.05)
    s = summarize(trace)
    assert trace.steps == 5 and trace.free_steps == 50 and trace.betas == (0.0, 0.05)
    row = s["weights.1"]
    assert row["kind"] == "parameter" and len(row["relative_error"]) == len(row["sign_agreement"]) == 5
    assert 0 <= row["laborieux_rmse"] < 1 and 0 <= row["laborieux_sign_error"] <= 1
    assert all(0 <= a <= 1 for a in row["sign_agreement"])
    assert s["s2"]["kind"] == "neurons" and "relative_error_inside" in s["s2"]
    assert not math.isnan(row["cumulative_relative_error"])
    plot_gdu(trace, str(tmp_path / "gdu.png"))
    assert (tmp_path / "gdu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input(f64: torch.dtype, gen: torch.Generator) -> None:
    net = eqprop.DeepHopfield([6, 5, 4], generator=gen)
    x, y = torch.rand(2, 6, generator=gen), torch.tensor([0, 1])
    flow = eqprop.GradientFlow(iterations=20)
    with pytest.raises(ConfigError, match="GradientFlow"):
        gdu_check(net, SquaredError(), eqprop.BlockCoordinate(iterations=20), x, y, steps=3, beta=0.1)
    with pytest.raises(ConfigError, match="steps"):
        gdu_check(net, SquaredError(), flow, x, y, steps=0, beta=0.1)
    with pytest.raises(ConfigError, match="at least as long"):
        gdu_check(net, SquaredError(), flow, x, y, steps=30, beta=0.1)
    with pytest.raises(ConfigError, match="beta"):
        gdu_check(net, SquaredError(), flow, x, y, steps=3, beta=-0.1)
    with pytest.raises(ConfigError, match="variant"):
        gdu_check(net, SquaredError(), flow, x, y, steps=3, beta=0.1, variant="both")


def test_self_curvature_2_with_half_steps_is_laborieux_my_hard_sig(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """DeepHopfield(self_curvature=2) relaxed by gradient-flow steps of 0.5 runs Laborieux et al.'s
    s ← my_hard_sig(∂Φ/∂s − β∂ℓ/∂s), my_hard_sig(x) = clip(x/2, 0, 1) (written out here from their definition);
    and the GDU check holds on it."""
    net = eqprop.DeepHopfield(
        [7, 6, 5], output_bounds=(0.0, 1.0), gains=1.5, self_curvature=2.0, generator=gen
    )
    x, y = torch.rand(3, 7, generator=gen), torch.randint(0, 5, (3,), generator=gen)
    target = torch.nn.functional.one_hot(y, 5).double()
    s1, s2 = torch.rand(3, 6, generator=gen), torch.rand(3, 5, generator=gen)
    beta = 0.3
    w0, w1, b0, b1 = net.weights[0], net.weights[1], net.biases[0], net.biases[1]
    with torch.no_grad():
        theirs = (
            ((x @ w0.t() + b0 + s2 @ w1) / 2).clamp(0, 1),
            ((s1 @ w1.t() + b1 - beta * (s2 - target)) / 2).clamp(0, 1),
        )
        problem = eqprop.TotalEnergy(net, x, cost=SquaredError(), y=y, beta=beta)
        ours = eqprop.GradientFlow(iterations=1, step_size=0.5).step(problem, (s1, s2))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    trace = gdu_check(
        net, SquaredError(), eqprop.GradientFlow(iterations=200, step_size=0.5), x, y, steps=5, beta=1e-6
    )
    s = summarize(trace)
    assert all(_worst(s, k) < 1e-4 for k in ("weights.0", "weights.1", "biases.0", "biases.1"))
    with pytest.raises(ConfigError, match="self_curvature"):
        eqprop.DeepHopfield([3, 2], self_curvature=0.0)
