r"""A layered Hopfield network with a smooth, holomorphic activation: the network of holomorphic EqProp.

References:
    Laborieux & Zenke (NeurIPS 2022), "Holomorphic Equilibrium Propagation Computes Exact Gradients Through
    Finite Size Oscillations"; Scellier & Bengio (2017) for the energy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem

__all__ = ["ACTIVATIONS", "SmoothHopfield"]

Activation = Literal["sigmoid", "tanh"]
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh")


def _rho(name: str, s: Tensor) -> tuple[Tensor, Tensor]:
    """``(ρ(s), ρ'(s))``: ``sigmoid(4(s − ½))`` (Laborieux et al.'s ``my_sigmoid``: 0 to 1, slope 1 at ½) or
    ``tanh``. Both are holomorphic (away from their poles), so complex states are fine."""
    if name == "sigmoid":
        r = torch.sigmoid(4.0 * (s - 0.5))
        return r, 4.0 * r * (1.0 - r)
    r = torch.tanh(s)
    return r, 1.0 - r * r


def _mm(a: Tensor, w: Tensor) -> Tensor:
    """``a @ w`` for a real or complex ``a`` and a real ``w`` (no complex copy of the weights)."""
    if a.is_complex():
        return torch.complex(a.real @ w, a.imag @ w)
    return a @ w


class SmoothHopfield(EnergySystem):
    r"""A layered Hopfield network with unbounded states and a smooth activation ``ρ``:

    .. math::
        E(θ, x, s) = \sum_{k=1}^{L} ½‖s_k‖² − \sum_{k=1}^{L} b_k·ρ(s_k) − \sum_{k=0}^{L-1} ρ(s_{k+1})·W_k ρ(s_k),

    with ``ρ(s₀) = x`` (the input enters as is). ``E`` is holomorphic in the states, so its fixed points continue
    to complex nudging: what holomorphic EqProp (:class:`~eqprop.rules.HolomorphicEqProp`) relaxes. It is not
    quadratic in a layer: relax it with :class:`~eqprop.GradientFlow` (the closed-form ``state_grad`` works on
    real and complex states alike). Weights ``U(±gain/√fan_in)``, biases 0.

    Args:
        sizes: layer widths, input first.
        activation: ``"sigmoid"`` (``sigmoid(4(s − ½))``) or ``"tanh"``.
        gains: one gain, or one per weight matrix.
        generator: optional generator of the initialisation.
    """

    holomorphic = True

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: Activation = "sigmoid",
        gains: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise ConfigError(f"SmoothHopfield(sizes={sizes!r}): give at least two positive integer widths")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"SmoothHopfield(activation={activation!r}): choose one of {', '.join(map(repr, ACTIVATIONS))}"
            )
        n = len(sizes) - 1
        gain_list = [float(gains)] * n if isinstance(gains, int | float) else [float(g) for g in gains]
        if len(gain_list) != n:
            raise ConfigError(f"SmoothHopfield(gains={gain_list!r}): need one gain per weight matrix ({n})")
        self.sizes, self.activation, self.gains = tuple(sizes), activation, tuple(gain_list)
        self.input_shape = (sizes[0],)
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(m, k)) for k, m in pairwise(sizes))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(m)) for m in sizes[1:])
        self.variables = tuple(Variable(f"s{k}", (m,)) for k, m in enumerate(sizes[1:], start=1))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            for w, gain in zip(self.weights, self.gains, strict=True):
                bound = gain / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound, generator=generator)
            for b in self.biases:
                b.zero_()

    def extra_repr(self) -> str:
        return f"sizes={list(self.sizes)}, activation={self.activation!r}"

    def _label(self) -> str:
        return f"SmoothHopfield({list(self.sizes)})"

    def energy(self, x: Tensor, state: State) -> Tensor:
        r = [_rho(self.activation, s)[0] for s in state]
        e = x.new_zeros(x.shape[0], dtype=state[0].dtype)
        for s, rs, b in zip(state, r, self.biases, strict=True):
            e = e + 0.5 * (s * s).sum(-1) - _mm(rs, b.unsqueeze(1)).squeeze(1)
        for k, (below, above) in enumerate(zip((x, *r[:-1]), r, strict=True)):
            e = e - (_mm(below, self.weights[k].t()) * above).sum(-1)
        return e

    def prepare(self, x: Tensor) -> Tensor:
        """The first layer's input drive ``b₁ + W₀x`` (real, computed once per batch)."""
        return torch.addmm(self.biases[0], x, self.weights[0].t())

    def state_grad(self, x: Tensor, state: State, drive: Tensor | None = None) -> State:
        """``∂E/∂s_k = s_k − ρ'(s_k) ⊙ (b_k + W_{k-1}ρ(s_{k-1}) + W_kᵀρ(s_{k+1}))`` (holomorphic derivative for
        complex states; the real weights act on real and imaginary parts separately)."""
        if drive is None:
            drive = self.prepare(x)
        rr = [_rho(self.activation, s) for s in state]
        out = []
        for k, (s, (_, dr)) in enumerate(zip(state, rr, strict=True)):
            h = drive if k == 0 else self.biases[k] + _mm(rr[k - 1][0], self.weights[k].t())
            if k + 1 < len(state):
                h = h + _mm(rr[k + 1][0], self.weights[k + 1])
            out.append(s - dr * h)
        return tuple(out)

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """``∂E/∂W_k = −⟨ρ(s_{k+1}) ρ(s_k)ᵀ⟩``, ``∂E/∂b_k = −⟨ρ(s_k)⟩`` (batch means; complex for complex
        states)."""
        batch = x.shape[0]
        r = [_rho(self.activation, s)[0] for s in state]
        grads: dict[str, Tensor] = {}
        for j, (below, above) in enumerate(zip((x.to(r[0].dtype), *r[:-1]), r, strict=True)):
            grads[f"weights.{j}"] = above.t() @ below / -batch
        for k, rs in enumerate(r):
            grads[f"biases.{k}"] = rs.sum(0) / -batch
        return grads
