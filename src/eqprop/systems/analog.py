r"""End-to-end analog networks (Kendall et al. 2020): Shockley-diode neurons and bidirectional amplifiers.

A layered resistive network whose hidden nodes are *neurons* made of real circuit elements, and whose layers are
joined by amplifiers that restore the signal a passive network loses from layer to layer:

- **inputs**: each feature drives two voltage sources, ``+gain·x`` and ``−gain·x`` (positive conductances then
  carry signed weights);
- **neurons**: every hidden node has two diodes to bias sources, one conducting from the node to a source at
  ``hi``, one from a source at ``lo`` into the node: a soft clip of the node potential to about ``[lo, hi]`` (the
  "sigmoidal bidirectional rectifier"), with Shockley diodes ``i = IS(exp(v/(N·Vt)) − 1)`` or ideal ones;
- **bidirectional amplifiers** after every hidden node: a voltage-controlled voltage source of gain ``A`` drives
  ``U = A·V`` into the next layer's conductances, and a current-controlled current source of gain ``B`` (Kendall's
  ``1/A``) draws ``B`` times the current delivered back out of the node, so the backward signal of the nudged phase
  crosses the amplifier too; with ``inverting=True`` a second, inverting amplifier (gains ``−A``, ``−B``) drives
  ``−A·V``, the hidden layers' counterpart of the input duplication;
- **output**: plain nodes read as the prediction and nudged by a current ``β(y − V)``.

Such a circuit is an energy-based model: its steady state minimises the weighted co-content

.. math::
    E = \sum_k w_k\Big[\sum_{ij} ½ g^k_{ij}(U^{k-1}_j − V^k_i)^2 − b^k·V^k + \sum_{\text{diodes}} 𝒞(v_d)\Big],
    \qquad w_k / w_{k+1} = A / B,

``w`` = 1 on the output layer. Across an amplifier the energy of the next part is weighed by ``B/A`` (``1/A²`` for
Kendall's amplifier): then ``∂E/∂V`` is the current balance of each node, including what the backward source
draws. ``B/A ≤ 0`` leaves the energy unbounded below and is refused. EqProp's local rule keeps its form, each
layer's ``½ΔV²`` contrast weighed by ``w_k`` (a per-layer learning rate in hardware).

Solvers: ``block_coordinate`` (each layer given its neighbours is a set of independent 1-D convex problems: the
exact node solve, Lambert W plus Newton polish, so every sweep lowers the energy) and ``newton`` (the dense
Hessian, quadratic convergence; Shockley diodes only). Cross-checked against ngspice with the same diode model
by :func:`eqprop.analysis.spice.spice_check`.

References:
    Kendall, Pantone, Manickavasagam, Bengio, Scellier (2020), "Training End-to-End Analog Neural Networks with
    Equilibrium Propagation", arXiv 2006.01981. The amplifier's pair of sources (VCVS gain ``A`` forward, CCCS
    gain ``1/A`` backward) is as in the public SPICE reimplementation ``Minsikc/EqProp-SPICE``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._types import Bound, State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem, kkt_residual
from eqprop.systems.junction import ShockleyDiode, lambert_w_exp
from eqprop.systems.netlist import Netlist
from eqprop.systems.resistive import (
    clip_conductances,
    conductance_gains,
    init_conductances,
    refuse_cost_with_parameters,
)

__all__ = ["AnalogResistive"]


def _finite(name: str, value: Any, *, positive: bool = False, nonzero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"AnalogResistive({name}={value!r}): need a finite number")
    if (positive and value <= 0) or (nonzero and value == 0):
        raise ConfigError(f"AnalogResistive({name}={value!r}): need a number {'> 0' if positive else '!= 0'}")
    return float(value)


class AnalogResistive(EnergySystem):
    r"""A layered analog network of conductances, diode-pair neurons and bidirectional amplifiers.

    Args:
        sizes: ``[n_in, n_1, …, n_L]``: input features (each drives two sources), hidden widths, output width.
        input_gain: the input sources' amplification (volts per unit of ``x``).
        gains: conductance init ``max(0, U(±gain/√fan_in))`` (siemens), one or one per conductance matrix.
        amplifier_gain: ``A``, the amplifiers' voltage gain (``!= 0``).
        backward_gain: ``B``, their backward current gain; default ``1/A`` (Kendall et al.). ``B/A > 0``.
        levels: ``(lo, hi)``: the bias sources of every neuron's diode pair, volts, ``lo < hi``.
        diode: a :class:`~eqprop.systems.junction.ShockleyDiode`, or ``None`` for ideal diodes (a hard clip to
            ``[lo, hi]``).
        inverting: also drive ``−A·V`` through an inverting amplifier into the next layer (signed weights).
        generator: optional ``torch.Generator`` for the initialisation.

    Parameters: ``conductances.k`` (``(n_{k+1}, width_k)``, ``>= 0``: :meth:`constrain_parameters` clips them) and
    ``biases.k`` (signed currents injected into layer ``k+1``), as :class:`~eqprop.DeepResistive` names them.

    Example:
        >>> net = eqprop.AnalogResistive([4, 6, 2]).double()
        >>> eq = eqprop.solve(net, torch.rand(3, 4, dtype=torch.float64), eqprop.Newton(tol=1e-12))
        >>> bool(net.kcl_residual(torch.rand(3, 4), eq.state).max() < 1)
        True
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        input_gain: float = 1.0,
        gains: float | Sequence[float] = 1.0,
        amplifier_gain: float = 4.0,
        backward_gain: float | None = None,
        levels: tuple[float, float] = (-0.5, 0.5),
        diode: ShockleyDiode | None = ShockleyDiode(),  # noqa: B008 (a frozen dataclass)
        inverting: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any((not isinstance(n, int)) or isinstance(n, bool) or n < 1 for n in sizes):
            raise ConfigError(
                f"AnalogResistive(sizes={sizes!r}): give at least two positive integer widths, e.g. [784, 100, 10]"
            )
        self.input_gain = _finite("input_gain", input_gain, positive=True)
        a = _finite("amplifier_gain", amplifier_gain, nonzero=True)
        b = 1.0 / a if backward_gain is None else _finite("backward_gain", backward_gain)
        if b / a <= 0:
            raise ConfigError(
                f"AnalogResistive(amplifier_gain={a:g}, backward_gain={b:g}): a backward current gain of the opposite "
                "sign (or 0) weighs the next layer's co-content by B/A <= 0: the energy is unbounded below and the "
                "steady state is no minimum",
                hint="leave backward_gain out (1/A, Kendall et al.) or give it the sign of amplifier_gain",
            )
        lo, hi = (_finite("levels", float(v)) for v in levels)
        if not lo < hi:
            raise ConfigError(f"AnalogResistive(levels={tuple(levels)!r}): need lo < hi (volts)")
        if diode is not None and not isinstance(diode, ShockleyDiode):
            raise ConfigError(f"AnalogResistive(diode={diode!r}): a ShockleyDiode, or None for ideal diodes")
        self.sizes = tuple(sizes)
        self.gains = conductance_gains("AnalogResistive", gains, len(sizes) - 1)
        self.amplifier_gain, self.backward_gain = a, b
        self.levels = (lo, hi)
        self.diode = diode
        self.inverting = bool(inverting)
        self.input_shape = (sizes[0],)
        copies = 2 if self.inverting else 1
        widths = [2 * sizes[0], *(copies * n for n in sizes[1:-1])]
        self.conductances = nn.ParameterList(
            nn.Parameter(torch.empty(m, n)) for n, m in zip(widths, sizes[1:], strict=True)
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(m)) for m in sizes[1:])
        # energy weights w_k of the layers: 1 on the output, ×A/B per amplifier below it
        n_layers = len(sizes) - 1
        self.weights = tuple((a / b) ** (n_layers - 1 - k) for k in range(n_layers))
        self.reset_parameters(generator)

    # -- structure --------------------------------------------------------------------------------------------
    @property
    def variables(self) -> tuple[Variable, ...]:  # type: ignore[override]
        """``V1 … V_{L-1}`` (hidden; clipped to ``levels`` with ideal diodes) and ``V_L`` (output)."""
        last = len(self.sizes) - 2
        clip: tuple[Bound, Bound] = self.levels if self.diode is None else (None, None)
        return tuple(
            Variable(f"V{k + 1}", (n,), clip if k < last else (None, None))
            for k, n in enumerate(self.sizes[1:])
        )

    @property
    def quadratic_blocks(self) -> bool:
        return self.diode is None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Conductances ``max(0, U(±gain/√fan_in))``, bias currents zero."""
        init_conductances(self.conductances, self.biases, self.gains, generator)

    def check_cost(self, cost: nn.Module) -> None:
        """Nudging is a current injected into the output nodes: the cost must read their potentials directly."""
        refuse_cost_with_parameters("AnalogResistive", cost)

    def constrain_parameters(self) -> None:
        """Conductances are physical: clip them at 0 after an update (biases are signed currents)."""
        clip_conductances(self.conductances)

    def extra_repr(self) -> str:
        d = (
            "ideal"
            if self.diode is None
            else f"IS={self.diode.saturation_current:g} N={self.diode.emission:g}"
        )
        return (
            f"sizes={list(self.sizes)}, input_gain={self.input_gain}, A={self.amplifier_gain:g}, "
            f"B={self.backward_gain:g}, levels={self.levels}, diodes={d}, inverting={self.inverting}"
        )

    def _label(self) -> str:
        return f"AnalogResistive({list(self.sizes)})"

    # -- potentials -------------------------------------------------------------------------------------------
    def input_potentials(self, x: Tensor) -> Tensor:
        """``gain·(x, −x)``, shape ``(batch, 2·n_in)``."""
        return torch.cat((x, -x), dim=1) * self.input_gain

    def amplified(self, v: Tensor) -> Tensor:
        """What a hidden layer's amplifiers drive into the next layer: ``A·V`` (and ``−A·V`` when inverting)."""
        u = self.amplifier_gain * v
        return torch.cat((u, -u), dim=1) if self.inverting else u

    def _below(self, x: Tensor, state: State, k: int) -> Tensor:
        """The potentials layer ``k``'s conductances connect to: the inputs, or the amplified layer below."""
        return self.input_potentials(x) if k == 0 else self.amplified(state[k - 1])

    def _back(self, k: int, v: Tensor) -> Tensor:
        """``Pᵀv``: a quantity on the amplified copies of layer ``k`` gathered back onto its nodes."""
        if not self.inverting:
            return v
        n = self.sizes[k + 1]
        return v[..., :n] - v[..., n:]

    # -- energy -------------------------------------------------------------------------------------------------
    def _diode_terms(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """The voltages across a neuron's two diodes: node → ``hi`` and ``lo`` → node."""
        lo, hi = self.levels
        return v - hi, lo - v

    def energy(self, x: Tensor, state: State) -> Tensor:
        e = x.new_zeros(x.shape[0])
        last = len(state) - 1
        for k, (g, b, v) in enumerate(zip(self.conductances, self.biases, state, strict=True)):
            u = self._below(x, state, k)
            part = 0.5 * ((v * v) @ g.sum(1) + (u * u) @ g.sum(0)) - ((u @ g.t()) * v).sum(-1) - v @ b
            if k < last and self.diode is not None:
                up, down = self._diode_terms(v)
                part = part + (self.diode.co_content(up) + self.diode.co_content(down)).sum(-1)
            e = e + self.weights[k] * part
        return e

    def dissipated_power(self, x: Tensor, state: State) -> Tensor:
        """``Σ g(U − V)²`` over the resistors plus ``Σ i·v`` over the diodes, per example (watts for siemens and
        volts). The amplifiers are active elements powered from outside and are not counted."""
        p = x.new_zeros(x.shape[0])
        last = len(state) - 1
        for k, (g, v) in enumerate(zip(self.conductances, state, strict=True)):
            u = self._below(x, state, k)
            p = p + (v * v) @ g.sum(1) + (u * u) @ g.sum(0) - 2 * ((u @ g.t()) * v).sum(-1)
            if k < last and self.diode is not None:
                for d in self._diode_terms(v):
                    p = p + (self.diode.current(d) * d).sum(-1)
        return p

    def kcl_residual(self, x: Tensor, state: State) -> Tensor:
        """The largest Kirchhoff-current imbalance at a node, per example, in amperes (with ideal diodes: or the
        largest violation of a diode's complementarity)."""
        with torch.no_grad():
            grads = self.state_grad(x, state)
            grads = tuple(gk / w for gk, w in zip(grads, self.weights, strict=True))
        return kkt_residual(state, grads, self.variables)

    # -- fast paths -----------------------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> tuple[Tensor, ...]:
        """The constant drive of each layer: ``g₀·V_in + b₁`` for the first, ``b_k`` for the others.

        Checks first that the steady state is determined: the neurons' diodes bound every hidden node, but an output
        node whose conductances were all trained to 0 would read a value set by nothing (raises ``ConfigError``).
        """
        last = self.conductances[-1]
        key = (last.data_ptr(), last._version)
        cut = []
        if getattr(self, "_outputs_checked", None) != key:  # once per parameter update: a host sync
            with torch.no_grad():
                cut = torch.nonzero(last.sum(1) <= 0).flatten().tolist()
        if cut:
            names = ", ".join(f"out{i}" for i in cut[:6]) + (", …" if len(cut) > 6 else "")
            raise ConfigError(
                f"{self._label()}: output node(s) {names} have no conductance > 0: their potential is undetermined",
                hint="a conductance trained to 0 may have cut them off",
            )
        self._outputs_checked = key
        bs = list(self.biases)
        first = torch.addmm(bs[0], self.input_potentials(x), self.conductances[0].t())
        return (first, *bs[1:])

    @property
    def has_block_minimizer(self) -> bool:
        return True

    def block_curvature(self, k: int) -> Tensor:
        """``a_k + (B/A)·A²·c_k``: the conductance at each node of layer ``k``, its own plus what the next layer
        loads its amplifiers with, seen through them (in the node's current units)."""
        gs = list(self.conductances)
        a = gs[k].sum(1)
        if k + 1 < len(gs):
            c = gs[k + 1].sum(0)  # per amplified copy; a node sees the sum over its copies
            if self.inverting:
                n = self.sizes[k + 1]
                c = c[:n] + c[n:]
            a = a + (self.backward_gain * self.amplifier_gain) * c
        return a.clamp_min(torch.finfo(a.dtype).tiny)

    def block_field(self, k: int, state: State, drive: tuple[Tensor, ...]) -> Tensor:
        """``h_k = drive_k + g_k U_{k−1} + B·Pᵀ g_{k+1}ᵀ V_{k+1}``: the current the neighbours push in (the last
        term through the amplifiers' backward sources)."""
        h = drive[k]
        if k > 0:
            h = h + self.amplified(state[k - 1]) @ self.conductances[k].t()
        if k + 1 < len(state):
            h = h + self.backward_gain * self._back(k, state[k + 1] @ self.conductances[k + 1])
        return h.expand(state[k].shape) if h.dim() == 1 else h

    def _neuron(self, h: Tensor, a: Tensor | float) -> Tensor:
        """The exact minimiser over ``V`` of ``½aV² − hV + 𝒞(V − hi) + 𝒞(lo − V)`` (Shockley diodes), per node.

        The stationarity condition is ``aV − h + IS(e^{(V−hi)/s} − e^{(lo−V)/s}) = 0`` (``s = N·Vt``). Keeping the
        diode that conducts (``hi``'s when ``h/a`` lies above the midpoint of the levels) it is solved in closed
        form by Lambert's W; three Newton steps on the full condition, held between the midpoint and ``h/a``
        (where the root lies), then take the other diode's leakage into account.
        """
        diode = self.diode
        assert diode is not None
        lo, hi = self.levels
        s, i_s = diode.slope, diode.saturation_current
        v0 = h / a
        mid = 0.5 * (lo + hi)
        up = v0 >= mid
        r = torch.where(up, v0 - hi, lo - v0) / s
        log_k = torch.log(i_s / (a * s)) if isinstance(a, Tensor) else math.log(i_s / (a * s))
        u = r - lambert_w_exp(log_k + r)
        v = torch.where(up, hi + s * u, lo - s * u)
        low, high = torch.minimum(v0, v0.new_full((), mid)), torch.maximum(v0, v0.new_full((), mid))
        for _ in range(3):
            d_up, d_down = self._diode_terms(v)
            f = a * v - h + diode.current(d_up) - diode.current(d_down)
            fp = a + diode.conductance(d_up) + diode.conductance(d_down)
            v = torch.minimum(torch.maximum(v - f / fp, low), high)
        return v

    def block_activation(self, k: int) -> Callable[[Tensor], Tensor]:
        if self.diode is None or k == len(self.sizes) - 2:
            return super().block_activation(k)
        a = self.block_curvature(k)
        return lambda h: self._neuron(h, a)

    def block_minimizer(
        self, k: int, drive: Any, *, shift: Tensor | None = None, scale: float | Tensor = 1.0
    ) -> Callable[[State], Tensor]:
        if self.diode is None or k == len(self.sizes) - 2:
            return super().block_minimizer(k, drive, shift=shift, scale=scale)
        a = 1.0 / scale  # the curvature, nudged or not, that the solver divides by

        def update(state: State) -> Tensor:
            h = self.block_field(k, state, drive)
            return self._neuron(h if shift is None else h + shift, a)

        return update

    def state_grad(self, x: Tensor, state: State, drive: tuple[Tensor, ...] | None = None) -> State:
        """``∂E/∂V_k = w_k·(a_k V_k − h_k + i_diodes)``: ``w_k`` times the net current out of each node."""
        if drive is None:
            drive = self.prepare(x)
        last = len(state) - 1
        out = []
        for k, v in enumerate(state):
            g = v * self.block_curvature(k) - self.block_field(k, state, drive)
            if k < last and self.diode is not None:
                up, down = self._diode_terms(v)
                g = g + self.diode.current(up) - self.diode.current(down)
            out.append(self.weights[k] * g)
        return tuple(out)

    def hessian_solve(self, x: Tensor, state: State, rhs: State, shift: State | None = None) -> State | None:
        """Solve ``(∂²E/∂V² + diag(shift)) z = rhs`` per example with the dense Hessian (Cholesky). Shockley diodes
        only: with ideal ones the Hessian does not see the clip (returns ``None``)."""
        if self.diode is None:
            return None
        sizes = self.sizes[1:]
        total = sum(sizes)
        batch = state[0].shape[0]
        h = state[0].new_zeros(batch, total, total)
        offsets = [0]
        for n in sizes:
            offsets.append(offsets[-1] + n)
        last = len(state) - 1
        for k, v in enumerate(state):
            sl = slice(offsets[k], offsets[k + 1])
            diag = self.block_curvature(k).expand(v.shape)
            if k < last:
                up, down = self._diode_terms(v)
                diag = diag + self.diode.conductance(up) + self.diode.conductance(down)
            diag = self.weights[k] * diag
            if shift is not None:
                diag = diag + shift[k]
            h[:, sl, sl] = torch.diag_embed(diag)
            if k < last:
                # ∂²E/∂V_k∂V_{k+1} = −w_{k+1}·A·(Pᵀ g_{k+1}ᵀ)
                cross = (
                    -self.weights[k + 1] * self.amplifier_gain * self._back(k, self.conductances[k + 1]).t()
                )
                nxt = slice(offsets[k + 1], offsets[k + 2])
                h[:, sl, nxt] = cross
                h[:, nxt, sl] = cross.t()
        chol, info = torch.linalg.cholesky_ex(h)
        b = torch.cat(rhs, dim=1).unsqueeze(-1)
        z = torch.linalg.solve(h, b) if bool((info != 0).any()) else torch.cholesky_solve(b, chol)
        return tuple(z.squeeze(-1).split(list(sizes), dim=1))

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """``∂E/∂g = w_k·½⟨(U − V)²⟩`` (the local rule, weighed per layer), ``∂E/∂b = −w_k⟨V⟩`` (batch means)."""
        batch = x.shape[0]
        grads: dict[str, Tensor] = {}
        for k, v in enumerate(state):
            u = self._below(x, state, k)
            w = self.weights[k]
            sq = 0.5 * ((v * v).mean(0)[:, None] + (u * u).mean(0)[None, :]) - v.t() @ u / batch
            grads[f"conductances.{k}"] = w * sq
            grads[f"biases.{k}"] = -w * v.mean(0)
        return grads

    # -- the circuit -------------------------------------------------------------------------------------------
    def _node_layout(self) -> tuple[list[int], int]:
        """First node number of each block ``[inputs, (lo, hi), V_1, U_1, …, V_L]`` and the node count."""
        blocks = [2 * self.sizes[0]]
        if len(self.sizes) > 2:
            blocks.append(2)
        copies = 2 if self.inverting else 1
        for n in self.sizes[1:-1]:
            blocks += [n, copies * n]
        blocks.append(self.sizes[-1])
        first = [1]
        for n in blocks:
            first.append(first[-1] + n)
        return first, first[-1] - 1

    def node_potentials(self, x: Tensor, state: State) -> Tensor:
        """Every node's potential in the numbering of :meth:`to_netlist` (ground first), ``(batch, N + 1)``."""
        parts = [x.new_zeros(x.shape[0], 1), self.input_potentials(x)]
        if len(self.sizes) > 2:
            parts.append(x.new_tensor(self.levels).expand(x.shape[0], 2))
        for v in state[:-1]:
            parts += [v, self.amplified(v)]
        parts.append(state[-1])
        return torch.cat(parts, dim=1)

    def to_netlist(self, x: Tensor) -> Netlist:
        """This network with its parameters and one example's input as a :class:`Netlist`.

        Nodes: the input sources (``+gain·x`` then ``−gain·x``), the two level sources (``lo``, ``hi``), then per
        hidden layer its nodes and its amplifiers' outputs (``+A·V`` then ``−A·V``), then the output nodes. A zero
        conductance is an open circuit and is left out.
        """
        x = x.reshape(1, -1)
        self.check_input(x.to(self.biases[0].dtype))
        first, n_nodes = self._node_layout()
        hidden = len(self.sizes) - 2
        below_first = [first[0]] + [first[2 + 2 * k + 1] for k in range(hidden)]
        layer_first = [first[2 + 2 * k] for k in range(hidden)] + [first[-2]]
        res, cond = [], []
        for k, g in enumerate(self.conductances):
            g = g.detach().double()
            out_idx, in_idx = torch.nonzero(g > 0, as_tuple=True)
            res.append(torch.stack((in_idx + below_first[k], out_idx + layer_first[k]), 1))
            cond.append(g[out_idx, in_idx])
        diodes, amps, gains, backs = [], [], [], []
        names = {i + 1: f"in{i}" for i in range(2 * self.sizes[0])}
        sources = list(range(1, 2 * self.sizes[0] + 1))
        voltages = self.input_potentials(x.double())[0].tolist()
        if hidden:
            lo_node, hi_node = first[1], first[1] + 1
            names.update({lo_node: "vlo", hi_node: "vhi"})
            sources += [lo_node, hi_node]
            voltages += list(self.levels)
        a, b = self.amplifier_gain, self.backward_gain
        for k in range(hidden):
            n = self.sizes[k + 1]
            nodes = torch.arange(layer_first[k], layer_first[k] + n)
            diodes += [torch.stack((nodes, torch.full_like(nodes, hi_node)), 1)]
            diodes += [torch.stack((torch.full_like(nodes, lo_node), nodes), 1)]
            names.update({int(v): f"h{k + 1}_{i}" for i, v in enumerate(nodes)})
            outs = below_first[k + 1]
            amps.append(torch.stack((nodes, nodes - layer_first[k] + outs), 1))
            gains += [a] * n
            backs += [b] * n
            names.update({outs + i: f"a{k + 1}p{i}" for i in range(n)})
            if self.inverting:
                amps.append(torch.stack((nodes, nodes - layer_first[k] + outs + n), 1))
                gains += [-a] * n
                backs += [-b] * n
                names.update({outs + n + i: f"a{k + 1}m{i}" for i in range(n)})
        names.update({first[-2] + i: f"out{i}" for i in range(self.sizes[-1])})
        free = torch.cat([torch.arange(f, f + n) for f, n in zip(layer_first, self.sizes[1:], strict=True)])
        empty = torch.zeros(0, 2, dtype=torch.long)
        return Netlist(
            n_nodes,
            resistors=torch.cat(res),
            conductances=torch.cat(cond),
            diodes=torch.cat(diodes) if diodes else empty,
            sources=torch.tensor(sources),
            voltages=torch.tensor(voltages, dtype=torch.float64),
            injections=free,
            currents=torch.cat([bias.detach().double() for bias in self.biases]),
            outputs=torch.arange(first[-2], first[-1]),
            names=names,
            amplifiers=torch.cat(amps) if amps else empty,
            gains=torch.tensor(gains, dtype=torch.float64),
            back_gains=torch.tensor(backs, dtype=torch.float64),
            diode_model=self.diode,
        )
