"""``eqprop spice-check``: one example's steady state, ours vs ngspice's (see :mod:`eqprop.spice`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from eqprop.errors import ConfigError


def _from_preset(args: argparse.Namespace) -> tuple[Any, torch.Tensor, dict[str, Any]]:
    from eqprop.data import load_idx_dataset
    from eqprop.train.checkpoint import check_compatible
    from eqprop.train.config import apply_overrides, build, flat_input, load_preset
    from eqprop.train.loop import load_run

    if args.checkpoint:
        config, ckpt = load_run(args.checkpoint)
        if args.preset and args.preset != config.name:
            raise ConfigError(
                f"--checkpoint {args.checkpoint} is a {config.name!r} run, not --preset {args.preset!r}",
                hint="leave out --preset: the checkpoint names its own",
            )
    else:
        config, ckpt = load_preset(args.preset), None
    if config.system.kind != "deep_resistive":
        raise ConfigError(
            f"spice-check exports resistive networks; {config.name!r} is a {config.system.kind} system",
            hint="use a deep_resistive preset (drn-xs, drn-1h, ...) or --random N",
        )
    if args.data_dir:
        config = apply_overrides(config, [f"data.data_dir={json.dumps(args.data_dir)}"])
    system, *_ = build(config, generator=torch.Generator().manual_seed(args.seed))
    if ckpt is not None:
        check_compatible(ckpt["system"], system, what="system")
        system.load_state_dict(ckpt["system"])
    data = load_idx_dataset(config.data.dataset, data_dir=config.data.data_dir, flatten=flat_input(config))
    if not 0 <= args.example < len(data.test):
        raise ConfigError(f"--example {args.example}: the test set has {len(data.test)} examples (0-based)")
    where = {"preset": config.name, "example": args.example, "dataset": config.data.dataset}
    if args.checkpoint:
        where["checkpoint"] = str(args.checkpoint)
        where["epoch"] = int(ckpt["epoch"]) if ckpt is not None and "epoch" in ckpt else None
    else:
        where["seed"] = args.seed
    return system, data.test.x[args.example], where


def spice_check(args: argparse.Namespace) -> int:
    from eqprop.spice import DiodeModel, random_deep_resistive
    from eqprop.spice import spice_check as check

    if args.random is not None and (args.preset or args.checkpoint):
        raise ConfigError("give either --random N or --preset/--checkpoint, not both")
    if args.iterations < 1 or args.timeout <= 0:
        raise ConfigError("--iterations must be >= 1 and --timeout > 0")
    if args.random is not None:
        system, x = random_deep_resistive(args.random, seed=args.seed)
        where: dict[str, Any] = {"random": args.random, "seed": args.seed}
    else:
        args.preset = args.preset or "drn-xs"
        system, x, where = _from_preset(args)
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
    print(
        f"spice-check {result['system']}: max |V_spice - V_ours| = {result['max_abs_dv']:.3g} V at "
        f"{result['worst_node']}, tolerance {result['tolerance']:.3g} V (forward drop "
        f"{result['forward_drop']:.2g}, leakage {result['leakage']:.2g}, solver {result['solver']:.2g}, "
        f"spice {result['spice']:.2g}): {verdict}; {result['resistors']} resistors, {result['diodes']} diodes "
        f"({result['conducting_diodes']} conducting), ngspice {result['spice_seconds']:.1f} s"
        + (f"; {result['note']}" if result["note"] else ""),
        file=sys.stderr,
    )
    print(json.dumps(result), flush=True)
    return 0 if result["passed"] else 1
