"""``eqprop presets``: the shipped presets with their settings, measured and published numbers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from eqprop.cli._common import emit

__all__ = ["presets", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "presets",
        help="list the presets",
        description="List the presets with their architecture, rule, hyperparameters, measured and published "
        "numbers.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=presets)


def describe(config: Any) -> dict[str, Any]:
    """One preset in a few lines' worth of fields."""
    from eqprop.rules import Rule
    from eqprop.train import config_to_dict

    d = config_to_dict(config)
    if type(config.rule).learning_rates is not Rule.learning_rates:  # the rule implies the rates itself
        d["optimizer"] = {k: v for k, v in d["optimizer"].items() if k not in ("lr", "lr_biases")}
        d["optimizer"]["lr"] = "set by the rule"
    solver, nudged = d["solver"], d["nudged_solver"] or d["solver"]
    order = f" {solver['order']}" if "order" in solver else ""
    return {
        "name": config.name,
        "description": config.description,
        "dataset": config.data.dataset,
        "architecture": config.system.describe(),
        "cost": config.cost.kind,
        "rule": d["rule"],
        "solver": f"{solver['kind']}{order} x{solver['iterations']} free / x{nudged['iterations']} nudged",
        "optimizer": d["optimizer"],
        "schedule": d["schedule"],
        "batch_size": config.train.batch_size,
        "epochs": config.train.epochs,
        "measured": config.measured,
        "published": config.published,
    }


def _settings(table: dict[str, Any]) -> str:
    return " ".join(f"{k} {v}" for k, v in table.items() if k != "kind" and v is not None)


def presets(args: argparse.Namespace) -> int:
    from eqprop.train import list_presets, load_preset

    rows = [describe(load_preset(name)) for name in list_presets()]
    if args.json:
        emit({"presets": rows})
        return 0
    for r in rows:
        print(f"{r['name']}: {r['description']}")
        print(
            f"  data {r['dataset']} | {r['architecture']} | cost {r['cost']} | batch {r['batch_size']} | "
            f"{r['epochs']} epochs"
        )
        print(f"  rule {r['rule']['kind']} {_settings(r['rule'])} | {r['solver']}")
        o, s = r["optimizer"], r["schedule"]
        print(f"  optimizer {o['kind']} {_settings(o)} | schedule {s['kind']} {_settings(s)}".rstrip())
        print("  measured: " + (json.dumps(r["measured"]) if r["measured"] else "(no run recorded yet)"))
        if r["published"]:
            print("  published: " + json.dumps(r["published"]))
        print()
    return 0
