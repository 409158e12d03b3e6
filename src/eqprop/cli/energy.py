"""``eqprop energy``: power and energy of a resistive or flow network's inference and training step, beside a digital
estimate."""

from __future__ import annotations

import argparse
from typing import Any

from eqprop.cli._common import add_overrides, emit, load_model, test_data
from eqprop.errors import ConfigError

__all__ = ["energy", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "energy",
        help="power and energy per inference and per training step of a resistive network, and a digital estimate",
        description="For a batch of test images: the power the network dissipates at its free and nudged "
        "equilibria (sum of g dV^2, watts for siemens and volts), the energy per inference and per training step "
        "when each phase is held for --settling-time, and a digital estimate of the same step (multiply-"
        "accumulates x --pj-per-mac; default 4.6 pJ, an FP32 multiply and add at 45 nm, Horowitz ISSCC 2014). "
        "Prints a table and one JSON line.",
    )
    p.add_argument("--preset", help="preset name (default drn-1h)")
    p.add_argument(
        "--checkpoint", help="a run folder or checkpoint.pt: its trained network instead of a fresh one"
    )
    p.add_argument("--batch-size", type=int, default=100, help="test images (default %(default)s)")
    p.add_argument(
        "--settling-time", type=float, default=1e-6, help="seconds per phase (default %(default)g)"
    )
    p.add_argument(
        "--pj-per-mac", type=float, default=4.6, help="digital energy per MAC (default %(default)g)"
    )
    p.add_argument(
        "--siemens-per-unit",
        type=float,
        default=1.0,
        help="one model conductance unit in siemens (default 1)",
    )
    p.add_argument(
        "--volts-per-unit", type=float, default=1.0, help="one model potential unit in volts (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh network and of the batch")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    add_overrides(p)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=energy)


def energy(args: argparse.Namespace) -> int:
    import torch

    from eqprop.analysis.energy import energy_table

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    run = load_model(args, default_preset="drn-1h")
    test = test_data(run)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.batch_size]
    x, y = test.x[pick.to(test.x.device)], test.y[pick.to(test.y.device)]
    result = energy_table(
        run.system,
        run.cost,
        run.config.solver,
        run.rule,
        x,
        y,
        nudged_solver=run.config.nudged_solver,
        settling_time=args.settling_time,
        pj_per_mac=args.pj_per_mac,
        siemens_per_unit=args.siemens_per_unit,
        volts_per_unit=args.volts_per_unit,
    )
    result = {"preset": run.config.name, **result}
    if not args.json:
        _table(result)
    emit(result)
    return 0


def _table(r: dict[str, Any]) -> None:
    d = r["digital"]
    print(
        f"{r['preset']}: {r['weights']:,} weights, batch {r['batch']}, each phase held {r['settling_time_s']:g} s"
    )
    for name, watts in r["power_w"].items():
        print(f"  power, {name:<16} {watts:12.4g} W")
    print(
        f"  energy per inference      {r['energy_per_inference_j']:12.4g} J   (digital: {d['inference_j']:.4g} J)"
    )
    print(
        f"  energy per training step  {r['energy_per_training_step_j']:12.4g} J   "
        f"(simulating it: {d['simulated_step_j']:.4g} J; backprop step of as many weights: {d['backprop_step_j']:.4g} J)"
    )
    print(f"  digital figures at {d['pj_per_mac']:g} pJ/MAC: {d['source']}")
