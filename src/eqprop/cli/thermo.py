"""``eqprop arch-thermo`` and ``eqprop arch-study`` (imported lazily by :mod:`eqprop.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

from eqprop.errors import ConfigError

__all__ = ["arch_study", "arch_thermo", "parse_depths"]


def _emit(result: dict[str, Any]) -> None:
    """The last stdout line: one JSON object."""
    print(json.dumps(result), flush=True)


def parse_depths(text: str) -> list[int]:
    """``"1-8"``, ``"1,2,4"`` or ``"1-3,6"`` → the sorted depths.

    Raises:
        ConfigError: for anything else, or a negative depth.
    """
    depths: set[int] = set()
    try:
        for part in text.split(","):
            lo, dash, hi = part.strip().partition("-")
            a, b = int(lo), int(hi) if dash else int(lo)
            if a < 0 or b < a:
                raise ValueError
            depths.update(range(a, b + 1))
    except ValueError as err:
        raise ConfigError(
            f"--depths {text!r} is not a depth list", hint="write e.g. 1-8, 1,2,4 or 1-3,6"
        ) from err
    return sorted(depths)


def _family(args: argparse.Namespace, depths: list[int]) -> tuple[list[Any], dict[str, Any]]:
    """The family of ``arch-thermo``: per depth, every member of the band (or the exact solutions) when
    there are at most ``--max-per-depth``, else that many drawn at random; or the shaped family."""
    from eqprop.analysis import thermo

    bias = not args.no_bias
    if args.family == "shapes":
        members = thermo.shaped_family(
            args.n_in,
            args.n_out,
            args.budget,
            depths,
            tol=args.tol,
            n_min=args.n_min,
            n_max=args.n_max,
            bias=bias,
            random_shapes=args.random_shapes,
            seed=args.seed,
        )
        per_depth = {
            d: {"members": sum(1 for a, _ in members if a.depth == d), "mode": "shapes"} for d in depths
        }
        return [a for a, _ in members], per_depth
    archs: list[Any] = []
    per_depth = {}
    for d in depths:
        found = list(
            itertools.islice(
                thermo.iso_energetic(
                    args.n_in,
                    args.n_out,
                    args.budget,
                    d,
                    tol=args.tol,
                    n_min=args.n_min,
                    n_max=args.n_max,
                    bias=bias,
                ),
                args.max_per_depth + 1,
            )
        )
        if len(found) <= args.max_per_depth:
            per_depth[d] = {"members": len(found), "mode": "enumerated"}
        else:
            found = thermo.sample_iso_energetic(
                args.n_in,
                args.n_out,
                args.budget,
                d,
                args.max_per_depth,
                tol=args.tol,
                n_min=args.n_min,
                n_max=args.n_max,
                bias=bias,
                seed=args.seed + d,
            )
            per_depth[d] = {"members": len(found), "mode": f"sampled (more than {args.max_per_depth})"}
        archs += found
    return archs, per_depth


def _fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or a dash as wide as ``spec`` asks for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return format("-", f">{width}") if width else "-"
    return format(value, spec)


def arch_thermo(args: argparse.Namespace) -> int:
    from eqprop.analysis import thermo
    from eqprop.analysis._thermo_report import clean_json, plot_family, write_csv

    for name, value, low in (
        ("--in", args.n_in, 1),
        ("--out", args.n_out, 1),
        ("--budget", args.budget, 1),
        ("--top", args.top, 1),
        ("--n-min", args.n_min, 1),
        ("--max-per-depth", args.max_per_depth, 1),
    ):
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
    if args.n_max < args.n_min:
        raise ConfigError(f"--n-max {args.n_max} is below --n-min {args.n_min}")
    depths = parse_depths(args.depths)
    rho_max = None if math.isinf(args.rho_max) else args.rho_max
    archs, per_depth = _family(args, depths)
    if not archs:
        raise ConfigError(
            f"no architecture {args.n_in}→…→{args.n_out} of depth {args.depths} has U = {args.budget}"
            + (f" ± {args.tol:.1%}" if args.tol else " exactly"),
            hint="widen --tol (exact solutions are sparse), or change --depths / --n-max",
        )
    bias = not args.no_bias
    lo, hi = args.budget * (1 - args.tol), args.budget * (1 + args.tol)
    ranked = thermo.analyze(
        archs,
        entropy_kind=args.entropy,
        rho_max=rho_max,
        temperature=args.temperature,
        band=(lo, hi),
        bias=bias,
        n_min=args.n_min,
        n_max=args.n_max,
        depths=depths,
        seed=args.seed,
    )
    rows = [r.as_row() for r in ranked]

    if not args.json:
        constraint = f"ρ ≤ {rho_max:g}" if rho_max is not None else "no ρ constraint"
        print(
            f"{len(rows)} architectures {args.n_in}→…→{args.n_out}, U = {args.budget} ± {args.tol:.1%} "
            f"({'parameters' if bias else 'interactions'}); ranked by max {args.entropy} entropy s.t. {constraint}, "
            f"then stability (T = {args.temperature:g})"
        )
        for d, info in per_depth.items():
            print(f"  depth {d}: {info['members']} ({info['mode']})")
        head = (
            f"{'#':>3} {'hidden widths':<28} {'L':>2} {'U':>8} {'S_perm':>8} {'S_act':>7} {'H':>7} "
            f"{'rho':>6} {'ok':>2} {'eta_rel':>7} {'margin':>8} {'worst move':<14} {'T_arch':>9}"
        )
        print(head)
        for r in rows[: args.top]:
            print(
                f"{r['rank']:>3} {r['hidden'] or '(none)':<28} {r['depth']:>2} {r['energy']:>8.0f} "
                f"{r['perm_entropy']:>8.1f} {r['region_entropy']:>7.1f} {r['gaussian_entropy']:>7.2f} "
                f"{r['effectiveness']:>6.3f} {'y' if r['feasible'] else 'n':>2} {r['relative_efficiency']:>7.4f} "
                f"{_fmt(r['stability_margin'], '>8.3f')} {r['worst_move'] or '-':<14} "
                f"{_fmt(r['ensemble_temperature'], '>9.3g')}"
            )

    out = Path(args.out_dir or f"runs/arch-thermo-{args.n_in}-{args.n_out}-{args.budget}")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    path = out / "family.csv"
    write_csv(path, rows)
    files.append(str(path))
    if not args.no_plots:
        dos = []
        for d in depths:
            sizes = sorted(a.neurons for a in archs if a.depth == d)
            if d >= 2 and sizes:  # the ensemble of the median neuron count of this depth's members
                dos.append(
                    thermo.density_of_states(
                        args.n_in,
                        args.n_out,
                        sizes[len(sizes) // 2],
                        d,
                        bias=bias,
                        n_max=args.n_max,
                        seed=args.seed,
                    )
                )
        files += plot_family(out, rows, dos, budget=args.budget, top=args.top)
    keep = (
        "rank",
        "arch",
        "depth",
        "energy",
        "perm_entropy",
        "region_entropy",
        "gaussian_entropy",
        "effectiveness",
        "feasible",
        "relative_efficiency",
        "stability_margin",
        "worst_move",
        "ensemble_temperature",
    )
    _emit(
        clean_json(
            {
                "command": "arch-thermo",
                "n_in": args.n_in,
                "n_out": args.n_out,
                "budget": args.budget,
                "tol": args.tol,
                "bias": bias,
                "depths": depths,
                "family": args.family,
                "members": len(rows),
                "per_depth": {str(d): v for d, v in per_depth.items()},
                "entropy": args.entropy,
                "rho_max": rho_max,
                "temperature": args.temperature,
                "top": [{k: r[k] for k in keep} for r in rows[: args.top]],
                "out_dir": str(out),
                "files": files,
            }
        )
    )
    return 0


def arch_study(args: argparse.Namespace) -> int:
    from eqprop.analysis.study import PRESETS, run_study

    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name}: {preset.description}")
        _emit({"presets": {n: dataclasses.asdict(p) for n, p in PRESETS.items()}})
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
            f"{method}: {res['runs']} runs, seed sd of test accuracy {_fmt(res['mean_seed_sd_test_accuracy'], '.4f')}, "
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
                    f"  {c['measure']:<22} {_fmt(c['tau'], '>+6.2f')} {_fmt(c['rho'], '>+6.2f')} "
                    f"{_fmt(c['rho_partial'], '>+6.2f')} {_fmt(c['rho_sd'], '>6.2f')} {_fmt(c['top_k_mean'], '>9.4f')}",
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
    _emit(
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
