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
from eqprop.train.figures import write_figures as draw_figures

__all__ = ["count_correct", "epoch_line", "epoch_record", "evaluate", "machine", "summary", "write_figures"]


def count_correct(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions of a batch (0-dim, on the device); 0 for float targets (a regression task has no
    accuracy: its figure is the loss)."""
    if y.is_floating_point():
        return torch.zeros((), dtype=torch.long, device=y.device)
    return (scores.argmax(-1) == y).sum()


def accuracy(correct: torch.Tensor | int, seen: int, data: Dataset) -> float | None:
    """``correct / seen``, or None for a regression task (``data.classes == 0``)."""
    return None if data.classes == 0 else int(correct) / max(seen, 1)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def epoch_line(epoch: int, epochs: int, record: dict[str, Any]) -> str:
    """The line a run prints at the end of each epoch."""
    acc = "" if record["test_accuracy"] is None else f" acc {_figure(record['train_accuracy'])}"
    test = (
        f"test loss {record['test_loss']:.4g}"
        if record["test_accuracy"] is None
        else f"test acc {record['test_accuracy']:.4f}"
    )
    return (
        f"epoch {epoch}/{epochs}: train loss {record['train_loss']:.4f}{acc} | {test} | "
        f"{record['examples_per_s']:.0f} ex/s"
    )


def write_figures(run: Run, data: Dataset, out: Path, examples: int = 4) -> list[Path]:
    """Figures of a few test examples, written to the run folder (a Lagrangian system's trajectories, produced
    against target; nothing for other systems): :func:`eqprop.train.figures.write_figures`."""
    split = data.test
    n = min(examples, len(split))
    return draw_figures(run.system, run.cost, run.solver, split.x[:n], split.y[:n], out)


@torch.no_grad()
def evaluate(
    system: EnergySystem,
    cost: Cost,
    solver: Solver,
    split: Split,
    *,
    batch_size: int = 1000,
    world: World | None = None,
) -> dict[str, float | None]:
    """Accuracy (None for float targets) and mean cost at the free equilibrium over ``split`` (data already on the system's device).

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
        sums[0] += count_correct(cost.predict(eq.state), y)
    sums[2] = len(split)
    if world is not None:
        world.sum(sums)
    n = max(float(sums[2]), 1.0)
    acc = None if split.y.is_floating_point() else float(sums[0]) / n  # no accuracy for a regression task
    return {"accuracy": acc, "loss": float(sums[1]) / n}  # host sync, once per evaluation


def epoch_record(
    run: Run,
    data: Dataset,
    epoch: int,
    train_loss: float,
    train_accuracy: float | None,
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
    if (
        "validation_accuracy" in last and last["validation_accuracy"] is None
    ):  # regression: select on the loss
        result["validation_loss"] = last["validation_loss"]
        best = min(run.history, key=lambda r: r["validation_loss"])
        result["selected_on_validation"] = {
            "epoch": best.get("epoch"),
            "validation_loss": best["validation_loss"],
            "test_loss": best.get("test_loss"),
        }
    elif "validation_accuracy" in last:
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
