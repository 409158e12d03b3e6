r"""The exact equilibrium of a quadratic energy: one factorisation per phase, one batched solve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, SolveStats, TotalEnergy

__all__ = ["DirectSolver"]


@dataclass(frozen=True)
class DirectSolver(Solver):
    r"""The minimiser of ``F = E + βC`` in one linear solve, for a system whose energy is quadratic in the state,
    ``E = ½zᵀHz − b(x)ᵀz + const`` with a Hessian ``H`` shared by the batch (:class:`~eqprop.systems.FlowNetwork`),
    and a cost that is quadratic in its variable (:class:`~eqprop.SquaredError`, exactly ``½c‖o‖² − l·o``).

    Clamped variables move to the right-hand side; the free block ``H_ff + βc·I_out`` is factored once per
    relaxation (a phase) and every example of the batch is a right-hand side of the same factorisation, which is
    what makes a batch cost little more than one example.

    Args:
        factor: ``"dense"`` (Cholesky in torch, on the system's device: fastest up to a few thousand unknowns),
            ``"sparse"`` (SuperLU through scipy, on the CPU in float64: large sparse networks), or ``"auto"``
            (dense up to ``dense_limit`` unknowns).
        dense_limit: the largest problem ``"auto"`` factors densely.
        iterations: kept for the solver interface; one solve is exact (1).

    Raises:
        ConfigError: a system without a quadratic form, a cost whose nudge depends on the state (a softmax
            readout), ``1 + β·c`` making the problem non-convex.
    """

    iterations: int = 1
    factor: Literal["auto", "dense", "sparse"] = "auto"
    dense_limit: int = 3000
    tol: float | None = None
    check_every: int = 1
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "direct"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()
        if self.factor not in ("auto", "dense", "sparse"):
            raise ConfigError(f"DirectSolver(factor={self.factor!r}): choose 'auto', 'dense' or 'sparse'")

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self.make_sweep(problem)(state)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        return self._solve(problem)[0]

    def _solve(self, problem: TotalEnergy) -> tuple[Callable[[State], State], Tensor]:
        """The exact answer (as a sweep that returns it from any state) and its optimality residual."""
        system = problem.system
        if not hasattr(system, "hessian") or not hasattr(system, "linear_term"):
            raise ConfigError(
                f"DirectSolver needs an energy that is quadratic in the state; {type(system).__name__} is not",
                hint="use block_coordinate or gradient_flow",
            )
        sizes = [v.shape[0] if len(v.shape) == 1 else int(np.prod(v.shape)) for v in system.variables]
        starts = np.cumsum([0, *sizes])
        n = int(starts[-1])
        h = system.hessian()  # type: ignore[attr-defined]
        diag_shift = torch.zeros(n, dtype=h.dtype, device=h.device)
        nudge: tuple[int, float] | None = None
        if problem.nudged:
            cost = problem.cost
            assert cost is not None and problem.target is not None
            if not cost.constant_nudge:
                raise ConfigError(
                    f"DirectSolver solves quadratic problems; {type(cost).__name__}'s nudge depends on the state",
                    hint="use cost.kind = 'squared_error' with this system",
                )
            k = problem.nudged_index
            assert k is not None
            c, _ = cost.nudge(None, problem.target)
            diag_shift[starts[k] : starts[k + 1]] = problem.beta * c
            nudge = (k, c)
        clamped = sorted(problem.clamp)
        free_idx = torch.tensor(
            [i for k in range(len(sizes)) if k not in problem.clamp for i in range(starts[k], starts[k + 1])],
            dtype=torch.long,
            device=h.device,
        )
        held_idx = torch.tensor(
            [i for k in clamped for i in range(starts[k], starts[k + 1])], dtype=torch.long, device=h.device
        )
        h_ff = h[free_idx][:, free_idx] + torch.diag(diag_shift[free_idx])
        h_fc = h[free_idx][:, held_idx] if len(held_idx) else None
        use_dense = self.factor == "dense" or (self.factor == "auto" and len(free_idx) <= self.dense_limit)
        solve = _dense_solver(h_ff) if use_dense else _sparse_solver(h_ff)
        b_all = system.linear_term(problem.drive)  # type: ignore[attr-defined]
        if nudge is not None:
            k, _ = nudge
            lin = problem.cost.nudge(None, problem.target)[1]  # type: ignore[union-attr]
            b_all = b_all.clone()
            b_all[:, starts[k] : starts[k + 1]] += problem.beta * lin.flatten(1)
        rhs = b_all[:, free_idx]
        if h_fc is not None:
            held = torch.cat([problem.clamp[k].flatten(1) for k in clamped], 1)
            rhs = rhs - held @ h_fc.t()
        z_free = solve(rhs)
        # the optimality residual |∂F/∂z| on the free unknowns, in the reduced space (round-off)
        residual = (z_free @ h_ff - rhs).abs().amax(1) if len(free_idx) else rhs.new_zeros(len(rhs))

        def sweep(state: State) -> State:  # the same exact answer from any starting state
            z = torch.empty(rhs.shape[0], n, dtype=z_free.dtype, device=z_free.device)
            z[:, free_idx] = z_free
            out = []
            for k, v in enumerate(system.variables):
                if k in problem.clamp:
                    out.append(problem.clamp[k])
                else:
                    out.append(z[:, starts[k] : starts[k + 1]].reshape(-1, *v.shape))
            return tuple(out)

        return sweep, residual

    def run(self, problem: TotalEnergy, state: State) -> tuple[State, SolveStats]:
        sweep, residual = self._solve(problem)
        state = sweep(state)
        residual = residual.detach()
        finite = torch.isfinite(residual)
        converged = torch.ones_like(residual, dtype=torch.bool)
        return state, SolveStats(iterations=1, residual=residual, converged=converged, finite=finite)


def _dense_solver(a: Tensor) -> Callable[[Tensor], Tensor]:
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise ConfigError(
            "DirectSolver: the problem is not positive definite (a conductance at 0 cut a part of the network "
            "off, or a nudge with 1 + β·c <= 0)",
            hint="keep conductances above 0 (system bounds) and β > −1 for the squared error",
        )
    return lambda rhs: torch.cholesky_solve(rhs.t(), chol).t()


def _sparse_solver(a: Tensor) -> Callable[[Tensor], Tensor]:
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    dense = a.detach().to("cpu", torch.float64).numpy()
    lu = splu(csc_matrix(dense))

    def solve(rhs: Tensor) -> Tensor:
        x = lu.solve(np.ascontiguousarray(rhs.detach().to("cpu", torch.float64).numpy().T))
        return torch.from_numpy(x.T.copy()).to(device=rhs.device, dtype=rhs.dtype)

    return solve
