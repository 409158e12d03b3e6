r"""The synchronous primitive-function dynamics of Ernoult et al. (2019) and Laborieux et al. (2021):
``s_k ← σ_k(∂Φ/∂s_k − β∂C/∂s_k)`` for every layer at once, from the previous state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from eqprop._types import State
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["Synchronous"]


@dataclass(frozen=True)
class Synchronous(Solver):
    r"""Every layer updated at once from the previous state: ``s_k ← σ_k(h_k − β·∂C/∂s_k)``.

    ``h_k = ∂Φ/∂s_k`` is the system's field (:meth:`~eqprop.systems.EnergySystem.block_field`) and ``σ_k`` its
    activation (:meth:`~eqprop.systems.EnergySystem.block_activation`), the minimiser over ``s_k`` of the self term
    minus ``h·s_k``: for an energy ``E = Σ_k G_k(s_k) − Φ(s)`` this is the mirror-descent step of size 1 on ``E``,
    ``∇G(s[t+1]) = ∇G(s[t]) − ∂F/∂s(s[t])``, and its fixed points are the stationary points of ``F = E + βC``.
    The cost enters through its gradient at the previous state (the cost's tangent model), as the primitive
    function ``Φ − βC`` of Laborieux et al.'s code puts it.

    - Hopfield units boxed to ``[0, 1]`` (``σ = clip``): their ``hard_sigmoid`` dynamics; identical to
      :class:`~eqprop.GradientFlow` with ``step_size = 1`` (``1/a`` for a self term ``½a‖s‖²``: with ``a = 2``
      their ``my_hard_sig``).
    - ``DeepHopfield(activation="sigmoid")``: their ``my_sigmoid`` dynamics, ``σ(h) = 1/(1 + e^{−4(h − ½)})``,
      which no gradient-flow step reproduces.

    Needs a system with a field and an activation per variable (layered Hopfield, convolutional and
    vector-field nets). A variable clamped by ``solve(..., clamp={k: value})`` stays at ``value``.

    Args:
        iterations: number of synchronous steps (Laborieux et al.'s ``T1`` / ``T2``).
        tol, check_every, norm: as :class:`~eqprop.GradientFlow`.
    """

    iterations: int = 30
    tol: float | None = None
    check_every: int = 10
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "synchronous"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        system = problem.system
        nudged = problem.nudged_index if problem.nudged else None
        updates: list[Callable[[State], Tensor]] = []
        for k in range(len(system.variables)):
            if k in problem.clamp:
                value = problem.clamp[k]
                updates.append(lambda state, value=value: value)
            else:
                updates.append(_update(problem, k, nudged=k == nudged))

        def sweep(state: State) -> State:  # hot loop: every layer from the old state
            return tuple(f(state) for f in updates)

        return sweep


def _update(problem: TotalEnergy, k: int, *, nudged: bool) -> Callable[[State], Tensor]:
    system, drive = problem.system, problem.drive
    if not nudged and system.has_block_minimizer:  # the system's fused σ_k(h_k)
        return system.block_minimizer(k, drive, scale=system.block_scale(k))
    activation = system.block_activation(k)
    if not nudged:
        return lambda state: activation(system.block_field(k, state, drive))
    cost, target, beta = problem.cost, problem.target, problem.beta
    assert cost is not None and target is not None

    def update(state: State) -> Tensor:
        c, lin = cost.nudge(state[k], target)  # ∂C/∂s = c·s − l at the previous state
        h = system.block_field(k, state, drive) + beta * lin
        if c != 0.0:
            h = h - (beta * c) * state[k]
        return activation(h)

    return update
