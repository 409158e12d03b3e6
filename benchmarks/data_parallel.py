"""Data-parallel training (torch.distributed, gloo on the CPU): fmnist-dhn1h with 1 and 2 processes.

Prints one JSON object on stdout. For each repeat, in turn: ``torchrun --standalone --nproc-per-node P -m eqprop
train --preset fmnist-dhn1h --batch-size 64 --threads 1 ...`` for one epoch of ``--examples`` images, P = 1 then
2; the figure is the run's own ``examples_per_s`` (the training loop's clock, evaluation excluded). Scaling
efficiency = rate(2) / (2 · rate(1)): 1.0 would be perfect. Each process has one torch thread, so two processes
use both cores of a 2-core machine where one leaves a core idle.

    .venv/bin/python benchmarks/data_parallel.py                       # 20,000 examples, 3 repeats
    .venv/bin/python benchmarks/data_parallel.py --examples 60000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from _common import environment, load_average, summary
from loop_overhead import dataset

PRESET = "fmnist-dhn1h"


def rate(processes: int, data: Path, out: Path, batch: int, threads: int) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command += ["-m", "eqprop", "train", "--preset", PRESET, "--data-dir", str(data), "--epochs", "1"]
    command += ["--batch-size", str(batch), "--threads", str(threads), "--out", str(out)]
    command += ["--no-progress", "--no-tensorboard"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    return float(json.loads(lines[-1])["examples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--data-dir", help="folder of the Fashion-MNIST IDX files (default: as eqprop train)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        note = dataset(root / "data", args.examples, args.data_dir, 0)
        rates: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for p in (1, 2):
                rates[p].append(rate(p, root / "data", root / f"run-{p}-{r}", args.batch_size, args.threads))
                print(f"repeat {r + 1}: {p} process(es): {rates[p][-1]:.0f} ex/s", file=sys.stderr)
    efficiency = [two / (2 * one) for one, two in zip(rates[1], rates[2], strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "data_parallel",
                "preset": PRESET,
                "batch_size": args.batch_size,
                "threads_per_process": args.threads,
                "examples_per_epoch": args.examples,
                "data": note,
                "one_process_ex_per_s": summary(rates[1]),
                "two_processes_ex_per_s": summary(rates[2]),
                "speedup": round(statistics.median(rates[2]) / statistics.median(rates[1]), 3),
                "scaling_efficiency_per_repeat": [round(e, 3) for e in efficiency],
                "scaling_efficiency": round(statistics.median(efficiency), 3),
                "load_average": load_average(),
                **environment(torch.device("cpu")),
            }
        )
    )


if __name__ == "__main__":
    main()
