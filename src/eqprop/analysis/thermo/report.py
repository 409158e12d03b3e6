"""Files written by ``eqprop arch-thermo`` and ``eqprop arch-study``: CSV tables and PNG plots.

Internal module. matplotlib is optional and imported lazily; figures are drawn with its object-oriented
API on an Agg canvas (no pyplot, no global backend state). Without matplotlib no PNG is written.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["clean_json", "plot_family", "write_csv", "write_study_files"]


def clean_json(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return clean_json(value.item())
    return value


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of dicts to CSV (the union of their keys, in first-seen order; missing cells empty)."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(keys), extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas, or None (with a note on stderr) without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "note: matplotlib is not installed, so no plots were written (pip install matplotlib)",
            file=sys.stderr,
        )
        return None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_family(
    out: Path, rows: Sequence[dict[str, Any]], dos: Sequence[Any], *, budget: float, top: int
) -> list[str]:
    """``entropy_vs_depth.png`` (the three entropies and ρ against depth, top members marked) and
    ``density_of_states.png`` (``ln g_L(N, U)`` of each ensemble in ``dos``, the budget marked)."""
    fig = _figure(12, 7)
    if fig is None:
        return []
    files = []
    depth = np.array([r["depth"] for r in rows], float)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, depth.size)
    feasible = np.array([bool(r["feasible"]) for r in rows])
    best = np.array([r["rank"] <= top for r in rows])
    panels = [
        ("perm_entropy", "S_perm = Σ ln n_l!  (nats)"),
        ("region_entropy", "S_act = ln Serra bound  (nats)"),
        ("gaussian_entropy", "H = (n_out/2) ln(2πe n0 Π n_l)  (nats)"),
        ("effectiveness", "ρ = L / geo-mean width"),
    ]
    axes = fig.subplots(2, 2)
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        y = np.array([r[key] for r in rows], float)
        ax.scatter(depth[~feasible] + jitter[~feasible], y[~feasible], s=8, c="0.7", label="ρ > ρ₀")
        ax.scatter(depth[feasible] + jitter[feasible], y[feasible], s=8, c="tab:blue", label="ρ ≤ ρ₀")
        ax.scatter(
            depth[best] + jitter[best],
            y[best],
            s=40,
            facecolors="none",
            edgecolors="tab:red",
            label=f"top {top}",
        )
        ax.set_xlabel("depth L")
        ax.set_ylabel(label)
        if key == "effectiveness" and np.all(y > 0):
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"iso-energetic family, U ≈ {budget:g}: {len(rows)} members")
    path = out / "entropy_vs_depth.png"
    fig.savefig(path, dpi=110)
    files.append(str(path))

    if dos:
        fig = _figure(8, 5)
        ax = fig.subplots()
        for d in dos:
            hit = d.counts > 0
            ax.plot(d.centers[hit], d.log_g[hit], marker=".", label=f"L={d.depth}, N={d.neurons}")
        ax.axvline(budget, color="k", ls="--", lw=1, label="budget")
        ax.set_xscale("log")
        ax.set_xlabel("energy U")
        ax.set_ylabel("ln g_L(N, U)  (architectures per bin)")
        ax.set_title("density of states of the iso-neuron ensembles (median N of each depth's members)")
        ax.legend(fontsize=8)
        path = out / "density_of_states.png"
        fig.savefig(path, dpi=110)
        files.append(str(path))
    return files


def _plot_study(out: Path, summary: dict[str, Any]) -> list[str]:
    fig = _figure(14, 4 * len(summary["methods"]))
    if fig is None:
        return []
    fam = summary["family"]
    keys = ["depth", "gaussian_entropy", "region_entropy", "perm_entropy", "effectiveness", "grad_norm_init"]
    depth = np.array([f["depth"] for f in fam], float)
    axes = fig.subplots(len(summary["methods"]), len(keys), squeeze=False)
    for row, (method, res) in zip(axes, summary["methods"].items(), strict=True):
        acc = np.array(
            [
                np.nan if res["test_accuracy"][f["arch"]] is None else res["test_accuracy"][f["arch"]]
                for f in fam
            ]
        )
        for ax, key in zip(row, keys, strict=True):
            x = np.array([np.nan if f[key] is None else f[key] for f in fam], float)
            points = ax.scatter(x, acc, c=depth, cmap="viridis", s=18)
            rho = next(
                (
                    c["rho"]
                    for c in res["correlations"]
                    if c["measure"] == key and c["target"] == "test_accuracy"
                ),
                None,
            )
            ax.set_title(f"{method}: ρ = {rho:+.2f}" if rho is not None else method, fontsize=9)
            ax.set_xlabel(key)
        row[0].set_ylabel("test accuracy (seed mean)")
        fig.colorbar(points, ax=row[-1], label="depth")
    path = out / "study.png"
    fig.savefig(path, dpi=100)
    files = [str(path)]

    fig = _figure(12, 5)
    ax = fig.subplots()
    measures = list(summary["measures"])
    width = 0.8 / (2 * len(summary["methods"]))
    for i, (method, res) in enumerate(summary["methods"].items()):
        for j, (stat, hatch) in enumerate((("rho", ""), ("rho_partial", "//"))):
            vals = []
            for m in measures:
                c = next(
                    c for c in res["correlations"] if c["measure"] == m and c["target"] == "test_accuracy"
                )
                vals.append(math.nan if c[stat] is None else c[stat])
            ax.bar(
                np.arange(len(measures)) + (2 * i + j - len(summary["methods"])) * width + width / 2,
                vals,
                width,
                hatch=hatch,
                label=f"{method} {'ρ' if stat == 'rho' else 'ρ|L'}",
            )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(measures)), measures, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Spearman ρ with test accuracy")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=8)
    path = out / "correlations.png"
    fig.savefig(path, dpi=100)
    return [*files, str(path)]


def write_study_files(out: Path, summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    """``study.json``, ``runs.csv``, ``measures.csv``, ``correlations.csv`` and the plots."""
    files = []
    path = out / "study.json"
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    files.append(str(path))
    path = out / "runs.csv"
    write_csv(path, list(records))
    files.append(str(path))
    rows = []
    for f in summary["family"]:
        row = dict(f)
        for method, res in summary["methods"].items():
            row[f"{method}_test_accuracy"] = res["test_accuracy"].get(f["arch"])
        rows.append(row)
    path = out / "measures.csv"
    write_csv(path, rows)
    files.append(str(path))
    path = out / "correlations.csv"
    write_csv(
        path, [{"method": m, **c} for m, res in summary["methods"].items() for c in res["correlations"]]
    )
    files.append(str(path))
    return files + _plot_study(out, summary)
