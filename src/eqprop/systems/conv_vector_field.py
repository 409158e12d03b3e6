r"""A convolutional network with separate forward and backward weights: vector-field dynamics on images.

References:
    Scellier, Goyal, Binas & Bengio (2018), "Generalization of Equilibrium Propagation to vector field dynamics";
    Laborieux et al. (2021), "Scaling Equilibrium Propagation to deep ConvNets" (their ``VF_CNN``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn.grad import conv2d_weight

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.systems.conv_hopfield import ConvHopfield, Pool
from eqprop.systems.self_term import Activation
from eqprop.systems.vector_field import _no_energy, _reset_feedback, feedback_angles

__all__ = ["ConvVectorField"]


class ConvVectorField(ConvHopfield):
    r""":class:`~eqprop.systems.ConvHopfield` whose layers feed back through weights of their own: layer ``k``
    hears layer ``k + 1`` through ``B_{k+1}ᵀ Poolᵀ`` instead of ``W_{k+1}ᵀ Poolᵀ``,

    .. math::
        s_k ← \mathrm{clip}\big(b_k + \mathrm{Pool}(W_k ⋆ s_{k−1}) + B_{k+1}ᵀ\,\mathrm{Pool}ᵀ_{B}(s_{k+1})\big),

    ``B_j`` (``feedback.j``, ``j = 1 … L−1``) shaped like ``W_j``: a conv kernel for a conv layer, a matrix for a
    dense one; the input gets no feedback. This is Laborieux et al.'s ``VF_CNN``: the field of layer ``k`` is the
    gradient in ``s_k`` of ``⟨Pool(W_k ⋆ s_{k−1}), s_k⟩ + ⟨Pool(B_{k+1} ⋆ s_k), s_{k+1}⟩``, so with max pooling
    the feedback goes to the argmax of each window of ``B_{k+1} ⋆ s_k`` (not of ``W_{k+1} ⋆ s_k``). With
    ``B = W`` it is the Hopfield network exactly; otherwise there is no energy (``has_energy`` is False).

    :meth:`param_grad_difference` gives ``B`` the Hebbian contrast of its own term (Laborieux et al.'s
    ``same_update`` gives both weights the mean of the two, see :class:`~eqprop.rules.VectorFieldEqProp`);
    :meth:`vector_field_contrast` is the vector-field update.

    Args:
        input_shape, channels, dense, kernel_size, padding, pool, bounds, output_bounds, gains, self_curvature,
            activation, generator: as :class:`~eqprop.systems.ConvHopfield`.
        tied: start with ``B = W``; default: independent draws of the same scale.
    """

    _reuse_argmax = False  # the drive pools W ⋆ s, the feedback B ⋆ s: no argmax to share

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
        tied: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(tied, bool):
            raise ConfigError(f"ConvVectorField(tied={tied!r}): need true or false")
        self.tied = tied
        super().__init__(
            input_shape,
            channels,
            dense,
            kernel_size=kernel_size,
            padding=padding,
            pool=pool,
            bounds=bounds,
            output_bounds=output_bounds,
            gains=gains,
            self_curvature=self_curvature,
            activation=activation,
            generator=generator,
        )

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """As :class:`~eqprop.systems.ConvHopfield`, then ``B_j = W_j`` (``tied``) or ``B_j ~ U(±gain_j/√fan_in)``."""
        super().reset_parameters(generator)
        _reset_feedback(self, [tuple(w.shape) for w in list(self.weights)[1:]], generator)

    def _label(self) -> str:
        return super()._label().replace("ConvHopfield", "ConvVectorField", 1)

    @property
    def has_energy(self) -> bool:
        return False

    def energy(self, x: Tensor, state: State) -> Tensor:
        raise _no_energy(self._label())

    def _feedback_weight(self, j: int) -> Tensor:
        """``B_j``: the backward weights through which layer ``j`` feeds back onto layer ``j − 1``."""
        return self.feedback[str(j)]

    def diagnostics(self) -> dict[str, Tensor]:
        """The angle in degrees between each ``W_j`` and ``B_j`` (0: symmetric; 90: unrelated)."""
        return feedback_angles(self)

    # -- the backward weights' terms --------------------------------------------------------------------------
    def _feedback_correlation(self, j: int, post: Tensor, pre: Tensor) -> Tensor:
        """``∂/∂B_j ⟨Pool(B_j ⋆ post), pre⟩`` summed over the batch (``B_j``'s shape): ``post`` in layer ``j − 1``
        (the unit the weight drives), ``pre`` in layer ``j``; with max pooling at the argmax of ``B_j ⋆ post``."""
        b = self._feedback_weight(j)
        if j >= self._m:  # dense
            return pre.t() @ post.flatten(1)
        if self.pool == "avg":
            c_out, c_in, k, _ = b.shape
            g = conv2d_weight(post, (c_out, c_in, k + 1, k + 1), pre, stride=2, padding=self.padding[j])
            return (g.reshape(c_out * c_in, (k + 1) ** 2) @ self._fold(b).t()).view(b.shape)
        up = self._unpool(j, pre, post, b)
        return conv2d_weight(post, b.shape, up, padding=self.padding[j])

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """:class:`~eqprop.systems.ConvHopfield`'s, and ``−⟨∂/∂B_j ⟨Pool(B_j ⋆ s_{j−1}), s_j⟩⟩`` for ``B_j``."""
        grads = super().param_grads(x, state)
        c = -1.0 / x.shape[0]
        for key in self.feedback:
            j = int(key)
            grads[f"feedback.{key}"] = self._feedback_correlation(j, state[j - 1], state[j]).mul_(c)
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
        """:class:`~eqprop.systems.ConvHopfield`'s contrast, and that of each ``B_j``'s own term."""
        own = None if out is None else {n: t for n, t in out.items() if not n.startswith("feedback.")}
        grads = super().param_grad_difference(x, state_a, state_b, scale=scale, out=own)
        c = scale / x.shape[0]
        for key in self.feedback:
            j, name = int(key), f"feedback.{key}"
            g = self._feedback_correlation(j, state_a[j - 1], state_a[j]) - self._feedback_correlation(
                j, state_b[j - 1], state_b[j]
            )
            g = g.mul_(c)
            grads[name] = out[name].copy_(g) if out is not None and name in out else g
        return grads

    def vector_field_contrast(
        self,
        x: Tensor,
        pre: State,
        post_a: State,
        post_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·`` the vector-field update as a gradient, in Laborieux et al.'s form ``Φ(pre, post)`` (the
        forward term of each weight at the presynaptic state ``pre``, the post units at ``post_b`` and
        ``post_a``): ``−[∂Φ/∂θ(pre, post_b) − ∂Φ/∂θ(pre, post_a)]``, batch means. For ``W_j`` that is
        ``−pre_{j−1} ⋆ Poolᵀ(post_b_j − post_a_j)`` (argmax of ``W_j ⋆ pre_{j−1}``); for ``B_j`` the post unit is in
        layer ``j − 1`` and the term ``⟨Pool(B_j ⋆ post_{j−1}), pre_j⟩`` (argmax of ``B_j ⋆ post``: exact for max
        pooling, where it is not linear in ``post``); biases ``−(post_b − post_a)``, summed over space."""
        c = -scale / x.shape[0]
        grads: dict[str, Tensor] = {}
        below = (x, *pre[:-1])
        for j, (a, b) in enumerate(zip(post_a, post_b, strict=True)):
            d = (b - a).mul_(c)
            if j < self._m:
                up = d if self.pool == "avg" else self._unpool(j, d, below[j])
                grads[f"weights.{j}"] = self._weight_correlation(j, below[j], up)
                grads[f"biases.{j}"] = d.sum((0, 2, 3))
            else:
                grads[f"weights.{j}"] = d.t() @ below[j].flatten(1)
                grads[f"biases.{j}"] = d.sum(0)
        for key in self.feedback:
            j = int(key)
            g = self._feedback_correlation(j, post_b[j - 1], pre[j]) - self._feedback_correlation(
                j, post_a[j - 1], pre[j]
            )
            grads[f"feedback.{key}"] = g.mul_(c)
        if out is not None:
            for name, buffer in out.items():
                grads[name] = buffer.copy_(grads[name])
        return grads
