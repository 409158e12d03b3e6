"""``eqprop compare``: several learning rules on one preset, several seeds each, tabulated and plotted."""

from __future__ import annotations

import argparse
from pathlib import Path

from eqprop.cli._common import add_run_flags, emit, flag_overrides, rules_help
from eqprop.errors import ConfigError

__all__ = ["compare", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "compare",
        help="train several learning rules on one preset and tabulate them",
        description="Train the preset with each rule (named as in Scellier, Ernoult, Kendall & Kumar 2023) "
        "and each seed into OUT-DIR/<rule>/seed<k>/; finished runs are skipped and interrupted ones resumed "
        "when the command is run again. Prints the table (rule, test and train error in % as mean ± std over "
        "seeds, training seconds per epoch), writes compare.csv, compare.md, compare.json and compare.png "
        "(test error against epochs, one line per rule) to OUT-DIR, and ends with one JSON line.",
        epilog=rules_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", default="fmnist-quick", help="preset name (see `eqprop presets`); default %(default)s"
    )
    p.add_argument(
        "--rules",
        default="CL,PEP,NEP,CEP,PCpL,NCpL,CCpL,TBP,RBP",
        help="comma-separated rule names (default: all nine, %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=1, help="runs per rule, seeds seed..seed+K-1 (default %(default)s)"
    )
    p.add_argument("--out-dir", help="comparison folder (default: runs/compare-<preset>)")
    add_run_flags(p, what="run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=compare)


def compare(args: argparse.Namespace) -> int:
    from eqprop.train import apply_overrides, load_preset
    from eqprop.train.compare import compare_rules

    clash = [o for o in args.overrides if o.partition("=")[0].strip() in ("rule.kind", "rule.variant")]
    if clash:
        raise ConfigError(
            f"compare sets rule.kind and rule.variant from --rules: do not also --set {clash[0]}",
            hint="list the rules with --rules, e.g. --rules CEP,PCpL (rule.beta and rule.steps may be set)",
        )
    config = apply_overrides(load_preset(args.preset), flag_overrides(args))
    out = args.out_dir or f"runs/compare-{config.name}"
    result = compare_rules(config, args.rules, out, seeds=args.seeds, progress=not args.no_progress)
    if not args.json:
        print(Path(result["markdown"]).read_text(encoding="utf-8"), end="")
    emit(result)
    return 0
