"""Read noise: the equilibria a learning rule (or a prediction) reads are measured with Gaussian noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from eqprop._types import State
from eqprop.solvers.base import Solver, SolveStats, TotalEnergy

__all__ = ["NoisyReadout"]


@dataclass(frozen=True)
class NoisyReadout(Solver):
    """``inner``'s relaxation, then every state value read with independent Gaussian noise of std ``noise``
    (from torch's global generator: a run's seed fixes it and its checkpoints carry it), and, with ``bits``, rounded
    to ``2**bits`` levels over ``[low, high]`` (clipped; or, ``periodic``, wrapped: phases on the circle).

    The physics settles to the true equilibrium; what the measurement hands on (to the rule's contrast, to the
    cost's prediction, and as the starting point of the next phase) carries the noise. Clamped variables are held,
    not measured, and stay exact.
    """

    inner: Solver
    noise: float
    bits: int = 0
    low: float = 0.0
    high: float = 1.0
    periodic: bool = False
    kind: ClassVar[str] = "noisy_readout"

    @property
    def iterations(self) -> int:  # type: ignore[override]
        return self.inner.iterations

    @property
    def tol(self) -> float | None:  # type: ignore[override]
        return self.inner.tol

    @property
    def check_every(self) -> int:  # type: ignore[override]
        return self.inner.check_every

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.inner.norm

    @property
    def supports_clamp(self) -> bool:  # type: ignore[override]
        return self.inner.supports_clamp

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.inner.step(problem, state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        return self.inner.make_sweep(problem)

    def run(self, problem: TotalEnergy, state: State) -> tuple[State, SolveStats]:
        state, stats = self.inner.run(problem, state)
        with torch.no_grad():
            read = tuple(s if k in problem.clamp else self._measure(s) for k, s in enumerate(state))
        return read, stats

    def _measure(self, s: torch.Tensor) -> torch.Tensor:
        if self.noise:
            s = s + self.noise * torch.randn_like(s)
        if not self.bits:
            return s
        lo, span = self.low, self.high - self.low
        if self.periodic:  # 2**bits levels around the circle: lo + k·span/2**bits
            step = span / 2**self.bits
            return lo + torch.remainder(torch.round((s - lo) / step) * step, span)
        step = span / (2**self.bits - 1)  # 2**bits levels from lo to hi inclusive
        return lo + torch.round((s.clamp(self.low, self.high) - lo) / step) * step
