r"""The tolerance of a SPICE cross-check for circuits with Shockley diodes and bidirectional amplifiers.

With the same diode model on both sides (``IS``, ``N``, the temperature), SPICE and we solve the same equations;
what separates the two solutions is each solver's error and the conductance ``GMIN`` SPICE puts across every
junction. The bound on ``max |V_spice − V_ours|``:

Let ``F = ∂E/∂V`` be the gradient of the circuit's weighted co-content over the free nodes (the current balance of
each node, times its part's weight: :meth:`~eqprop.systems.netlist.Netlist.energy_weights`; an amplifier's output
is ``gain·V_input``). Then ``F(V_s) − F(V_o) = H̄·(V_s − V_o)`` with ``H̄`` the Hessian averaged along the segment.
``H̄ ⪰ H_lin + D``: the resistors' part plus, for each diode, the smaller of its conductances at the two ends
(``i'(v)`` is monotone in ``v``, which is affine along the segment). For any positive diagonal ``S``
(here ``S = diag(H)^{-1/2}``), ``‖V_s − V_o‖₂ ≤ max(S)·‖S·(F(V_s) − F(V_o))‖₂ / λ_min(S(H_lin + D)S)``.
``|F(V_o)|`` is our solution's residual (computed); SPICE's equations differ from ours by ``GMIN`` per diode,
``|F(V_s)| ≤ w·GMIN·|v_d|`` summed at each node (bounded with ``2·max|V|``), up to its own Newton error, for which
the tolerance adds ``10·(reltol·max|V| + vntol)`` as :func:`~eqprop.analysis.spice.spice_tolerance` does. The
bound over the free nodes is multiplied by the largest ``|gain|`` for the amplifiers' outputs.

Only the ends' diode conductances use SPICE's answer (a lower bound on the curvature); the residuals are ours and
SPICE's stated tolerances, so a SPICE solution of different equations (another ``IS``, a wrong sign) fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from eqprop.errors import ConfigError

__all__ = ["analog_tolerance"]

DENSE_LIMIT = 4096


def _outflows(netlist: Any, v: Tensor) -> Tensor:
    """Net current out of each node into its resistors and diodes, less what current sources inject."""
    a, b = netlist.resistors[:, 0], netlist.resistors[:, 1]
    i_ab = netlist.conductances * (v[a] - v[b])
    out = v.new_zeros(netlist.n_nodes + 1)
    out.index_add_(0, a, i_ab).index_add_(0, b, -i_ab)
    if len(netlist.diodes):
        an, ca = netlist.diodes[:, 0], netlist.diodes[:, 1]
        i_d = netlist.diode_model.current(v[an] - v[ca])
        out.index_add_(0, an, i_d).index_add_(0, ca, -i_d)
    return out.index_add_(0, netlist.injections, -netlist.currents)


def analog_tolerance(
    netlist: Any, ours: Tensor, theirs: Tensor, *, options: Mapping[str, float]
) -> dict[str, Any]:
    """The largest ``|V_spice − V_ours|`` over every node that the solvers' errors and SPICE's ``GMIN`` allow, for
    a netlist with Shockley diodes and/or amplifiers (see the module docstring), with its terms.

    Args:
        netlist: the circuit (a :class:`~eqprop.systems.netlist.Netlist` with a ``diode_model`` if it has diodes).
        ours, theirs: every node's potential, ground first, ``(n_nodes + 1,)``.
        options: the deck's ``.options`` (reltol, vntol, gmin: :data:`eqprop.analysis.spice.DEFAULT_OPTIONS`).
    """
    if len(netlist.diodes) and netlist.diode_model is None:
        raise ConfigError(
            "analog_tolerance: ideal diodes with amplifiers; the bound for ideal diodes assumes no amplifiers",
            hint="give the netlist a Shockley diode model",
        )
    opts = dict(options)
    v_o = ours.detach().double().reshape(-1)
    v_s = theirs.detach().double().reshape(-1)
    n = netlist.n_nodes + 1
    free = netlist.free_nodes()
    count = len(free)
    v_max = float(torch.maximum(v_o.abs(), v_s.abs()).max())
    spice = 10.0 * (float(opts.get("reltol", 1e-3)) * v_max + float(opts.get("vntol", 1e-6)))
    base = {"spice": spice, "note": ""}
    if count > DENSE_LIMIT:
        return {
            **base,
            "tolerance": math.inf,
            "solver": math.inf,
            "leakage": math.inf,
            "note": f"{count} free nodes: the bound factors a dense matrix up to {DENSE_LIMIT}",
        }
    # each node's potential as coef·V[idx] of one free node (idx = -1: fixed)
    idx = torch.full((n,), -1, dtype=torch.long)
    coef = torch.zeros(n, dtype=torch.float64)
    idx[free] = torch.arange(count)
    coef[free] = 1.0
    if len(netlist.amplifiers):
        ins, outs = netlist.amplifiers[:, 0], netlist.amplifiers[:, 1]
        idx[outs] = idx[ins]
        coef[outs] = torch.where(idx[ins] >= 0, netlist.gains, 0.0)
    w = netlist.energy_weights()
    h = torch.zeros(count, count, dtype=torch.float64)

    def add(p: Tensor, q: Tensor, cond: Tensor) -> None:
        """``H += w·cond·c cᵀ`` with ``c = coef[p]·e_idx[p] − coef[q]·e_idx[q]``, for each element (p, q)."""
        wt = torch.where(idx[p] >= 0, w[p], w[q]) * cond
        for side_a, sign_a in ((p, 1.0), (q, -1.0)):
            for side_b, sign_b in ((p, 1.0), (q, -1.0)):
                ok = (idx[side_a] >= 0) & (idx[side_b] >= 0)
                val = sign_a * sign_b * coef[side_a] * coef[side_b] * wt
                h.index_put_((idx[side_a][ok], idx[side_b][ok]), val[ok], accumulate=True)

    add(netlist.resistors[:, 0], netlist.resistors[:, 1], netlist.conductances)
    diode_count = torch.zeros(n, dtype=torch.float64)
    if len(netlist.diodes):
        an, ca = netlist.diodes[:, 0], netlist.diodes[:, 1]
        model = netlist.diode_model
        d = torch.minimum(model.conductance(v_o[an] - v_o[ca]), model.conductance(v_s[an] - v_s[ca]))
        add(an, ca, d)
        diode_count.index_add_(0, an, torch.ones(len(an), dtype=torch.float64))
        diode_count.index_add_(0, ca, torch.ones(len(ca), dtype=torch.float64))

    def gather(per_node: Tensor) -> Tensor:
        """``Σ_p w_p·coef_p·per_node_p`` onto the free node each node ``p`` follows."""
        ok = idx >= 0
        return torch.zeros(count, dtype=torch.float64).index_add_(0, idx[ok], (w * coef * per_node)[ok])

    residual = gather(_outflows(netlist, v_o)).abs()  # ∂E/∂V at our solution
    leak = gather(diode_count * float(opts.get("gmin", 1e-12)) * 2.0 * v_max).abs()
    diag = torch.diagonal(h)
    if count == 0:
        return {
            **base,
            "tolerance": spice,
            "solver": 0.0,
            "leakage": 0.0,
            "lambda_min": math.nan,
            "kcl_residual": 0.0,
        }
    if bool((diag <= 0).any()):
        return {
            **base,
            "tolerance": math.inf,
            "solver": math.inf,
            "leakage": math.inf,
            "lambda_min": 0.0,
            "kcl_residual": float(residual.max()),
            "note": "a free node with no conductance at all: its potential is not determined",
        }
    s = diag.rsqrt()
    lam = float(torch.linalg.eigvalsh(s[:, None] * h * s[None, :])[0])
    if not lam > 0:
        return {
            **base,
            "tolerance": math.inf,
            "solver": math.inf,
            "leakage": math.inf,
            "lambda_min": lam,
            "kcl_residual": float(residual.max()),
            "note": "the circuit's Hessian is singular: its steady state is not unique",
        }
    gain = max(1.0, float(netlist.gains.abs().max())) if len(netlist.amplifiers) else 1.0
    scale = gain * float(s.max()) / lam
    solver = scale * float((s * residual).norm())
    leakage = scale * float((s * leak).norm())
    # the node imbalance in amperes (not weighted), as kcl_residual reports it
    kcl = float((residual / w[free]).max())
    return {
        **base,
        "tolerance": solver + leakage + spice,
        "solver": solver,
        "leakage": leakage,
        "lambda_min": lam,
        "kcl_residual": kcl,
    }
