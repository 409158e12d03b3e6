"""``eqprop arch-thermo``: the statistical-mechanics analysis of an iso-energetic family of architectures."""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

from eqprop.cli._common import emit
from eqprop.errors import ConfigError

__all__ = ["arch_thermo", "parse_depths", "register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "arch-thermo",
        help="statistical-mechanics analysis of an iso-energetic family of architectures",
        description="Enumerate the architectures n_in -> hidden -> n_out whose parameter count solves U = "
        "budget (exactly, or within --tol), score each (energy, permutation / linear-region / Gaussian "
        "entropies, effectiveness, efficiency, stability, ensemble temperature), rank them by maximum "
        "entropy subject to rho <= rho_max, print the top rows, and write family.csv and plots to "
        "--out-dir. The definitions reconstruct Chinea (2020/2023); see docs/architecture-thermodynamics.md.",
    )
    p.add_argument("--in", dest="n_in", type=int, default=784, help="input width (default %(default)s)")
    p.add_argument("--out", dest="n_out", type=int, default=10, help="output width (default %(default)s)")
    p.add_argument("--budget", type=int, default=60000, help="energy U: parameters (default %(default)s)")
    p.add_argument(
        "--depths", default="1-8", help="hidden-layer counts: 1-8, 1,2,4 or 1-3,6 (default %(default)s)"
    )
    p.add_argument(
        "--tol", type=float, default=0.02, help="relative band |U - budget| <= tol*budget; 0 = exact"
    )
    p.add_argument("--top", type=int, default=10, help="rows to print (default %(default)s)")
    p.add_argument("--n-min", type=int, default=1, help="narrowest hidden layer (default %(default)s)")
    p.add_argument("--n-max", type=int, default=1024, help="widest hidden layer (default %(default)s)")
    p.add_argument("--no-bias", action="store_true", help="count interactions only (no biases) in U")
    p.add_argument(
        "--entropy",
        choices=["gauss", "regions", "perm"],
        default="gauss",
        help="ranking entropy (default %(default)s)",
    )
    p.add_argument(
        "--rho-max",
        type=float,
        default=0.02,
        help="effectiveness constraint rho = L/geo-mean width <= rho_max; inf = none (default %(default)s)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=float("inf"),
        help="design temperature of F = U - T*S (default inf)",
    )
    p.add_argument(
        "--family",
        choices=["band", "shapes"],
        default="band",
        help="band: every solution (sampled above --max-per-depth); shapes: scaled width profiles",
    )
    p.add_argument(
        "--max-per-depth", type=int, default=500, help="enumerate up to this many per depth, else sample"
    )
    p.add_argument(
        "--random-shapes", type=int, default=0, help="extra random profiles per depth (--family shapes)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument(
        "--out-dir", help="folder for family.csv and the plots (default runs/arch-thermo-IN-OUT-BUDGET)"
    )
    p.add_argument("--no-plots", action="store_true", help="write no PNG")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=arch_thermo)


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


def fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or a dash as wide as ``spec`` asks for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return format("-", f">{width}") if width else "-"
    return format(value, spec)


def arch_thermo(args: argparse.Namespace) -> int:
    from eqprop.analysis import thermo
    from eqprop.analysis.thermo.report import clean_json, plot_family, write_csv

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
                f"{fmt(r['stability_margin'], '>8.3f')} {r['worst_move'] or '-':<14} "
                f"{fmt(r['ensemble_temperature'], '>9.3g')}"
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
    emit(
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
