r"""Finite settling: a circuit's relaxation cut off after a physical time, not after a number of sweeps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["Settling"]


@dataclass(frozen=True)
class Settling(Solver):
    r"""The physical transient of a circuit with a capacitance ``C`` at every free node, followed for ``time``:

    .. math::
        C\,\frac{dV_k}{dt} = −\frac{∂F}{∂V_k} = h_k − a_k V_k ,

    the net current into the node (``a_k``: the total conductance at the node, :meth:`block_curvature`; ``h_k``: what
    its neighbours, sources and the nudge drive into it, :meth:`block_field` and the cost's model). ``iterations``
    steps of ``dt = time/iterations`` each move every node exactly along its own exponential with its neighbours held,
    ``V_k ← h_k/a_k + (V_k − h_k/a_k)·e^{−a_k dt/C}`` (stable for any ``dt``; the exact transient as ``dt → 0``),
    then onto its diodes' bounds (an ideal diode clamps at once). A relaxation whose time is short against the
    circuit's time constants ``C/a_k`` ends before the equilibrium: that is the non-ideality (the rule then reads
    unsettled states). For a very long ``time`` it is the Jacobi iteration, whose fixed point is the equilibrium.

    Units: ``a_k`` is in the system's conductance units, so ``C`` is in those units times seconds (a model whose
    conductance unit is 1e-4 S with 1 pF nodes: ``capacitance = 1e-8``).

    Args:
        time: seconds each phase settles.
        capacitance: the node capacitance ``C`` (> 0).
        iterations: integration steps over ``time``.
        tol, check_every, norm: as :class:`~eqprop.GradientFlow` (stop early once settled).

    Raises:
        ConfigError: a non-positive time or capacitance; a system without a block field and curvature.
    """

    time: float = 1e-6
    capacitance: float = 1e-12
    iterations: int = 100
    tol: float | None = None
    check_every: int = 10
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "settling"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()
        for name in ("time", "capacitance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
                raise ConfigError(f"Settling({name}={value!r}): need a finite number > 0")

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        system = problem.system
        if not system.has_block_minimizer:
            raise ConfigError(
                f"Settling follows node currents and conductances; {type(system).__name__} has none",
                hint="use it with circuits (deep_resistive, netlist circuits) or Hopfield networks",
            )
        if not system.quadratic_blocks:
            raise ConfigError(
                f"Settling steps each node's linear transient exactly; {system._label()} has nonlinear elements "
                "at its nodes (Shockley diodes), whose transient it cannot step",
                hint="relax it with block_coordinate or newton",
            )
        ratio = self.time / self.iterations / self.capacitance  # dt/C
        nudged = problem.nudged_index if problem.nudged else None
        updates: list[Callable[[State], Tensor]] = []
        for k in range(len(system.variables)):
            if k in problem.clamp:
                value = problem.clamp[k]
                updates.append(lambda state, value=value: value)
            else:
                updates.append(_node_update(problem, k, ratio, nudged=k == nudged))

        def sweep(state: State) -> State:  # every node from the old state (its neighbours held over dt)
            return tuple(f(state) for f in updates)

        return sweep


def _node_update(problem: TotalEnergy, k: int, ratio: float, *, nudged: bool) -> Callable[[State], Tensor]:
    system, drive = problem.system, problem.drive
    lo, hi = system.block_bounds(k)
    cost, target, beta = problem.cost, problem.target, problem.beta
    curvature = system.block_curvature(k)
    if nudged:  # the cost's curvature c is a constant of the cost (its model's l may move with the state)
        assert cost is not None and target is not None
        curvature = curvature + beta * cost.curvature
    # constants of the relaxation, computed once: the decay over dt and the inverse curvature
    decay = torch.exp(-ratio * curvature) if isinstance(curvature, Tensor) else math.exp(-ratio * curvature)
    inverse = 1.0 / curvature

    def update(state: State) -> Tensor:  # hot loop: the field, then one exponential step per node
        h = system.block_field(k, state, drive)
        if nudged:
            h = h + beta * cost.nudge(state[k], target)[1]  # type: ignore[union-attr]
        settled = h * inverse
        new = settled + (state[k] - settled) * decay
        return new.clamp(lo, hi) if (lo is not None or hi is not None) else new

    return update
