"""Small value types shared by systems, solvers and rules."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

Bound = float | Tensor | None
"""One side of a box: a number, a per-unit tensor of the variable's shape (``±inf`` = open), or ``None``."""

__all__ = ["PER_LAYER", "RUN_STATE", "Bound", "State", "Variable"]

State = tuple[Tensor, ...]
"""A state: one tensor per state variable, batch first, in the order of ``system.variables``."""


@dataclass(frozen=True)
class Variable:
    """A state variable of a system: a named block of units.

    Args:
        name: e.g. ``"s1"``.
        shape: the shape of one example's block, e.g. ``(1024,)``.
        bounds: box constraint ``(low, high)``; ``None`` on a side means unbounded. A side may be a tensor of
            the block's shape for per-unit bounds (e.g. excitatory and inhibitory diodes in one layer of a
            resistive network); it then lives on the system's device and dtype.
    """

    name: str
    shape: tuple[int, ...]
    bounds: tuple[Bound, Bound] = (None, None)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def bounded(self) -> bool:
        return self.bounds[0] is not None or self.bounds[1] is not None


PER_LAYER: dict[str, bool] = {"per_layer": True}
"""Dataclass field metadata of a setting that may be one value per layer of the system (a learning rate, AEqprop's
ε): a run configuration checks that such a list has one value per layer."""

RUN_STATE: dict[str, bool] = {"config": False}
"""Dataclass field metadata of a field that is the object's run-time state, not a setting: a run configuration
neither reads nor writes it (e.g. AEqprop's ``epsilon_scale``, which follows the schedule)."""
