"""The training loop: read top to bottom, like nanoGPT's train.py.

``fit(config, out)`` builds the run (:func:`~eqprop.train.build.build`), trains it, evaluates it after every
epoch, appends one JSON line per epoch to ``out/metrics.jsonl``, writes ``out/checkpoint.pt`` atomically after
every epoch (a run killed at any moment loses at most the epoch in progress) and ``out/summary.json`` at the end.
``resume(out)`` continues a stopped run and ends with the same weights as an uninterrupted one. The loop knows
no rule and no system: what a rule needs from the run, it says through its hooks.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from eqprop.costs import Cost
from eqprop.data import Augment, Batches, Split
from eqprop.errors import CheckpointError, ConfigError, DivergenceError
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem
from eqprop.train.build import Run, build, load_data
from eqprop.train.checkpoint import save_checkpoint
from eqprop.train.config import RunConfig, config_to_dict
from eqprop.train.rundir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    SUMMARY,
    append_line,
    read_checkpoint,
    relocate,
    write_json,
)

__all__ = ["evaluate", "fit", "resume"]


@torch.no_grad()
def evaluate(
    system: EnergySystem, cost: Cost, solver: Solver, split: Split, *, batch_size: int = 1000
) -> dict[str, float]:
    """Accuracy and mean cost at the free equilibrium over ``split`` (data already on the system's device)."""
    correct = torch.zeros((), dtype=torch.long, device=split.x.device)
    loss = torch.zeros((), dtype=split.x.dtype, device=split.x.device)
    for x, y in Batches(split, batch_size, shuffle=False):
        eq = solve(system, x, solver)
        target = cost.prepare_target(y, eq.state[cost.target_index])
        loss += cost(eq.state, target).sum()
        correct += (cost.predict(eq.state).argmax(-1) == y).sum()
    n = max(len(split), 1)
    return {"accuracy": int(correct) / n, "loss": float(loss) / n}  # host sync, once per evaluation


def fit(config: RunConfig, out: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` into the new run folder ``out``; return the summary (also written to ``summary.json``).

    Raises:
        ConfigError: bad settings; ``out`` already holds a run (continue it with :func:`resume`).
        DataError: missing or corrupt dataset files.
        DivergenceError: the relaxation became non-finite (lower the learning rate or beta).
    """
    out = Path(out)
    if (out / CHECKPOINT).exists():
        raise ConfigError(
            f"{out} already holds a run ({CHECKPOINT})",
            hint=f"continue it with --resume {out}, or choose another --out",
        )
    return _train(build(config), out, progress=progress)


def resume(
    out: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint, with its own settings; only where it runs may change
    (:data:`~eqprop.train.rundir.WHERE_IT_RUNS`): the epoch budget (``None``: the stored one), the device, the
    threads and the data folder. A run that already has ``epochs`` epochs is not trained further.

    Raises:
        CheckpointError: no readable checkpoint in ``out``.
        ConfigError: ``epochs`` below the epochs the run has done.
    """
    out = Path(out)
    if not (out / CHECKPOINT).exists():
        raise CheckpointError(
            f"--resume {out}: no {CHECKPOINT} there",
            hint="pass the --out folder of an earlier `eqprop train` run",
        )
    config, ckpt = read_checkpoint(out)
    done = int(ckpt.get("epoch", 0))
    if epochs is not None and epochs < done:
        raise ConfigError(
            f"--epochs {epochs}: the run in {out} has already trained {done} epochs",
            hint=f"give --epochs {done} or more (the total budget, not the epochs to add)",
        )
    run = build(relocate(config, epochs=epochs, device=device, threads=threads, data_dir=data_dir))
    run.restore(ckpt)
    return _train(run, out, progress=progress)


def _train(run: Run, out: Path, *, progress: bool) -> dict[str, Any]:
    config, t = run.config, run.config.train
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    data = load_data(config, run.device, run.dtype)  # read once, moved to the device once
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, config_to_dict(config))
    # The metrics log is rewritten from the checkpoint: an epoch logged but not checkpointed is dropped.
    (out / METRICS).write_text("".join(json.dumps(r) + "\n" for r in run.history), encoding="utf-8")

    from tqdm import tqdm  # imported here: `eqprop --help` stays quick

    system, cost, optimizer = run.system, run.cost, run.optimizer
    batches = Batches(data.train, t.batch_size, shuffle=True, generator=run.order)
    # Random crops and flips of the training batches (never of validation or test data).
    augment = Augment(
        crop_padding=config.data.crop_padding,
        flip=config.data.flip,
        fill=config.data.crop_fill,
        image_shape=data.image_shape,
    )
    first = optimizer.param_groups[0]
    initial_lr = first.get("initial_lr", first["lr"])
    for epoch in range(run.epoch + 1, t.epochs + 1):
        rule = run.rule.follow_schedule(first["lr"] / initial_lr)  # e.g. AEqprop's springs follow the decay
        loss_sum = torch.zeros((), dtype=run.dtype, device=run.device)
        correct = torch.zeros((), dtype=torch.long, device=run.device)
        seen = 0
        bar = tqdm(
            total=len(data.train),
            desc=f"epoch {epoch}/{t.epochs}",
            unit="ex",
            unit_scale=True,
            file=sys.stderr,
            disable=None if progress else True,
            dynamic_ncols=True,
            leave=False,
        )
        began = time.perf_counter()
        warm: tuple[torch.Tensor, ...] | None = (
            None  # train.warm_start: where the previous batch left the state
        )
        for i, (x, y) in enumerate(batches, start=1):
            if augment.enabled:
                x = augment(x, run.augment)
            init = warm if warm is not None and warm[0].shape[0] == x.shape[0] else None
            est = rule.gradients(
                system, cost, run.solver, x, y, nudged_solver=run.nudged_solver, init=init, out="grad"
            )
            optimizer.step()
            system.constrain_parameters()  # e.g. conductances back to >= 0
            warm = est.last_state if t.warm_start else None
            loss_sum += est.loss.detach() * x.shape[0]
            correct += (est.scores.argmax(-1) == y).sum()
            seen += x.shape[0]
            if i % t.log_every == 0 or seen == len(data.train):
                # host sync, once per log interval
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{int(correct) / seen:.4f}")
                bar.update(seen - bar.n)
        train_seconds = time.perf_counter() - began
        bar.close()
        run.scheduler.step()
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise DivergenceError(
                f"training loss became {train_loss} in epoch {epoch}", hint="lower the learning rate or beta"
            )
        record = _record(run, data, epoch, train_loss, int(correct) / max(seen, 1), seen, train_seconds)
        run.epoch = epoch
        run.history.append(record)
        append_line(out / METRICS, record)
        save_checkpoint(out / CHECKPOINT, run.state())
        print(
            f"epoch {epoch}/{t.epochs}: train loss {train_loss:.4f} acc {record['train_accuracy']:.4f} | "
            f"test acc {record['test_accuracy']:.4f} | {record['examples_per_s']:.0f} ex/s",
            file=sys.stderr,
        )
    summary = _summary(run, out)
    write_json(out / SUMMARY, summary)
    return summary


def _record(
    run: Run, data: Any, epoch: int, train_loss: float, train_accuracy: float, seen: int, seconds: float
) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: the epoch's training figures, then test (and validation) at its end."""
    t = run.config.train
    test = evaluate(run.system, run.cost, run.solver, data.test, batch_size=t.eval_batch_size)
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
        val = evaluate(run.system, run.cost, run.solver, data.validation, batch_size=t.eval_batch_size)
        record["validation_loss"] = val["loss"]
        record["validation_accuracy"] = val["accuracy"]
    return record


def _summary(run: Run, out: Path) -> dict[str, Any]:
    last = run.history[-1] if run.history else {}
    summary = {
        "preset": run.config.name,
        "epochs": len(run.history),
        "test_accuracy": last.get("test_accuracy"),
        "train_accuracy": last.get("train_accuracy"),
        "test_loss": last.get("test_loss"),
        "train_loss": last.get("train_loss"),
        "examples_per_s": last.get("examples_per_s"),
        "train_seconds_total": sum(r["train_seconds"] for r in run.history),
        "device": str(run.device),
        "machine": _machine(run.device),
        "out": str(out),
    }
    if "validation_accuracy" in last:
        summary["validation_accuracy"] = last["validation_accuracy"]
    return summary


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
