"""The training loop against the bare step (fmnist-dhn1h): what `eqprop train` costs over the learning itself.

Prints one JSON object on stdout. For each batch size, in one process, alternating (bare, loop, bare, loop, ...):

- **bare**: ``run.rule.gradients(system, cost, solver, x, y, out="grad")`` + ``run.optimizer.step()`` over an
  epoch's worth of mini-batches cut in advance (the library step and nothing else: what ``throughput.py`` times);
- **loop**: ``eqprop.train.fit`` for one epoch on the same examples, timed by the loop itself
  (``examples_per_s`` of the epoch's record: shuffling and gathering each batch, warm-start bookkeeping, the
  training loss and accuracy, the progress check, the parameter constraint, the schedule). Evaluation and
  the checkpoint at the end of the epoch are not in that figure.

The ratio loop / bare is the median of the per-repeat ratios, each pair measured back to back. On a shared
machine those ratios scatter by ±10 %, so the script also measures the loop's own cost directly: the same
`fit` with the rule's step and the optimizer's step replaced by no-ops (in this process only), which leaves
exactly what the loop adds per batch; ``implied_ratio`` is bare step time / (bare step time + that cost).

    .venv/bin/python benchmarks/loop_overhead.py                          # batch 16 and 64, full epoch, 5 repeats
    .venv/bin/python benchmarks/loop_overhead.py --examples 8000 --repeats 3 --batch-sizes 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import eqprop
from _common import environment, load_average, summary
from eqprop.data import load_dataset
from eqprop.train import apply_overrides, build, fit, load_data, load_preset
from eqprop.train.monitor import Monitoring

PRESET = "fmnist-dhn1h"


def _write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.write_bytes(
        bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    )


def dataset(folder: Path, examples: int, data_dir: str | None, seed: int) -> str:
    """``examples`` training images (and 1,000 test images) in IDX files under ``folder``: Fashion-MNIST's first
    ones when its files are found, else random pixels (the sweeps are fixed: the data does not change the time)."""
    try:
        ds = load_dataset("fashion-mnist", data_dir=data_dir)
        train = ((ds.train.x[:examples] * 255).round().to(torch.uint8).numpy(), ds.train.y[:examples].numpy())
        test = ((ds.test.x[:1000] * 255).round().to(torch.uint8).numpy(), ds.test.y[:1000].numpy())
        note = f"Fashion-MNIST, first {len(train[1])} training images"
    except (eqprop.DataError, eqprop.ConfigError) as err:
        rng = np.random.default_rng(seed)
        train = (rng.integers(0, 256, (examples, 784)), rng.integers(0, 10, examples))
        test = (rng.integers(0, 256, (1000, 784)), rng.integers(0, 10, 1000))
        note = f"random pixels (Fashion-MNIST not found: {str(err).splitlines()[0]})"
    folder.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in (("train", train), ("t10k", test)):
        _write_idx(folder / f"{split}-images-idx3-ubyte", np.asarray(x).reshape(-1, 28, 28))
        _write_idx(folder / f"{split}-labels-idx1-ubyte", np.asarray(y))
    return note


def bare_rate(config: eqprop.train.RunConfig) -> float:
    """Examples per second of the bare step over one epoch of batches cut in advance."""
    run = build(config)
    train = load_data(config, run.device, run.dtype, validation=False).train
    b = config.train.batch_size
    data = [(train.x[i : i + b].contiguous(), train.y[i : i + b]) for i in range(0, len(train) - b + 1, b)]
    rule, system, cost, solver, optimizer = run.rule, run.system, run.cost, run.solver, run.optimizer
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for x, y in data:
        rule.gradients(system, cost, solver, x, y, out="grad")
        optimizer.step()
    sync()
    return len(data) * b / (time.perf_counter() - t0)


def loop_rate(config: eqprop.train.RunConfig, out: Path) -> float:
    """Examples per second of `fit`'s training loop over one epoch (its own clock), without TensorBoard."""
    summary_ = fit(config, out, progress=False, monitoring=Monitoring(tensorboard=False))
    return float(summary_["examples_per_s"])


def hollow_cost_us(config: eqprop.train.RunConfig, out: Path, monitoring: Monitoring) -> float:
    """Microseconds per batch that `fit`'s loop spends around the step: the loop with the rule's estimate and
    the optimizer's step replaced by no-ops (patched here, put back after). The estimate returned is a real
    one, made once, so that what the loop logs of it (phases, sweeps, residuals, energies) costs what it does."""
    run = build(config)
    train = load_data(config, run.device, run.dtype, validation=False).train
    b = config.train.batch_size
    real = run.rule.gradients(run.system, run.cost, run.solver, train.x[:b], train.y[:b])
    rule_class, optimizer_class = type(run.rule), type(run.optimizer)

    def no_estimate(self, system, cost, solver, x, y, **kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(real, scores=real.scores[: x.shape[0]])

    saved = rule_class.gradients, optimizer_class.step
    rule_class.gradients, optimizer_class.step = no_estimate, lambda self, closure=None: None  # type: ignore[method-assign]
    try:
        rate = float(fit(config, out, progress=False, monitoring=monitoring)["examples_per_s"])
    finally:
        rule_class.gradients, optimizer_class.step = saved  # type: ignore[method-assign]
    return b / rate * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument(
        "--examples", type=int, default=60000, help="training examples per epoch (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", help="folder of the Fashion-MNIST IDX files (default: as eqprop train)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        note = dataset(root / "data", args.examples, args.data_dir, args.seed)
        for b in args.batch_sizes:
            config = apply_overrides(
                load_preset(PRESET),
                [
                    f'data.data_dir="{root / "data"}"',
                    "train.epochs=1",
                    f"train.batch_size={b}",
                    f"train.threads={args.threads}",
                    f'train.device="{args.device}"',
                    f"train.seed={args.seed}",
                ],
            )
            bare_rate(config)  # warm-up: allocator, thread pool, first-call costs
            bare, loop = [], []
            for r in range(args.repeats):
                bare.append(bare_rate(config))
                loop.append(loop_rate(config, root / f"run-{b}-{r}"))
                print(
                    f"batch {b}, repeat {r + 1}: bare {bare[-1]:.0f} ex/s, loop {loop[-1]:.0f} ex/s",
                    file=sys.stderr,
                )
            ratios = [lo / ba for lo, ba in zip(loop, bare, strict=True)]
            quiet, logging = Monitoring(tensorboard=False), Monitoring(probe_every=0)
            cost = statistics.median(
                hollow_cost_us(config, root / f"hollow-{b}-{r}", quiet) for r in range(3)
            )
            logged = statistics.median(
                hollow_cost_us(config, root / f"logged-{b}-{r}", logging) for r in range(3)
            )
            step_us = b / statistics.median(bare) * 1e6
            results.append(
                {
                    "batch_size": b,
                    "bare_step_ex_per_s": summary(bare),
                    "training_loop_ex_per_s": summary(loop),
                    "ratio_loop_over_bare": round(statistics.median(ratios), 3),
                    "ratio_per_repeat": [round(x, 3) for x in ratios],
                    "loop_cost_per_batch_us": round(cost, 1),
                    "bare_step_us": round(step_us, 1),
                    "implied_ratio": round(step_us / (step_us + cost), 4),
                    "tensorboard_cost_per_batch_us": round(logged - cost, 1),
                    "tensorboard_cost_fraction_of_step": round((logged - cost) / step_us, 4),
                }
            )
    print(
        json.dumps(
            {
                "benchmark": "loop_overhead",
                "preset": PRESET,
                "examples_per_epoch": args.examples,
                "data": note,
                "results": results,
                "load_average": load_average(),
                **environment(torch.device(args.device)),
            }
        )
    )


if __name__ == "__main__":
    main()
