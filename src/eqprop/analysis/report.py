"""``eqprop report RUN_DIR``: one self-contained HTML page about a run (no network, no script needed to view it).

The page holds the run's summary, its learning curves (accuracy and loss per epoch, the training loss per step),
the relaxation statistics (sweeps, final residual and energy of each phase), the layers' saturation and the
parameters' norms, the gradient-agreement curve (the cosine between the rule's estimate and the
implicit-differentiation gradient on the probe batch) and the run's configuration. Plots are PNG images embedded
as data URIs; the per-step figures come from the run's TensorBoard event files (when it wrote them).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqprop.errors import ConfigError
from eqprop.train.monitor import FOLDER
from eqprop.train.rundir import CONFIG, METRICS, SUMMARY, read_history

__all__ = ["REPORT", "write_report"]

REPORT = "report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5rem 0; } td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; }
th { background: #f4f4f4; text-align: left; } figure { margin: 1rem 0; } figcaption { color: #555; }
img { max-width: 100%; border: 1px solid #eee; } pre { background: #f8f8f8; padding: 1rem; overflow-x: auto; }
.note { color: #777; }
"""


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard scalars, tag -> [(step, value)] (empty when it wrote none)."""
    folder = run / FOLDER
    if not folder.is_dir() or not any(folder.iterdir()):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str, axes: Sequence[tuple[str, dict[str, list[tuple[float, float]]], str]]) -> str:
    """One row of plots: each ``(y label, {series: [(x, y)]}, x label)``, as an ``<img>`` data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(axes), 3.6), layout="constrained")  # no pyplot: no global state
    FigureCanvasAgg(fig)
    for k, (ylabel, series, xlabel) in enumerate(axes, start=1):
        ax = fig.add_subplot(1, len(axes), k)
        for name, points in series.items():
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=name, marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize="small")
    alt = html.escape(title)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{_png(fig)}"><figcaption>{alt}</figcaption></figure>'


def _smooth(points: list[tuple[int, float]], every: int) -> list[tuple[float, float]]:
    """Means over windows of ``every`` steps (a per-step curve of thousands of points, readable)."""
    out = []
    for i in range(0, len(points), every):
        chunk = points[i : i + every]
        out.append((sum(s for s, _ in chunk) / len(chunk), sum(v for _, v in chunk) / len(chunk)))
    return out


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items()
    )
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _tagged(scalars: dict[str, list[tuple[int, float]]], prefix: str) -> dict[str, list[tuple[float, float]]]:
    return {
        tag.removeprefix(prefix): [(float(s), v) for s, v in points]
        for tag, points in scalars.items()
        if tag.startswith(prefix)
    }


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of the run in ``run_dir`` (default file: ``run_dir/report.html``); return its path.

    Raises:
        ConfigError: ``run_dir`` is not a run folder (no ``config.json``).
    """
    run = Path(run_dir)
    if not (run / CONFIG).is_file():
        raise ConfigError(
            f"{run} is not a run folder (no {CONFIG})", hint="pass the --out folder of an `eqprop train` run"
        )
    config = json.loads((run / CONFIG).read_text(encoding="utf-8"))
    summary = json.loads((run / SUMMARY).read_text(encoding="utf-8")) if (run / SUMMARY).is_file() else {}
    history = read_history(run)
    scalars = _scalars(run)
    parts = [f"<h1>eqprop run: {html.escape(str(config.get('name', run.name)))}</h1>"]
    parts.append(f"<p>{html.escape(str(config.get('description', '')))}</p>")
    parts.append("<h2>Summary</h2>")
    parts.append(
        _table(summary) if summary else '<p class="note">No summary yet: the run has not finished.</p>'
    )

    parts.append("<h2>Learning curves</h2>")
    if history:

        def per_epoch(key: str) -> list[tuple[float, float]]:
            return [(float(r["epoch"]), float(r[key])) for r in history if r.get(key) is not None]

        # a regression run (float targets) has losses and no accuracy: its curves and table are the losses
        regression = all(r.get("test_accuracy") is None for r in history)
        panels = [("loss", {k: per_epoch(f"{k}_loss") for k in ("train", "test", "validation")}, "epoch")]
        if not regression:
            accuracy = {k: per_epoch(f"{k}_accuracy") for k in ("train", "test", "validation")}
            panels.insert(0, ("accuracy", accuracy, "epoch"))
        parts.append(_figure("accuracy and loss per epoch" if not regression else "loss per epoch", panels))
        parts.append(
            _table(
                {
                    f"epoch {r['epoch']}": (
                        f"test loss {r['test_loss']:.4g}, train loss {r['train_loss']:.4g}"
                        if regression
                        else f"test {r['test_accuracy']:.4f}, train {r['train_accuracy']:.4f}"
                    )
                    for r in history
                }
            )
        )
    else:
        parts.append(f'<p class="note">No epoch finished yet ({METRICS} is empty).</p>')
    if "train/loss" in scalars:
        every = max(1, len(scalars["train/loss"]) // 300)
        parts.append(
            _figure(
                f"training loss and accuracy per step (means over {every} steps)",
                [
                    ("loss", {"train": _smooth(scalars["train/loss"], every)}, "step"),
                    *(
                        []
                        if history and all(r.get("test_accuracy") is None for r in history)
                        else [
                            ("accuracy", {"train": _smooth(scalars.get("train/accuracy", []), every)}, "step")
                        ]
                    ),
                ],
            )
        )

    parts.append("<h2>Relaxations</h2>")
    if scalars:
        sweeps = {
            k.removesuffix("/sweeps"): v
            for k, v in _tagged(scalars, "relaxation/").items()
            if k.endswith("/sweeps")
        }
        energy = {
            k.removesuffix("/energy"): v
            for k, v in _tagged(scalars, "relaxation/").items()
            if k.endswith("/energy")
        }
        rule = _tagged(scalars, "rule/")
        parts.append(
            _figure(
                "sweeps and energy of each phase (0: free, then the nudged ones), and the rule's metrics",
                [
                    ("sweeps", {f"phase {k}": v for k, v in sweeps.items()}, "step"),
                    ("energy (mean over the batch)", {f"phase {k}": v for k, v in energy.items()}, "step"),
                    ("rule metrics (e.g. final residual per phase)", rule, "step"),
                ],
            )
        )
        parts.append(
            _figure(
                "saturated fraction of each layer, and the norms of the parameters and of their updates",
                [
                    ("saturated fraction", _tagged(scalars, "saturation/"), "step"),
                    ("parameter norm", _tagged(scalars, "norm/"), "step"),
                    ("update norm", _tagged(scalars, "update_norm/"), "step"),
                ],
            )
        )
        parts.append("<h2>Gradient agreement</h2>")
        probe = scalars.get("probe/cosine_to_implicit", [])
        if probe:
            parts.append(
                _figure(
                    "cosine between the rule's estimate and the implicit-differentiation gradient (probe batch)",
                    [("cosine", {"rule vs implicit": [(float(s), v) for s, v in probe]}, "step")],
                )
            )
        else:
            parts.append(
                '<p class="note">No probe was logged (the run had fewer steps than --probe-every).</p>'
            )
    else:
        parts.append('<p class="note">The run wrote no TensorBoard files (--no-tensorboard).</p>')

    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>eqprop report: {html.escape(str(config.get('name', run.name)))}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    target = Path(out) if out is not None else run / REPORT
    target.write_text(page, encoding="utf-8")
    return target
