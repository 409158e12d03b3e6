"""``eqprop arch-study``: train an iso-energetic family and test how well the analyzer's measures predict it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from eqprop.cli._common import emit
from eqprop.cli.thermo import fmt
from eqprop.errors import ConfigError

__all__ = ["arch_study", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "arch-study",
        help="train an iso-energetic family (BP MLPs, EqProp DHNs) and test the analyzer's measures",
        description="Train every architecture of a study preset as a backprop ReLU MLP and as an EqProp deep "
        "Hopfield net, several seeds, and report how each arch-thermo measure predicts test accuracy, "
        "final train loss and train-test gap (Kendall tau, Spearman rho, rho partialled on depth, top-k, "
        "seed spread). Resumable: finished runs are kept in OUT/results.jsonl and skipped when rerun.",
    )
    p.add_argument("--preset", default="ci", help="ci, fmnist-60k or fmnist-200k (default %(default)s)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--out", help="study folder (default runs/arch-study-<preset>)")
    p.add_argument("--seeds", type=int, help="number of seeds (more extends a finished study)")
    p.add_argument("--methods", nargs="+", choices=["bp", "eqprop"], help="train only these methods")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=arch_study)


def arch_study(args: argparse.Namespace) -> int:
    from eqprop.analysis.study import PRESETS, run_study

    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name}: {preset.description}")
        emit({"presets": {n: dataclasses.asdict(p) for n, p in PRESETS.items()}})
        return 0
    if args.preset not in PRESETS:
        import difflib

        close = difflib.get_close_matches(args.preset, list(PRESETS), n=1)
        raise ConfigError(
            f"unknown study preset {args.preset!r}; known: {', '.join(PRESETS)}",
            hint=f"did you mean {close[0]!r}?" if close else "see `eqprop arch-study --list`",
        )
    config = PRESETS[args.preset]
    changes: dict[str, Any] = {}
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if args.methods:
        changes["methods"] = tuple(args.methods)
    if changes:
        config = dataclasses.replace(config, **changes)
    out = args.out or f"runs/arch-study-{config.name}"
    summary = run_study(
        config, out, data_dir=args.data_dir, device=args.device, progress=not args.no_progress
    )

    print(f"study {config.name}: {out}", file=sys.stderr)
    for method, res in summary["methods"].items():
        best = res["best"]
        print(
            f"{method}: {res['runs']} runs, seed sd of test accuracy {fmt(res['mean_seed_sd_test_accuracy'], '.4f')}, "
            + (f"best {best['arch']} ({best['test_accuracy']:.4f})" if best else "no results"),
            file=sys.stderr,
        )
        print(
            f"  {'measure':<22} {'tau':>6} {'rho':>6} {'rho|L':>6} {'rho sd':>6} {'top-k acc':>9}   (vs test accuracy)",
            file=sys.stderr,
        )
        for c in res["correlations"]:
            if c["target"] == "test_accuracy":
                print(
                    f"  {c['measure']:<22} {fmt(c['tau'], '>+6.2f')} {fmt(c['rho'], '>+6.2f')} "
                    f"{fmt(c['rho_partial'], '>+6.2f')} {fmt(c['rho_sd'], '>6.2f')} {fmt(c['top_k_mean'], '>9.4f')}",
                    file=sys.stderr,
                )
        picks = ", ".join(
            f"ρ₀={'∞' if s['rho_max'] is None else s['rho_max']} → {s['arch'] or 'none feasible'}"
            + (f" ({s['test_accuracy']:.4f})" if s["test_accuracy"] is not None else "")
            for s in res["selection"]
        )
        print(f"  the analyzer's pick (max H s.t. ρ ≤ ρ₀): {picks}", file=sys.stderr)
    headline = {
        m: {
            c["measure"]: {"tau": c["tau"], "rho": c["rho"], "rho_partial": c["rho_partial"]}
            for c in res["correlations"]
            if c["target"] == "test_accuracy"
        }
        for m, res in summary["methods"].items()
    }
    emit(
        {
            "command": "arch-study",
            "preset": config.name,
            "out": str(out),
            "archs": len(summary["family"]),
            "runs": {m: res["runs"] for m, res in summary["methods"].items()},
            "new_runs": summary["new_runs"],
            "best": {m: res["best"] for m, res in summary["methods"].items()},
            "test_accuracy_correlations": headline,
            "files": summary["files"],
        }
    )
    return 0
