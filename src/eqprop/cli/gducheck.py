"""``eqprop gducheck``: EqProp's per-step updates against backprop through time (the GDU property)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eqprop.cli._common import add_overrides, emit, load_model, test_data
from eqprop.errors import ConfigError

__all__ = ["gducheck", "register"]

DEFAULT_PRESET = "fmnist-ep-mlp"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "gducheck",
        help="EqProp's per-step updates vs backprop through time (GDU)",
        description="For one batch, the EqProp neural updates (s[t+1] - s[t])/beta and synaptic updates "
        "(dPhi/dtheta(s[t+1]) - dPhi/dtheta(s[t]))/beta at each step t of the nudged phase, started at the end of "
        "a free phase of T steps, against the BPTT gradients of the loss at step T with respect to the state at "
        "step T - t and to the parameters of the step T - t - 1 -> T - t (Ernoult et al. 2019). Per state "
        "variable and parameter: the error at each step relative to the largest BPTT gradient, the sign "
        "agreement, Laborieux et al.'s RMSE and sign error; with several betas, the log-log slope of the error "
        "(1 one-sided, 2 centered; for a state variable, over the units inside their box at the free fixed point: "
        "units held at a bound do not move in the nudged phase, and BPTT still sends them a gradient). The dynamics is the run's solver, which must be "
        "gradient_flow (s[t+1] = clip(s[t] - step_size * dF/ds)) or synchronous (s[t+1] = sigma(dPhi/ds)).",
    )
    p.add_argument("--preset", help=f"preset name (default {DEFAULT_PRESET})")
    p.add_argument(
        "--steps", type=int, help="K: nudged steps and BPTT window (default: the nudged solver's iterations)"
    )
    p.add_argument("--free-steps", type=int, help="T: free steps (default: the solver's iterations)")
    p.add_argument("--betas", type=float, nargs="+", help="nudging strengths (default: the rule's beta)")
    p.add_argument(
        "--variant",
        choices=["positive", "negative", "centered"],
        help="one-sided (0, beta), (-beta, 0) or centered (-beta, +beta) (default: the rule's, else positive)",
    )
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--checkpoint", help="use the weights of this run instead of a fresh initialisation")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of the batch drawn")
    p.add_argument("--data-dir")
    p.add_argument(
        "--plot", metavar="PNG", help="draw EqProp and BPTT, summed over the steps, per key (first beta)"
    )
    add_overrides(p)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=gducheck)


def gducheck(args: argparse.Namespace) -> int:
    import torch

    from eqprop.analysis.gdu import gdu_check, plot_gdu, summarize
    from eqprop.analysis.gradcheck import loglog_slope

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    run = load_model(args, default_preset=DEFAULT_PRESET)
    steps = args.steps
    if steps is None:
        steps = (run.config.nudged_solver or run.config.solver).iterations
    free_steps = args.free_steps if args.free_steps is not None else run.config.solver.iterations
    rule_beta = getattr(run.rule, "beta", None)
    betas = args.betas or ([rule_beta] if rule_beta is not None else None)
    if not betas:
        raise ConfigError(
            f"the rule of {run.config.name!r} ({run.rule.kind}) has no beta: give --betas",
            hint="e.g. --betas 0.1 0.01 0.001",
        )
    variant = args.variant or getattr(run.rule, "variant", "positive")
    test = test_data(run)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.batch_size]
    x, y = test.x[pick.to(test.x.device)], test.y[pick.to(test.y.device)]
    rows = []
    first = None
    for beta in betas:
        trace = gdu_check(
            run.system,
            run.cost,
            run.config.solver,  # the dynamics itself, without hardware read noise
            x,
            y,
            steps=steps,
            beta=beta,
            variant=variant,
            free_steps=free_steps,
        )
        first = first or trace
        rows.append({"beta": float(beta), "free_residual": trace.free_residual, "keys": summarize(trace)})
    assert first is not None
    result: dict[str, Any] = {
        "preset": run.config.name,
        "variant": variant,
        "free_steps": free_steps,
        "steps": steps,
        "step_size": first.step_size,
        "batch": int(x.shape[0]),
        "dtype": str(x.dtype).replace("torch.", ""),
        "results": rows,
    }
    if len(betas) > 1:
        result["slopes"] = {  # a state variable's over the units inside their box (the others cannot match)
            key: loglog_slope(betas, [_worst(r["keys"][key], inside=True) for r in rows])
            for key in rows[0]["keys"]
        }
        result["expected_slope"] = 2 if variant == "centered" else 1
    if args.plot:
        plot_gdu(first, args.plot, title=f"{run.config.name}: EqProp vs BPTT, {variant} beta {betas[0]:g}")
        result["plot"] = args.plot
    if not args.json:
        _table(result)
    emit(result)
    return 0


def _worst(row: dict[str, Any], *, inside: bool = False) -> float:
    """The largest error over the steps (of the units inside their box with ``inside``, for a state variable)."""
    values = [
        e for e in row.get("relative_error_inside" if inside else "", row["relative_error"]) if e is not None
    ]
    return max(values) if values else float("nan")


def _table(result: dict[str, Any]) -> None:
    print(
        f"{result['preset']}: T = {result['free_steps']} free steps, K = {result['steps']} nudged steps, "
        f"step size {result['step_size']:g}, {result['variant']}, batch {result['batch']} ({result['dtype']}); "
        "errors relative to the largest BPTT gradient, worst step",
        file=sys.stderr,
    )
    print(
        f"{'beta':>8} {'key':>12} {'error':>10} {'inside':>10} {'sign agr.':>10} {'RMSE [L]':>10} {'sign err [L]':>12}",
        file=sys.stderr,
    )
    for r in result["results"]:
        for key, row in r["keys"].items():
            inside = f"{_worst(row, inside=True):10.3e}" if row["kind"] == "neurons" else f"{'':>10}"
            print(
                f"{r['beta']:>8.3g} {key:>12} {_worst(row):10.3e} {inside} {min(row['sign_agreement']):10.4f} "
                f"{row['laborieux_rmse']:10.4f} {row['laborieux_sign_error']:12.4f}",
                file=sys.stderr,
            )
        print(f"{'':>8} free phase's last change: {r['free_residual']:.2e}", file=sys.stderr)
    for key, slope in result.get("slopes", {}).items():
        print(
            f"slope of log error vs log beta, {key}: {slope:.3f} (expected {result['expected_slope']})",
            file=sys.stderr,
        )
