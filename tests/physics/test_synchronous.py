"""The synchronous primitive-function dynamics s <- σ(∂Φ/∂s − β∂C/∂s), and the sigmoid units of Laborieux et al."""

from __future__ import annotations

import pytest
import torch

from eqprop import (
    BlockCoordinate,
    CrossEntropyReadout,
    DeepHopfield,
    EqProp,
    GradientFlow,
    ImplicitDiff,
    SquaredError,
    Synchronous,
    solve,
)
from eqprop.errors import ConfigError
from eqprop.systems import ConvHopfield
from helpers import rel_err


def _close(a: tuple, b: tuple, atol: float = 1e-14) -> bool:
    return all(torch.allclose(u, v, atol=atol, rtol=0) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("curvature", [1.0, 2.0])
def test_on_boxed_units_it_is_the_gradient_flow_step_of_size_one_over_a(
    f64: torch.dtype, gen: torch.Generator, curvature: float
) -> None:
    """hard_sigmoid (a = 1, step 1) and my_hard_sig (a = 2, step ½): the same dynamics as GradientFlow's, free
    and nudged, with a squared-error output and with a cross-entropy readout."""
    net = DeepHopfield([7, 9, 6, 4], gains=1.2, output_bounds=(0, 1), self_curvature=curvature, generator=gen)
    x, y = torch.rand(5, 7, generator=gen), torch.randint(0, 4, (5,), generator=gen)
    flow = GradientFlow(iterations=12, step_size=1.0 / curvature)
    sync = Synchronous(iterations=12)
    for cost in (SquaredError(), CrossEntropyReadout(4, 4, generator=gen)):
        for beta in (0.0, 0.4, -0.3):
            a = solve(net, x, sync, cost=cost, y=y, beta=beta).state
            b = solve(net, x, flow, cost=cost, y=y, beta=beta).state
            assert _close(a, b), (type(cost).__name__, beta)


def test_on_a_conv_net_it_is_the_gradient_flow_step(f64: torch.dtype, gen: torch.Generator) -> None:
    net = ConvHopfield((1, 10, 10), [3], [5, 4], kernel_size=3, pool="max", gains=1.5, generator=gen)
    x, y = torch.rand(3, 1, 10, 10, generator=gen), torch.randint(0, 4, (3,), generator=gen)
    for beta in (0.0, 0.5):
        a = solve(net, x, Synchronous(iterations=10), cost=SquaredError(), y=y, beta=beta).state
        b = solve(
            net, x, GradientFlow(iterations=10, step_size=1.0), cost=SquaredError(), y=y, beta=beta
        ).state
        assert _close(a, b)


def _sigmoid_net(gen: torch.Generator, gains: float = 1.0) -> DeepHopfield:
    return DeepHopfield([6, 8, 5], gains=gains, output_bounds=(0, 1), activation="sigmoid", generator=gen)


def test_sigmoid_units_follow_laborieux_my_sigmoid(f64: torch.dtype, gen: torch.Generator) -> None:
    """One step from any state is their ``neurons = my_sigmoid(grad of Phi)``, ``Phi = Σ s_(k+1)·(W s_k + b) −
    β·½‖s_L − y‖²``, ``my_sigmoid(x) = 1/(1 + exp(−4(x − ½)))``, written out with autograd."""
    net = _sigmoid_net(gen)
    with torch.no_grad():
        for b in net.biases:
            b.uniform_(-0.5, 0.5, generator=gen)
    x, y = torch.rand(4, 6, generator=gen), torch.randint(0, 5, (4,), generator=gen)
    target = torch.nn.functional.one_hot(y, 5).double()
    state = tuple(torch.rand(4, n, generator=gen) for n in (8, 5))
    for beta in (0.0, 0.7):
        leaves = [s.clone().requires_grad_(True) for s in state]
        layers = [x, *leaves]
        phi = sum(
            ((layers[k] @ w.t() + b) * layers[k + 1]).sum()
            for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True))
        )
        phi = phi - beta * 0.5 * ((leaves[-1] - target) ** 2).sum()
        grads = torch.autograd.grad(phi, leaves)
        expect = tuple(1 / (1 + torch.exp(-4 * (g - 0.5))) for g in grads)
        got = solve(net, x, Synchronous(iterations=1), cost=SquaredError(), y=y, beta=beta, init=state).state
        assert _close(got, expect)


def test_sigmoid_self_term(f64: torch.dtype, gen: torch.Generator) -> None:
    """σ is the minimiser of G(s) − h·s (G'(σ(h)) = h), and the closed-form ∂E/∂s is autograd's."""
    net = _sigmoid_net(gen)
    h = torch.linspace(-2.0, 3.0, 11)
    s = net.block_activation(0)(h)
    assert torch.allclose(0.5 + 0.25 * torch.log(s / (1 - s)), h, atol=1e-12)
    x = torch.rand(3, 6, generator=gen)
    state = tuple(torch.rand(3, n, generator=gen) * 0.98 + 0.01 for n in (8, 5))
    leaves = [t.clone().requires_grad_(True) for t in state]
    ref = torch.autograd.grad(net.energy(x, leaves).sum(), leaves)
    assert _close(net.state_grad(x, state), ref, atol=1e-12)
    linear = DeepHopfield([6, 8, 5], activation="sigmoid")  # a linear output keeps its quadratic self term
    assert linear._sigmoid == (True, False)


def test_eqprop_on_sigmoid_units_tends_to_implicit_differentiation(
    f64: torch.dtype, gen: torch.Generator
) -> None:
    """The fixed point of the dynamics is a stationary point of E = Σ G(s) − Φ (∂E/∂s = 0 there), so EqProp with
    the synchronous solver tends to the implicit-differentiation gradient: O(β) one-sided, O(β²) centered."""
    net = _sigmoid_net(gen, gains=0.8)
    x, y = torch.rand(6, 6, generator=gen), torch.randint(0, 5, (6,), generator=gen)
    solver = Synchronous(iterations=300)
    eq = solve(net, x, solver)
    with torch.no_grad():
        assert max(float(g.abs().max()) for g in net.state_grad(x, eq.state)) < 1e-12
    ref = ImplicitDiff().gradients(net, SquaredError(), solver, x, y).grads
    for variant, rate in (("positive", 10), ("centered", 100)):
        errs = [
            rel_err(EqProp(beta=b, variant=variant).gradients(net, SquaredError(), solver, x, y).grads, ref)
            for b in (0.01, 0.001)
        ]
        assert rate / 1.5 < errs[0] / errs[1] < rate * 1.5, (variant, errs)


def test_bad_input(f64: torch.dtype, gen: torch.Generator) -> None:
    net = _sigmoid_net(gen)
    x, y = torch.rand(2, 6), torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="no exact block minimiser") as err:
        solve(net, x, BlockCoordinate(), cost=SquaredError(), y=y, beta=0.1)
    assert "synchronous" in str(err.value.hint)
    with pytest.raises(ConfigError, match="activation"):
        DeepHopfield([6, 8, 5], activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bounds"):
        DeepHopfield([6, 8, 5], bounds=(-1, 1), activation="sigmoid")
    with pytest.raises(ConfigError, match="iterations"):
        Synchronous(iterations=-1)


def test_gdu_with_sigmoid_units(f64: torch.dtype, gen: torch.Generator) -> None:
    """``gdu_check`` follows the synchronous dynamics. With sigmoid units the synaptic updates still equal BPTT's
    step by step at O(β²) (centered), while the neural ones do not converge: the step's Jacobian diag(σ')·∂²Φ/∂s²
    is not symmetric (measured ~0.5 relative error at every β)."""
    from eqprop.analysis.gdu import gdu_check, summarize

    net = DeepHopfield([12, 9, 7, 6], gains=1.0, output_bounds=(0, 1), activation="sigmoid", generator=gen)
    x, y = torch.rand(8, 12, generator=gen), torch.randint(0, 6, (8,), generator=gen)
    worst = []
    for beta in (1e-2, 1e-3):
        trace = gdu_check(
            net, SquaredError(), Synchronous(iterations=200), x, y, steps=7, beta=beta, variant="centered"
        )
        worst.append({k: max(v["relative_error"]) for k, v in summarize(trace).items()})
    for key in worst[0]:
        if key.startswith("s"):
            assert worst[1][key] > 0.1, key
        else:
            assert 100 / 1.5 < worst[0][key] / worst[1][key] < 100 * 1.5, key


@pytest.mark.parametrize(
    ("activation", "curvature", "act"),
    [
        ("sigmoid", 1.0, lambda g: 1 / (1 + torch.exp(-4 * (g - 0.5)))),  # their my_sigmoid
        ("hard_sigmoid", 2.0, lambda g: (1 + torch.nn.functional.hardtanh(g - 1)) * 0.5),  # their my_hard_sig
    ],
)
def test_conv_nets_follow_laborieux_activations(
    f64: torch.dtype, gen: torch.Generator, activation: str, curvature: float, act
) -> None:
    """Their P_CNN step, ``neurons = activation(grad of Phi)`` with ``Phi`` = Σ⟨MaxPool(conv(s_k)), s_(k+1)⟩ +
    the dense terms − β·½‖s_L − y‖², written out with autograd: one synchronous step of a ConvHopfield with the
    matching self term, free and nudged."""
    import torch.nn.functional as F

    net = ConvHopfield(
        (1, 12, 12), [3, 4], [5], kernel_size=3, pool="max", gains=1.5, output_bounds=(0, 1),
        self_curvature=curvature, activation=activation, generator=gen,
    )  # fmt: skip
    with torch.no_grad():
        for b in net.biases:
            b.uniform_(-0.3, 0.3, generator=gen)
    x, y = torch.rand(3, 1, 12, 12, generator=gen), torch.randint(0, 5, (3,), generator=gen)
    target = F.one_hot(y, 5).double()
    state = tuple(torch.rand((3, *v.shape), generator=gen) for v in net.variables)
    for beta in (0.0, 0.6):
        leaves = [s.clone().requires_grad_(True) for s in state]
        layers = [x, *leaves]
        phi = x.new_zeros(())
        for j, w in enumerate(net.weights):
            if j < 2:
                z = F.max_pool2d(F.conv2d(layers[j], w, net.biases[j]), 2)
            else:
                z = layers[j].flatten(1) @ w.t() + net.biases[j]
            phi = phi + (z * layers[j + 1]).sum()
        phi = phi - beta * 0.5 * ((leaves[-1] - target) ** 2).sum()
        expect = tuple(act(g) for g in torch.autograd.grad(phi, leaves))
        got = solve(net, x, Synchronous(iterations=1), cost=SquaredError(), y=y, beta=beta, init=state).state
        assert _close(got, expect, atol=1e-13), beta
    leaves = [s.clone().clamp(0.01, 0.99).requires_grad_(True) for s in state]
    ref = torch.autograd.grad(net.energy(x, leaves).sum(), leaves)  # the closed-form ∂E/∂s is autograd's
    assert _close(net.state_grad(x, tuple(t.detach() for t in leaves)), ref, atol=1e-12)
