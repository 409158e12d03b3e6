"""Why a deep network learns slowly: per-layer step sizes, signal and relaxation at initialisation.

For each preset given, at its initial weights, on real data:

- ``parameters``: for every parameter tensor, its norm |θ|, the norm of its first step (lr · g for SGD,
  lr · sign(g) for Adam, where g is the rule's gradient estimate on one batch of training examples and lr the
  optimizer's rate for that tensor) and ``relative_step`` = |step| / |θ| (``null`` for a tensor that starts at 0);
- ``layers``: for every layer of the free equilibrium of test examples, the input-dependent signal (mean over
  units of the standard deviation over examples) against the common mode (standard deviation over units of the
  mean over examples), and the mean state;
- ``relaxation``: the largest and the mean change of a unit between the preset's free-phase sweeps and ``--long``
  sweeps (near 0: the preset's free phase has converged).

Prints one JSON object. Used for docs/reproductions.md (the drn-3h finding):

    .venv/bin/python docs/scripts/depth_diagnostics.py drn-1h drn-2h drn-3h

``--set`` applies the same overrides as ``eqprop train --set`` to every preset (for instance
``--set optimizer.kind=adam --set optimizer.lr=0.0001``). Not part of the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

import torch

import eqprop
from eqprop.train import apply_overrides, build, load_data, load_preset


def _first_steps(run: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, Any]]:
    run.optimizer.zero_grad(set_to_none=True)
    run.rule.gradients(run.system, run.cost, run.solver, x, y, nudged_solver=run.nudged_solver, out="grad")
    rates = {id(p): group["lr"] for group in run.optimizer.param_groups for p in group["params"]}
    adam = isinstance(run.optimizer, torch.optim.Adam)  # Adam's first step is lr · sign(g), elementwise
    out: dict[str, dict[str, Any]] = {}
    for name, p in run.system.named_parameters():
        if p.grad is None:
            continue
        direction = p.grad.sign() if adam else p.grad
        size, norm = float(rates[id(p)] * direction.norm()), float(p.detach().norm())
        out[name] = {
            "numel": p.numel(),
            "lr": rates[id(p)],
            "norm": norm,
            "step": size,
            "relative_step": size / norm if norm > 0 else None,  # None: θ starts at 0 (biases)
        }
    return out


def _layers(states: list[torch.Tensor]) -> list[dict[str, float]]:
    rows = []
    for s in states:
        s = s.flatten(1)
        rows.append(
            {
                "units": s.shape[1],
                "signal": float(s.std(0).mean()),
                "common_mode": float(s.mean(0).std()),
                "mean": float(s.mean()),
            }
        )
    return rows


def diagnose(name: str, sets: list[str], *, batch: int, examples: int, long: int) -> dict[str, Any]:
    config = apply_overrides(load_preset(name), sets)
    run = build(config)
    data = load_data(config, run.device, run.dtype, validation=False)
    x, y = data.train.x[:batch], data.train.y[:batch]
    steps = _first_steps(run, x, y)
    x_test = data.test.x[:examples]
    with torch.no_grad():
        short = eqprop.solve(run.system, x_test, run.solver).state
        longer = eqprop.solve(run.system, x_test, replace(run.solver, iterations=long)).state
    gaps = [(a - b).abs() for a, b in zip(short, longer, strict=True)]
    change = max(float(g.max()) for g in gaps)
    mean_change = float(sum(g.sum() for g in gaps) / sum(g.numel() for g in gaps))
    return {
        "preset": name,
        "overrides": sets,
        "parameters": steps,
        "layers": _layers(list(short)),
        "relaxation": {
            "sweeps": run.solver.iterations,
            "long_sweeps": long,
            "largest_change": change,
            "mean_change": mean_change,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--batch", type=int, default=64, help="training examples for the gradient (default 64)"
    )
    parser.add_argument(
        "--examples", type=int, default=200, help="test examples for the states (default 200)"
    )
    parser.add_argument("--long", type=int, default=200, help="sweeps of the long relaxation (default 200)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "torch": torch.__version__,
        "results": [
            diagnose(name, args.set, batch=args.batch, examples=args.examples, long=args.long)
            for name in args.presets
        ],
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
