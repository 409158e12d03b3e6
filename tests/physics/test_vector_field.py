"""Vector-field networks (separate forward and backward weights) and vector-field EqProp."""

from __future__ import annotations

import pytest
import torch

from eqprop import (
    BackpropThroughSolver,
    BlockCoordinate,
    DeepHopfield,
    EqProp,
    GradientFlow,
    SquaredError,
    solve,
)
from eqprop.errors import ConfigError
from eqprop.rules import VectorFieldEqProp
from eqprop.systems import VectorFieldHopfield
from helpers import rel_err


def _pair(gen: torch.Generator, tied: bool = True) -> tuple[VectorFieldHopfield, DeepHopfield]:
    vf = VectorFieldHopfield([6, 8, 7, 4], gains=1.0, tied=tied, generator=gen)
    hop = DeepHopfield([6, 8, 7, 4], gains=1.0)
    hop.load_state_dict({k: v for k, v in vf.state_dict().items() if not k.startswith("feedback")})
    return vf, hop


def test_tied_weights_are_the_hopfield_dynamics(f64: torch.dtype, gen: torch.Generator) -> None:
    vf, hop = _pair(gen)
    x, y = torch.rand(5, 6, generator=gen), torch.randint(0, 4, (5,), generator=gen)
    for solver in (BlockCoordinate(iterations=30), GradientFlow(iterations=30, step_size=1.0)):
        for beta in (0.0, 0.3):
            a = solve(vf, x, solver, cost=SquaredError(), y=y, beta=beta).state
            b = solve(hop, x, solver, cost=SquaredError(), y=y, beta=beta).state
            for sa, sb in zip(a, b, strict=True):
                assert torch.equal(sa, sb)


def test_same_update_with_tied_weights_is_eqprop_exactly(f64: torch.dtype, gen: torch.Generator) -> None:
    vf, hop = _pair(gen)
    x, y = torch.rand(5, 6, generator=gen), torch.randint(0, 4, (5,), generator=gen)
    solver = BlockCoordinate(iterations=40)
    vfe = VectorFieldEqProp(beta=0.2, variant="centered", same_update=True).gradients(
        vf, SquaredError(), solver, x, y
    )
    ep = EqProp(beta=0.2, variant="centered").gradients(hop, SquaredError(), solver, x, y)
    for name, g in ep.grads.items():
        assert torch.equal(vfe.grads[name], g), name
    for k in ("1", "2"):  # the backward weights get the forward weights' update: tied weights stay tied
        assert torch.equal(vfe.grads[f"system.feedback.{k}"], ep.grads[f"system.weights.{k}"])


def test_vector_field_update_tends_to_eqprop_with_tied_weights(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """The VF update (presynaptic activity at the free fixed point) differs from the Hebbian contrast by a product
    of two O(β) changes over β: O(β), vanishing with β; with tied weights, a shared weight's update is its forward
    update plus its backward one."""
    vf, hop = _pair(gen)
    x, y = torch.rand(5, 6, generator=gen), torch.randint(0, 4, (5,), generator=gen)
    solver = BlockCoordinate(iterations=60)
    errors = []
    for beta in (0.02, 0.002):
        vfe = VectorFieldEqProp(beta=beta).gradients(vf, SquaredError(), solver, x, y).grads
        ep = EqProp(beta=beta, variant="positive").gradients(hop, SquaredError(), solver, x, y).grads
        merged = {n: g for n, g in vfe.items() if "feedback" not in n}
        for k in ("1", "2"):
            merged[f"system.weights.{k}"] = vfe[f"system.weights.{k}"] + vfe[f"system.feedback.{k}"]
        errors.append(rel_err(merged, ep))
    assert errors[0] > 1e-4  # not the same rule ...
    assert 5 < errors[0] / errors[1] < 20  # ... but the same limit, at rate O(beta)


def test_vector_field_update_descends_the_loss_with_untied_weights(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """With independent backward weights the VF update is not the gradient, yet its forward part still points
    downhill on a fresh net (Scellier et al. 2018): cosine with BPTT's gradient > 0."""
    vf = VectorFieldHopfield([6, 8, 7, 4], gains=1.0, generator=gen)
    x, y = torch.rand(16, 6, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    solver = GradientFlow(iterations=100, step_size=1.0)
    est = VectorFieldEqProp(beta=0.01).gradients(vf, SquaredError(), solver, x, y).grads
    ref = BackpropThroughSolver().gradients(vf, SquaredError(), solver, x, y).grads
    names = [n for n in ref if "feedback" not in n]
    a = torch.cat([est[n].flatten() for n in names])
    b = torch.cat([ref[n].flatten() for n in names])
    assert float(a @ b / (a.norm() * b.norm())) > 0.3


def test_angle_and_no_energy(f64: torch.dtype, gen: torch.Generator) -> None:
    tied = VectorFieldHopfield([6, 8, 7, 4], tied=True, generator=gen)
    assert all(float(a) < 1e-5 for a in tied.diagnostics().values())
    free = VectorFieldHopfield([6, 8, 7, 4], generator=gen)
    angles = free.diagnostics()
    assert set(angles) == {"angle/1", "angle/2"}
    assert all(60 < float(a) < 120 for a in angles.values())  # independent draws: nearly orthogonal
    assert not free.has_energy and DeepHopfield([3, 2]).has_energy
    with pytest.raises(ConfigError, match="no energy"):
        free.energy(torch.rand(2, 6), free.init_state(torch.rand(2, 6)))
    assert [n for n, _ in free.named_parameters()] == [
        "weights.0",
        "weights.1",
        "weights.2",
        "biases.0",
        "biases.1",
        "biases.2",
        "feedback.1",
        "feedback.2",
    ]


def test_bad_input(f64: torch.dtype, gen: torch.Generator) -> None:
    hop = DeepHopfield([6, 8, 4])
    x, y = torch.rand(2, 6), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="has none"):
        VectorFieldEqProp().gradients(hop, SquaredError(), BlockCoordinate(), x, y)
    with pytest.raises(ConfigError, match="hidden layer"):
        VectorFieldHopfield([6, 4])
    with pytest.raises(ConfigError, match="same_update"):
        VectorFieldEqProp(same_update="yes")  # type: ignore[arg-type]
