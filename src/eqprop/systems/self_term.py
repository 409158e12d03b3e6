r"""The self term of a layered net's units, ``Σ_k G(s_k)``, which fixes their activation ``σ = argmin_s G(s) − h·s``.

- ``"hard_sigmoid"``: ``G(s) = ½a‖s‖²`` on the box, ``σ(h) = clip(h / a)`` (``a = 1``: Laborieux et al.'s
  ``hard_sigmoid``; ``a = 2`` with steps of ½: their ``my_hard_sig``);
- ``"sigmoid"``: ``G(s) = ½s + ¼[s ln s + (1 − s) ln(1 − s)]`` on ``(0, 1)``, ``σ(h) = 1/(1 + e^{−4(h − ½)})``
  (their ``my_sigmoid``). ``G' = σ⁻¹`` and ``G'' = 1/(4s(1 − s)) ≥ 1``: a nudged unit's exact block minimiser has no
  closed form, so these nets are relaxed by :class:`~eqprop.solvers.Synchronous` (or gradient flow).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from eqprop.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "check_self_term",
    "no_block_minimizer",
    "sigmoid",
    "sigmoid_inverse",
    "sigmoid_self_term",
]

Activation = Literal["hard_sigmoid", "sigmoid"]
ACTIVATIONS: tuple[str, ...] = ("hard_sigmoid", "sigmoid")


def check_self_term(
    label: str, activation: str, self_curvature: float, hidden_bounds: tuple[float | None, float | None]
) -> float:
    """Validate a net's ``activation`` and ``self_curvature``; return the curvature as a float.

    Raises:
        ConfigError: an unknown activation, a curvature that is not a finite number > 0, or ``"sigmoid"`` with
            hidden bounds other than ``(0, 1)`` or a curvature other than 1.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"{label}(activation={activation!r}): choose one of {', '.join(map(repr, ACTIVATIONS))}"
        )
    if (
        isinstance(self_curvature, bool)
        or not isinstance(self_curvature, int | float)
        or not (0 < self_curvature < math.inf)
    ):
        raise ConfigError(f"{label}(self_curvature={self_curvature!r}): need a finite number > 0")
    if activation == "sigmoid" and (self_curvature != 1.0 or hidden_bounds != (0.0, 1.0)):
        raise ConfigError(
            f"{label}(activation='sigmoid') is the self term of units in (0, 1): it needs bounds (0, 1) and "
            "self_curvature 1",
            hint="set bounds=(0, 1) (and output_bounds=(0, 1) for a sigmoid output), or use 'hard_sigmoid'",
        )
    return float(self_curvature)


def sigmoid(h: Tensor) -> Tensor:
    """``σ(h) = 1/(1 + e^{−4(h − ½)})``: Laborieux et al.'s ``my_sigmoid``."""
    return torch.sigmoid(4.0 * h - 2.0)


def sigmoid_self_term(s: Tensor) -> Tensor:
    """``G(s) = ½s + ¼[s ln s + (1 − s) ln(1 − s)]``, elementwise: the Legendre primitive of ``σ⁻¹``."""
    return 0.5 * s + 0.25 * (torch.xlogy(s, s) + torch.xlogy(1.0 - s, 1.0 - s))


def sigmoid_inverse(s: Tensor) -> Tensor:
    """``G'(s) = σ⁻¹(s) = ½ + ¼ ln(s/(1 − s))``, with ``s`` kept a few ulps inside ``(0, 1)`` (infinite on the
    bounds)."""
    return 0.5 + 0.25 * torch.logit(s, eps=torch.finfo(s.dtype).eps)


def no_block_minimizer(label: str) -> ConfigError:
    """The refusal of an exact block solver by a net with sigmoid units."""
    return ConfigError(
        f"{label} with activation 'sigmoid' has no exact block minimiser in its nudged phase",
        hint="relax it with Synchronous (solver.kind = 'synchronous': Laborieux et al.'s "
        "s <- sigmoid(dPhi/ds) dynamics)",
    )
