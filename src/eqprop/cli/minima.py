"""``eqprop minima``: how often the free phase of a preset's network lands in different equilibria from random
starts (multistability)."""

from __future__ import annotations

import argparse
import dataclasses

from eqprop.cli._common import add_overrides, emit, load_model, test_data
from eqprop.errors import ConfigError

__all__ = ["minima", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "minima",
        help="how often the free phase lands in different equilibria from random starts",
        description="For a batch of test examples: relax the free phase from --restarts random states (phases "
        "uniform on the circle, boxed units uniform in their box) and count the distinct equilibria each example "
        "reaches (units within --tol, on the circle for phases). Prints the mean number of equilibria, the fraction "
        "of examples with several, the spread of their energies, and how often the prediction depends on the start.",
    )
    p.add_argument("--preset", help="preset name (default fmnist-oim)")
    p.add_argument(
        "--checkpoint", help="a run folder or checkpoint.pt: its trained network instead of a fresh one"
    )
    p.add_argument("--restarts", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iterations", type=int, help="relaxation steps (default: the preset's free phase)")
    p.add_argument("--tol", type=float, default=1e-2, help="equilibria closer than this are the same")
    p.add_argument("--seed", type=int, default=0, help="seed of the starts, the fresh network and the batch")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    add_overrides(p)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=minima, dtype="float32")


def minima(args: argparse.Namespace) -> int:
    import torch

    from eqprop.analysis.multistability import multistability

    if args.restarts < 2 or args.batch_size < 1 or not args.tol > 0:
        raise ConfigError("--restarts must be >= 2, --batch-size >= 1 and --tol > 0")
    run = load_model(args, default_preset="fmnist-oim")
    solver = run.config.solver
    if args.iterations is not None:
        solver = dataclasses.replace(solver, iterations=args.iterations)
    test = test_data(run)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.batch_size]
    x = test.x[pick.to(test.x.device)]
    result = multistability(
        run.system, solver, x, cost=run.cost, restarts=args.restarts, tol=args.tol, seed=args.seed
    )
    result = {"preset": run.config.name, "iterations": solver.iterations, **result}
    if not args.json:
        print(
            f"{result['preset']}: {result['examples']} examples x {result['restarts']} random starts, "
            f"{result['iterations']} steps: {result['distinct_equilibria_mean']:.2f} distinct equilibria per example, "
            f"{100 * result['examples_with_several_equilibria']:.1f}% of examples with several; prediction depends on "
            f"the start for {100 * result['prediction_depends_on_start']:.1f}%; energy spread "
            f"{result['energy_spread_mean']:.4g}; largest change in the last step {result['last_step_change_max']:.2g}"
        )
    emit(result)
    return 0
