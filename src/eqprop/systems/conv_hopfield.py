"""Convolutional deep Hopfield networks (DCHN): conv + 2×2 pooling layers, then dense layers.

References:
    Laborieux et al. (2021), "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing its
    Gradient Estimator Bias"; Scellier et al. (2023), "Energy-based learning algorithms for analog computing: a
    comparative study" (``ConvHopfieldEnergy28``: 1×28×28 → 32×12×12 → 64×4×4 → 10, 5×5 convs, no padding);
    Scellier, Mishra, Bengio & Ollivier (2022), "Agnostic physics-driven deep learning" (conv + 2×2 average
    pooling).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem
from eqprop.systems.self_term import (
    Activation,
    check_self_term,
    no_block_minimizer,
    sigmoid,
    sigmoid_inverse,
    sigmoid_self_term,
)

__all__ = ["ConvHopfield"]

Bounds = tuple[float | None, float | None]
Pool = Literal["avg", "max"]
POOLS: tuple[str, ...] = ("avg", "max")


def _positive_ints(name: str, values: Sequence[int], *, allow_empty: bool = False) -> tuple[int, ...]:
    out = tuple(values)
    if (not out and not allow_empty) or any(
        (not isinstance(n, int)) or isinstance(n, bool) or n < 1 for n in out
    ):
        raise ConfigError(f"ConvHopfield({name}={list(out)!r}): give a non-empty list of positive integers")
    return out


def _per_conv(name: str, value: int | Sequence[int], n: int, low: int) -> tuple[int, ...]:
    """One integer per conv layer, from a single integer or a sequence of ``n``."""
    out = (value,) * n if isinstance(value, int) else tuple(value)
    if len(out) != n or any((not isinstance(v, int)) or isinstance(v, bool) or v < low for v in out):
        raise ConfigError(
            f"ConvHopfield({name}={value!r}): need one integer >= {low}, or one per conv layer ({n})"
        )
    return out


def _check_bounds(name: str, bounds: Sequence[float | None] | None) -> Bounds:
    if bounds is None:
        return (None, None)
    if len(bounds) != 2:
        raise ConfigError(f"ConvHopfield({name}={bounds!r}): give a pair (low, high)")
    lo, hi = bounds
    if lo is not None and hi is not None and not lo < hi:
        raise ConfigError(f"ConvHopfield({name}={tuple(bounds)!r}): low must be < high")
    return (None if lo is None else float(lo), None if hi is None else float(hi))


def _fmt(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4: one query per device type

    def _autocast_dtype(device_type: str) -> torch.dtype | None:
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None

else:  # pragma: no cover (torch < 2.4)

    def _autocast_dtype(device_type: str) -> torch.dtype | None:
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


class _ArgmaxMemo:
    """The max pooling of a conv layer's drive, ``(MaxPool(W_j ⋆ s_{j−1}), its argmax)``, remembered per conv
    layer ``j`` for the block-update closures of one relaxation (:meth:`ConvHopfield.block_minimizer`).

    Layer ``j``'s update pools ``W_j ⋆ s_{j−1}``, and layer ``j−1``'s update needs the argmax of that same
    pooling to route ``s_j`` back (``Poolᵀ``). In an odd-even, forward or backward sweep ``s_{j−1}`` does not
    change between the two, and in a synchronous one both read the same old state: whichever update comes
    first computes the convolution, the other reuses it. An entry is used only for the very tensor object it
    was computed from, at the same version counter (no in-place change since), with the same weight object
    at the same version and the same autocast dtype; otherwise the convolution is recomputed. The values and
    indices are those of ``F.max_pool2d(z, 2, return_indices=True)``, which is also what ``F.max_pool2d(z, 2)``
    computes (it discards the indices), so the states are bit-identical to recomputing (ties included).
    """

    __slots__ = ("__weakref__", "drive", "entries", "last_k", "system")

    def __init__(self, system: ConvHopfield, drive: tuple[Tensor, ...]) -> None:
        self.system = system
        self.drive = drive  # the relaxation's drive (see ConvHopfield._argmax_memo)
        self.last_k = -1
        self.entries: dict[
            int, tuple[Tensor, Tensor, tuple[int, int, torch.dtype | None], Tensor, Tensor]
        ] = {}

    def pool(self, j: int, below: Tensor) -> tuple[Tensor, Tensor]:
        """``(MaxPool₂(W_j ⋆ below), argmax)``; the values must not be modified in place (they may be reused)."""
        system = self.system
        w = system.weights[j]
        if below.is_inference():  # no version counter to key on: recompute, remember nothing
            return F.max_pool2d(F.conv2d(below, w, padding=system.padding[j]), 2, return_indices=True)
        key = (below._version, w._version, _autocast_dtype(below.device.type))
        entry = self.entries.get(j)
        if entry is not None and entry[0] is below and entry[1] is w and entry[2] == key:
            return entry[3], entry[4]
        pooled, idx = F.max_pool2d(F.conv2d(below, w, padding=system.padding[j]), 2, return_indices=True)
        self.entries[j] = (below, w, key, pooled, idx)
        return pooled, idx


class _MemoHandoff:
    """A weak reference to the argmax memo of the relaxation whose closures are being built, so that the
    ``block_minimizer`` calls of one relaxation share it; the memo itself lives as long as those closures.
    A copy or a pickle of the system gets an empty one."""

    __slots__ = ("ref",)

    def __init__(self) -> None:
        self.ref: weakref.ref[_ArgmaxMemo] | None = None

    def __reduce__(self) -> tuple[type[_MemoHandoff], tuple[()]]:
        return (_MemoHandoff, ())

    def __deepcopy__(self, memo: dict[int, object]) -> _MemoHandoff:
        return _MemoHandoff()


class ConvHopfield(EnergySystem):
    r"""A layered Hopfield network on images: input ``x = s₀`` clamped, conv layers ``s₁ … s_m`` (each a
    stride-1 convolution followed by 2×2 pooling), then dense layers ``s_{m+1} … s_L`` (the last is the output).

    .. math::
        E(θ, x, s) = \sum_{k=1}^{L} ½‖s_k‖² − \sum_{k=1}^{L} ⟨b_k, s_k⟩
            − \sum_{k ≤ m} ⟨\mathrm{Pool}(W_k ⋆ s_{k−1}), s_k⟩ − \sum_{k > m} ⟨W_k s_{k−1}, s_k⟩

    States are ``(batch, C_k, H_k, W_k)`` for conv layers and ``(batch, n_k)`` for dense ones (the last conv
    layer is flattened into the first dense one). A conv layer's bias has shape ``(C_k,)`` and is broadcast
    over space, so ``∂E/∂b_k`` is the *spatial sum* of ``s_k`` per channel. (The official AEqprop code uses
    the spatial mean there, which is not the gradient of its energy; this class does not copy that quirk:
    divide a conv bias's learning rate by ``H_k·W_k`` to reproduce its step sizes.) An odd conv output
    drops its last row / column in the pooling, as ``torch`` pooling does.

    ``E`` is quadratic in each layer given its neighbours, with field
    ``h_k = b_k + Pool(W_k ⋆ s_{k−1}) + W_{k+1}ᵀ Poolᵀ(s_{k+1})`` (``Poolᵀ``: the adjoint of the pooling
    followed by a transposed convolution), and the block minimiser is ``clip(h_k)``:

    - ``pool="avg"``: ``E`` is bilinear in neighbouring layers and ``Poolᵀ`` is nearest 2× upsampling ÷ 4.
      The block update is the exact minimiser of ``E`` in ``s_k``.
    - ``pool="max"``: ``E`` is only *piecewise* bilinear: ``Poolᵀ`` puts ``s_{k+1}`` at the argmax of each
      window of ``W_{k+1} ⋆ s_k``, and :meth:`block_field` takes that argmax at the *current* ``s_k``. The
      block update is then a fixed-point step, exact only where the argmax does not change. With a
      non-negative hidden box (the default ``[0, 1]``) ``−⟨max-pool(·), s_{k+1}⟩`` is concave in ``s_k``,
      so the step minimises a majorant of ``E`` that touches it at the current state, and ``E`` still never
      increases along a block sweep; its fixed points satisfy the KKT conditions with the argmax there.
      Within a relaxation, the update of ``s_k`` takes that argmax from the pooling that the update of
      ``s_{k+1}`` computed from the same ``s_k`` (see :meth:`block_minimizer`): the same states, with one
      convolution fewer per sweep for each conv layer after the first.

    Args:
        input_shape: ``(C₀, H, W)`` of the clamped input.
        channels: output channels of each conv layer, ``[C₁, …, C_m]`` (at least one).
        dense: widths of the dense layers after the conv stack, ``[n_{m+1}, …, n_L]``; the last is the
            output (at least one).
        kernel_size: square kernel size, one for all conv layers or one per layer.
        padding: zero padding of each convolution (stride is always 1), one or one per layer.
        pool: ``"avg"`` or ``"max"`` (2×2 windows, stride 2).
        bounds: box of the hidden units (conv and dense).
        output_bounds: box of the output units; ``None`` = linear output.
        gains: weight init ``U(±gain/√fan_in)`` (``fan_in = C_in·k²`` for a conv), one gain or one per weight.
        self_curvature: ``a`` in the self term ``½a‖s_k‖²`` (default 1): the block update is ``clip(h_k / a)``; 2,
            with the ``synchronous`` solver, is Laborieux et al.'s ``my_hard_sig``.
        activation: ``"hard_sigmoid"`` or ``"sigmoid"`` (units in ``(0, 1)`` settling to
            ``σ(h) = 1/(1 + e^{−4(h − ½)})``, their ``my_sigmoid``: see :mod:`eqprop.systems.self_term`; relax with
            the ``synchronous`` solver).
        generator: optional ``torch.Generator`` for the initialisation.

    Raises:
        ConfigError: non-positive sizes, an unknown ``pool``, a wrong number of gains, kernel sizes or
            paddings, or a conv stack that shrinks the image below the 2×2 pool window (the message shows
            the computed shapes: use fewer conv layers, smaller kernels or more padding).

    Example:
        >>> import torch, eqprop
        >>> from eqprop.systems import ConvHopfield
        >>> net = ConvHopfield((1, 12, 12), channels=[4], dense=[10], kernel_size=5, pool="max")
        >>> eq = eqprop.solve(net, torch.rand(3, 1, 12, 12), eqprop.BlockCoordinate(iterations=20))
        >>> [tuple(s.shape) for s in eq.state]
        [(3, 4, 4, 4), (3, 10)]
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (32, 64),
        dense: Sequence[int] = (10,),
        *,
        kernel_size: int | Sequence[int] = 5,
        padding: int | Sequence[int] = 0,
        pool: Pool = "avg",
        bounds: Sequence[float | None] | None = (0.0, 1.0),
        output_bounds: Sequence[float | None] | None = None,
        gains: float | Sequence[float] = 0.7,
        self_curvature: float = 1.0,
        activation: Activation = "hard_sigmoid",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.self_curvature = check_self_term(
            "ConvHopfield", activation, self_curvature, _check_bounds("bounds", bounds)
        )
        shape_in = _positive_ints("input_shape", input_shape)
        if len(shape_in) != 3:
            raise ConfigError(
                f"ConvHopfield(input_shape={list(shape_in)!r}): give (channels, height, width), e.g. (1, 28, 28)"
            )
        channels = _positive_ints("channels", channels)
        dense = _positive_ints("dense", dense)
        if pool not in POOLS:
            raise ConfigError(f"ConvHopfield(pool={pool!r}): choose one of {', '.join(map(repr, POOLS))}")
        m = len(channels)
        kernels = _per_conv("kernel_size", kernel_size, m, 1)
        paddings = _per_conv("padding", padding, m, 0)
        n_weights = m + len(dense)
        gain_list = (
            [float(gains)] * n_weights if isinstance(gains, int | float) else [float(g) for g in gains]
        )
        if len(gain_list) != n_weights:
            raise ConfigError(
                f"ConvHopfield(gains={gain_list!r}): need one gain per weight ({m} conv + {len(dense)} dense)"
            )
        # The shape of every layer, checked against the pool window as it shrinks.
        trace = [_fmt(shape_in)]
        conv_sizes: list[tuple[int, int]] = []  # each conv's output (H, W), before pooling
        layer_shapes: list[tuple[int, ...]] = []
        c, h, w = shape_in
        for j, (c_out, k, p) in enumerate(zip(channels, kernels, paddings, strict=True), start=1):
            hc, wc = h + 2 * p - k + 1, w + 2 * p - k + 1
            trace.append(f"conv{k}" + (f"(pad {p})" if p else "") + f" → {c_out}×{hc}×{wc}")
            if hc < 2 or wc < 2:
                raise ConfigError(
                    f"ConvHopfield: conv layer {j} shrinks the image below the 2×2 pool window: "
                    f"{' → '.join(trace)}",
                    hint="use fewer conv layers, a smaller kernel_size, more padding or a larger input",
                )
            c, h, w = c_out, hc // 2, wc // 2
            trace.append(f"pool → {_fmt((c, h, w))}")
            conv_sizes.append((hc, wc))
            layer_shapes.append((c, h, w))
        layer_shapes.extend((n,) for n in dense)

        self.input_shape = shape_in
        self.channels, self.dense = channels, dense
        self.kernel_size, self.padding, self.pool = kernels, paddings, pool
        self.hidden_bounds = _check_bounds("bounds", bounds)
        self.output_bounds = _check_bounds("output_bounds", output_bounds)
        self.gains = tuple(gain_list)
        self.shapes = tuple(layer_shapes)
        self._conv_sizes = tuple(conv_sizes)
        self._m = m
        fan_ins = [shape_in[0], *channels[:-1]]
        flat_in = c * h * w
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.empty(co, ci, k, k))
                for co, ci, k in zip(channels, fan_ins, kernels, strict=True)
            ]
            + [
                nn.Parameter(torch.empty(n, n_in))
                for n_in, n in zip((flat_in, *dense[:-1]), dense, strict=True)
            ]
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(s[0])) for s in layer_shapes)
        self._folds: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}  # see _pool_kernel
        self._memo_handoff = _MemoHandoff()  # see _argmax_memo
        self.reset_parameters(generator)
        self._block_bounds: tuple[Bounds, ...] = tuple(
            self.output_bounds if k == n_weights - 1 else self.hidden_bounds for k in range(n_weights)
        )
        self.variables = tuple(
            Variable(f"s{k}", s, b)
            for k, (s, b) in enumerate(zip(layer_shapes, self._block_bounds, strict=True), start=1)
        )
        # Which layers have the sigmoid's self term (activation "sigmoid": those boxed to [0, 1]).
        self._sigmoid = tuple(activation == "sigmoid" and b == (0.0, 1.0) for b in self._block_bounds)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Weights ``U(±gain/√fan_in)`` (``fan_in = C_in·k·k`` for a conv kernel), biases zero."""
        with torch.no_grad():
            for w, gain in zip(self.weights, self.gains, strict=True):
                scale = gain / math.sqrt(w[0].numel())
                w.uniform_(-scale, scale, generator=generator)
            for b in self.biases:
                b.zero_()

    def extra_repr(self) -> str:
        return (
            f"input_shape={self.input_shape}, channels={list(self.channels)}, dense={list(self.dense)}, "
            f"kernel_size={self.kernel_size}, padding={self.padding}, pool={self.pool!r}, "
            f"bounds={self.hidden_bounds}, output_bounds={self.output_bounds}"
            + (f", self_curvature={self.self_curvature:g}" if self.self_curvature != 1.0 else "")
            + (f", activation={self.activation!r}" if self.activation != "hard_sigmoid" else "")
        )

    def _label(self) -> str:
        return (
            f"ConvHopfield({' → '.join(_fmt(s) for s in (self.input_shape, *self.shapes))}, {self.pool}-pool)"
        )

    def block_bounds(self, k: int) -> Bounds:
        return self._block_bounds[k]

    # -- the interactions -------------------------------------------------------------------------------------
    def _pool_kernel(self, j: int) -> Tensor:
        """Average pooling folded into conv ``j``'s kernel: ``W'_j = W_j ∗ box₂/4``, ``(C_out, C_in, k+1, k+1)``.

        ``AvgPool₂(W ⋆ s) = W' ⋆ s`` with stride 2, and ``Conv2dᵀ(Poolᵀ(s), W)`` is the stride-2 transposed
        convolution of ``s`` with ``W'``: the same sums in a different order, on 4× fewer output positions
        (and no pooling or upsampling pass). One small matmul, ``W'[u, v] = ¼ Σ_{a,b ∈ {0,1}} W[u−a, v−b]``;
        it follows the weight's autograd graph like any other expression of it.
        """
        return self._folded(self.weights[j])

    def _folded(self, w: Tensor) -> Tensor:
        """:meth:`_pool_kernel` of any kernel ``w`` shaped like a conv weight."""
        c_out, c_in, k, _ = w.shape
        return (w.reshape(c_out * c_in, k * k) @ self._fold(w)).view(c_out, c_in, k + 1, k + 1)

    def _feedback_weight(self, j: int) -> Tensor:
        """The weight through which layer ``j`` (state index) feeds back onto layer ``j − 1``: ``W_j`` itself
        (symmetric interactions); a vector-field net has its own, of the same shape."""
        return self.weights[j]

    def _fold(self, w: Tensor) -> Tensor:
        """The linear map of :meth:`_pool_kernel` on flattened ``k×k`` kernels, ``(k², (k+1)²)``: ``kron(A, A)ᵀ``
        with ``A[u, i] = ½`` for ``u − i ∈ {0, 1}`` (built once per kernel size, dtype and device)."""
        k = w.shape[-1]
        key = (k, w.dtype, w.device)
        fold = self._folds.get(key)
        if fold is None:
            a = torch.zeros(k + 1, k, dtype=w.dtype, device=w.device)
            idx = torch.arange(k, device=w.device)
            a[idx, idx] = 0.5
            a[idx + 1, idx] = 0.5
            fold = self._folds[key] = torch.kron(a, a).t().contiguous()
        return fold

    def _weight_correlation(self, j: int, below: Tensor, above: Tensor) -> Tensor:
        """``Σ_n below ⋆ Poolᵀ(above)``, shaped like ``W_j``: the correlation in ``∂E/∂W_j``. ``above`` is on the
        pooled grid for average pooling (the correlation with the folded kernel, then the fold's adjoint) and
        already un-pooled (on the conv grid, at the argmax) for max pooling."""
        w = self.weights[j]
        if self.pool != "avg":
            return conv2d_weight(below, w.shape, above, padding=self.padding[j])
        c_out, c_in, k, _ = w.shape
        g = conv2d_weight(below, (c_out, c_in, k + 1, k + 1), above, stride=2, padding=self.padding[j])
        return (g.reshape(c_out * c_in, (k + 1) ** 2) @ self._fold(w).t()).view(w.shape)

    def _conv_pool(self, j: int, below: Tensor, kernel: Tensor | None = None) -> Tensor:
        """``Pool(W_j ⋆ below)``: the forward drive of conv layer ``j`` (0-based), ``(batch, C, H, W)``.
        ``kernel``: ``self._pool_kernel(j)`` if already computed (average pooling only)."""
        if self.pool == "avg":
            w = self._pool_kernel(j) if kernel is None else kernel
            return F.conv2d(below, w, stride=2, padding=self.padding[j])
        z = F.conv2d(below, self.weights[j], padding=self.padding[j])
        return F.max_pool2d(z, 2)

    def _pool_feedback(self, j: int, above: Tensor, kernel: Tensor | None = None) -> Tensor:
        """``W_jᵀ Poolᵀ(above)`` for average pooling: the feedback of conv layer ``j`` onto the layer below, as
        one stride-2 transposed convolution (an odd conv output gets its unpooled last row / column back
        through ``output_padding``)."""
        w = self._folded(self._feedback_weight(j)) if kernel is None else kernel
        hc, wc = self._conv_sizes[j]
        return F.conv_transpose2d(
            above, w, stride=2, padding=self.padding[j], output_padding=(hc % 2, wc % 2)
        )

    def _kernels(self, k: int) -> dict[int, Tensor]:
        """The folded kernels that layer ``k``'s field needs (average pooling), computed once per closure."""
        if self.pool != "avg":
            return {}
        kernels = {k: self._pool_kernel(k)} if 1 <= k < self._m else {}  # the drive from below
        if 1 <= k + 1 < self._m:  # the feedback from above
            kernels[k + 1] = self._folded(self._feedback_weight(k + 1))
        return kernels

    def _unpool(self, j: int, s: Tensor, below: Tensor, weight: Tensor | None = None) -> Tensor:
        """``Poolᵀ(s)`` for conv layer ``j``: ``s`` spread back onto the conv output grid, ``(batch, C, Hc, Wc)``.

        Average pooling: nearest 2× upsampling ÷ 4. Max pooling: ``s`` at the argmax of each window of
        ``W_j ⋆ below`` (the conv is recomputed from ``below``: the argmax depends on the current state), or of
        ``weight ⋆ below`` when a kernel is given (a vector-field net's backward weights pool their own conv).
        """
        hc, wc = self._conv_sizes[j]
        if self.pool == "max":
            w = self.weights[j] if weight is None else weight
            z = F.conv2d(below, w, padding=self.padding[j])
            _, idx = F.max_pool2d(z, 2, return_indices=True)
            return F.max_unpool2d(s, idx, 2, output_size=(hc, wc))
        up = F.interpolate(s * 0.25, scale_factor=2.0, mode="nearest")
        if up.shape[-2:] != (hc, wc):  # an odd conv output: its last row / column is not pooled
            up = F.pad(up, (0, wc - up.shape[-1], 0, hc - up.shape[-2]))
        return up

    def _coupling(
        self,
        k: int,
        state: State,
        kernels: Mapping[int, Tensor] | None = None,
        memo: _ArgmaxMemo | None = None,
    ) -> Tensor:
        """The neighbour terms of ``h_k`` (without its bias or input drive); a fresh tensor.
        ``kernels``: ``self._kernels(k)``, if already computed. ``memo`` (max pooling, no autograd): the
        relaxation's :class:`_ArgmaxMemo`, to reuse a pooling and its argmax computed from the same state."""
        m, n = self._m, len(state)
        avg = self.pool == "avg"
        if avg and kernels is None:
            kernels = self._kernels(k)
        h: Tensor | None = None
        if 0 < k < m:
            if memo is None:
                h = self._conv_pool(k, state[k - 1], kernels.get(k) if kernels else None)
            else:  # may be a remembered tensor: only read below (h + fb is out of place)
                h = memo.pool(k, state[k - 1])[0]
        elif k >= m:  # dense; the first one reads the flattened last conv layer
            h = state[k - 1].flatten(1) @ self.weights[k].t()
        if k + 1 < n:
            above = state[k + 1]
            if k + 1 < m and avg:
                fb = self._pool_feedback(k + 1, above, kernels.get(k + 1) if kernels else None)
            elif k + 1 < m:
                back = self._feedback_weight(k + 1)
                if memo is None:
                    up = self._unpool(k + 1, above, state[k], back)
                else:
                    idx = memo.pool(k + 1, state[k])[1]
                    up = F.max_unpool2d(above, idx, 2, output_size=self._conv_sizes[k + 1])
                fb = F.conv_transpose2d(up, back, padding=self.padding[k + 1])
            else:
                fb = (above @ self._feedback_weight(k + 1)).view(state[k].shape)
            h = fb if h is None else h + fb
        assert h is not None  # every layer has a neighbour: there are at least two layers
        return h

    # -- energy ---------------------------------------------------------------------------------------------
    def energy(self, x: Tensor, state: State) -> Tensor:
        e = x.new_zeros(x.shape[0])
        below = x
        for j, (s, b) in enumerate(zip(state, self.biases, strict=True)):
            if j < self._m:
                drive = self._conv_pool(j, below)
                e = e - s.sum((2, 3)) @ b
            else:
                drive = below.flatten(1) @ self.weights[j].t()
                e = e - s @ b
            if self._sigmoid[j]:
                own = sigmoid_self_term(s)
            else:
                own = (0.5 * self.self_curvature) * (s * s) if self.self_curvature != 1.0 else 0.5 * (s * s)
            e = e + own.flatten(1).sum(1) - (drive * s).flatten(1).sum(1)
            below = s
        return e

    # -- fast paths -----------------------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> tuple[Tensor, ...]:
        """The constant drive of each layer: ``Pool(W₁ ⋆ x) + b₁`` for the first, ``b_k`` for the others
        (conv biases shaped ``(C, 1, 1)`` to broadcast over space). Computed once per batch."""
        biases = [b.view(-1, 1, 1) if j < self._m else b for j, b in enumerate(self.biases)]
        return (self._conv_pool(0, x) + biases[0], *biases[1:])

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
        """``h_k = drive_k + Pool(W_k ⋆ s_{k−1}) + W_{k+1}ᵀ Poolᵀ(s_{k+1})`` (dense terms for dense layers),
        shaped like ``state[k]``. With max pooling ``Poolᵀ`` uses the argmax at the current ``s_k``."""
        return self._coupling(k, state).add_(drive[k])

    def block_minimizer(
        self, k: int, drive: tuple[Tensor, ...], *, shift: Tensor | None = None, scale: float | Tensor = 1.0
    ) -> Callable[[State], Tensor]:
        """``clip(scale·(h_k + shift))`` with ``scale·(drive_k + shift)`` folded into one constant per relaxation.

        With max pooling the closures of one relaxation (the calls with the same ``drive``, ``k`` increasing)
        share an :class:`_ArgmaxMemo`: the convolution ``W_j ⋆ s_{j−1}`` that layer ``j``'s update pools also
        gives the argmax that layer ``j−1``'s update needs (``Poolᵀ``), as long as ``s_{j−1}`` is the same tensor,
        unchanged. That saves one of the three convolution-sized products per sweep of each conv layer after
        the first, and the states are bit-identical to recomputing it (``block_field``). Not with autograd on.
        """
        const = drive[k] if shift is None else drive[k] + shift
        unit = isinstance(scale, float) and scale == 1.0
        if not unit:
            const = const * scale
        lo, hi = self._block_bounds[k]
        bounded = lo is not None or hi is not None
        kernels = self._kernels(k)  # the parameters are fixed during a relaxation
        memo = self._argmax_memo(k, drive)

        def update(state: State) -> Tensor:  # hot loop: the neighbour convs, then in-place ops
            # With autograd on (backprop through the solver) every convolution is recomputed, as in block_field.
            h = self._coupling(k, state, kernels, None if memo is None or torch.is_grad_enabled() else memo)
            if not unit:
                h = h.mul_(scale)
            h = h.add_(const)
            return h.clamp_(lo, hi) if bounded else h

        return update

    _reuse_argmax: bool = True
    """Max pooling: share the drive's argmax with the feedback within a relaxation (False: recompute it, as
    ``block_field`` does; for tests and benchmarks)."""

    def _argmax_memo(self, k: int, drive: tuple[Tensor, ...]) -> _ArgmaxMemo | None:
        """The argmax memo for layer ``k``'s closure: the one of the relaxation being built (same ``drive``, a
        larger ``k`` than the last call: ``TotalEnergy`` builds its closures in order), else a new one. ``None``
        when layer ``k`` touches no pooled convolution of a state (average pooling; ``W₁ ⋆ x`` is in ``drive``)."""
        if self.pool != "max" or not self._reuse_argmax or not (0 < k < self._m or k + 1 < self._m):
            return None
        handoff = getattr(self, "_memo_handoff", None)
        if handoff is None:  # a system unpickled from before the memo existed
            handoff = self._memo_handoff = _MemoHandoff()
        memo = None if handoff.ref is None else handoff.ref()
        if memo is None or memo.drive is not drive or k <= memo.last_k:
            memo = _ArgmaxMemo(self, drive)
            handoff.ref = weakref.ref(memo)
        memo.last_k = k
        return memo

    def block_curvature(self, k: int) -> float:
        return self.self_curvature

    def state_grad(self, x: Tensor, state: State, drive: tuple[Tensor, ...] | None = None) -> State:
        """``∂E/∂s_k = a·s_k − h_k`` (``σ⁻¹(s_k) − h_k`` for sigmoid units; at the current argmax, for max
        pooling)."""
        if drive is None:
            drive = self.prepare(x)
        a = self.self_curvature
        return tuple(
            (sigmoid_inverse(s) if sig else (s if a == 1.0 else a * s)) - self.block_field(k, state, drive)
            for k, (s, sig) in enumerate(zip(state, self._sigmoid, strict=True))
        )

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """Closed form, batch means: ``∂E/∂W_k = −⟨s_{k−1} ⋆ Poolᵀ(s_k)⟩`` (the correlation of the layer
        below with the un-pooled layer) for convs, ``−⟨s_k s_{k−1}ᵀ⟩`` for dense weights, and
        ``∂E/∂b_k = −⟨s_k⟩`` summed over space for conv layers."""
        c = -1.0 / x.shape[0]
        grads: dict[str, Tensor] = {}
        for j, (below, s) in enumerate(zip((x, *state[:-1]), state, strict=True)):
            if j < self._m:
                up = s if self.pool == "avg" else self._unpool(j, s, below)
                grads[f"weights.{j}"] = self._weight_correlation(j, below, up).mul_(c)
                grads[f"biases.{j}"] = s.sum((0, 2, 3)).mul_(c)
            else:
                grads[f"weights.{j}"] = (s.t() @ below.flatten(1)).mul_(c)
                grads[f"biases.{j}"] = s.sum(0).mul_(c)
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
        """``scale·[∂E/∂θ(s_b) − ∂E/∂θ(s_a)]``, one correlation per weight over the two states stacked.

        ``scale`` multiplies the small state factors, not the result; ``out`` as in the base class. The input conv sees the same ``x``
        (and, for max pooling, the same argmax) in both states, so its contrast is ``x ⋆ Poolᵀ(s_a − s_b)``.
        """
        c = scale / x.shape[0]
        avg = self.pool == "avg"  # the correlations take the pooled-grid factors as they are
        dtype = self.weights[0].dtype  # states relaxed under autocast may be bf16: contrast in θ's dtype
        x = x.to(dtype)
        state_a = tuple(s.to(dtype) for s in state_a)
        state_b = tuple(s.to(dtype) for s in state_b)
        grads: dict[str, Tensor] = {}
        for j in range(len(self.weights)):
            a, b = state_a[j], state_b[j]
            if j == 0:
                below = x
                above = (a - b).mul_(c) if avg else self._unpool(0, (a - b).mul_(c), x)
            elif j < self._m:
                below = torch.cat((state_a[j - 1], state_b[j - 1]))
                above = (
                    torch.cat((a * c, b * -c))
                    if avg
                    else torch.cat(
                        (self._unpool(j, a * c, state_a[j - 1]), self._unpool(j, b * -c, state_b[j - 1]))
                    )
                )
            else:
                below = torch.cat((state_a[j - 1], state_b[j - 1])).flatten(1)
                above = torch.cat((a * c, b * -c))
            if j < self._m:
                grads[f"weights.{j}"] = self._weight_correlation(j, below, above)
                grads[f"biases.{j}"] = (a - b).sum((0, 2, 3)).mul_(c)
            else:
                grads[f"weights.{j}"] = above.t() @ below
                grads[f"biases.{j}"] = (a - b).sum(0).mul_(c)
        if out is not None:  # write into the given buffers (e.g. `.grad`), as the base class does
            for name, buffer in out.items():
                grads[name] = buffer.copy_(grads[name])
        return grads
