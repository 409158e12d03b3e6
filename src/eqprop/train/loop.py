"""The training loop: read top to bottom, like nanoGPT's train.py.

``fit(config, out)`` trains, evaluates after every epoch, appends one JSON line per epoch to
``out/metrics.jsonl``, writes ``out/checkpoint.pt`` atomically after every epoch (a run killed at any moment
loses at most the epoch in progress) and ``out/summary.json`` at the end. ``fit(..., resume=True)`` continues
from the checkpoint and ends with the same weights as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import dataclasses
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
from eqprop.data import Augment, Batches, Dataset, Split, load_dataset
from eqprop.errors import CheckpointError, ConfigError, DivergenceError
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem
from eqprop.train.checkpoint import (
    check_compatible,
    generator_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_generator_state,
    set_rng_state,
)
from eqprop.train.config import (
    RunConfig,
    build,
    config_from_dict,
    config_to_dict,
    data_options,
    flat_input,
    output_width,
    per_tensor,
)

__all__ = ["evaluate", "fit", "load_run", "make_optimizer", "make_scheduler"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.json"


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name!r} is not a device name", hint="use cpu or cuda (cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine", hint="use --device cpu")
    return device


def make_optimizer(config: RunConfig, system: EnergySystem, cost: Cost) -> torch.optim.Optimizer:
    """SGD or Adam with one parameter group per tensor (rates may be per layer, and differ for biases).

    For ``rule.kind = aeqprop`` the rates are ``ε·β`` per tensor: plain SGD then applies exactly the
    displacement the physical system made (the rule returns the equivalent gradient ``−Δθ/(ε·β)``).
    """
    o, r = config.optimizer, config.rule
    groups: list[dict[str, Any]] = []
    for name, p in system.named_parameters():
        if r.kind == "aeqprop":
            lr = per_tensor(config, name, r.epsilon, r.epsilon_biases) * r.beta
        else:
            lr = per_tensor(config, name, o.lr, o.lr_biases)
        groups.append({"params": [p], "lr": lr, "name": name})
    readout = list(cost.parameters())
    if readout:
        last = o.lr[-1] if isinstance(o.lr, list) else o.lr
        groups.append(
            {"params": readout, "lr": o.readout_lr if o.readout_lr is not None else last, "name": "cost"}
        )
    if o.kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.Adam(groups, lr=groups[0]["lr"], weight_decay=o.weight_decay)


def make_scheduler(
    config: RunConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule."""
    s = config.schedule
    if s.kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=s.gamma)
    if s.kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(config.train.epochs, 1), eta_min=s.eta_min
        )
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


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


def _check_data(config: RunConfig, data: Dataset) -> None:
    s = config.system
    got = tuple(data.train.x.shape[1:])
    if flat_input(config):
        if s.sizes[0] != got[0]:
            raise ConfigError(
                f"system.sizes[0] = {s.sizes[0]} but {data.name} images have {got[0]} features",
                hint=f"use --set system.sizes=[{got[0]}, ...]",
            )
    elif tuple(s.input_shape) != got:
        raise ConfigError(
            f"system.input_shape = {list(s.input_shape)} but {data.name} images have shape {list(got)}",
            hint=f"use --set system.input_shape={list(got)}",
        )
    classes = config.cost.classes if config.cost.kind == "cross_entropy_readout" else output_width(config)
    if classes != data.classes:
        raise ConfigError(
            f"the model predicts {classes} classes but {data.name} has {data.classes}",
            hint=f"make the output layer {data.classes} wide",
        )


def _to(split: Split | None, device: torch.device, dtype: torch.dtype) -> Split | None:
    if split is None:
        return None
    return Split(x=split.x.to(device=device, dtype=dtype), y=split.y.to(device))


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def _append_line(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_run(path: str | os.PathLike[str]) -> tuple[RunConfig, dict[str, Any]]:
    """``(config, checkpoint)`` from a run directory or a checkpoint file."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    ckpt = load_checkpoint(p)
    try:
        config = config_from_dict(ckpt["config"])
    except (KeyError, ConfigError) as err:
        raise CheckpointError(f"{p}: the checkpoint holds no valid run config ({err})") from err
    return config, ckpt


def fit(
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` into the run directory ``out``; return the summary (also written to ``summary.json``).

    Raises:
        ConfigError: bad settings; ``out`` already holds a run and ``resume`` is False.
        DataError: missing or corrupt dataset files. CheckpointError: an unreadable or foreign checkpoint.
        DivergenceError: the relaxation became non-finite (lower the learning rate or beta).
    """
    out = Path(out)
    ckpt: dict[str, Any] | None = None
    if resume:
        if not (out / CHECKPOINT).exists():
            raise CheckpointError(
                f"--resume {out}: no {CHECKPOINT} there",
                hint="pass the --out folder of an earlier `eqprop train` run",
            )
        saved, ckpt = load_run(out)
        # The run's settings come from its checkpoint; only where it runs may change: the epoch budget,
        # the device and threads, and where the data files are.
        d = config_to_dict(saved)
        d["train"].update(
            epochs=config.train.epochs, device=config.train.device, threads=config.train.threads
        )
        d["data"]["data_dir"] = config.data.data_dir
        config = config_from_dict(d)
    elif (out / CHECKPOINT).exists():
        raise ConfigError(
            f"{out} already holds a run ({CHECKPOINT})",
            hint=f"continue it with --resume {out}, or choose another --out",
        )
    out.mkdir(parents=True, exist_ok=True)
    t = config.train
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    device = _device(t.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[t.dtype]

    # -- data: read once, moved to the device once -----------------------------------------------------------
    data = load_dataset(**data_options(config))
    _check_data(config, data)
    train_split = _to(data.train, device, dtype)
    test_split = _to(data.test, device, dtype)
    val_split = _to(data.validation, device, dtype)
    assert train_split is not None and test_split is not None

    # -- model, optimizer, schedule ------------------------------------------------------------------------------
    init_gen = torch.Generator().manual_seed(t.seed)
    system, cost, solver, nudged_solver, rule = build(config, generator=init_gen)
    system.to(device=device, dtype=dtype)
    cost.to(device=device, dtype=dtype)
    optimizer = make_optimizer(config, system, cost)
    scheduler = make_scheduler(config, optimizer)
    order_gen = torch.Generator().manual_seed(t.seed + 1)  # the order of the training examples
    # Random crops and flips of the training batches (never of validation or test data).
    augment = Augment(
        crop_padding=config.data.crop_padding,
        flip=config.data.flip,
        fill=config.data.crop_fill,
        image_shape=data.image_shape,
    )
    augment_gen = torch.Generator().manual_seed(t.seed + 2)
    history: list[dict[str, Any]] = []
    start = 0
    if ckpt is not None:
        check_compatible(ckpt["system"], system, what="system")
        check_compatible(ckpt["cost"], cost, what="cost")
        system.load_state_dict(ckpt["system"])
        cost.load_state_dict(ckpt["cost"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            scheduler.T_max = max(t.epochs, 1)  # a resumed run may have a new epoch budget
        set_generator_state(order_gen, ckpt["order_generator"])
        if "augment_generator" in ckpt:  # absent from checkpoints written before augmentation existed
            set_generator_state(augment_gen, ckpt["augment_generator"])
        set_rng_state(ckpt["rng"])
        history = list(ckpt["history"])
        start = int(ckpt["epoch"])
    config_dict = config_to_dict(config)
    _write_json(out / CONFIG, config_dict)
    # The metrics log is rewritten from the checkpoint: an epoch logged but not checkpointed is dropped.
    (out / METRICS).write_text("".join(json.dumps(r) + "\n" for r in history), encoding="utf-8")

    from tqdm import tqdm  # imported here: `eqprop --help` stays instant

    batches = Batches(train_split, t.batch_size, shuffle=True, generator=order_gen)
    initial_lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    for epoch in range(start + 1, t.epochs + 1):
        if hasattr(rule, "epsilon_scale"):
            # AEqprop: the springs' compliance ε decays with the schedule, as the step ε·β does.
            rule = dataclasses.replace(rule, epsilon_scale=optimizer.param_groups[0]["lr"] / initial_lr)
        loss_sum = torch.zeros((), dtype=dtype, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        bar = tqdm(
            total=len(train_split),
            desc=f"epoch {epoch}/{t.epochs}",
            unit="ex",
            unit_scale=True,
            file=sys.stderr,
            disable=None if progress else True,
            dynamic_ncols=True,
            leave=False,
        )
        began = time.perf_counter()
        # train.warm_start: where the previous batch left the state (every epoch starts from zero)
        warm: tuple[torch.Tensor, ...] | None = None
        for i, (x, y) in enumerate(batches, start=1):
            x = augment(x, augment_gen)  # unchanged, and no random draw, when augmentation is off
            init = warm if warm is not None and warm[0].shape[0] == x.shape[0] else None
            est = rule.compute_gradients(system, cost, solver, x, y, nudged_solver=nudged_solver, init=init)
            warm = est.last_state if t.warm_start else None
            optimizer.step()
            system.constrain_parameters()  # e.g. conductances back to >= 0
            loss_sum += est.loss.detach() * x.shape[0]
            correct += (est.scores.argmax(-1) == y).sum()
            seen += x.shape[0]
            if i % t.log_every == 0 or seen == len(train_split):
                # host sync, once per log interval
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{int(correct) / seen:.4f}")
                bar.update(seen - bar.n)
        train_seconds = time.perf_counter() - began
        bar.close()
        scheduler.step()
        train_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise DivergenceError(
                f"training loss became {train_loss} in epoch {epoch}", hint="lower the learning rate or beta"
            )
        test = evaluate(system, cost, solver, test_split, batch_size=t.eval_batch_size)
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": int(correct) / max(seen, 1),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "train_seconds": train_seconds,
            "examples_per_s": seen / train_seconds if train_seconds > 0 else float("nan"),
            "lr": [g["lr"] for g in optimizer.param_groups],
        }
        if val_split is not None:
            val = evaluate(system, cost, solver, val_split, batch_size=t.eval_batch_size)
            record["validation_loss"] = val["loss"]
            record["validation_accuracy"] = val["accuracy"]
        history.append(record)
        _append_line(out / METRICS, record)
        save_checkpoint(
            out / CHECKPOINT,
            {
                "config": config_dict,
                "epoch": epoch,
                "system": system.state_dict(),
                "cost": cost.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "order_generator": generator_state(order_gen),
                "augment_generator": generator_state(augment_gen),
                "rng": rng_state(),
                "history": history,
            },
        )
        print(
            f"epoch {epoch}/{t.epochs}: train loss {train_loss:.4f} acc {record['train_accuracy']:.4f} | "
            f"test acc {record['test_accuracy']:.4f} | {record['examples_per_s']:.0f} ex/s",
            file=sys.stderr,
        )

    last = history[-1] if history else {}
    summary = {
        "preset": config.name,
        "epochs": len(history),
        "test_accuracy": last.get("test_accuracy"),
        "train_accuracy": last.get("train_accuracy"),
        "test_loss": last.get("test_loss"),
        "train_loss": last.get("train_loss"),
        "examples_per_s": last.get("examples_per_s"),
        "train_seconds_total": sum(r["train_seconds"] for r in history),
        "device": str(device),
        "machine": _machine(device),
        "out": str(out),
    }
    if "validation_accuracy" in last:
        summary["validation_accuracy"] = last["validation_accuracy"]
    _write_json(out / SUMMARY, summary)
    return summary
