"""Max-pool argmax reuse in ``ConvHopfield`` (issue 3): the fmnist-dchn training step with the block updates
reusing the drive's max-pool indices for the feedback (new) against recomputing the convolution for them (old).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/maxpool_reuse.py                  # both configurations
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/maxpool_reuse.py --configs small --steps 2 --repeats 7

Configurations (``--configs``, comma-separated):

- ``small``: the ``fmnist-dchn`` preset with ``system.channels = [32, 64, 64, 64]``, batch 16;
- ``full``: the preset as it is (128-256-512-512), batch 4.

Both run the preset's step, ``rule.gradients(system, cost, solver, x, y, nudged_solver=..., out="grad")`` +
``optimizer.step()`` (60 odd-even sweeps free, two nudged phases of 15, centered EqProp, per-layer SGD with
momentum), on two deep copies of the same initial network: "old" with ``ConvHopfield._reuse_argmax = False``
(every block update recomputes ``W_j ⋆ s_{j−1}`` for the argmax, as before the change) and "new" with the
default. They alternate in one process (old, new, then new, old in the next repeat), on the same batches, so
their parameters must stay bit-identical step after step: the JSON reports whether they did
(``params_bit_identical``) and the ``F.conv2d`` calls of one step of each.

Inputs: Fashion-MNIST training images padded to 32×32 and normalised as the preset does, when the IDX files
are found, else random pixels (every phase runs a fixed number of sweeps: the data do not change the work).
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from _common import environment, input_pool, load_average
from eqprop.train import Run, apply_overrides, build, load_preset
from eqprop.train.optim import make_optimizer

PRESET = "fmnist-dchn"
CONFIGS: dict[str, tuple[list[int] | None, int]] = {"small": ([32, 64, 64, 64], 16), "full": (None, 4)}
MEAN, STD = 0.2860, 0.3530  # the preset's normalisation


def log(msg: str) -> None:
    print(f"[maxpool_reuse {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Trainer:
    """One contender: its own copy of the run's system, its own optimizer (built as ``build`` builds the
    run's), and the run's cost, solvers and rule."""

    def __init__(self, name: str, system: Any, run: Run) -> None:
        self.name, self.system = name, system
        self.cost, self.solver, self.nudged, self.rule = run.cost, run.solver, run.nudged_solver, run.rule
        self.optimizer = make_optimizer(run.config.optimizer, system, self.cost, run.rule)
        self.seconds: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.rule.gradients(self.system, self.cost, self.solver, x, y, nudged_solver=self.nudged, out="grad")
        self.optimizer.step()


def count_convs(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> int:
    """One training step with ``F.conv2d`` counted."""
    calls = [0]
    conv2d = F.conv2d

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls[0] += 1
        return conv2d(*args, **kwargs)

    F.conv2d = counting
    try:
        trainer.step(x, y)
    finally:
        F.conv2d = conv2d
    return calls[0]


def make_batches(n: int, batch: int, seed: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    x, y, note = input_pool(n * batch, seed)
    x = F.pad(x.view(-1, 1, 28, 28), (2, 2, 2, 2))  # the preset's pad_to = 32
    x = (x - MEAN) / STD
    out = [(x[i : i + batch].contiguous(), y[i : i + batch].contiguous()) for i in range(0, n * batch, batch)]
    return out, note


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    channels, batch = CONFIGS[name]
    # The initial weights of train.seed = --seed (on the CPU, in float32).
    overrides = [f"train.seed={args.seed}", "train.device='cpu'", "train.dtype='float32'"]
    if channels is not None:
        overrides.append(f"system.channels={channels}")
    config = apply_overrides(load_preset(PRESET), overrides)
    torch.manual_seed(args.seed)
    run = build(config)
    system, solver, nudged = run.system, run.solver, run.nudged_solver
    old_system, new_system = copy.deepcopy(system), copy.deepcopy(system)
    old_system._reuse_argmax = False
    old = Trainer("old", old_system, run)
    new = Trainer("new", new_system, run)
    data, note = make_batches(args.steps * args.repeats + 1, batch, args.seed)
    log(f"{name}: channels {list(system.channels)}, batch {batch}, {len(data)} batches ({note})")
    convs = {t.name: count_convs(t, *data[0]) for t in (old, new)}  # also the warm-up step
    load_start = load_average()
    order = [old, new]
    for r in range(args.repeats):
        for t in order:
            t0 = time.perf_counter()
            for i in range(args.steps):
                t.step(*data[1 + r * args.steps + i])
            t.seconds.append((time.perf_counter() - t0) / args.steps)
        log(f"{name} repeat {r + 1}/{args.repeats}: old {old.seconds[-1]:.3f} s, new {new.seconds[-1]:.3f} s")
        order.reverse()
    load_end = load_average()
    identical = all(
        torch.equal(a, b) for a, b in zip(old.system.parameters(), new.system.parameters(), strict=True)
    )
    speedups = [a / b for a, b in zip(old.seconds, new.seconds, strict=True)]
    return {
        "preset": PRESET,
        "channels": list(system.channels),
        "batch": batch,
        "sweeps_per_step": f"{solver.iterations} free + 2 x {nudged.iterations} nudged ({solver.order})",
        "inputs": note,
        "steps_per_measurement": args.steps,
        "repeats": args.repeats,
        "seconds_per_step": {
            t.name: {
                "median": round(statistics.median(t.seconds), 4),
                "repeats": [round(s, 4) for s in t.seconds],
            }
            for t in (old, new)
        },
        "speedup_old_over_new": {
            "median": round(statistics.median(speedups), 3),
            "repeats": [round(s, 3) for s in speedups],
        },
        "conv2d_calls_per_step": convs,
        "params_bit_identical": identical,
        "load_average": {"start": load_start, "end": load_end},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="small,full", help="comma-separated: small, full")
    parser.add_argument("--steps", type=int, default=1, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="alternating measurements per contender")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not names or any(c not in CONFIGS for c in names):
        parser.error(f"--configs: choose from {', '.join(CONFIGS)}")
    torch.set_num_threads(args.threads)
    result = {
        "what": "fmnist-dchn training step, max-pool argmax reused (new) vs recomputed (old), alternating",
        "environment": environment(torch.device("cpu")),
        "results": {name: run_config(name, args) for name in names},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
