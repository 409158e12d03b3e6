"""``eqprop gradcheck``: a two-phase estimator (or the Hamiltonian echo) against the exact gradient, per β."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from eqprop.cli._common import add_overrides, emit, load_model, test_data
from eqprop.errors import ConfigError

__all__ = ["gradcheck", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "gradcheck",
        help="EqProp estimators (or the Hamiltonian echo) vs the exact gradient",
        description="For one batch: cosine and relative error of the run's two-phase estimator (EqProp, coupled "
        "learning, AEqprop, or the Hamiltonian echo) in each variant (positive, negative, centered) against the exact "
        "gradient (implicit differentiation; BPTT for a trajectory integrated from initial conditions) for each beta, per "
        "parameter tensor too, the fitted log-log slope of error vs beta (expected 1 one-sided, 2 centered), "
        "and truncated backprop for comparison. Every phase relaxes a fixed --iterations sweeps (no early stop "
        "unless --tol is given), so that each reaches its equilibrium.",
    )
    p.add_argument("--preset", help="preset name (default fmnist-dhn1h)")
    p.add_argument(
        "--rule",
        metavar="NAME",
        help="check one named estimator instead of the preset's: PEP, NEP, CEP (EqProp) or PCpL, NCpL, CCpL "
        "(coupled learning; bias_order None, so its error need not vanish with beta)",
    )
    p.add_argument(
        "--betas", type=float, nargs="+", default=[0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]
    )
    p.add_argument(
        "--variants",
        nargs="+",
        help="positive (0, beta), negative (-beta, 0), centered (-beta, +beta); default: all three, or the "
        "variant of --rule",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--iterations",
        type=int,
        default=300,
        help="sweeps per phase (enough to reach the equilibrium; default %(default)s)",
    )
    p.add_argument("--tol", type=float, help="stop a phase early once within this tolerance (default: never)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--checkpoint", help="use the weights of this run instead of a fresh initialisation")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of the batch drawn")
    p.add_argument("--data-dir")
    add_overrides(p)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=gradcheck)


def gradcheck(args: argparse.Namespace) -> int:
    import torch

    from eqprop.analysis.gradcheck import gradcheck as run_check
    from eqprop.analysis.gradcheck import sweeps_beta

    if args.batch_size < 1 or args.iterations < 1:
        raise ConfigError("--batch-size and --iterations must be >= 1")
    if args.tol is not None and not args.tol > 0:
        raise ConfigError(f"--tol {args.tol}: must be > 0 (or leave it out for fixed sweeps)")
    run = load_model(args, default_preset="fmnist-dhn1h")
    if not sweeps_beta(run.rule):
        raise ConfigError(
            f"gradcheck sweeps beta, and the rule of {run.config.name!r} ({run.rule.kind}) has none",
            hint="use a preset whose rule nudges or clamps by beta (eqprop, coupled, aeqprop), or pass --rule NAME",
        )
    # the checks compare exact gradients: the configured solver, without hardware read noise
    solver = dataclasses.replace(run.config.solver, iterations=args.iterations, tol=args.tol)
    test = test_data(run)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.batch_size]
    x, y = test.x[pick.to(test.x.device)], test.y[pick.to(test.y.device)]
    variants = args.variants or ([run.rule.variant] if args.rule else ["positive", "negative", "centered"])
    result = run_check(run.system, run.cost, solver, x, y, rule=run.rule, betas=args.betas, variants=variants)
    result = {
        "preset": run.config.name,
        "rule": run.rule.kind,
        "iterations": args.iterations,
        "tol": args.tol,
        **result,
    }
    if not args.json:
        _table(result)
    emit(result)
    return 0


def _table(result: dict[str, Any]) -> None:
    ref = result["reference"]
    print(
        f"reference: {ref['method']}, |g| = {ref['gradient_norm']:.4g}, free residual "
        f"{ref['free_residual']:.2g}, batch {result['batch']} ({result['dtype']})",
        file=sys.stderr,
    )
    print(f"{'variant':>10} {'beta':>8} {'cosine':>12} {'rel. error':>12}", file=sys.stderr)
    for r in result["eqprop"]:
        print(
            f"{r['variant']:>10} {r['beta']:>8.4g} {r['cosine']:>12.8f} {r['relative_error']:>12.4e}",
            file=sys.stderr,
        )
    for v, slope in result["slopes"].items():
        expected = result["expected_slopes"][v]
        print(
            f"slope of log error vs log beta, {v}: {slope:.3f} (expected "
            f"{'none: not an estimator of the gradient as beta -> 0' if expected is None else expected})",
            file=sys.stderr,
        )
    for v, per in result["slopes_per_tensor"].items():
        print(
            f"  per tensor, {v}: " + ", ".join(f"{k} {slope:.2f}" for k, slope in per.items()),
            file=sys.stderr,
        )
    b = result["backprop"]
    print(
        f"backprop ({b['steps']} sweeps): cosine {b['cosine']:.8f}, rel. error {b['relative_error']:.3e}",
        file=sys.stderr,
    )
