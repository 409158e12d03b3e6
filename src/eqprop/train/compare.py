"""Several learning rules on one preset, several seeds each: the comparative study's Table 1 for this library.

:func:`compare_rules` trains every (rule, seed) with :func:`~eqprop.train.loop.fit`, each into its own run
directory ``OUT/<rule>/seed<k>/``, so that an interrupted comparison is resumed where it stopped: finished runs
are skipped, a run cut short continues from its checkpoint. It then tabulates the final test and train error
(mean ± sample standard deviation over seeds) and the training time per epoch, and writes ``compare.csv``,
``compare.md``, ``compare.json`` and ``compare.png`` (test error against epochs, one line per rule, mean over
seeds) to ``OUT``.

The rule names are the literature's (:data:`eqprop.rules.names.RULE_NAMES`): CL, PEP, NEP, CEP, PCpL, NCpL,
CCpL, TBP, RBP (Scellier, Ernoult, Kendall & Kumar, NeurIPS 2023).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from eqprop.data.trajectories import refuse_regression
from eqprop.errors import ConfigError
from eqprop.rules.names import lookup
from eqprop.train.config import RunConfig, config_to_dict
from eqprop.train.loop import fit, resume
from eqprop.train.presets import apply_overrides, apply_rule_name
from eqprop.train.rundir import CHECKPOINT, WHERE_IT_RUNS, read_checkpoint, read_history

__all__ = ["compare_rules", "ensure_run", "parse_rule_names", "summarize_runs", "write_text"]

CSV_NAME, MARKDOWN_NAME, JSON_NAME, PLOT_NAME = "compare.csv", "compare.md", "compare.json", "compare.png"


def parse_rule_names(names: str | Sequence[str]) -> list[str]:
    """``"CL,cep, TBP"`` (or a list) → ``["CL", "CEP", "TBP"]``: canonical names, duplicates dropped.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones), or no name at all.
    """
    parts = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if part and (name := lookup(part).name) not in out:
            out.append(name)
    if not out:
        raise ConfigError("no rule names given", hint="e.g. --rules CL,PEP,NEP,CEP,PCpL,NCpL,CCpL,TBP,RBP")
    return out


def _comparable(config: RunConfig) -> dict[str, Any]:
    d = config_to_dict(config)
    for setting in WHERE_IT_RUNS:  # settings that may differ between a stored run and the one asked for
        section, _, key = setting.partition(".")
        d[section].pop(key, None)
    d.pop("measured", None)
    d.pop("published", None)
    return d


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def ensure_run(config: RunConfig, out: Path, *, progress: bool, log: TextIO, command: str = "compare") -> str:
    """Train ``config`` into ``out`` unless it is already there; return what was done (``command`` prefixes the
    messages)."""
    label = f"{out.parent.name} seed {config.train.seed}"
    if not (out / CHECKPOINT).exists():
        print(f"{command}: training {label} -> {out}", file=log)
        fit(config, out, progress=progress)
        return "trained"
    stored, _ = read_checkpoint(out)
    if _comparable(stored) != _comparable(config):
        old, new = _flatten(_comparable(stored)), _flatten(_comparable(config))
        diff = [
            f"{k} = {old.get(k)!r} there, {new.get(k)!r} here"
            for k in sorted(old | new)
            if old.get(k) != new.get(k)
        ]
        raise ConfigError(
            f"{out} holds a run with other settings than this {command}'s: {'; '.join(diff[:3])}",
            hint="choose another --out-dir, or delete that folder to retrain it",
        )
    done = len(read_history(out))
    if done >= config.train.epochs:
        print(f"{command}: {label} is done ({done} epochs), skipped", file=log)
        return "skipped"
    print(f"{command}: resuming {label} at epoch {done + 1}/{config.train.epochs}", file=log)
    t = config.train
    resume(
        out,
        epochs=t.epochs,
        device=t.device,
        threads=t.threads,
        data_dir=config.data.data_dir,
        progress=progress,
    )
    return "resumed"


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize_runs(name: str, histories: Sequence[Sequence[dict[str, Any]]], epochs: int) -> dict[str, Any]:
    """One row of the table from the per-epoch records (``metrics.jsonl``) of each seed's run.

    Errors are in percent: ``100·(1 − accuracy)`` after the last of ``epochs`` epochs; ``seconds_per_epoch`` is
    the training time of an epoch (evaluation excluded), averaged over epochs and seeds. ``curve`` holds the
    mean (and standard deviation) over seeds of the test error after each epoch.

    Raises:
        ConfigError: a run has fewer than ``epochs`` epochs.
    """
    row = lookup(name)
    runs = []
    for h in histories:
        records = [r for r in h if r["epoch"] <= epochs]
        if len(records) < epochs:
            raise ConfigError(f"rule {name}: a run has {len(records)} of {epochs} epochs")
        runs.append(records)
    if not runs:
        raise ConfigError(f"rule {name}: no runs to summarize")
    test_mean, test_std = _mean_std([100 * (1 - r[-1]["test_accuracy"]) for r in runs])
    train_mean, train_std = _mean_std([100 * (1 - r[-1]["train_accuracy"]) for r in runs])
    curve_mean, curve_std = [], []
    for e in range(epochs):
        m, s = _mean_std([100 * (1 - r[e]["test_accuracy"]) for r in runs])
        curve_mean.append(m)
        curve_std.append(s)
    return {
        "rule": row.name,
        "algorithm": row.title,
        "kind": row.kind,
        "variant": row.variant,
        "seeds": len(runs),
        "epochs": epochs,
        "test_error_pct_mean": test_mean,
        "test_error_pct_std": test_std,
        "train_error_pct_mean": train_mean,
        "train_error_pct_std": train_std,
        "seconds_per_epoch": statistics.fmean(rec["train_seconds"] for r in runs for rec in r),
        "curve": {"test_error_pct_mean": curve_mean, "test_error_pct_std": curve_std},
    }


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _markdown(rows: Sequence[dict[str, Any]], config: RunConfig) -> str:
    head = (
        f"Preset `{config.name}`, {rows[0]['epochs']} epochs, rule.beta = {config.rule.beta:g}; "
        "errors in % after the last epoch (mean ± sample std over seeds); training time per epoch.\n\n"
        "| rule | algorithm | test error (%) | train error (%) | s / epoch | seeds |\n"
        "|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['rule']} | {r['algorithm']} | {_pm(r['test_error_pct_mean'], r['test_error_pct_std'])} | "
        f"{_pm(r['train_error_pct_mean'], r['train_error_pct_std'])} | {r['seconds_per_epoch']:.3g} | "
        f"{r['seeds']} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys = [k for k in rows[0] if k != "curve"]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r[k] is None else r[k]) for k in keys})
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


_LINESTYLES = {"eqprop": "-", "coupled": "--", "contrastive": ":", "backprop": "-.", "implicit": "-."}
"""One line style per family, so that nine curves stay readable."""


def _plot(path: Path, rows: Sequence[dict[str, Any]], config: RunConfig) -> None:
    """Test error against epochs, one line per rule (mean over seeds, ± std band with several seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.0, 4.5), layout="constrained")  # no pyplot: no global backend state
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        epochs = list(range(1, r["epochs"] + 1))
        mean = r["curve"]["test_error_pct_mean"]
        (line,) = ax.plot(
            epochs,
            mean,
            linestyle=_LINESTYLES.get(r["kind"], "-"),
            marker="o" if len(epochs) < 30 else None,
            markersize=3,
            label=r["rule"],
        )
        std = r["curve"]["test_error_pct_std"]
        if all(s is not None for s in std):
            lo = [max(m - s, 0.0) for m, s in zip(mean, std, strict=True)]
            hi = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.08, linewidth=0)
    seeds = max(r["seeds"] for r in rows)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{config.name}: test error, mean over {seeds} seed{'s' if seeds > 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend(ncols=3 if len(rows) > 5 else 1, fontsize="small")
    fig.savefig(path, dpi=110)


def compare_rules(
    config: RunConfig,
    rules: str | Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    seeds: int = 1,
    progress: bool = True,
    log: TextIO | None = None,
) -> dict[str, Any]:
    """Train ``config`` with each rule of ``rules`` for seeds ``train.seed, …, train.seed + seeds − 1``, then
    tabulate and plot them (see the module docstring).

    Main arguments:
        config: the run (preset plus overrides); its rule is replaced by each named one, β and the other
            rule settings are kept (TBP without ``rule.steps`` differentiates the nudged phase's sweeps).
        rules: literature names, ``"CL,CEP,TBP"`` or a list (case-insensitive).
        out_dir: the comparison folder; each run goes to ``out_dir/<rule>/seed<k>/``.

    Other arguments:
        seeds: runs per rule.
        progress: show a progress bar per epoch (stderr).
        log: where to report what is trained or skipped (default stderr).

    Returns:
        ``{"preset", "epochs", "seeds", "rules", "rows": [...], "runs": {"trained", "resumed", "skipped"},
        "csv", "markdown", "json", "plot", "out_dir"}``; each row as :func:`summarize_runs`.

    Raises:
        ConfigError: an unknown rule name (before anything is trained), ``seeds < 1``, or ``out_dir`` holding
            a run of other settings. Whatever :func:`~eqprop.train.loop.fit` raises.
    """
    log = sys.stderr if log is None else log
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds {seeds!r}: need an integer >= 1")
    if config.train.epochs < 1:
        raise ConfigError(f"train.epochs = {config.train.epochs}: a comparison needs at least one epoch")
    refuse_regression(config.data.dataset, "eqprop compare")
    names = parse_rule_names(rules)
    base_seed = config.train.seed
    # Every (rule, seed) config is built and validated before the first run starts.
    plan = {
        name: [
            apply_overrides(apply_rule_name(config, name), [f"train.seed={base_seed + i}"])
            for i in range(seeds)
        ]
        for name in names
    }
    out = Path(out_dir)
    counts = {"trained": 0, "resumed": 0, "skipped": 0}
    for name, configs in plan.items():
        for c in configs:
            counts[ensure_run(c, out / name / f"seed{c.train.seed}", progress=progress, log=log)] += 1
    rows = [
        summarize_runs(
            name, [read_history(out / name / f"seed{c.train.seed}") for c in configs], config.train.epochs
        )
        for name, configs in plan.items()
    ]
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": CSV_NAME, "markdown": MARKDOWN_NAME, "json": JSON_NAME, "plot": PLOT_NAME}
    paths = {key: out / file for key, file in files.items()}
    result = {
        "preset": config.name,
        "epochs": config.train.epochs,
        "seeds": seeds,
        "rules": names,
        "rows": rows,
        "runs": counts,
        **{key: str(p) for key, p in paths.items()},
        "out_dir": str(out),
    }
    _write_csv(paths["csv"], rows)
    write_text(paths["markdown"], _markdown(rows, config))
    write_text(paths["json"], json.dumps(result, indent=2, allow_nan=False) + "\n")
    _plot(paths["plot"], rows, config)
    return result
