"""A preset trained under each value of one setting (a non-ideality: read noise, update resolution, …), one folder
per run, tabulated and plotted against the setting.

``sweep(config, "hardware.read_noise", [0, 0.01, 0.03, 0.1], out_dir)`` trains ``config`` with ``--set
hardware.read_noise=v`` for each ``v`` into ``out_dir/<key>=<v>/`` (finished runs are skipped, interrupted ones
resumed: the same rules as ``eqprop compare``; a run that diverges is recorded as such, not retried), then writes ``robustness.csv``, ``robustness.md``,
``robustness.json`` and ``robustness.png`` (final test accuracy against the value) to ``out_dir``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from eqprop._files import save_png
from eqprop.data.trajectories import refuse_regression
from eqprop.errors import ConfigError, DivergenceError
from eqprop.train.compare import ensure_run, write_text
from eqprop.train.config import RunConfig
from eqprop.train.presets import apply_overrides
from eqprop.train.rundir import read_history

__all__ = ["DIVERGED", "parse_vary", "sweep"]

DIVERGED = "diverged.json"
"""Written into a run's folder when it diverged: the sweep reports it and does not retrain it."""


def parse_vary(text: str) -> tuple[str, list[str]]:
    """``"hardware.read_noise=0,0.01,0.1"`` → ``("hardware.read_noise", ["0", "0.01", "0.1"])`` (values as TOML
    literals, as ``--set`` reads them; a list value is written ``[1,2]`` and separated by ``;``)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ConfigError(f"--vary {text!r}: give KEY=V1,V2,…, e.g. hardware.read_noise=0,0.01,0.03")
    split = ";" if ";" in values else ","
    items = [v.strip() for v in values.split(split) if v.strip()]
    if len(items) < 2 or len(set(items)) != len(items):
        raise ConfigError(f"--vary {text!r}: give at least two distinct values")
    return key, items


def sweep(
    config: RunConfig,
    key: str,
    values: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    log: TextIO | None = None,
) -> dict[str, Any]:
    """Train ``config`` with ``key`` set to each of ``values`` (TOML literals) and tabulate the final accuracies.

    Every configuration is built and validated before the first run starts (a bad value fails at once).

    Returns:
        ``{"preset", "key", "epochs", "rows": [{"value", "test_accuracy", "train_accuracy", "seconds_per_epoch",
        "out"}], "runs": {"trained", "resumed", "skipped"}, "csv", "markdown", "json", "plot", "out_dir"}``.
    """
    log = sys.stderr if log is None else log
    refuse_regression(config.data.dataset, "eqprop robustness")
    plan = [(v, apply_overrides(config, [f"{key}={v}"])) for v in values]
    out = Path(out_dir)
    counts = {"trained": 0, "resumed": 0, "skipped": 0, "diverged": 0}
    rows = []
    for value, c in plan:
        folder = out / f"{key}={value}".replace("/", "_")
        marker = folder / DIVERGED
        if not marker.exists():
            try:
                counts[ensure_run(c, folder, progress=progress, log=log, command="robustness")] += 1
            except DivergenceError as err:  # a result of the sweep, not a reason to stop it
                folder.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps({"error": str(err)}) + "\n", encoding="utf-8")
                print(f"robustness: {key}={value} diverged: {err}", file=log)
        if marker.exists():
            counts["diverged"] += 1
            rows.append({"value": value, "test_accuracy": None, "train_accuracy": None, "diverged": True,
                         "seconds_per_epoch": None, "out": str(folder)})  # fmt: skip
            continue
        history = [r for r in read_history(folder) if r["epoch"] <= c.train.epochs]
        last = history[-1]
        rows.append(
            {
                "value": value,
                "test_accuracy": last["test_accuracy"],
                "train_accuracy": last["train_accuracy"],
                "diverged": False,
                "seconds_per_epoch": sum(r["train_seconds"] for r in history) / len(history),
                "out": str(folder),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        k: out / f"robustness.{ext}" for k, ext in (("csv", "csv"), ("markdown", "md"), ("json", "json"))
    }
    paths["plot"] = out / "robustness.png"
    result = {
        "preset": config.name,
        "key": key,
        "epochs": config.train.epochs,
        "rows": rows,
        "runs": counts,
        **{k: str(p) for k, p in paths.items()},
        "out_dir": str(out),
    }
    header = f"| {key} | test accuracy | train accuracy | s / epoch |\n|---|---|---|---|\n"
    lines = "".join(
        f"| {r['value']} | diverged | diverged | |\n"
        if r["diverged"]
        else f"| {r['value']} | {100 * r['test_accuracy']:.2f}% | {100 * r['train_accuracy']:.2f}% | "
        f"{r['seconds_per_epoch']:.1f} |\n"
        for r in rows
    )
    write_text(paths["markdown"], f"{config.name}, {config.train.epochs} epoch(s)\n\n{header}{lines}")
    write_text(
        paths["csv"],
        "value,test_accuracy,train_accuracy,seconds_per_epoch\n"
        + "".join(
            f"{r['value']},{'' if r['diverged'] else r['test_accuracy']},"
            f"{'' if r['diverged'] else r['train_accuracy']},{'' if r['diverged'] else r['seconds_per_epoch']}\n"
            for r in rows
        ),
    )
    write_text(paths["json"], json.dumps(result, indent=2, allow_nan=False) + "\n")
    _plot(paths["plot"], rows, key, config)
    return result


def _plot(path: Path, rows: Sequence[dict[str, Any]], key: str, config: RunConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r["value"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    nan = float("nan")  # a diverged run: a gap in the curve, and a mark on the axis
    ax.plot(labels, [nan if r["diverged"] else 100 * r["test_accuracy"] for r in rows], "o-", label="test")
    ax.plot(labels, [nan if r["diverged"] else 100 * r["train_accuracy"] for r in rows], "s--", label="train")
    for i, r in enumerate(rows):
        if r["diverged"]:
            ax.annotate("diverged", (i, 0), rotation=90, ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(key)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{config.name}, {config.train.epochs} epoch(s)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    plt.close(fig)
