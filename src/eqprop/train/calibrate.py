"""Costs that set themselves from the untrained network before the first step (e.g. Stern et al.'s class targets)."""

from __future__ import annotations

from typing import Any

import torch

from eqprop.solvers.base import solve

__all__ = ["calibrate"]


def calibrate(run: Any, train: Any, batch_size: int) -> None:
    """If the run's cost asks for it (``cost.needs_calibration``), relax the untrained system on the training set
    (free phase, ``batch_size`` examples at a time) and hand the cost's output variable and the labels to
    ``cost.calibrate``. Done once, at the start of a fresh run; the result lives in the cost's buffers, so a
    checkpoint carries it."""
    cost = run.cost
    if not getattr(cost, "needs_calibration", False):
        return
    outputs = []
    with torch.no_grad():
        for i in range(0, len(train.y), batch_size):
            eq = solve(run.system, train.x[i : i + batch_size], run.solver)
            outputs.append(eq.state[cost.target_index])
    cost.calibrate(torch.cat(outputs), train.y)
