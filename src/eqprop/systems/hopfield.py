"""Layered (deep) Hopfield networks with dense interactions.

References:
    Scellier & Bengio (2017), "Equilibrium Propagation: Bridging the Gap between Energy-Based Models and
    Backpropagation"; Scellier (2021), thesis ch. 3; Scellier et al. (2024), "A fast algorithm to simulate
    nonlinear resistive networks" (the DHN-1H/2H/3H configurations of ``papers/fast-drn/dhn.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem
from eqprop.systems.self_term import (
    check_self_term,
    no_block_minimizer,
    sigmoid,
    sigmoid_inverse,
    sigmoid_self_term,
)

__all__ = ["DeepHopfield"]

Bounds = tuple[float | None, float | None]


def _check_bounds(name: str, bounds: Sequence[float | None] | None) -> Bounds:
    if bounds is None:
        return (None, None)
    if len(bounds) != 2:
        raise ConfigError(f"DeepHopfield({name}={bounds!r}): give a pair (low, high)")
    lo, hi = bounds
    if lo is not None and hi is not None and not lo < hi:
        raise ConfigError(f"DeepHopfield({name}={tuple(bounds)!r}): low must be < high")
    return (None if lo is None else float(lo), None if hi is None else float(hi))


class DeepHopfield(EnergySystem):
    r"""A layered Hopfield network: input ``x = s₀`` clamped, free layers ``s₁ … s_L``, no intra-layer links.

    .. math::
        E(θ, x, s) = \sum_{k=1}^{L} ½‖s_k‖² − \sum_{k=1}^{L} b_k·s_k − \sum_{k=0}^{L-1} s_{k+1}·W_k s_k

    Hidden units are boxed to ``bounds`` (default ``[0, 1]``: the hard sigmoid); the output layer is
    linear (unbounded) as in the reference DHN code, unless ``output_bounds`` is given (use the hidden box
    when a readout cost sits on top). Since ``E`` is quadratic in each layer given its neighbours, the exact
    block minimiser is ``s_k ← clip(b_k + W_{k-1}s_{k-1} + W_kᵀs_{k+1})``.

    With ``energy_form="rho"`` the energy is the 2017 paper's
    ``Σ½‖s_k‖² − Σ b_k·ρ(s_k) − Σ ρ(s_{k+1})·W_k ρ(s_k)``, ``ρ = clip(·, bounds)``. As in that paper's code,
    the states are still projected onto the box after every step (where ``ρ(s) = s``), so both forms share
    their equilibria; the ρ form differs only for states put outside the box by hand (e.g. ``init=``),
    where it is the energy the leaky-integrator dynamics ``ds/dt = ρ'(s)(Wρ(s') + b) − s`` descend.

    Args:
        sizes: layer widths ``[n₀ (input), n₁, …, n_L (output)]``.
        bounds: box of the hidden units.
        output_bounds: box of the output units; ``None`` = linear output.
        gains: weight init ``U(±gain/√fan_in)``, one gain or one per weight matrix (0.7 in the DHN papers).
        energy_form: ``"boxed"`` (states boxed) or ``"rho"`` (hard-sigmoid ρ form, unbounded states).
        self_curvature: ``a`` in the self term ``½a‖s_k‖²`` (default 1); the block update becomes
            ``clip(h_k / a)``. With ``a = 2`` and gradient-flow steps of 0.5 the dynamics is Laborieux et al.'s
            ``s ← my_hard_sig(∂Φ/∂s) = clip(∂Φ/∂s / 2, 0, 1)``.
        activation: ``"hard_sigmoid"`` (the quadratic self term and the box: ``σ = clip``) or ``"sigmoid"``: the
            layers boxed to ``[0, 1]`` get the self term ``G(s) = ½s + ¼[s ln s + (1 − s) ln(1 − s)]`` instead of
            ``½‖s‖²``, whose block minimiser is ``σ(h) = 1/(1 + e^{−4(h − ½)})`` (Laborieux et al.'s
            ``my_sigmoid``): :class:`~eqprop.solvers.Synchronous` then runs their ``s ← σ(∂Φ/∂s)`` dynamics, and
            the equilibria are the stationary points of ``E = Σ G(s_k) − Φ``.
        generator: optional ``torch.Generator`` for the initialisation.

    Example:
        >>> import torch, eqprop
        >>> net = eqprop.DeepHopfield([784, 64, 10])
        >>> x = torch.rand(5, 784)
        >>> eq = eqprop.solve(net, x, eqprop.BlockCoordinate(iterations=15))
        >>> eq.state[-1].shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        bounds: Sequence[float | None] | None = (0.0, 1.0),
        output_bounds: Sequence[float | None] | None = None,
        gains: float | Sequence[float] = 0.7,
        energy_form: Literal["boxed", "rho"] = "boxed",
        self_curvature: float = 1.0,
        activation: Literal["hard_sigmoid", "sigmoid"] = "hard_sigmoid",
        clip: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if clip is not None and not (isinstance(clip, int | float) and 0 < clip < math.inf):
            raise ConfigError(f"DeepHopfield(clip={clip!r}): a finite bound > 0, or None")
        self.clip = None if clip is None else float(clip)
        self.activation = activation
        self.self_curvature = check_self_term(
            "DeepHopfield", activation, self_curvature, _check_bounds("bounds", bounds)
        )
        if activation == "sigmoid" and energy_form != "boxed":
            raise ConfigError("DeepHopfield(activation='sigmoid'): needs energy_form 'boxed'")
        sizes = list(sizes)
        if len(sizes) < 2 or any((not isinstance(n, int)) or isinstance(n, bool) or n < 1 for n in sizes):
            raise ConfigError(
                f"DeepHopfield(sizes={sizes!r}): give at least two positive integer widths, "
                "e.g. [784, 1024, 10]"
            )
        if energy_form not in ("boxed", "rho"):
            raise ConfigError(f"DeepHopfield(energy_form={energy_form!r}): choose 'boxed' or 'rho'")
        n_weights = len(sizes) - 1
        gain_list = (
            [float(gains)] * n_weights if isinstance(gains, int | float) else [float(g) for g in gains]
        )
        if len(gain_list) != n_weights:
            raise ConfigError(
                f"DeepHopfield(gains={list(gain_list)!r}): need one gain per weight matrix ({n_weights})"
            )
        self.sizes = tuple(sizes)
        self.energy_form = energy_form
        self.hidden_bounds = _check_bounds("bounds", bounds)
        self.output_bounds = _check_bounds("output_bounds", output_bounds)
        self.gains = tuple(gain_list)
        self.input_shape = (sizes[0],)
        # W_k maps layer k to layer k+1, stored (out, in) like nn.Linear.
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(m, n)) for n, m in pairwise(sizes))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(m)) for m in sizes[1:])
        self.reset_parameters(generator)
        # The box each layer's block minimiser clips to; in the rho form the states themselves are unbounded.
        self._block_bounds: tuple[Bounds, ...] = tuple(
            self.output_bounds if k == n_weights else self.hidden_bounds for k in range(1, n_weights + 1)
        )
        self.variables = tuple(
            Variable(f"s{k}", (m,), b)
            for k, (m, b) in enumerate(zip(sizes[1:], self._block_bounds, strict=True), start=1)
        )
        # Which layers have the sigmoid's self term (activation "sigmoid": those boxed to [0, 1]).
        self._sigmoid = tuple(activation == "sigmoid" and b == (0.0, 1.0) for b in self._block_bounds)
        self.constrain_parameters()

    def constrain_parameters(self) -> None:
        """With ``clip``: every weight and bias back into ``[−clip, clip]`` after each update (the couplings and
        fields an Ising machine can realise; Laydevant et al. clip to [−1, 1])."""
        if self.clip is None:
            return
        with torch.no_grad():
            for p in self.parameters():
                p.clamp_(-self.clip, self.clip)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Weights ``U(±gain/√fan_in)``, biases zero (the reference DHN initialisation)."""
        with torch.no_grad():
            for w, gain in zip(self.weights, self.gains, strict=True):
                scale = gain / math.sqrt(w.shape[1])
                w.uniform_(-scale, scale, generator=generator)
            for b in self.biases:
                b.zero_()

    def extra_repr(self) -> str:
        return (
            f"sizes={list(self.sizes)}, bounds={self.hidden_bounds}, output_bounds={self.output_bounds}, "
            f"energy_form={self.energy_form!r}"
            + (f", self_curvature={self.self_curvature:g}" if self.self_curvature != 1.0 else "")
            + (f", activation={self.activation!r}" if self.activation != "hard_sigmoid" else "")
        )

    def _label(self) -> str:
        return f"DeepHopfield({list(self.sizes)})"

    def block_bounds(self, k: int) -> Bounds:
        return self._block_bounds[k]

    # -- energy ---------------------------------------------------------------------------------------------
    def _rho(self, k: int, s: Tensor) -> Tensor:
        lo, hi = self._block_bounds[k]
        if self.energy_form == "boxed" or (lo is None and hi is None):
            return s
        return s.clamp(lo, hi)

    def energy(self, x: Tensor, state: State) -> Tensor:
        r = [self._rho(k, s) for k, s in enumerate(state)]
        e = x.new_zeros(x.shape[0])
        for s, rs, b, sig in zip(state, r, self.biases, self._sigmoid, strict=True):
            if sig:
                e = e + sigmoid_self_term(s).sum(-1) - rs @ b
                continue
            quad = 0.5 * (s * s).sum(-1)
            e = e + (quad if self.self_curvature == 1.0 else self.self_curvature * quad) - rs @ b
        for w, below, above in zip(self.weights, (x, *r[:-1]), r, strict=True):
            e = e - ((below @ w.t()) * above).sum(-1)  # (batch, m) * (batch, m) -> (batch,)
        return e

    # -- fast paths -----------------------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> tuple[Tensor, ...]:
        """The constant drive of each layer: ``W₀x + b₁`` for the first, ``b_k`` for the others.

        Computed once per batch: it is the largest matmul of a relaxation and does not change.
        """
        bs = list(self.biases._parameters.values())  # slicing a ParameterList builds a new Module
        first = torch.addmm(bs[0], x, self.weights._parameters["0"].t())  # (batch, n1)
        return (first, *bs[1:])

    @property
    def has_block_minimizer(self) -> bool:
        """True for the hard sigmoid; a sigmoid unit's nudged block minimiser has no closed form."""
        return self.activation == "hard_sigmoid"

    def block_activation(self, k: int) -> Callable[[Tensor], Tensor]:
        """``clip(h / a)``, or ``σ(h) = 1/(1 + e^{−4(h − ½)})`` for a layer with the sigmoid's self term."""
        return sigmoid if self._sigmoid[k] else super().block_activation(k)

    def _no_block_minimizer(self) -> ConfigError:
        return no_block_minimizer(self._label())

    def block_field(self, k: int, state: State, drive: tuple[Tensor, ...]) -> Tensor:
        """``h_k = drive_k + W_{k-1}ρ(s_{k-1}) + W_kᵀρ(s_{k+1})``, shape ``(batch, n_k)``."""
        h = drive[k]
        if k > 0:
            h = torch.addmm(h, self._rho(k - 1, state[k - 1]), self.weights[k].t())
        if k + 1 < len(state):
            h = torch.addmm(h, self._rho(k + 1, state[k + 1]), self._feedback_weight(k))
        if h.dim() == 1:  # a single-layer net whose only drive is its bias
            h = h.expand(state[k].shape)
        return h

    def block_minimizer(
        self, k: int, drive: tuple[Tensor, ...], *, shift: Tensor | None = None, scale: float | Tensor = 1.0
    ) -> Callable[[State], Tensor]:
        """Fused form of the layer update: one ``addmm`` per neighbour and an in-place clip.

        ``scale·(drive_k + shift)`` is folded into the addmm's input once per relaxation, and the coupling is
        added with ``alpha=scale``, so the nudged output layer costs no more than a free one.
        """
        if self.energy_form == "rho" or isinstance(scale, Tensor):
            # ρ on the neighbours, or a per-unit scale (not an addmm alpha): the generic composition
            return super().block_minimizer(k, drive, shift=shift, scale=scale)
        const = drive[k] if shift is None else drive[k] + shift
        if not (isinstance(scale, float) and scale == 1.0):
            const = const * scale
        n = len(self.variables)
        weights = self.weights._parameters  # plain dict lookups: ParameterList indexing is slow
        below_w = weights[str(k)].t() if k > 0 else None  # (n_{k-1}, n_k)
        above_w = self._feedback_weight(k) if k + 1 < n else None  # (n_{k+1}, n_k)
        lo, hi = self._block_bounds[k]
        bounded = lo is not None or hi is not None
        alpha = scale

        def update(state: State) -> Tensor:  # hot loop: 1-2 addmm + 1 in-place clamp, nothing else
            h = const
            if below_w is not None:
                h = torch.addmm(h, state[k - 1], below_w, alpha=alpha)
            if above_w is not None:
                h = torch.addmm(h, state[k + 1], above_w, alpha=alpha)
            if h is const:  # no neighbours (a single-layer net): materialise the constant
                h = const.expand(state[k].shape).clone()
            return h.clamp_(lo, hi) if bounded else h

        return update

    def block_curvature(self, k: int) -> float:
        return self.self_curvature

    def _feedback_weight(self, k: int) -> Tensor:
        """The matrix that carries layer ``k + 1`` back to layer ``k`` (state indices), as ``s_{k+1} @ it``:
        ``W_{k+1}`` itself here (symmetric interactions); a vector-field net has its own."""
        return self.weights._parameters[str(k + 1)]  # type: ignore[return-value]

    def state_grad(self, x: Tensor, state: State, drive: tuple[Tensor, ...] | None = None) -> State:
        if self.energy_form == "rho":
            return super().state_grad(x, state, drive)
        if drive is None:
            drive = self.prepare(x)
        if any(self._sigmoid):
            return tuple(
                (sigmoid_inverse(s) if sig else s) - self.block_field(k, state, drive)
                for k, (s, sig) in enumerate(zip(state, self._sigmoid, strict=True))
            )
        a = self.self_curvature
        if a == 1.0:
            return tuple(s - self.block_field(k, state, drive) for k, s in enumerate(state))
        return tuple(a * s - self.block_field(k, state, drive) for k, s in enumerate(state))

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """Closed form: ``∂E/∂W_k = −⟨ρ(s_{k+1}) ρ(s_k)ᵀ⟩``, ``∂E/∂b_k = −⟨ρ(s_k)⟩`` (batch means)."""
        batch = x.shape[0]
        r = [self._rho(k, s) for k, s in enumerate(state)]
        grads: dict[str, Tensor] = {}
        for j, (below, above) in enumerate(zip((x, *r[:-1]), r, strict=True)):
            grads[f"weights.{j}"] = above.t() @ below / -batch
        for k, rs in enumerate(r):
            grads[f"biases.{k}"] = rs.sum(0) / -batch
        return grads

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·[∂E/∂θ(s_b) − ∂E/∂θ(s_a)]`` with one matmul per weight (the EqProp "Hebbian" contrast).

        ``scale`` multiplies the small (batch, n) factors, not the (n, m) result: no extra pass over θ.
        With ``out`` (e.g. the ``.grad`` buffers) the matmuls write there directly: no copy either.
        """
        out = {} if out is None else out
        c = scale / x.shape[0]
        ra = [self._rho(k, s) for k, s in enumerate(state_a)]
        rb = [self._rho(k, s) for k, s in enumerate(state_b)]

        def mm(name: str, a: Tensor, b: Tensor) -> Tensor:
            return torch.mm(a, b, out=out[name]) if name in out else a @ b

        def colsum(name: str, a: Tensor) -> Tensor:
            return torch.sum(a, 0, out=out[name]) if name in out else a.sum(0)

        grads: dict[str, Tensor] = {}
        diff0 = (ra[0] - rb[0]).mul_(c)
        # Input weights: x is clamped, so the contrast is x ⊗ (s1_b − s1_a).
        grads["weights.0"] = mm("weights.0", diff0.t(), x)
        for j in range(1, len(self.weights)):
            above = torch.cat((ra[j], -rb[j])).mul_(c)  # (2·batch, n_{j+1})
            below = torch.cat((ra[j - 1], rb[j - 1]))  # (2·batch, n_j)
            grads[f"weights.{j}"] = mm(f"weights.{j}", above.t(), below)
        grads["biases.0"] = colsum("biases.0", diff0)
        for k in range(1, len(self.biases)):
            grads[f"biases.{k}"] = colsum(f"biases.{k}", (ra[k] - rb[k]).mul_(c))
        return grads
