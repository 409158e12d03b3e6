"""What a run reports: the test figures of an evaluation, one ``metrics.jsonl`` record per epoch, and the
summary at its end."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from eqprop.costs import Cost
from eqprop.data import Batches, Dataset, Split
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem
from eqprop.train.build import Run
from eqprop.train.distributed import World

__all__ = ["epoch_record", "evaluate", "machine", "summary"]


@torch.no_grad()
def evaluate(
    system: EnergySystem,
    cost: Cost,
    solver: Solver,
    split: Split,
    *,
    batch_size: int = 1000,
    world: World | None = None,
) -> dict[str, float]:
    """Accuracy and mean cost at the free equilibrium over ``split`` (data already on the system's device).

    In a data-parallel run (``world``), each process evaluates its share of the examples and the sums are
    all-reduced: every process returns the figures of the whole split."""
    if world is not None and world.size > 1:
        part = world.shard(len(split))
        split = Split(x=split.x[part], y=split.y[part])
    sums = torch.zeros(3, dtype=split.x.dtype, device=split.x.device)  # correct, loss, examples
    for x, y in Batches(split, batch_size, shuffle=False):
        eq = solve(system, x, solver)
        target = cost.prepare_target(y, eq.state[cost.target_index])
        sums[1] += cost(eq.state, target).sum()
        sums[0] += (cost.predict(eq.state).argmax(-1) == y).sum()
    sums[2] = len(split)
    if world is not None:
        world.sum(sums)
    n = max(float(sums[2]), 1.0)
    return {"accuracy": float(sums[0]) / n, "loss": float(sums[1]) / n}  # host sync, once per evaluation


def epoch_record(
    run: Run,
    data: Dataset,
    epoch: int,
    train_loss: float,
    train_accuracy: float,
    seen: int,
    seconds: float,
    world: World | None = None,
) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: the epoch's training figures, then test (and validation) at its end."""
    t = run.config.train
    test = evaluate(run.system, run.cost, run.solver, data.test, batch_size=t.eval_batch_size, world=world)
    record: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_accuracy,
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "train_seconds": seconds,
        "examples_per_s": seen / seconds if seconds > 0 else float("nan"),
        "lr": [g["lr"] for g in run.optimizer.param_groups],
    }
    if data.validation is not None:
        val = evaluate(
            run.system, run.cost, run.solver, data.validation, batch_size=t.eval_batch_size, world=world
        )
        record["validation_loss"] = val["loss"]
        record["validation_accuracy"] = val["accuracy"]
    return record


def summary(run: Run, out: Path) -> dict[str, Any]:
    last = run.history[-1] if run.history else {}
    result = {
        "preset": run.config.name,
        "epochs": len(run.history),
        "test_accuracy": last.get("test_accuracy"),
        "train_accuracy": last.get("train_accuracy"),
        "test_loss": last.get("test_loss"),
        "train_loss": last.get("train_loss"),
        "examples_per_s": last.get("examples_per_s"),
        "train_seconds_total": sum(r["train_seconds"] for r in run.history),
        "device": str(run.device),
        "machine": machine(run.device),
        "out": str(out),
    }
    if "validation_accuracy" in last:
        result["validation_accuracy"] = last["validation_accuracy"]
        # the model selected on the validation split (the first epoch with the best accuracy there), and its test
        # accuracy: the held-out figure to report, rather than the best test accuracy
        best = max(run.history, key=lambda r: r.get("validation_accuracy", -1.0))
        result["selected_on_validation"] = {
            "epoch": best.get("epoch"),
            "validation_accuracy": best["validation_accuracy"],
            "test_accuracy": best.get("test_accuracy"),
        }
    return result


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
