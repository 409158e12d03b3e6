"""Exact block-coordinate relaxation (the "fixed-point" / "asynchronous" minimiser of the DHN papers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar, Literal

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["BlockCoordinate"]

Order = Literal["odd-even", "forward", "backward", "synchronous"]
ORDERS: tuple[str, ...] = ("odd-even", "forward", "backward", "synchronous")


@cache
def _one_at_a_time(order: str, n: int) -> bool:
    """Whether every group of ``order`` holds a single variable (e.g. odd-even on two layers)."""
    return all(len(group) == 1 for group in _groups(order, n))


@cache
def _groups(order: str, n: int) -> tuple[tuple[int, ...], ...]:
    """Variables updated together, in sequence. Layers only touch their neighbours, so a group of
    non-adjacent layers updated from the same state is exact block Gauss–Seidel."""
    if order == "odd-even":  # s1, s3, … then s2, s4, … (0-based indices 0, 2, … then 1, 3, …)
        return tuple(g for g in (tuple(range(0, n, 2)), tuple(range(1, n, 2))) if g)
    if order == "forward":
        return tuple((k,) for k in range(n))
    if order == "backward":
        return tuple((k,) for k in reversed(range(n)))
    return (tuple(range(n)),)  # synchronous (Jacobi)


@dataclass(frozen=True)
class BlockCoordinate(Solver):
    r"""Block-coordinate descent: each sweep replaces every layer by its exact minimiser given its neighbours,
    ``s_k ← clip(h_k / a_k)`` (for the nudged layer, ``clip((h + βl)/(a + βc))`` from the cost's model).

    With ``order="odd-even"`` (red-black; the "asynchronous" mode of the reference code) the odd layers are
    updated together, then the even ones: block Gauss–Seidel, so the energy never increases along a sweep,
    and each colour is one batched kernel per layer. ``"forward"`` and ``"backward"`` go layer by layer;
    ``"synchronous"`` updates all layers from the same old state (Jacobi, Laborieux et al.'s dynamics; it
    is *not* guaranteed to decrease the energy). A variable clamped by ``solve(..., clamp={k: value})``
    keeps ``value``: its update returns it (no kernel).

    Args:
        iterations: number of sweeps (each updates every layer once).
        order: ``"odd-even"``, ``"forward"``, ``"backward"`` or ``"synchronous"``.
        tol: stop early once every example's largest change in a sweep is ``<= tol``; ``None`` = never.
        check_every: sweeps between tolerance checks (each is one host sync).
        norm: ``"max"`` (largest change of a unit, per example) or ``"layer-l1"`` (per layer, summed over
            units and batch: the AEqprop reference code's criterion).

    Example:
        >>> solver = BlockCoordinate(iterations=15, order="odd-even")
        >>> eq = eqprop.solve(eqprop.DeepHopfield([8, 6, 3]), torch.rand(2, 8), solver)
        >>> eq.stats.iterations
        15
    """

    iterations: int = 15
    order: Order = "odd-even"
    tol: float | None = None
    check_every: int = 5
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "block_coordinate"
    supports_clamp: ClassVar[bool] = True  # TotalEnergy.block_updates returns the clamp value for k

    def __post_init__(self) -> None:
        self._validate()
        if self.order not in ORDERS:
            raise ConfigError(
                f"BlockCoordinate(order={self.order!r}): choose one of {', '.join(map(repr, ORDERS))}"
            )

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        if not problem.system.has_block_minimizer:
            raise problem.system._no_block_minimizer()
        updates = problem.block_updates()
        groups = _groups(self.order, len(updates))
        if self.order == "odd-even":  # exact only when a colour's blocks do not touch
            system = problem.system
            for group in groups:
                for i in group:
                    for j in group:
                        if i < j and system.blocks_coupled(i, j):
                            raise ConfigError(
                                f"BlockCoordinate(order='odd-even') would update variables {i} and {j} of "
                                f"{type(system).__name__} together, but they interact",
                                hint="use order='forward' (block Gauss-Seidel in the system's order)",
                            )
        if _one_at_a_time(self.order, len(updates)):  # e.g. odd-even on two layers
            order = [(group[0], updates[group[0]]) for group in groups]

            def sweep_each(state: State) -> State:  # hot loop: one closure call per layer, nothing else
                s = list(state)  # the update closures only index the state, so the list is passed as is
                for k, f in order:
                    s[k] = f(s)  # type: ignore[arg-type]
                return tuple(s)

            return sweep_each
        plan = [(group, [updates[k] for k in group]) for group in groups]

        def sweep(state: State) -> State:  # hot loop: one closure call per layer, nothing else
            s = list(state)  # the update closures only index the state, so the list is passed as is
            for group, fns in plan:
                if len(group) == 1:
                    s[group[0]] = fns[0](s)  # type: ignore[arg-type]
                else:
                    new = [f(s) for f in fns]  # type: ignore[arg-type]  (same old state for the group)
                    for k, v in zip(group, new, strict=True):
                        s[k] = v
            return tuple(s)

        return sweep
