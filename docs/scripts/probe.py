"""Quick probe of a setting: train a preset (with overrides) on a random subset of the training set and report
its accuracy on the first images of the test set. Prints one JSON line.

The probes of docs/reproductions.md ran as, for example:

    .venv/bin/python docs/scripts/probe.py fmnist-cnn --n 3000 --m 1000 --set system.pool=avg
    .venv/bin/python docs/scripts/probe.py drn-3h --n 8000 --m 2000 --rule TBP

The subset is drawn with a fixed seed (the same examples for every probe of the same ``--n``); the run uses the
preset's seed, no validation split and ``--epochs`` epochs (default 1) of the schedule. Not part of the package.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from eqprop.data import from_arrays, load_dataset
from eqprop.train import apply_overrides, apply_rule_name, fit, load_preset
from eqprop.train.monitor import Monitoring


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--n", type=int, default=6000, help="training examples (default 6000)")
    parser.add_argument("--m", type=int, default=2000, help="test examples (default 2000)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rule", help="a rule name of `eqprop compare` (CL, PEP, ..., TBP, RBP)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--data-dir", type=Path, help="the Fashion-MNIST IDX files (default: the usual places)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    full = load_dataset("fashion-mnist", data_dir=args.data_dir, flatten=False)
    if not 0 < args.n <= len(full.train.x) or not 0 < args.m <= len(full.test.x):
        parser.error(f"--n and --m must lie in 1..{len(full.train.x)} and 1..{len(full.test.x)}")
    pick = torch.randperm(len(full.train.x), generator=torch.Generator().manual_seed(0))[: args.n]
    data = from_arrays(
        full.train.x[pick], full.train.y[pick], full.test.x[: args.m], full.test.y[: args.m], classes=10
    )
    config = load_preset(args.preset)
    if args.rule:
        config = apply_rule_name(config, args.rule)
    config = apply_overrides(config, [*args.set, f"train.epochs={args.epochs}", "data.validation=0"])
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = fit(
            config, Path(tmp) / "run", progress=False, monitoring=Monitoring(tensorboard=False), data=data
        )
    row = {
        "preset": args.preset,
        "set": args.set,
        "rule": args.rule,
        "n": args.n,
        "m": args.m,
        "epochs": args.epochs,
        "wall_s": round(time.perf_counter() - began, 1),
        "test": summary["test_accuracy"],
        "train": round(summary["train_accuracy"], 4),
        "examples_per_s": round(summary["examples_per_s"]),
        "threads": args.threads,
    }
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
