"""Convolutional vector-field networks (Laborieux et al.'s VF_CNN): against their primitive function, written out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eqprop import BlockCoordinate, EqProp, GradientFlow, SquaredError, solve
from eqprop.errors import ConfigError
from eqprop.rules import VectorFieldEqProp
from eqprop.systems import ConvHopfield, ConvVectorField
from helpers import rel_err

SHAPE = (2, 10, 10)


def _net(pool: str, gen: torch.Generator, tied: bool = False) -> ConvVectorField:
    return ConvVectorField(
        SHAPE, [3, 4], [5, 4], kernel_size=3, padding=[1, 0], pool=pool, gains=1.5, tied=tied, generator=gen
    )


def _phi(net: ConvVectorField, x: torch.Tensor, pre: tuple, post: tuple) -> torch.Tensor:
    """Laborieux et al.'s ``Phi(x, neurons, neurons_2)``, summed over the batch: each forward term reads the layer
    below in ``pre`` and the layer it drives in ``post``; each backward term ``⟨Pool(B_j ⋆ post_{j−1}), pre_j⟩``."""
    pool = F.max_pool2d if net.pool == "max" else F.avg_pool2d
    m = len(net.channels)

    def term(j: int, weight: torch.Tensor, below: torch.Tensor, above: torch.Tensor) -> torch.Tensor:
        if j < m:
            return (pool(F.conv2d(below, weight, padding=net.padding[j]), 2) * above).sum()
        return ((below.flatten(1) @ weight.t()) * above).sum()

    phi = x.new_zeros(())
    below = (x, *pre[:-1])
    for j, s in enumerate(post):
        phi = phi + term(j, net.weights[j], below[j], s)
        b = net.biases[j]
        phi = phi + ((s * b.view(-1, 1, 1)).sum() if j < m else (s @ b).sum())
    for key, weight in net.feedback.items():
        j = int(key)
        phi = phi + term(j, weight, post[j - 1], pre[j])
    return phi


def _state(net: ConvVectorField, x: torch.Tensor, gen: torch.Generator) -> tuple:
    """A state with about a third of the hidden units at 0 (ties in the max-pool windows included)."""
    out = []
    for v in net.variables:
        s = torch.rand((x.shape[0], *v.shape), generator=gen, dtype=x.dtype) * 1.5 - 0.5
        out.append(net.project(s, v))
    return tuple(out)


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_the_field_is_laborieux_primitive_function(f64: torch.dtype, gen: torch.Generator, pool: str) -> None:
    """Layer k's field is ∂Φ(s, post)/∂post_k at post = s: its forward drive from below and the feedback of the
    layer above through B (pooled at the argmax of B ⋆ s_k), for every layer, with untied weights."""
    net = _net(pool, gen)
    x = torch.rand(3, *SHAPE, generator=gen)
    state = _state(net, x, gen)
    post = tuple(s.clone().requires_grad_(True) for s in state)
    ref = torch.autograd.grad(_phi(net, x, state, post), post)
    drive = net.prepare(x)
    for k in range(len(state)):
        assert torch.allclose(net.block_field(k, state, drive), ref[k], atol=1e-12), k
        expect = net.project(ref[k], net.variables[k])
        assert torch.allclose(net.block_minimizer(k, drive)(state), expect, atol=1e-12)
    grads = net.state_grad(x, state)
    for g, s, r in zip(grads, state, ref, strict=True):
        assert torch.allclose(g, s - r, atol=1e-12)


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_updates_are_the_primitive_function_derivatives(
    f64: torch.dtype, gen: torch.Generator, pool: str
) -> None:
    """The Hebbian terms are −∂Φ(s, s)/∂θ (batch mean), and the vector-field update is
    −[∂Φ(pre, post_b)/∂θ − ∂Φ(pre, post_a)/∂θ], as Laborieux et al.'s ``compute_syn_grads`` takes them."""
    net = _net(pool, gen)
    x = torch.rand(3, *SHAPE, generator=gen)
    pre, a, b = (_state(net, x, gen) for _ in range(3))
    params = dict(net.named_parameters())

    def d_phi(p: tuple, q: tuple) -> dict[str, torch.Tensor]:
        g = torch.autograd.grad(_phi(net, x, p, q), list(params.values()))
        return {n: t / -x.shape[0] for n, t in zip(params, g, strict=True)}

    ref_a = d_phi(a, a)
    assert rel_err(net.param_grads(x, a), ref_a) < 1e-12
    ref_b = d_phi(b, b)
    expect = {n: 0.7 * (ref_b[n] - ref_a[n]) for n in params}
    assert rel_err(net.param_grad_difference(x, a, b, scale=0.7), expect) < 1e-12
    buffers = {n: torch.full_like(p, 9.0) for n, p in params.items()}
    got = net.param_grad_difference(x, a, b, scale=0.7, out=buffers)
    assert all(got[n] is buffers[n] for n in params)
    assert rel_err(got, expect) < 1e-12
    pre_b, pre_a = d_phi(pre, b), d_phi(pre, a)
    expect = {n: 0.7 * (pre_b[n] - pre_a[n]) for n in params}
    assert rel_err(net.vector_field_contrast(x, pre, a, b, scale=0.7), expect) < 1e-12
    buffers = {n: torch.full_like(p, 9.0) for n, p in params.items()}
    got = net.vector_field_contrast(x, pre, a, b, scale=0.7, out=buffers)
    assert all(got[n] is buffers[n] for n in params)
    assert rel_err(got, expect) < 1e-12


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_tied_weights_are_the_hopfield_dynamics(f64: torch.dtype, gen: torch.Generator, pool: str) -> None:
    vf = _net(pool, gen, tied=True)
    hop = ConvHopfield(SHAPE, [3, 4], [5, 4], kernel_size=3, padding=[1, 0], pool=pool)
    hop.load_state_dict({k: v for k, v in vf.state_dict().items() if not k.startswith("feedback")})
    x, y = torch.rand(4, *SHAPE, generator=gen), torch.randint(0, 4, (4,), generator=gen)
    for solver in (BlockCoordinate(iterations=15), GradientFlow(iterations=15, step_size=1.0)):
        for beta in (0.0, 0.3):
            a = solve(vf, x, solver, cost=SquaredError(), y=y, beta=beta).state
            b = solve(hop, x, solver, cost=SquaredError(), y=y, beta=beta).state
            for sa, sb in zip(a, b, strict=True):
                assert torch.allclose(sa, sb, atol=1e-13, rtol=0)
    solver = BlockCoordinate(iterations=40)
    same = VectorFieldEqProp(beta=0.2, variant="centered", same_update=True).gradients(
        vf, SquaredError(), solver, x, y
    )
    ep = EqProp(beta=0.2, variant="centered").gradients(hop, SquaredError(), solver, x, y)
    assert rel_err({n: same.grads[n] for n in ep.grads}, ep.grads) < 1e-12
    for key in vf.feedback:  # the common update: tied weights stay tied
        assert torch.equal(same.grads[f"system.feedback.{key}"], same.grads[f"system.weights.{key}"])


def test_vector_field_update_tends_to_eqprop_with_tied_weights(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """As for dense nets: with tied weights a shared weight's VF update (forward plus backward part) differs from
    EqProp's by O(β)."""
    vf = _net("avg", gen, tied=True)
    hop = ConvHopfield(SHAPE, [3, 4], [5, 4], kernel_size=3, padding=[1, 0], pool="avg")
    hop.load_state_dict({k: v for k, v in vf.state_dict().items() if not k.startswith("feedback")})
    x, y = torch.rand(4, *SHAPE, generator=gen), torch.randint(0, 4, (4,), generator=gen)
    solver = BlockCoordinate(iterations=80)
    errors = []
    for beta in (0.02, 0.002):
        vfe = VectorFieldEqProp(beta=beta).gradients(vf, SquaredError(), solver, x, y).grads
        ep = EqProp(beta=beta).gradients(hop, SquaredError(), solver, x, y).grads
        merged = {n: g for n, g in vfe.items() if "feedback" not in n}
        for key in vf.feedback:
            merged[f"system.weights.{key}"] = vfe[f"system.weights.{key}"] + vfe[f"system.feedback.{key}"]
        errors.append(rel_err(merged, ep))
    assert errors[0] > 1e-5
    assert 5 < errors[0] / errors[1] < 20


def test_angle_parameters_and_no_energy(f64: torch.dtype, gen: torch.Generator) -> None:
    tied = _net("max", gen, tied=True)
    assert all(float(a) < 1e-5 for a in tied.diagnostics().values())
    net = _net("max", gen)
    assert set(net.diagnostics()) == {"angle/1", "angle/2", "angle/3"}
    assert [tuple(net.feedback[k].shape) for k in ("1", "2", "3")] == [(4, 3, 3, 3), (5, 4), (4, 5)]
    assert not net.has_energy
    with pytest.raises(ConfigError, match="no energy"):
        net.energy(torch.rand(2, *SHAPE), net.init_state(torch.rand(2, *SHAPE)))
    with pytest.raises(ConfigError, match="tied"):
        ConvVectorField(SHAPE, [3], [4], tied="yes")  # type: ignore[arg-type]
    assert "ConvVectorField(" in repr(net._label())
