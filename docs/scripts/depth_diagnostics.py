"""Why a deep network learns slowly: per-layer step sizes, signal, saturation and relaxation.

For each preset given (at its initial weights) or run folder (at the weights it holds), on its data:

- ``parameters``: for every parameter tensor, its norm |θ|, the norm of the update the optimizer makes from the
  rule's gradient estimate on one batch of training examples (lr · g for plain SGD; about lr · sign(g) for
  Adam's first step) and ``relative_step`` = |step| / |θ| (``null`` for a tensor at 0);
- ``layers``: for every layer of the free equilibrium of test examples, the input-dependent signal (mean over
  units of the standard deviation over examples) against the common mode (standard deviation over units of the
  mean over examples), the mean state, and the fraction of units held at each bound of their box (a unit at a
  bound passes no gradient);
- ``relaxation``: the largest and the mean change of a unit between the preset's free-phase sweeps and ``--long``
  sweeps (near 0: the preset's free phase has converged);
- ``estimate`` (with ``--estimate``): the cosine and norm ratio of the rule's gradient estimate with the run's
  sweeps to the same rule's with ``--long`` sweeps in every phase, on the training batch.

Prints one JSON object. Used for docs/reproductions.md (the drn-3h finding):

    .venv/bin/python docs/scripts/depth_diagnostics.py drn-1h drn-2h drn-3h
    .venv/bin/python docs/scripts/depth_diagnostics.py runs/cnn-10 --long 300 --batch 32 --estimate

``--set`` applies the same overrides as ``eqprop train --set`` to every preset (for instance
``--set optimizer.kind=adam --set optimizer.lr=0.0001``). Not part of the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import eqprop
from eqprop.train import apply_overrides, build, load_data, load_preset, load_run


def _gradient(run: Any, x: torch.Tensor, y: torch.Tensor, solver: Any, nudged: Any) -> torch.Tensor:
    params = [*run.system.parameters(), *run.cost.parameters()]
    for p in params:
        p.grad = None
    run.rule.gradients(run.system, run.cost, solver, x, y, nudged_solver=nudged, out="grad")
    return torch.cat([p.grad.flatten() for p in params if p.grad is not None])


def _estimate_against_long(run: Any, x: torch.Tensor, y: torch.Tensor, long: int) -> dict[str, Any]:
    """The rule's estimate with the run's sweeps against the same rule with ``long`` sweeps in every phase."""
    nudged = run.nudged_solver if run.nudged_solver is not None else run.solver
    short = _gradient(run, x, y, run.solver, nudged)
    longer = _gradient(run, x, y, replace(run.solver, iterations=long), replace(nudged, iterations=long))
    return {
        "sweeps": [run.solver.iterations, nudged.iterations],
        "long_sweeps": long,
        "cosine": float(torch.nn.functional.cosine_similarity(short, longer, dim=0)),
        "norm_ratio": float(short.norm() / longer.norm()),
    }


def _next_steps(run: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, Any]]:
    """The update the run's optimizer makes from the rule's gradient on (x, y), per parameter tensor. The
    parameters are changed: diagnose a run built for the purpose."""
    _gradient(run, x, y, run.solver, run.nudged_solver)
    rates = {id(p): group["lr"] for group in run.optimizer.param_groups for p in group["params"]}
    named = [(n, p) for n, p in run.system.named_parameters() if p.grad is not None]
    before = {n: p.detach().clone() for n, p in named}
    run.optimizer.step()
    out: dict[str, dict[str, Any]] = {}
    for name, p in named:
        size, norm = float((p.detach() - before[name]).norm()), float(before[name].norm())
        out[name] = {
            "numel": p.numel(),
            "lr": rates[id(p)],
            "norm": norm,
            "step": size,
            "relative_step": size / norm if norm > 0 else None,  # None: θ starts at 0 (biases)
        }
    return out


def _layers(run: Any, states: list[torch.Tensor]) -> list[dict[str, Any]]:
    rows = []
    for s, variable in zip(states, run.system.variables, strict=True):
        s = s.flatten(1)
        lo, hi = variable.bounds
        rows.append(
            {
                "units": s.shape[1],
                "signal": float(s.std(0).mean()),
                "common_mode": float(s.mean(0).std()),
                "mean": float(s.mean()),
                "at_lower_bound": None if lo is None else float((s <= lo).float().mean()),
                "at_upper_bound": None if hi is None else float((s >= hi).float().mean()),
            }
        )
    return rows


def diagnose(
    source: str, sets: list[str], *, batch: int, examples: int, long: int, estimate_check: bool = False
) -> dict[str, Any]:
    """``source``: a preset name (its initial weights, with ``sets`` applied) or a run folder / checkpoint
    (the weights and optimizer state it holds)."""
    if Path(source).exists():
        if sets:
            raise SystemExit(f"--set applies to presets, not to the run {source}")
        run = load_run(source)
        config = run.config
    else:
        config = apply_overrides(load_preset(source), sets)
        run = build(config)
    data = load_data(config, run.device, run.dtype, validation=False)
    x_test = data.test.x[:examples]
    with torch.no_grad():  # the states first: the step below changes the weights
        short = eqprop.solve(run.system, x_test, run.solver).state
        longer = eqprop.solve(run.system, x_test, replace(run.solver, iterations=long)).state
    x, y = data.train.x[:batch], data.train.y[:batch]
    estimate = _estimate_against_long(run, x, y, long) if estimate_check else None
    steps = _next_steps(run, x, y)
    gaps = [(a - b).abs() for a, b in zip(short, longer, strict=True)]
    change = max(float(g.max()) for g in gaps)
    mean_change = float(sum(g.sum() for g in gaps) / sum(g.numel() for g in gaps))
    return {
        "source": source,
        "overrides": sets,
        "parameters": steps,
        "layers": _layers(run, list(short)),
        "relaxation": {
            "sweeps": run.solver.iterations,
            "long_sweeps": long,
            "largest_change": change,
            "mean_change": mean_change,
        },
        "estimate": estimate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", metavar="PRESET|RUN", help="preset names or run folders")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--batch", type=int, default=64, help="training examples for the gradient (default 64)"
    )
    parser.add_argument(
        "--examples", type=int, default=200, help="test examples for the states (default 200)"
    )
    parser.add_argument("--long", type=int, default=200, help="sweeps of the long relaxation (default 200)")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="also compare the rule's estimate with the run's sweeps to the one with --long sweeps",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "torch": torch.__version__,
        "results": [
            diagnose(
                source,
                args.set,
                batch=args.batch,
                examples=args.examples,
                long=args.long,
                estimate_check=args.estimate,
            )
            for source in args.sources
        ],
    }
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
