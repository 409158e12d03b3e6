"""How close each EqProp estimator is to the true gradient, and how its error scales with β."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules import VARIANTS, BackpropThroughSolver, EqProp, Rule
from eqprop.rules.reference import reference_gradient
from eqprop.solvers.base import Solver
from eqprop.systems.base import EnergySystem

__all__ = ["compare", "compare_tensors", "gradcheck", "loglog_slope", "reference_gradient", "sweeps_beta"]


def _flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([grads[k].flatten() for k in sorted(grads)])


def compare(estimate: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, float]:
    """Cosine similarity and relative error ``‖ĝ − g‖/‖g‖`` of two gradient dicts (all parameters)."""
    e, r = _flat(estimate).detach(), _flat(reference).detach()
    cos = torch.nn.functional.cosine_similarity(e, r, dim=0)
    rel = (e - r).norm() / r.norm().clamp_min(torch.finfo(r.dtype).tiny)
    return {"cosine": float(cos), "relative_error": float(rel)}


def compare_tensors(estimate: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, dict[str, float]]:
    """:func:`compare` for each parameter tensor on its own."""
    return {k: compare({k: estimate[k]}, {k: reference[k]}) for k in sorted(reference)}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (NaN with fewer than two usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else float("nan")


def sweeps_beta(rule: Rule) -> bool:
    """Whether ``rule`` is a two-phase rule whose ``beta`` and ``variant`` :func:`gradcheck` can sweep."""
    names = {f.name for f in dataclasses.fields(rule)} if dataclasses.is_dataclass(rule) else set()
    return {"beta", "variant"} <= names


def gradcheck(
    system: EnergySystem,
    cost: Cost,
    solver: Solver,
    x: Tensor,
    y: Tensor,
    *,
    rule: Rule | None = None,
    betas: Sequence[float] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001),
    variants: Sequence[str] = VARIANTS,
    backprop_steps: int | None = None,
) -> dict[str, Any]:
    """Compare a two-phase estimator (each variant, each β) and truncated backprop with the exact gradient:
    implicit differentiation, or BPTT for a trajectory integrated from initial conditions (the Hamiltonian echo's
    ``beta`` is its ``ε``).

    Args:
        system, cost: the model (use float64 for a clean β-scaling).
        solver: relaxes every phase; it should reach the equilibrium (check ``free_residual``).
        x, y: one batch.
        rule: the estimator whose ``beta`` and ``variant`` are swept, with its other settings kept (default
            ``EqProp()``; e.g. ``CoupledLearning()`` or an ``AgnosticEqProp(epsilon=...)``).
        betas: nudging strengths to test.
        variants: ``"positive"``, ``"negative"``, ``"centered"`` (the β convention of :mod:`eqprop.rules.base`).
        backprop_steps: sweeps of truncated backprop from the free equilibrium (default: ``solver.iterations``).

    Returns:
        ``{"reference": {...}, "eqprop": [{variant, beta, cosine, relative_error}, ...],
        "slopes": {variant: fitted log-log slope of error vs beta}, "expected_slopes": {...},
        "backprop": {...}}``.

    Raises:
        ConfigError: no β, an unknown variant, or a rule without ``beta`` and ``variant``.
    """
    if not betas:
        raise ConfigError("gradcheck needs at least one beta")
    rule = EqProp() if rule is None else rule
    if not sweeps_beta(rule):
        raise ConfigError(
            f"gradcheck sweeps beta and the variant, and {type(rule).__name__} has neither",
            hint="check EqProp, CoupledLearning or AgnosticEqProp (e.g. --rule CEP)",
        )
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")

    ref, method = reference_gradient(system, cost, solver, x, y)
    rows = []
    orders = {}
    for variant in variants:
        for beta in betas:
            swept = dataclasses.replace(rule, beta=float(beta), variant=variant)  # type: ignore[type-var]
            orders[variant] = swept.bias_order
            est = swept.gradients(system, cost, solver, x, y)
            rows.append(
                {
                    "variant": variant,
                    "beta": float(beta),
                    **compare(est.grads, ref.grads),
                    "per_tensor": compare_tensors(est.grads, ref.grads),
                }
            )
    slopes = {
        v: loglog_slope(
            [r["beta"] for r in rows if r["variant"] == v],
            [r["relative_error"] for r in rows if r["variant"] == v],
        )
        for v in variants
    }
    tensor_slopes = {
        v: {
            k: loglog_slope(
                [r["beta"] for r in rows if r["variant"] == v],
                [r["per_tensor"][k]["relative_error"] for r in rows if r["variant"] == v],
            )
            for k in sorted(ref.grads)
        }
        for v in variants
    }
    steps = backprop_steps if backprop_steps is not None else max(solver.iterations, 1)
    tbp = (
        BackpropThroughSolver(steps=steps).gradients(system, cost, solver, x, y) if system.stationary else ref
    )  # from the initial conditions, the reference is already backprop through the whole trajectory
    free = ref.phases[0] if ref.phases else None
    return {
        "reference": {
            "method": method,
            "free_residual": float(free.stats.residual.max()) if free is not None else 0.0,
            "cg_residual": float(ref.metrics["cg_residual"].max()) if "cg_residual" in ref.metrics else 0.0,
            "gradient_norm": float(_flat(ref.grads).norm()),
            "loss": float(ref.loss),
        },
        "eqprop": rows,
        "slopes": slopes,
        "slopes_per_tensor": tensor_slopes,
        "expected_slopes": orders,
        "backprop": {
            "steps": steps if system.stationary else "all (the reference)",
            **compare(tbp.grads, ref.grads),
        },
        "batch": int(x.shape[0]),
        "dtype": str(x.dtype).replace("torch.", ""),
    }
