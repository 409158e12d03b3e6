r"""A layered network with separate forward and backward weights: dynamics without an energy (vector-field EqProp).

References:
    Scellier, Goyal, Binas & Bengio (2018), "Generalization of Equilibrium Propagation to vector field dynamics";
    Laborieux et al. (2021), "Scaling Equilibrium Propagation to deep ConvNets" (their ``VF_MLP`` / ``VF_CNN``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.systems.hopfield import DeepHopfield

__all__ = ["VectorFieldHopfield"]


class VectorFieldHopfield(DeepHopfield):
    r""":class:`~eqprop.DeepHopfield` whose layers feed back through their own weights ``B_k`` instead of
    ``W_kᵀ``: each layer settles to

    .. math::
        s_k ← \mathrm{clip}\big(b_k + W_{k-1} s_{k-1} + B_kᵀ s_{k+1}\big),

    with ``B_k`` stored in the layout of the forward ``W_k`` (``feedback.k``, shape ``(n_{k+1}, n_k)``, for
    ``k = 1 … L−1``; the input gets no feedback). With ``B = W`` this is the Hopfield network exactly; otherwise
    the update field is not the gradient of any energy, so :meth:`energy` refuses (``has_energy`` is False): the
    solvers follow the field (:meth:`block_field`, :meth:`state_grad` = ``s − field``), and the Hebbian contrast
    :meth:`param_grad_difference` treats ``B_k`` as ``W_k`` would be treated (Laborieux et al.'s ``same_update``).
    :class:`~eqprop.rules.VectorFieldEqProp` computes the vector-field update proper.

    Args:
        sizes, bounds, output_bounds, gains, generator: as :class:`~eqprop.DeepHopfield` (boxed form).
        tied: start with ``B = W`` (then only the updates make them differ); default: independent draws of the
            same scale.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        bounds: Sequence[float | None] | None = (0.0, 1.0),
        output_bounds: Sequence[float | None] | None = None,
        gains: float | Sequence[float] = 0.7,
        tied: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(tied, bool):
            raise ConfigError(f"VectorFieldHopfield(tied={tied!r}): need true or false")
        self.tied = tied
        sizes = list(sizes)
        self._feedback_shapes = [(m, n) for n, m in pairwise(sizes)][1:]
        super().__init__(sizes, bounds=bounds, output_bounds=output_bounds, gains=gains, generator=generator)
        if len(sizes) < 3:
            raise ConfigError(
                f"VectorFieldHopfield(sizes={sizes!r}): without a hidden layer there is no feedback to learn",
                hint="give at least one hidden layer, e.g. [784, 512, 10]",
            )

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """As :class:`~eqprop.DeepHopfield`, then ``B_k = W_k`` (``tied``) or ``B_k ~ U(±gain_k/√fan_in)``."""
        super().reset_parameters(generator)
        _reset_feedback(self, self._feedback_shapes, generator)

    def _label(self) -> str:
        return f"VectorFieldHopfield({list(self.sizes)})"

    @property
    def has_energy(self) -> bool:
        return False

    def energy(self, x: Tensor, state: State) -> Tensor:
        raise _no_energy(self._label())

    def _feedback_weight(self, k: int) -> Tensor:
        """``B_{k+1}``: the backward weights that carry layer ``k + 1`` back to layer ``k`` (state indices)."""
        return self.feedback._parameters[str(k + 1)]  # type: ignore[return-value]

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """The Hebbian terms: ``−⟨s_{k+1} s_kᵀ⟩`` for ``W_k`` and for ``B_k`` alike, ``−⟨s_k⟩`` for the biases."""
        grads = super().param_grads(x, state)
        for key in self.feedback:
            grads[f"feedback.{key}"] = grads[f"weights.{key}"].clone()
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
        """The Hebbian contrast of :class:`~eqprop.DeepHopfield`, ``B_k`` getting that of ``W_k``."""
        grads = super().param_grad_difference(x, state_a, state_b, scale=scale, out=out)
        for key in self.feedback:
            name = f"feedback.{key}"
            g = grads[f"weights.{key}"]
            grads[name] = out[name].copy_(g) if out is not None and name in out else g.clone()
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
        """``scale·`` the vector-field update as a gradient (Scellier et al. 2018): for each weight,
        ``−(post_b − post_a) ⊗ pre`` with the presynaptic activity ``pre`` (the free state) and the change of the
        postsynaptic unit between the two phases; for ``W_k`` the post unit is in layer ``k+1``, for ``B_k`` in
        layer ``k``; biases ``−(post_b − post_a)``. Batch means."""
        out = {} if out is None else out
        c = -scale / x.shape[0]
        grads: dict[str, Tensor] = {}

        def mm(name: str, a: Tensor, b: Tensor) -> Tensor:
            return torch.mm(a, b, out=out[name]) if name in out else a @ b

        deltas = [(b - a) * c for a, b in zip(post_a, post_b, strict=True)]  # (batch, n_k), scaled
        below = (x, *pre[:-1])
        for j, d in enumerate(deltas):
            grads[f"weights.{j}"] = mm(f"weights.{j}", d.t(), below[j])  # (n_{j+1}, n_j)
            name = f"biases.{j}"
            grads[name] = torch.sum(d, 0, out=out[name]) if name in out else d.sum(0)
        for key in self.feedback:
            k = int(key)  # B_k carries state k back to state k - 1
            grads[f"feedback.{key}"] = mm(f"feedback.{key}", pre[k].t(), deltas[k - 1])
        return grads

    def diagnostics(self) -> dict[str, Tensor]:
        """The angle in degrees between each ``W_k`` and ``B_k`` (0: symmetric; 90: unrelated), as Laborieux et
        al. log it."""
        return feedback_angles(self)


def _reset_feedback(
    system: nn.Module, shapes: Sequence[tuple[int, ...]], generator: torch.Generator | None
) -> None:
    """Create ``system.feedback`` (``B_k`` for ``k = 1, 2, …``, shaped like ``W_k``) on first use, then set
    ``B_k = W_k`` (``system.tied``) or draw ``B_k ~ U(±gain_k/√fan_in)`` as ``W_k`` was drawn."""
    if "feedback" not in system._modules:
        system.feedback = nn.ParameterDict(
            {str(k): nn.Parameter(torch.empty(shape)) for k, shape in enumerate(shapes, start=1)}
        )
    with torch.no_grad():
        for key, b in system.feedback.items():
            k = int(key)
            if system.tied:
                b.copy_(system.weights[k])
            else:
                scale = system.gains[k] / math.sqrt(b[0].numel())
                b.uniform_(-scale, scale, generator=generator)


def _no_energy(label: str) -> ConfigError:
    return ConfigError(
        f"{label} has no energy: with backward weights of their own its dynamics is a vector field, not a gradient",
        hint="relax it with GradientFlow or BlockCoordinate (they follow the field), and check it against BPTT "
        "(BackpropThroughSolver), not implicit differentiation of an energy",
    )


def feedback_angles(system: nn.Module) -> dict[str, Tensor]:
    """``angle/k``: the angle in degrees between ``W_k`` and ``B_k`` of a net with backward weights."""
    out = {}
    with torch.no_grad():
        for key, b in system.feedback.items():
            w = system.weights[int(key)]
            cos = (w * b).sum() / (w.norm() * b.norm()).clamp_min(torch.finfo(w.dtype).tiny)
            out[f"angle/{key}"] = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))
    return out
