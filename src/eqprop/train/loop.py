"""The training loop: read top to bottom, like nanoGPT's train.py.

``fit(config, out)`` builds the run (:func:`~eqprop.train.build.build`), trains it, evaluates it after every
epoch, appends one JSON line per epoch to ``out/metrics.jsonl``, writes ``out/checkpoint.pt`` atomically after
every epoch and every ``checkpoint_every`` steps or minutes (a run killed at any moment loses at most the steps
since), and ``out/summary.json`` at the end. SIGTERM and Ctrl-C finish the current step, save a checkpoint and
raise :class:`~eqprop.errors.Interrupted` with the command that resumes. ``resume(out)`` continues a stopped run,
at the next batch, and ends with the same weights as an uninterrupted one. The loop knows no rule and no system:
what a rule needs from the run, it says through its hooks.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eqprop.data import Augment, Batches, Dataset
from eqprop.errors import CheckpointError, ConfigError, DivergenceError, Interrupted
from eqprop.rules.base import Estimate, Rule, named_parameters
from eqprop.train.build import Run, build, data_fingerprint, load_data
from eqprop.train.calibrate import calibrate
from eqprop.train.checkpoint import generator_state, save_checkpoint, set_generator_state
from eqprop.train.config import RunConfig, config_to_dict
from eqprop.train.distributed import World
from eqprop.train.monitor import Monitor, Monitoring
from eqprop.train.records import accuracy, count_correct, epoch_line, epoch_record, summary, write_figures
from eqprop.train.rundir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    SUMMARY,
    RunLock,
    append_line,
    check_new_out,
    read_checkpoint,
    relocate,
    write_json,
    write_lines,
)
from eqprop.train.stops import Cadence, StopRequests

__all__ = ["fit", "resume"]


def fit(
    config: RunConfig,
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    checkpoint_every: int | str | None = None,
    monitoring: Monitoring = Monitoring(),  # noqa: B008  (a frozen dataclass)
    data: Dataset | None = None,
) -> dict[str, Any]:
    """Train ``config`` into the new run folder ``out``; return the summary (also written to ``summary.json``).

    Args:
        progress: show a progress bar (stderr).
        checkpoint_every: besides the checkpoint after every epoch, one every this many steps (an int) or this
            much time (``"90s"``, ``"10m"``, ``"1h"``); a run resumed from it continues at the next batch and ends
            bit-identical to an uninterrupted one.
        monitoring: what is logged to TensorBoard in ``out/tensorboard`` (:class:`~eqprop.train.monitor.Monitoring`).
        data: your own data (:func:`eqprop.data.from_arrays`, :func:`~eqprop.data.from_torch`) instead of the
            files ``config.data`` names; resume the run with the same data.

    Raises:
        ConfigError: bad settings; ``out`` is a file, already holds a run (continue it with :func:`resume`) or
            files a run would overwrite, or another run is writing into it.
        DataError: missing or corrupt dataset files.
        DivergenceError: the relaxation became non-finite (lower the learning rate or beta).
        Interrupted: SIGTERM or Ctrl-C: the current step was finished and a checkpoint written.
    """
    out = Path(out)
    every = Cadence.parse(checkpoint_every)
    world = World.from_env()
    if world.main:
        check_new_out(out)
    run = build(_on_this_rank(config, world))
    with RunLock(out) if world.main else contextlib.nullcontext():
        if world.main:
            check_new_out(out)  # again, now that no other run can be writing here
        return _train(
            run, out, progress=progress, every=every, monitoring=monitoring, given=data, world=world
        )


def resume(
    out: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    checkpoint_every: int | str | None = None,
    monitoring: Monitoring = Monitoring(),  # noqa: B008  (a frozen dataclass)
    data: Dataset | None = None,
) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint (at the next batch, if it stopped within an epoch), with
    its own settings; only where it runs may change (:data:`~eqprop.train.rundir.WHERE_IT_RUNS`): the epoch
    budget (``None``: the stored one), the device, the threads and the data folder. A run that already has
    ``epochs`` epochs is not trained further. ``checkpoint_every``, ``monitoring`` and ``data`` as in :func:`fit`
    (a run trained on data given from Python resumes with the same data given again).

    Raises:
        CheckpointError: no readable checkpoint in ``out``.
        ConfigError: ``epochs`` below the epochs the run has done; data other than the run's; another run is
            writing into ``out``.
    """
    out = Path(out)
    every = Cadence.parse(checkpoint_every)
    if not (out / CHECKPOINT).exists():
        raise CheckpointError(
            f"--resume {out}: no {CHECKPOINT} there",
            hint="pass the --out folder of an earlier `eqprop train` run",
        )
    world = World.from_env()
    with RunLock(out) if world.main else contextlib.nullcontext():
        config, ckpt = read_checkpoint(out)
        done = int(ckpt.get("epoch", 0))
        if epochs is not None and epochs < done:
            raise ConfigError(
                f"--epochs {epochs}: the run in {out} has already trained {done} epochs",
                hint=f"give --epochs {done} or more (the total budget, not the epochs to add)",
            )
        config = relocate(config, epochs=epochs, device=device, threads=threads, data_dir=data_dir)
        run = build(_on_this_rank(config, world))
        run.restore(ckpt)
        saved, now = ckpt.get("threads"), run.config.train.threads or torch.get_num_threads()
        if saved is not None and saved != now and world.main:
            print(
                f"eqprop: note: the run used {saved} torch thread(s) and resumes with {now}: its weights will "
                "not be bit-identical to an uninterrupted run's (resume with --threads "
                f"{saved} for that)",
                file=sys.stderr,
            )
        return _train(
            run, out, progress=progress, every=every, monitoring=monitoring, given=data, world=world
        )


def _on_this_rank(config: RunConfig, world: World) -> RunConfig:
    """``config`` on this process's device (``cuda`` is ``cuda:LOCAL_RANK`` in a data-parallel run)."""
    device = world.device(config.train.device)
    return config if device == config.train.device else relocate(config, device=device)


def _train(
    run: Run,
    out: Path,
    *,
    progress: bool,
    every: Cadence,
    monitoring: Monitoring,
    given: Dataset | None,
    world: World,
) -> dict[str, Any]:
    config, t = run.config, run.config.train
    main = world.main  # only the main process writes into the run folder
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    data = load_data(config, run.device, run.dtype, given=given)  # read once, moved to the device once
    fingerprint = data_fingerprint(data)
    if run.data_fingerprint is not None and fingerprint != run.data_fingerprint:
        source = "given" if given is not None else f"read from {config.data.data_dir or 'the default folder'}"
        raise ConfigError(
            f"the {data.name} data {source} is not the data the run in {out} was trained on (another dataset, "
            "split or preprocessing)",
            hint="resume with the data (--data-dir) the run was started with",
        )
    run.data_fingerprint = fingerprint
    run.rule.check_data_parallel(world.size)
    if run.hardware is not None:
        run.hardware.check_data_parallel(world.size)
    if run.epoch == 0 and not run.position:  # a fresh run: costs that set themselves from the untrained net
        calibrate(run, data.train, t.eval_batch_size)
    if main:
        write_json(out / CONFIG, config_to_dict(config))
        # The metrics log is rewritten from the checkpoint: an epoch logged but not checkpointed is dropped.
        write_lines(out / METRICS, run.history)
    world.start(run.device)
    world.bind(list(named_parameters(run.system, run.cost).values()))

    from tqdm import tqdm  # imported here: `eqprop --help` stays quick

    optimizer = run.optimizer
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
    saved_at = time.perf_counter()
    monitor = None
    if monitoring.tensorboard and main:
        start = run.epoch * len(batches) + (int(run.position["batch"]) if run.position else 0)
        probe = (data.test.x[: monitoring.probe_batch], data.test.y[: monitoring.probe_batch])
        monitor = Monitor(run, out, monitoring, probe, start)
    with StopRequests() as stops, contextlib.ExitStack() as closing:
        closing.callback(world.stop)
        if monitor is not None:
            closing.callback(monitor.close)
        for epoch in range(run.epoch + 1, t.epochs + 1):
            # e.g. AEqprop's springs follow the learning-rate decay
            rule = run.rule.follow_schedule(first["lr"] / initial_lr)
            # Where the epoch starts: at its first batch, or where a step-level checkpoint left it.
            at = _Position.start(run) if run.position is None else _Position.restore(run)
            run.position = None
            bar = tqdm(
                total=len(data.train),
                initial=at.seen,
                desc=f"epoch {epoch}/{t.epochs}",
                unit="ex",
                unit_scale=True,
                file=sys.stderr,
                disable=None if progress and main else True,
                dynamic_ncols=True,
                leave=False,
            )
            began = time.perf_counter() - at.seconds
            steps_before = (epoch - 1) * len(batches)
            for i, (x, y) in enumerate(batches.starting_at(at.batch), start=at.batch + 1):
                if augment.enabled:
                    x = augment(x, run.augment)  # the whole batch, whatever the number of processes
                step = steps_before + i
                if monitor is not None:
                    monitor.before_update(step)
                est, loss_sum, hits, stop = _step(run, rule, at, x, y, world, stops)
                if est is None or not est.applied:  # a continual rule applied its updates during its phases
                    run.update()  # the optimizer's step, then e.g. conductances back to >= 0
                at.loss_sum += loss_sum
                at.correct += hits
                at.seen += x.shape[0]
                if monitor is not None and est is not None:
                    loss = est.loss if world.size == 1 else loss_sum / x.shape[0]
                    monitor.step(step, est, loss, hits, x.shape[0])
                if i % t.log_every == 0 or at.seen == len(data.train):
                    # host sync, once per log interval
                    bar.set_postfix(
                        loss=f"{float(at.loss_sum) / at.seen:.4f}", acc=accuracy(at.correct, at.seen, data)
                    )
                    bar.update(at.seen - bar.n)
                    if monitor is not None:
                        monitor.flush()
                now = time.perf_counter()
                # A stop at the epoch's last batch waits for the epoch's own checkpoint, just below.
                if i < len(batches) and (stop or every.due(step, now - saved_at)):
                    at.batch, at.seconds = i, now - began
                    if main:
                        run.position = at.record()
                        if monitor is not None:
                            monitor.flush()
                        save_checkpoint(out / CHECKPOINT, run.state())
                        run.position, saved_at = None, time.perf_counter()
                    if stop:
                        bar.close()
                        raise _stopped(stops, out, f"in epoch {epoch} after batch {i} of {len(batches)}")
            train_seconds = time.perf_counter() - began
            bar.close()
            run.scheduler.step()
            train_loss = float(at.loss_sum) / max(at.seen, 1)
            if not math.isfinite(train_loss):
                raise DivergenceError(
                    f"training loss became {train_loss} in epoch {epoch}",
                    hint="lower the learning rate or beta",
                )
            train_accuracy = accuracy(at.correct, at.seen, data)
            record = epoch_record(run, data, epoch, train_loss, train_accuracy, at.seen, train_seconds, world)
            run.epoch = epoch
            run.history.append(record)
            if main:
                append_line(out / METRICS, record)
                save_checkpoint(out / CHECKPOINT, run.state())
                print(epoch_line(epoch, t.epochs, record), file=sys.stderr)
            saved_at = time.perf_counter()
            if world.any(
                stops.signal is not None
            ):  # every process agrees (a signal may come during evaluation)
                raise _stopped(stops, out, f"at the end of epoch {epoch}")
    result = summary(run, out)
    result["processes"] = world.size
    if main:
        if figures := write_figures(
            run, data, out
        ):  # the system's own (e.g. trajectories: target vs produced)
            result["figures"] = [str(f) for f in figures]
        write_json(out / SUMMARY, result)
    return result


def _step(
    run: Run, rule: Rule, at: _Position, x: Tensor, y: Tensor, world: World, stops: StopRequests
) -> tuple[Estimate | None, Tensor, Tensor, bool]:
    """One step's estimate into ``.grad`` (the whole batch's: in a data-parallel run, this process's share,
    then one all-reduce), and the batch's summed loss, its correct predictions and whether to stop after it."""
    t = run.config.train
    batch = x.shape[0]
    if world.size > 1:
        part = world.shard(batch)
        x, y = x[part], y[part]
    est = None
    if x.shape[0] > 0:
        init = at.warm if rule.fits_warm_start(at.warm, x) else None
        args = (run.system, run.cost, run.solver, x, y)
        est = rule.gradients(*args, nudged_solver=run.nudged_solver, init=init, out="grad", apply=run.update)
        at.warm = est.last_state if t.warm_start else None
        hits = count_correct(est.scores, y)
        loss_sum = est.loss.detach() * x.shape[0]
    else:  # a share of the epoch's last batch can be empty: this process adds nothing to the step
        for p in named_parameters(run.system, run.cost).values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            else:
                p.grad.zero_()
        hits = torch.zeros((), dtype=torch.long, device=run.device)
        loss_sum = torch.zeros((), dtype=run.dtype, device=run.device)
    stopping = stops.signal is not None  # a signal during the step: stop after it
    if world.size == 1:
        return est, loss_sum, hits, stopping
    # one all-reduce per step: the gradients (bound to one buffer) and the step's tallies
    tally = world.reduce_step(x.shape[0], batch, loss_sum, hits, stopping)
    # host sync once per step (free on the CPU): every process stops after the same step
    return est, tally[0].clone(), tally[1].round().long(), bool(tally[3] > 0)


@dataclass
class _Position:
    """The epoch in progress: the next batch, the order generator's state at the epoch's start (the epoch's
    order is drawn from it again on resume), the training tallies, the seconds trained and the warm state."""

    batch: int
    order: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    seconds: float
    warm: tuple[torch.Tensor, ...] | None

    @classmethod
    def start(cls, run: Run) -> _Position:
        zero = torch.zeros((), dtype=run.dtype, device=run.device)
        count = torch.zeros((), dtype=torch.long, device=run.device)
        return cls(0, generator_state(run.order), zero, count, 0, 0.0, None)

    @classmethod
    def restore(cls, run: Run) -> _Position:
        p = run.position
        assert p is not None
        set_generator_state(run.order, p["order_generator"])
        warm = None if p["warm"] is None else tuple(w.to(run.device) for w in p["warm"])
        loss_sum, correct = p["loss_sum"].to(run.device), p["correct"].to(run.device)
        return cls(
            int(p["batch"]),
            p["order_generator"],
            loss_sum,
            correct,
            int(p["seen"]),
            float(p["seconds"]),
            warm,
        )

    def record(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "order_generator": self.order,
            "loss_sum": self.loss_sum.detach().clone(),
            "correct": self.correct.detach().clone(),
            "seen": self.seen,
            "seconds": self.seconds,
            "warm": None if self.warm is None else tuple(w.detach() for w in self.warm),
        }


def _stopped(stops: StopRequests, out: Path, where: str) -> Interrupted:
    name = signal.Signals(stops.signal or signal.SIGTERM).name
    return Interrupted(
        f"stopped by {name} {where}; the checkpoint {out / CHECKPOINT} holds the run up to there",
        hint=f"resume with: eqprop train --resume {shlex.quote(str(out))}",
        status=stops.status,
    )
