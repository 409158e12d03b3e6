"""``eqprop spice-check``: one example's steady state, ours vs ngspice's (see :mod:`eqprop.analysis.spice`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from eqprop.errors import ConfigError

__all__ = ["register", "spice_check"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "spice-check",
        help="one example's steady state vs ngspice",
        description="Export one example's circuit to SPICE, run ngspice -b on it, and compare every node "
        "potential with our steady state, against a tolerance derived from the near-ideal SPICE diodes (forward "
        "drop, leakage), SPICE's tolerances and our solver's residual (see eqprop.analysis.spice); circuits with "
        "Shockley diodes and amplifiers (analog_resistive) are written with their own junction model and checked "
        "against the solvers' errors and GMIN (eqprop.analysis.spice_analog). Either a "
        "preset of a circuit (fresh initialisation, or --checkpoint) and a test example, or --random N. "
        "Exit status 0 when within the tolerance, 1 when not. Needs ngspice (apt-get install ngspice).",
    )
    p.add_argument(
        "--preset", help="a preset of a resistive circuit (default drn-xs unless --random is given)"
    )
    p.add_argument("--checkpoint", metavar="RUN_DIR", help="use the weights (and preset) of this run")
    p.add_argument("--example", type=int, default=0, help="index into the test set (default %(default)s)")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument(
        "--random", type=int, metavar="N", help="a seeded random layered network of about N nodes instead"
    )
    p.add_argument("--seed", type=int, default=0, help="of --random, or of the preset's initialisation")
    p.add_argument(
        "--iterations", type=int, default=5000, help="our solver's sweeps at most (default %(default)s)"
    )
    p.add_argument(
        "--diode-is",
        type=float,
        default=1e-9,
        help="IS in A of the near-ideal SPICE diode standing in for ideal ones (default %(default)g; Shockley "
        "circuits use their own model)",
    )
    p.add_argument("--diode-n", type=float, default=1e-4, help="SPICE diode N (default %(default)g)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for ngspice (default %(default)g)")
    p.add_argument("--netlist-out", metavar="FILE", help="also write the SPICE deck to FILE")
    p.set_defaults(run=spice_check)


def _from_run(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The circuit of a checkpoint (its own settings) or of a preset's fresh initialisation, and the example."""
    from eqprop.train import apply_overrides, build, load_data, load_preset, load_run

    if args.checkpoint:
        if args.preset:
            raise ConfigError(
                f"--checkpoint {args.checkpoint} names its own preset: do not also give --preset {args.preset}",
                hint="leave out --preset",
            )
        run = load_run(args.checkpoint, device="cpu", data_dir=args.data_dir)
    else:
        sets = [f"train.seed={args.seed}", 'train.device="cpu"']
        if args.data_dir:
            sets.append(f"data.data_dir={json.dumps(args.data_dir)}")
        run = build(apply_overrides(load_preset(args.preset or "drn-xs"), sets))
    if not callable(getattr(run.system, "to_netlist", None)):
        raise ConfigError(
            f"spice-check exports circuits; {run.config.name!r} is a {type(run.system).__name__}, which has no "
            "netlist",
            hint="use a resistive-network preset (drn-xs, drn-1h, ...) or --random N",
        )
    test = load_data(run.config, run.device, run.dtype, validation=False).test
    if not 0 <= args.example < len(test):
        raise ConfigError(f"--example {args.example}: the test set has {len(test)} examples (0-based)")
    where: dict[str, Any] = {
        "preset": run.config.name,
        "example": args.example,
        "dataset": run.config.data.dataset,
    }
    if args.checkpoint:
        where.update(checkpoint=str(args.checkpoint), epoch=run.epoch)
    else:
        where["seed"] = args.seed
    return run.system, test.x[args.example], where


def spice_check(args: argparse.Namespace) -> int:
    from eqprop.analysis.spice import DiodeModel, random_deep_resistive
    from eqprop.analysis.spice import spice_check as check

    if args.random is not None and (args.preset or args.checkpoint):
        raise ConfigError("give either --random N or --preset/--checkpoint, not both")
    if args.iterations < 1 or args.timeout <= 0:
        raise ConfigError("--iterations must be >= 1 and --timeout > 0")
    if args.random is not None:
        system, x = random_deep_resistive(args.random, seed=args.seed)
        where: dict[str, Any] = {"random": args.random, "seed": args.seed}
    else:
        system, x, where = _from_run(args)
    model = DiodeModel(saturation_current=args.diode_is, emission=args.diode_n)
    result = check(
        system,
        x,
        iterations=args.iterations,
        diode_model=model,
        timeout=args.timeout,
        netlist_out=args.netlist_out,
    )
    result = {**where, **result, "netlist_out": args.netlist_out}
    verdict = "PASS" if result["passed"] else "FAIL"
    terms = ", ".join(
        f"{name.replace('_', ' ')} {result[name]:.2g}"
        for name in ("forward_drop", "leakage", "solver", "spice")
        if name in result
    )
    parts = f"{result['resistors']} resistors, {result['diodes']} diodes"
    if "conducting_diodes" in result:
        parts += f" ({result['conducting_diodes']} conducting)"
    if result.get("amplifiers"):
        parts += f", {result['amplifiers']} amplifiers"
    print(
        f"spice-check {result['system']}: max |V_spice - V_ours| = {result['max_abs_dv']:.3g} V at "
        f"{result['worst_node']}, tolerance {result['tolerance']:.3g} V ({terms}): {verdict}; {parts}, ngspice "
        f"{result['spice_seconds']:.1f} s" + (f"; {result['note']}" if result["note"] else ""),
        file=sys.stderr,
    )
    print(json.dumps(result), flush=True)
    return 0 if result["passed"] else 1
