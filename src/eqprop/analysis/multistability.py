"""How often a multistable network's free phase lands in different minima: relax each example from several random
starts and count the distinct equilibria (the obstacle Wang, Wanjura & Marquardt 2024 name for XY networks)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.solvers.base import Solver, TotalEnergy, relax
from eqprop.systems.base import EnergySystem

__all__ = ["multistability"]


def _random_start(system: EnergySystem, x: Tensor, generator: torch.Generator) -> tuple[Tensor, ...]:
    """Uniform random states: a box's width for boxed variables, [0, 2π) for unbounded ones (phases)."""
    out = []
    for v in system.variables:
        u = torch.rand((x.shape[0], *v.shape), generator=generator, dtype=x.dtype).to(x.device)
        lo, hi = v.bounds
        if lo is None or hi is None:
            out.append(2 * math.pi * u)
        else:
            out.append(lo + (hi - lo) * u)
    return tuple(out)


def _distance(a: Tensor, b: Tensor, periodic: bool) -> Tensor:
    d = a - b
    if periodic:
        d = torch.atan2(torch.sin(d), torch.cos(d))  # the phase difference on the circle
    return d.abs().amax(1)


def multistability(
    system: EnergySystem,
    solver: Solver,
    x: Tensor,
    *,
    cost: Cost | None = None,
    restarts: int = 8,
    tol: float = 1e-2,
    seed: int = 0,
) -> dict[str, Any]:
    """Relax every example of ``x`` from ``restarts`` random states and compare the equilibria reached.

    Two equilibria are the same when every unit agrees within ``tol`` (on the circle for unbounded variables, taken
    as phases). Reports, over the examples: the mean number of distinct equilibria, the fraction of examples with
    more than one, the mean spread (max − min) of the free energy over the restarts, the largest change of a unit in
    the last step (how far from settled the relaxations still were), and with a ``cost`` the fraction of examples whose prediction depends on the start.
    """
    if restarts < 2:
        raise ValueError("multistability needs at least 2 restarts")
    g = torch.Generator().manual_seed(seed)
    problem = TotalEnergy(system, x)
    flats, energies, preds, converged = [], [], [], []  # converged: the last step's change, per example
    periodic = [v.bounds == (None, None) for v in system.variables]
    for _ in range(restarts):
        eq = relax(problem, solver, init=_random_start(system, x, g), throw=False)
        with torch.no_grad():
            flats.append([s.flatten(1) for s in eq.state])
            energies.append(eq.energy)
            converged.append(eq.stats.residual)
            if cost is not None:
                preds.append(cost.predict(eq.state).argmax(-1))
    n = x.shape[0]
    counts = torch.zeros(n, dtype=torch.long)
    for i in range(n):
        minima: list[int] = []
        for r in range(restarts):
            same = False
            for m in minima:
                d = max(
                    float(_distance(flats[r][k][i : i + 1], flats[m][k][i : i + 1], periodic[k]))
                    for k in range(len(periodic))
                )
                if d <= tol:
                    same = True
                    break
            if not same:
                minima.append(r)
        counts[i] = len(minima)
    e = torch.stack(energies)  # (restarts, batch)
    result: dict[str, Any] = {
        "restarts": restarts,
        "examples": n,
        "tolerance": tol,
        "distinct_equilibria_mean": float(counts.double().mean()),
        "examples_with_several_equilibria": float((counts > 1).double().mean()),
        "energy_spread_mean": float((e.amax(0) - e.amin(0)).mean()),
        "last_step_change_max": float(
            torch.stack(converged).max()
        ),  # how far from settled the states still were
    }
    if cost is not None:
        p = torch.stack(preds)
        result["prediction_depends_on_start"] = float((p != p[0]).any(0).double().mean())
    return result
