"""A slow, exact reference solver for small systems: the primal-dual active-set method on the dense QP.

For systems whose energy is quadratic in the state with box constraints (deep Hopfield networks, resistive
networks, …) the equilibrium of ``F = E + βC`` (squared-error cost) solves

.. math::
    \\min_s ½ sᵀ A s − hᵀ s \\quad \\text{s.t.} \\quad lo ≤ s ≤ hi .

:func:`solve_qp` builds ``A`` and ``h`` from the system's own ``∂F/∂s`` (probing it at the unit vectors, so it
shares no code with the block minimisers it checks), then runs the primal-dual active-set iteration of
Hintermüller, Ito & Kunisch (2002) with a dense linear solve per step. For an M-matrix ``A`` — the reduced
conductance matrix of any resistive network — it terminates in finitely many steps at the exact solution;
for other positive-definite ``A`` it usually does, and raises :class:`ConvergenceError` if it cycles.
Cost: ``O(n³)`` per example and step: for tests and cross-checks on small systems only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError, ConvergenceError
from eqprop.solvers.base import TotalEnergy
from eqprop.systems.base import EnergySystem

__all__ = ["solve_qp"]


def _flat_bounds(system: EnergySystem, like: Tensor) -> tuple[Tensor, Tensor]:
    lows, highs = [], []
    for v in system.variables:
        lo, hi = v.bounds
        shape = (v.size,)
        lows.append(_side(lo, shape, -math.inf, like))
        highs.append(_side(hi, shape, math.inf, like))
    return torch.cat(lows), torch.cat(highs)


def _side(b: float | Tensor | None, shape: tuple[int, ...], open_value: float, like: Tensor) -> Tensor:
    if b is None:
        return like.new_full(shape, open_value)
    if isinstance(b, Tensor):
        return b.to(like).reshape(shape)
    return like.new_full(shape, float(b))


def solve_qp(
    system: EnergySystem,
    x: Tensor,
    *,
    cost: Cost | None = None,
    y: Tensor | None = None,
    beta: float = 0.0,
    max_steps: int = 200,
) -> State:
    """The exact minimiser of ``E + βC`` over the box, per example, by the primal-dual active-set method.

    Only for energies that are quadratic in the state (checked: the probed ``∂F/∂s`` must be affine) and
    small systems (a dense ``n × n`` matrix per example). Use float64.

    Raises:
        ConfigError: the energy is not quadratic in the state, or its Hessian is not positive definite.
        ConvergenceError: the active set cycles for more than ``max_steps`` steps.
    """
    system.check_input(x)
    shapes = [v.shape for v in system.variables]
    sizes = [v.size for v in system.variables]
    n = sum(sizes)
    out = []
    lo, hi = _flat_bounds(system, x)
    for i in range(x.shape[0]):
        xi = x[i : i + 1].expand(n + 1, *x.shape[1:])
        probes = torch.cat((x.new_zeros(1, n), torch.eye(n, dtype=x.dtype, device=x.device)))
        sub = TotalEnergy(
            system,
            xi,
            cost=cost,
            y=None if y is None else y[i : i + 1].expand(n + 1, *y.shape[1:]),
            beta=beta,
        )
        with torch.no_grad():
            g = _flatten(sub.grad(_unflatten(probes, shapes, sizes)))  # rows: ∂F/∂s at 0, e_1, …, e_n
            # A second probe at 2·e_j checks that ∂F/∂s is affine (the energy quadratic) in the state.
            g2 = _flatten(sub.grad(_unflatten(2 * probes, shapes, sizes)))
        grad0 = g[0]
        a = (g[1:] - grad0).t().contiguous()  # column j = A e_j
        if not torch.allclose(
            g2[1:] - grad0, 2 * (g[1:] - grad0), rtol=1e-9, atol=1e-9 * (1 + a.abs().max())
        ):
            raise ConfigError(
                f"solve_qp: the energy of {type(system).__name__} is not quadratic in the state",
                hint="the reference QP solver only handles quadratic energies (e.g. squared-error nudging)",
            )
        a = 0.5 * (a + a.t())
        out.append(_pdas(a, -grad0, lo, hi, max_steps))
    flat = torch.stack(out)
    return _unflatten(flat, shapes, sizes)


def _pdas(a: Tensor, h: Tensor, lo: Tensor, hi: Tensor, max_steps: int) -> Tensor:
    """min ½vᵀAv − hᵀv over lo ≤ v ≤ hi by the primal-dual active-set iteration (c = 1)."""
    try:
        chol = torch.linalg.cholesky(a)
    except RuntimeError as err:  # torch raises a plain RuntimeError subclass here
        raise ConfigError("solve_qp: the energy's Hessian in the state is not positive definite") from err
    v = torch.cholesky_solve(h[:, None], chol)[:, 0].clamp(lo, hi)
    mu = a @ v - h  # multiplier of the bounds: ≥ 0 at a lower bound, ≤ 0 at an upper one
    prev: tuple[Tensor, Tensor] | None = None
    for _ in range(max_steps):
        at_lo = (mu + (lo - v)) > 0
        at_hi = (mu + (hi - v)) < 0
        at_hi &= ~at_lo
        if prev is not None and torch.equal(prev[0], at_lo) and torch.equal(prev[1], at_hi):
            return v
        prev = (at_lo, at_hi)
        fixed = at_lo | at_hi
        v = torch.where(at_lo, lo, torch.where(at_hi, hi, v))
        free = ~fixed
        if bool(free.any()):
            rhs = h[free] - a[free][:, fixed] @ v[fixed]
            v = v.clone()
            v[free] = torch.linalg.solve(a[free][:, free], rhs)
        mu = torch.where(fixed, a @ v - h, torch.zeros_like(v))
    raise ConvergenceError(f"solve_qp: the active set did not settle in {max_steps} steps")


def _flatten(state: State) -> Tensor:
    return torch.cat([s.flatten(1) for s in state], dim=1)


def _unflatten(flat: Tensor, shapes: list[tuple[int, ...]], sizes: list[int]) -> State:
    parts = torch.split(flat, sizes, dim=1)
    return tuple(p.reshape(flat.shape[0], *shape) for p, shape in zip(parts, shapes, strict=True))
