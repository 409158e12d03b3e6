"""``eqprop robustness``: a preset trained under each value of one setting, tabulated and plotted against it."""

from __future__ import annotations

import argparse
from pathlib import Path

from eqprop.cli._common import add_run_flags, emit, flag_overrides

__all__ = ["register", "robustness"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "robustness",
        help="train a preset under each value of one setting (e.g. a non-ideality) and tabulate it",
        description="Train the preset once per value of --vary KEY=V1,V2,... (KEY a setting as for --set, e.g. "
        "hardware.read_noise or hardware.bits) into OUT-DIR/KEY=V/; finished runs are skipped and interrupted ones "
        "resumed when the command is run again. Prints the table (value, final test and train accuracy, seconds "
        "per epoch), writes robustness.csv, .md, .json and .png (accuracy against the value) to OUT-DIR, and ends "
        "with one JSON line.",
    )
    p.add_argument(
        "--preset", default="fmnist-quick", help="preset name (see `eqprop presets`); default %(default)s"
    )
    p.add_argument(
        "--vary",
        required=True,
        metavar="KEY=V1,V2,...",
        help="the setting and its values, e.g. hardware.read_noise=0,0.01,0.03,0.1 (list values: separate "
        "them with ';', e.g. hardware.range=[0,1];[0,2])",
    )
    p.add_argument("--out-dir", help="sweep folder (default: runs/robustness-<preset>-<key>)")
    add_run_flags(p, what="run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=robustness)


def robustness(args: argparse.Namespace) -> int:
    from eqprop.train import apply_overrides, load_preset
    from eqprop.train.robustness import parse_vary, sweep

    key, values = parse_vary(args.vary)
    # validated with the first value in place (a setting may need it, e.g. a pulsed update needs its bits)
    config = apply_overrides(load_preset(args.preset), [*flag_overrides(args), f"{key}={values[0]}"])
    out = args.out_dir or f"runs/robustness-{config.name}-{key}"
    result = sweep(config, key, values, out, progress=not args.no_progress)
    if not args.json:
        print(Path(result["markdown"]).read_text(encoding="utf-8"), end="")
    emit(result)
    return 0
