"""Small value types shared by systems, solvers and rules."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["State", "Variable"]

State = tuple[Tensor, ...]
"""A state: one tensor per state variable, batch first, in the order of ``system.variables``."""


@dataclass(frozen=True)
class Variable:
    """A state variable of a system: a named block of units.

    Args:
        name: e.g. ``"s1"``.
        shape: the shape of one example's block, e.g. ``(1024,)``.
        bounds: box constraint ``(low, high)``; ``None`` on a side means unbounded.
    """

    name: str
    shape: tuple[int, ...]
    bounds: tuple[float | None, float | None] = (None, None)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def bounded(self) -> bool:
        return self.bounds[0] is not None or self.bounds[1] is not None
