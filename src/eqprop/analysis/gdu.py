r"""The GDU property (Ernoult, Grollier, Querlioz, Bengio & Scellier 2019; thesis ch. 5): EqProp's updates, step by
step through the nudged phase, against backprop through time (BPTT) at the matching step.

The discrete-time dynamics is the solver's step. For :class:`~eqprop.GradientFlow` with step size η it is
``s_{t+1} = Π(s_t − η·∂F/∂s(s_t))``, i.e. ``s_{t+1} = Π(∂Φ/∂s(s_t))`` with the primitive function
``Φ = ½‖s‖² − η·(E + βC)``, and ``Π`` the projection onto the units' box. With η = 1 on a Hopfield energy of unit
self-curvature and box [0, 1] this is exactly Laborieux et al.'s ``s_{t+1} = hard_sigmoid(∂Φ/∂s)`` dynamics (their
``hard_sigmoid(x) = clip(x, 0, 1)``; their ``my_hard_sig(x) = clip(x/2, 0, 1)`` is ``DeepHopfield(self_curvature=2)``
with η = 0.5), including the nudged output step ``σ(∂Φ/∂s − β·∂ℓ/∂s)``. :class:`~eqprop.solvers.Synchronous` runs
the same dynamics (η = 1) and also their ``my_sigmoid`` one, ``s_{t+1} = σ(∂Φ/∂s)`` with a smooth σ
(``DeepHopfield(activation="sigmoid")``), for which the theorem holds only approximately: the step's Jacobian
``diag(σ')·∂²Φ/∂s²`` is not symmetric, so the step is not the gradient of a primitive function.

Let the free phase run ``T`` steps and ``L = C(s_T)`` (batch mean). The theorem compares, for t = 0 … K−1:

- neurons: ``ΔEP_s(t) = (s^β_{t+1} − s^β_t)/(ηβ)`` (nudged phase started at ``s_T``) with ``−∂L/∂s_{T−t}``;
- parameters: ``ΔEP_θ(t) = (∂Φ/∂θ(s^β_{t+1}) − ∂Φ/∂θ(s^β_t))/(ηβ) = −(∂E/∂θ(s^β_{t+1}) − ∂E/∂θ(s^β_t))/β``
  with ``−∂L/∂θ_{T−t}``, the part of the BPTT gradient that flows through the step ``s_{T−t−1} → s_{T−t}``.

If the free phase has converged, they agree up to O(β) (one-sided) or O(β²) (centered: the two nudged phases'
difference over ``β₂ − β₁``, the β convention of :mod:`eqprop.rules.base`). Everything here is reported as a
gradient (the sign of ∂L): the EqProp side is minus its update. Units held at a bound of their box do not move in
the nudged phase, while BPTT still sends them a gradient through their neighbours' next step: on those units the
neural comparison fails by construction (the parameter comparison does not), so the neural errors are also
reported over the units inside their box at the free fixed point. A cost's own parameters (a readout) are not part
of the dynamics and are not compared.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import VARIANTS, phase_betas
from eqprop.solvers.base import Solver, TotalEnergy, relax
from eqprop.solvers.flow import GradientFlow
from eqprop.solvers.synchronous import Synchronous
from eqprop.systems.base import EnergySystem

__all__ = ["GDUTrace", "gdu_check", "plot_gdu", "summarize"]


@dataclass(frozen=True)
class GDUTrace:
    """EqProp's and BPTT's per-step gradients, keyed by state variable (``"s1"``, …) and parameter name.

    Attributes:
        ep, bptt: ``(K, batch, *shape)`` for a state variable (per example), ``(K, *shape)`` for a parameter
            (batch mean); index ``t`` is the nudged phase's step ``t`` and BPTT's step ``T − t``.
        inside: for each state variable, the units strictly inside their box at the free fixed point
            ``(batch, *shape)``.
        neurons: the keys that are state variables, in order; the others are parameters.
        betas: ``(β₁, β₂)`` of the two phases compared.
        step_size: η of the dynamics.
        free_steps: ``T``, steps of the free phase.
        free_residual: the largest change of a unit in the free phase's last step (0 at a fixed point).
    """

    ep: dict[str, Tensor]
    bptt: dict[str, Tensor]
    inside: dict[str, Tensor]
    neurons: tuple[str, ...]
    betas: tuple[float, float]
    step_size: float
    free_steps: int
    free_residual: float

    @property
    def steps(self) -> int:
        return next(iter(self.ep.values())).shape[0]


def _dynamics(solver: Solver) -> float:
    """The step size η of ``solver``'s step as a primitive-function dynamics; refuse other solvers."""
    if isinstance(solver, Synchronous):
        return 1.0
    if not isinstance(solver, GradientFlow):
        raise ConfigError(
            f"the GDU check follows the dynamics s_(t+1) = clip(s_t - step_size * dF/ds) (GradientFlow) or "
            f"s_(t+1) = sigma(dPhi/ds) (Synchronous), and {type(solver).__name__}'s step is neither (its nudged "
            "step is not the primitive function's)",
            hint="relax with Synchronous or GradientFlow (in a run's config: --set solver.kind=synchronous, "
            "Laborieux et al.'s dynamics)",
        )
    return float(solver.step_size)


def gdu_check(
    system: EnergySystem,
    cost: Cost,
    solver: Solver,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    beta: float,
    variant: str = "positive",
    free_steps: int | None = None,
) -> GDUTrace:
    """EqProp's neural and synaptic updates at each step of the nudged phase, and BPTT's gradients at the
    matching step of the free phase (see the module docstring).

    Args:
        system, cost: the model (float64 shows the β-scaling cleanly).
        solver: a :class:`~eqprop.GradientFlow`: its step is the dynamics, its ``iterations`` the free phase's
            length ``T`` unless ``free_steps`` is given.
        x, y: one batch.
        steps: K, the nudged phase's length and the BPTT window (the last K steps of the free phase).
        beta, variant: the nudging, in the β convention of :mod:`eqprop.rules.base`.
        free_steps: T (at least ``steps``); default ``solver.iterations``.

    Raises:
        ConfigError: another solver, ``steps < 1``, ``free_steps < steps``, a bad ``beta`` or ``variant``.
    """
    eta = _dynamics(solver)
    T = solver.iterations if free_steps is None else free_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"gdu_check(steps={steps!r}): need an integer >= 1")
    if isinstance(T, bool) or not isinstance(T, int) or steps > T:
        raise ConfigError(
            f"gdu_check(free_steps={T!r}): the free phase must be at least as long as the BPTT window "
            f"(steps={steps})"
        )
    if variant not in VARIANTS:
        raise ConfigError(f"gdu_check(variant={variant!r}): choose one of {', '.join(VARIANTS)}")
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < math.inf:
        raise ConfigError(f"gdu_check(beta={beta!r}): need a finite number > 0")
    b1, b2 = phase_betas(variant, beta)
    K = steps
    stepper = dataclasses.replace(solver, iterations=1, tol=None)
    free = TotalEnergy(system, x, cost=cost, y=y, beta=0.0)
    with torch.no_grad():
        start = relax(free, dataclasses.replace(solver, iterations=T - K, tol=None), throw=False).state
        trajectory = [start]  # s_{T-K}, …, s_T
        for _ in range(K):
            trajectory.append(stepper.step(free, trajectory[-1]))
    names = tuple(v.name for v in system.variables)
    params = dict(system.named_parameters())
    batch = x.shape[0]

    # BPTT, one step at a time backwards: λ_τ = ∂L/∂s_τ, and the step's own parameter gradient.
    bptt_s: dict[str, list[Tensor]] = {n: [] for n in names}
    bptt_p: dict[str, list[Tensor]] = {n: [] for n in params}
    with torch.enable_grad():
        end = tuple(s.detach().requires_grad_(True) for s in trajectory[-1])
        target = free.target
        assert target is not None  # built from cost and y
        lam = tuple(
            torch.zeros_like(s) if g is None else g
            for s, g in zip(
                end, torch.autograd.grad(cost(end, target).mean(), end, allow_unused=True), strict=True
            )
        )
        for tau in range(K - 1, -1, -1):
            for n, g in zip(names, lam, strict=True):
                bptt_s[n].append(g * batch)  # per example: L is the batch mean
            leaves = tuple(s.detach().requires_grad_(True) for s in trajectory[tau])
            out = stepper.step(TotalEnergy(system, x, cost=cost, y=y, beta=0.0), leaves)
            grads = torch.autograd.grad(out, [*leaves, *params.values()], grad_outputs=lam, allow_unused=True)
            lam = tuple(
                torch.zeros_like(s) if g is None else g
                for s, g in zip(leaves, grads[: len(leaves)], strict=True)
            )
            for (n, p), g in zip(params.items(), grads[len(leaves) :], strict=True):
                bptt_p[n].append(torch.zeros_like(p) if g is None else g)

    # EqProp: the nudged phases, step by step from s_T (a zero β continues the free phase).
    with torch.no_grad():
        paths = []
        for b in (b1, b2):
            problem = free.with_nudging(b)
            path = [trajectory[-1]]
            for _ in range(K):
                path.append(stepper.step(problem, path[-1]))
            paths.append(path)
        spread = b2 - b1
        ep_s: dict[str, list[Tensor]] = {n: [] for n in names}
        ep_p: dict[str, list[Tensor]] = {n: [] for n in params}
        lo, hi = paths
        for t in range(K):
            for k, n in enumerate(names):
                moved = (hi[t + 1][k] - hi[t][k]) - (lo[t + 1][k] - lo[t][k])
                ep_s[n].append(moved / (-eta * spread))
            d_hi = system.param_grad_difference(x, hi[t], hi[t + 1], scale=1.0 / spread)
            d_lo = system.param_grad_difference(x, lo[t], lo[t + 1], scale=1.0 / spread)
            for n in params:
                ep_p[n].append(d_hi[n] - d_lo[n])
        masks = system.active_mask(trajectory[-1])
        last = [(a - b).abs().flatten(1).amax(1) for a, b in zip(trajectory[-1], trajectory[-2], strict=True)]
        residual = float(torch.stack(last).amax())
    ep = {n: torch.stack(v) for n, v in {**ep_s, **ep_p}.items()}
    bptt = {n: torch.stack(v) for n, v in {**bptt_s, **bptt_p}.items()}
    return GDUTrace(
        ep=ep,
        bptt=bptt,
        inside=dict(zip(names, masks, strict=True)),
        neurons=names,
        betas=(b1, b2),
        step_size=eta,
        free_steps=T,
        free_residual=residual,
    )


def _per_step(ep: Tensor, bptt: Tensor) -> list[float | None]:
    """``‖EP(t) − BPTT(t)‖ / max_t' ‖BPTT(t')‖`` for each step t: the error at every step on the scale of the
    key's BPTT gradient over the window (a step-wise norm would be undefined where the BPTT gradient is 0, as it
    is before the signal reaches a layer, or on alternate steps of a layered net's synchronous dynamics);
    ``None`` throughout if BPTT never reaches the key."""
    scale = max((float(bptt[t].norm()) for t in range(bptt.shape[0])), default=0.0)
    return [float((ep[t] - bptt[t]).norm()) / scale if scale > 0 else None for t in range(ep.shape[0])]


def _relative(a: Tensor, b: Tensor) -> float | None:
    """``‖a − b‖ / ‖b‖``; ``None`` when ``b`` is 0."""
    den = float(b.norm())
    return float((a - b).norm()) / den if den > 0 else None


def _agreement(ep: Tensor, bptt: Tensor) -> float:
    """Fraction of the components with a nonzero BPTT gradient whose EqProp estimate has the same sign."""
    nonzero = bptt != 0
    count = int(nonzero.sum())
    return float(((ep * bptt > 0) & nonzero).sum()) / count if count else 1.0


def _laborieux(ep: Tensor, bptt: Tensor) -> tuple[float, float]:
    """The two numbers Laborieux et al.'s ``RMSE`` prints: the mean over components of the RMS distance over time
    divided by the larger RMS norm, and the fraction of (component, step) pairs of opposite signs."""
    K = ep.shape[0]
    dist = (ep - bptt).pow(2).sum(0).div(K).sqrt()
    norm = torch.maximum(ep.pow(2).sum(0).div(K).sqrt(), bptt.pow(2).sum(0).div(K).sqrt())
    return float((dist / (1e-10 + norm)).mean()), float((ep * bptt < 0).to(ep.dtype).mean())


def summarize(trace: GDUTrace) -> dict[str, Any]:
    """Per key: the error ``‖EP(t) − BPTT(t)‖`` relative to the key's largest ``‖BPTT(t')‖`` and the sign
    agreement at each step t, the
    relative error of the sums over the K steps (the truncated estimates), Laborieux et al.'s two numbers, and, for
    a state variable, the per-step error over the units inside their box."""
    out: dict[str, Any] = {}
    for key, ep in trace.ep.items():
        bptt = trace.bptt[key]
        rmse, sign_error = _laborieux(ep, bptt)
        row: dict[str, Any] = {
            "kind": "neurons" if key in trace.neurons else "parameter",
            "relative_error": _per_step(ep, bptt),
            "sign_agreement": [_agreement(ep[t], bptt[t]) for t in range(ep.shape[0])],
            "cumulative_relative_error": _relative(ep.sum(0), bptt.sum(0)),
            "laborieux_rmse": rmse,
            "laborieux_sign_error": sign_error,
        }
        if key in trace.neurons:
            inside = trace.inside[key]
            row["inside_fraction"] = float(inside.to(ep.dtype).mean())
            row["relative_error_inside"] = _per_step(ep * inside, bptt * inside)
        out[key] = row
    return out


def plot_gdu(
    trace: GDUTrace, path: str, *, components: int = 3, seed: int = 0, title: str | None = None
) -> None:
    """Laborieux et al.'s figure: for each state variable and parameter, ``components`` components picked at
    random (units of the free fixed point's interior for a state variable), their EqProp (dotted) and BPTT (solid)
    gradients summed over the steps 0 … t, against t. Written as a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = list(trace.ep)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    gen = torch.Generator().manual_seed(seed)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        ep = trace.ep[key].flatten(1).double()
        bptt = trace.bptt[key].flatten(1).double()
        pool = torch.arange(ep.shape[1])
        if key in trace.neurons and bool(trace.inside[key].any()):
            pool = pool[trace.inside[key].flatten()]
        live = pool[bptt[:, pool].abs().amax(0) > 0]  # components BPTT moves, where there are any
        pool = live if len(live) else pool
        pick = pool[torch.randperm(len(pool), generator=gen)[:components]]
        t = torch.arange(1, ep.shape[0] + 1)
        for j, c in enumerate(pick.tolist()):
            color = colors[j % len(colors)]
            ax.plot(t, bptt[:, c].cumsum(0), color=color, lw=2, alpha=0.75, label="BPTT" if j == 0 else None)
            ax.plot(t, ep[:, c].cumsum(0), ":", color=color, lw=2.5, label="EqProp" if j == 0 else None)
        ax.set_title(key)
        ax.set_xlabel("step t")
        ax.set_ylabel("gradient, summed over steps ≤ t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    b1, b2 = trace.betas
    fig.suptitle(
        title
        or f"GDU check: EqProp (β₁, β₂) = ({b1:g}, {b2:g}) vs BPTT, T = {trace.free_steps}, K = {trace.steps}"
    )
    fig.savefig(path, dpi=110)
