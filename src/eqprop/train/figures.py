"""The figures a run writes into its folder at the end: a trajectory system's trajectories, produced against target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eqprop._files import save_png
from eqprop.solvers.base import solve

__all__ = ["plot_trajectories", "write_figures"]


def plot_trajectories(
    system: Any, cost: Any, solver: Any, x: torch.Tensor, y: torch.Tensor, path: Path, *, units: int = 4
) -> Path:
    """One panel per example: the positions ``q(t)`` of the first ``units`` output units along the whole trajectory
    (solid), and, for a trajectory-fitting task, their targets (dashed); for a classification task the panel names
    the label and the predicted class. Written atomically to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with torch.no_grad():
        state = solve(system, x, solver).state
        q = system.trajectory(x, state)[..., system.hidden :].double().cpu()  # (batch, points, outputs)
        predicted = None if y.is_floating_point() else cost.predict(state).argmax(-1).cpu()
    t = torch.arange(q.shape[1], dtype=torch.float64) * system.dt
    n = q.shape[0]
    fig = Figure(figsize=(4.2 * n, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    first = system.first_free_point
    shown = min(units, q.shape[2])
    for i, ax in enumerate(axes):
        for j in range(shown):
            line = ax.plot(t, q[i, :, j], lw=1.4, label=f"unit {system.hidden + j}")[0]
            if y.is_floating_point():
                target = y[i].double().cpu().reshape(-1, q.shape[2])
                times = t[first : first + target.shape[0]]
                ax.plot(
                    times,
                    target[:, j],
                    "--",
                    color=line.get_color(),
                    lw=1.2,
                    label=f"target {system.hidden + j}",
                )
        if predicted is not None:
            ax.set_title(f"label {int(y[i])}, predicted {int(predicted[i])}", fontsize=9)
        ax.set_xlabel("t")
        ax.set_ylabel("q")
    axes[0].legend(fontsize=7)
    what = "produced (solid) vs target (dashed)" if y.is_floating_point() else "output units"
    more = f", {shown} of {q.shape[2]} output units" if shown < q.shape[2] else ""
    fig.suptitle(f"{type(system).__name__}, {system.boundary} boundary: {what}{more}", fontsize=10)
    return save_png(fig, path, dpi=90)


def write_figures(
    system: Any, cost: Any, solver: Any, x: torch.Tensor, y: torch.Tensor, folder: Path
) -> list[Path]:
    """What a run can draw of a few test examples ``(x, y)`` into ``folder``: ``trajectories.png`` for a system
    with a ``trajectory(x, state)`` (a Lagrangian system); ``network.png`` for a system that draws itself
    (``plot(x, relax, path)``: an elastic network before and after training); nothing for the others."""
    paths = []
    if callable(getattr(system, "trajectory", None)):
        paths.append(plot_trajectories(system, cost, solver, x, y, Path(folder) / "trajectories.png"))
    if callable(getattr(system, "plot", None)):

        def relax(net: Any, xs: torch.Tensor) -> Any:
            return solve(net, xs, solver, throw=False).state

        paths.append(system.plot(x, relax, Path(folder) / "network.png"))
    return paths
