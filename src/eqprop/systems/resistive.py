"""Deep resistive networks (DRN): layered analog circuits of conductances, ideal diodes and sources.

A nonlinear resistive network settles where its co-content is minimal (thesis ch. 4; Kendall et al. 2020). With
linear resistors (conductance ``g``), ideal diodes, voltage sources and current sources the steady state of the
node potentials ``V`` minimises the convex quadratic

.. math::
    E(g, b, x, V) = \\sum_{\\text{resistors } ij} ½\\,g_{ij}(V_i − V_j)^2 − \\sum_j b_j V_j

subject to the diodes' inequalities (here ``V_j ≥ 0`` or ``V_j ≤ 0``) and the sources' equalities. Kirchhoff's
current law is its optimality condition: at each free node the current ``Σ g_ij(V_i − V_j) + b_j`` flowing in
is zero, or is absorbed by a conducting diode.

References:
    Kendall, Pantone, Manickavasagam, Bengio, Scellier (2020), "Training End-to-End Analog Neural Networks with
    Equilibrium Propagation"; Scellier (2024), "A fast algorithm to simulate nonlinear resistive networks"
    (ICML; the DRN-XS/1H/2H/3H of ``papers/fast-drn``); Scellier & Mishra (2025), "A universal approximation
    theorem for nonlinear resistive networks".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._types import Bound, State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem, kkt_residual
from eqprop.systems.islands import check_layered_circuit
from eqprop.systems.netlist import Netlist

__all__ = [
    "DeepResistive",
    "clip_conductances",
    "conductance_gains",
    "init_conductances",
    "refuse_cost_with_parameters",
]


# -- what every layered resistive network shares (DeepResistive, AnalogResistive) --------------------------------
def conductance_gains(owner: str, gains: float | Sequence[float], n_weights: int) -> tuple[float, ...]:
    """The init gain of each conductance matrix: one for all, or one each; each finite and ``> 0``."""
    gain_list = [float(gains)] * n_weights if isinstance(gains, int | float) else [float(g) for g in gains]
    if len(gain_list) != n_weights or any(not (math.isfinite(g) and g > 0) for g in gain_list):
        raise ConfigError(
            f"{owner}(gains={gains!r}): need one positive gain per conductance matrix ({n_weights})"
        )
    return tuple(gain_list)


def init_conductances(
    conductances: nn.ParameterList,
    biases: nn.ParameterList,
    gains: Sequence[float],
    generator: torch.Generator | None,
) -> None:
    """Conductances ``max(0, U(±gain/√fan_in))`` (about half start at 0), bias currents zero: the reference DRN
    initialisation."""
    with torch.no_grad():
        for g, gain in zip(conductances, gains, strict=True):
            scale = gain / math.sqrt(g.shape[1])
            g.uniform_(-scale, scale, generator=generator).clamp_(min=0.0)
        for b in biases:
            b.zero_()


def clip_conductances(conductances: nn.ParameterList) -> None:
    """Clip every conductance at 0, in place (after an update)."""
    with torch.no_grad():
        for g in conductances._parameters.values():  # iterating a ParameterList is slow
            g.clamp_(min=0.0)


def refuse_cost_with_parameters(owner: str, cost: nn.Module) -> None:
    """A circuit is nudged by currents injected into its output nodes, against their potentials: refuse a cost that
    has parameters of its own (a readout is not part of the circuit)."""
    if any(True for _ in cost.parameters()):
        raise ConfigError(
            f"{owner} needs a cost without parameters that reads the output potentials (the squared error), got "
            f"{type(cost).__name__}: nudging is a current injected into the output nodes",
            hint="set cost.kind = squared_error",
        )


class DeepResistive(EnergySystem):
    r"""A layered resistive network: voltage-source inputs, diode-clamped hidden layers, a linear output layer.

    - **Inputs**: each feature drives two voltage sources, ``+gain·x`` and ``−gain·x`` (so that positive
      conductances can carry signed weights); they are clamped, not state variables.
    - **Hidden layers**: the first half of each layer's nodes is *excitatory* (a diode to ground holds
      ``V ≥ 0``), the second half *inhibitory* (``V ≤ 0``).
    - **Output layer**: plain nodes (no diode); the squared-error cost reads their potentials, and nudging is a
      current ``β(y − V_out)`` injected into them.
    - **Parameters**: the conductances ``g_k`` between consecutive layers (``>= 0``: call
      :meth:`constrain_parameters` after an update; the training loop does) and the bias currents ``b_k``
      injected by current sources into every non-input node (signed).

    The energy is quadratic in each layer given its neighbours, with per-node curvature
    ``a_j = Σ_i g_ij`` (the total conductance at node ``j``), so the exact block minimiser is the node-voltage
    rule ``V_j ← clip((Σ_i g_ij V_i + b_j) / Σ_i g_ij)`` onto the node's diode interval, and the odd-even
    (red-black) schedule of :class:`~eqprop.BlockCoordinate` is Scellier's exact coordinate descent.

    Args:
        sizes: ``[n_in, n_1, …, n_L]``: input features (each makes two sources), hidden widths (even:
            half excitatory, half inhibitory), output width.
        input_gain: the amplification of the input voltage sources.
        gains: conductance init, one per conductance matrix or one for all: ``U(−gain/√fan_in, +gain/√fan_in)``
            then clipped at 0 (the reference code's initialisation: about half of the conductances start at 0).
        generator: optional ``torch.Generator`` for the initialisation.

    Example:
        >>> net = eqprop.DeepResistive([784, 100, 10], input_gain=100.0)
        >>> eq = eqprop.solve(net, torch.rand(4, 784), eqprop.BlockCoordinate(iterations=4))
        >>> bool((eq.state[0][:, :50] >= 0).all() and (eq.state[0][:, 50:] <= 0).all())
        True
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        input_gain: float = 1.0,
        gains: float | Sequence[float] = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any((not isinstance(n, int)) or isinstance(n, bool) or n < 1 for n in sizes):
            raise ConfigError(
                f"DeepResistive(sizes={sizes!r}): give at least two positive integer widths, e.g. [784, 1024, 10]"
            )
        odd = [n for n in sizes[1:-1] if n % 2]
        if odd:
            raise ConfigError(
                f"DeepResistive(sizes={sizes!r}): hidden widths must be even (half excitatory, half inhibitory)"
            )
        if not (isinstance(input_gain, int | float) and math.isfinite(input_gain) and input_gain > 0):
            raise ConfigError(f"DeepResistive(input_gain={input_gain!r}): need a finite number > 0")
        self.sizes = tuple(sizes)
        self.input_gain = float(input_gain)
        self.gains = conductance_gains("DeepResistive", gains, len(sizes) - 1)
        self.input_shape = (sizes[0],)
        widths = [2 * sizes[0], *sizes[1:]]  # the input layer holds two sources per feature
        # g_k connects layer k to layer k+1, stored (out, in) like nn.Linear.
        self.conductances = nn.ParameterList(nn.Parameter(torch.empty(m, n)) for n, m in pairwise(widths))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(m)) for m in widths[1:])
        # Per-node diode intervals of the hidden layers: [0, inf) then (-inf, 0]. Buffers, so that they
        # follow the module's device and dtype.
        for k, n in enumerate(sizes[1:-1]):
            half = n // 2
            lo = torch.cat((torch.zeros(half), torch.full((half,), -math.inf)))
            hi = torch.cat((torch.full((half,), math.inf), torch.zeros(half)))
            self.register_buffer(f"_lower{k}", lo, persistent=False)
            self.register_buffer(f"_upper{k}", hi, persistent=False)
        # Values derived from the parameters or the input, each kept while what it came from is unchanged:
        # "curvature" (key, a_k per layer; see _curvatures), "scales" ({(k, shift): 1/(a_k + shift)}, emptied
        # with the curvatures; see block_scale) and "potentials" (x, its version, the gain, V_in; see
        # _input_potentials). One dict, written in place: nn.Module.__setattr__ is slow.
        self._memo: dict[str, Any] = {"curvature": (None, ()), "scales": {}, "potentials": None}
        # `variables` is read several times per relaxation: built once, rebuilt when a bounds buffer is
        # replaced (.to(), .double(), functional_call, ...), which the identity check below notices.
        self._variables_cache: tuple[tuple[int, ...], tuple[Variable, ...]] | None = None
        self.reset_parameters(generator)

    # -- structure --------------------------------------------------------------------------------------------
    @property
    def variables(self) -> tuple[Variable, ...]:  # type: ignore[override]
        """``V1 … V_{L-1}`` (hidden, per-node diode bounds) and ``V_L`` (output, unbounded)."""
        # The cache holds the buffers it was built from, so their ids cannot be reused by other tensors.
        ids = tuple(map(id, self._buffers.values()))
        cached = self._variables_cache
        if cached is not None and cached[0] == ids:
            return cached[1]
        out = []
        n_layers = len(self.sizes) - 1
        for k, n in enumerate(self.sizes[1:]):
            bounds: tuple[Bound, Bound] = (
                (getattr(self, f"_lower{k}"), getattr(self, f"_upper{k}"))
                if k < n_layers - 1
                else (None, None)
            )
            out.append(Variable(f"V{k + 1}", (n,), bounds))
        self._variables_cache = (ids, tuple(out))
        return self._variables_cache[1]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Conductances ``max(0, U(±gain/√fan_in))``, bias currents zero (the reference DRN initialisation)."""
        init_conductances(self.conductances, self.biases, self.gains, generator)

    def check_cost(self, cost: nn.Module) -> None:
        """A circuit is nudged by currents injected into its output nodes, against their potentials: the cost
        must read the output potentials directly; a cost with parameters (a readout) is not part of the circuit."""
        refuse_cost_with_parameters("DeepResistive", cost)

    def constrain_parameters(self) -> None:
        """Conductances are physical: clip them at 0 after an update (``b`` is a signed current)."""
        clip_conductances(self.conductances)

    def extra_repr(self) -> str:
        return f"sizes={list(self.sizes)}, input_gain={self.input_gain}, gains={list(self.gains)}"

    def _label(self) -> str:
        return f"DeepResistive({list(self.sizes)})"

    def input_potentials(self, x: Tensor) -> Tensor:
        """The potentials the input voltage sources impose: ``gain·(x, −x)``, shape ``(batch, 2·n_in)``."""
        return torch.cat((x, -x), dim=1).mul_(self.input_gain)

    def _input_potentials(self, x: Tensor) -> Tensor:
        """:meth:`input_potentials`, reused while ``x`` is the same unmodified tensor (``prepare`` and the
        contrast of one training step read the same batch). Internal: the result must not be written to."""
        memo = self._memo
        cached = memo["potentials"]
        gain = self.input_gain
        if cached is not None and cached[0] is x and cached[1] == x._version and cached[2] == gain:
            return cached[3]
        v = self.input_potentials(x)
        if x.requires_grad or torch.is_inference_mode_enabled():  # keep graphs and inference tensors out
            memo["potentials"] = None
        else:  # holds `x`, so that its identity stays unique while cached
            memo["potentials"] = (x, x._version, gain, v)
        return v

    def node_potentials(self, x: Tensor, state: State) -> Tensor:
        """Every node's potential in the numbering of :meth:`to_netlist` (ground first), ``(batch, N + 1)``."""
        return torch.cat((x.new_zeros(x.shape[0], 1), self.input_potentials(x), *state), dim=1)

    def to_netlist(self, x: Tensor) -> Netlist:
        """This network, with its current parameters and one example's input, as a :class:`Netlist`.

        Nodes: ``1 … 2·n_in`` are the input sources (``+gain·x`` then ``−gain·x``), then each layer's nodes in
        order. Each excitatory node has a diode from ground (``V ≥ 0``), each inhibitory node a diode to ground
        (``V ≤ 0``); each bias is a current source; a zero conductance is an open circuit and is left out.
        """
        x = x.reshape(1, -1)
        self.check_input(x.to(self.biases[0].dtype))
        widths = [2 * self.sizes[0], *self.sizes[1:]]
        first = [1]
        for w in widths:
            first.append(first[-1] + w)
        res, cond = [], []
        for k, g in enumerate(self.conductances):
            g = g.detach().double()
            out_idx, in_idx = torch.nonzero(g > 0, as_tuple=True)
            res.append(torch.stack((in_idx + first[k], out_idx + first[k + 1]), 1))
            cond.append(g[out_idx, in_idx])
        diodes = []
        for k, n in enumerate(self.sizes[1:-1], start=1):
            nodes = torch.arange(first[k], first[k] + n)
            half = n // 2
            diodes.append(
                torch.stack((torch.zeros(half, dtype=torch.long), nodes[:half]), 1)
            )  # ground -> node
            diodes.append(
                torch.stack((nodes[half:], torch.zeros(n - half, dtype=torch.long)), 1)
            )  # node -> ground
        names = {i + 1: f"in{i}" for i in range(widths[0])}
        for k in range(1, len(widths)):
            tag = "out" if k == len(widths) - 1 else f"h{k}_"
            names.update({first[k] + i: f"{tag}{i}" for i in range(widths[k])})
        return Netlist(
            first[-1] - 1,
            resistors=torch.cat(res),
            conductances=torch.cat(cond),
            diodes=torch.cat(diodes) if diodes else torch.zeros(0, 2, dtype=torch.long),
            sources=torch.arange(1, widths[0] + 1),
            voltages=self.input_potentials(x.double())[0],
            injections=torch.arange(first[1], first[-1]),
            currents=torch.cat([b.detach().double() for b in self.biases]),
            outputs=torch.arange(first[-2], first[-1]),
            names=names,
        )

    # -- energy -------------------------------------------------------------------------------------------------
    def energy(self, x: Tensor, state: State) -> Tensor:
        """``Σ ½g(V_i − V_j)² − Σ b·V`` per example (the co-content of the resistors and current sources)."""
        v = (self.input_potentials(x), *state)
        e = x.new_zeros(x.shape[0])
        for g, below, above in zip(self.conductances, v[:-1], v[1:], strict=True):
            # Σ_oi g_oi (V_o − V_i)² = V_o²·rowsum(g) + V_i²·colsum(g) − 2 V_o·(g V_i)
            e = e + 0.5 * ((above * above) @ g.sum(1) + (below * below) @ g.sum(0))
            e = e - ((below @ g.t()) * above).sum(-1)
        for b, s in zip(self.biases, state, strict=True):
            e = e - s @ b
        return e

    def dissipated_power(self, x: Tensor, state: State) -> Tensor:
        """``Σ g(V_i − V_j)²`` over the resistors, per example: watts for siemens and volts (ideal diodes and
        sources dissipate nothing)."""
        v = (self.input_potentials(x), *state)
        p = x.new_zeros(x.shape[0])
        for g, below, above in zip(self.conductances, v[:-1], v[1:], strict=True):
            p = (
                p
                + (above * above) @ g.sum(1)
                + (below * below) @ g.sum(0)
                - 2 * ((below @ g.t()) * above).sum(-1)
            )
        return p

    def kcl_residual(self, x: Tensor, state: State) -> Tensor:
        """The largest violation of the steady-state conditions, per example, in amperes.

        At a node whose diode is off (or that has none) the net current ``Σ g(V_i − V_j) + b`` must vanish; at
        a node held at 0 by its diode the net current must flow the way the diode conducts (complementarity);
        and no node may sit on the wrong side of its diode.
        """
        with torch.no_grad():
            grads = self.state_grad(x, state)  # ∂E/∂V = −(net current into the node)
        return kkt_residual(state, grads, self.variables)

    # -- fast paths -----------------------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> tuple[Tensor, ...]:
        """The constant drive of each layer: ``g₀·V_in + b₁`` for the first, ``b_k`` for the others (after the
        once-per-update check that the steady state is determined and bounded)."""
        self.check_steady_state()
        return self._drive(x)

    def check_steady_state(self) -> None:
        """Refuse a network whose outputs, or charged hidden nodes, conductances trained to 0 have cut off from the
        inputs (:func:`~eqprop.systems.islands.check_layered_circuit`): once per parameter update, before a solve
        (the energy and its gradients at a given state stay defined, and are not checked)."""
        self._curvatures()
        memo = self._memo
        key = memo["curvature"][0]
        if memo.get("islands") == key:
            return
        gl = list(self.conductances._parameters.values())
        stops = []
        for k in range(len(self.sizes) - 2):
            lo, hi = getattr(self, f"_lower{k}"), getattr(self, f"_upper{k}")
            stops.append((torch.isfinite(hi), torch.isfinite(lo)))
        check_layered_circuit(
            self._label(), gl, list(self.biases._parameters.values()), stops, first_rows=memo["first_rows"]
        )
        memo["islands"] = key

    def _drive(self, x: Tensor) -> tuple[Tensor, ...]:
        bs = list(self.biases._parameters.values())  # slicing a ParameterList builds a new Module
        first = torch.addmm(bs[0], self._input_potentials(x), self.conductances._parameters["0"].t())
        return (first, *bs[1:])

    @property
    def has_block_minimizer(self) -> bool:
        return True

    def _curvatures(self) -> tuple[Tensor, ...]:
        """Total conductance at each node of each layer, cached until a conductance changes in place (its
        version), is replaced or moves (its storage, dtype or device: ``.to()``, ``load_state_dict``, ...)."""
        gs = self.conductances._parameters  # a dict read: iterating a ParameterList is slow
        key = tuple([(g.data_ptr(), g._version, g.dtype, g.device) for g in gs.values()])
        memo = self._memo
        cached = memo["curvature"]
        if key != cached[0]:
            gl = list(gs.values())
            with torch.no_grad():
                curv = []
                first_rows = gl[0].sum(1)
                for k in range(len(gl)):
                    a = first_rows if k == 0 else gl[k].sum(1)
                    if k + 1 < len(gl):
                        a = a + gl[k + 1].sum(0)
                    # A node whose conductances all vanish floats; the floor keeps the update defined (the check
                    # below refuses the cases where that matters).
                    curv.append(a.clamp_min(torch.finfo(a.dtype).tiny))
            memo["first_rows"] = first_rows
            cached = memo["curvature"] = (key, tuple(curv))
            memo["scales"] = {}  # derived from the old curvatures
        return cached[1]

    def _differentiable(self) -> bool:
        """Whether the curvature must be built with the graph (backprop through the relaxation)."""
        return torch.is_grad_enabled() and any(
            g.requires_grad for g in self.conductances._parameters.values()
        )

    def block_curvature(self, k: int) -> Tensor:
        """``a_k``: the total conductance at each node of layer ``k``, shape ``(n_k,)``."""
        if self._differentiable():
            gs = list(self.conductances._parameters.values())
            a = gs[k].sum(1)  # differentiable (backprop through the relaxation)
            if k + 1 < len(gs):
                a = a + gs[k + 1].sum(0)
            return a.clamp_min(torch.finfo(a.dtype).tiny)
        return self._curvatures()[k]

    def block_scale(self, k: int, shift: Any = None) -> float | Tensor:
        """``1/a_k`` or ``1/(a_k + shift)``, computed as :meth:`EnergySystem.block_scale` does, once per
        parameter update (cached with the curvatures) rather than once per relaxation."""
        if (shift is not None and type(shift) is not float) or self._differentiable():
            return super().block_scale(k, shift)
        a = self._curvatures()[k]  # empties the scales first if the conductances changed
        scales = self._memo["scales"]
        scale = scales.get((k, shift))
        if scale is None:
            scale = 1.0 / a if shift is None else 1.0 / (a + shift)
            if len(scales) >= 64:  # many nudging strengths without a parameter update: bound the cache
                scales.clear()
            scales[(k, shift)] = scale
        return scale

    def block_field(self, k: int, state: State, drive: tuple[Tensor, ...]) -> Tensor:
        """``h_k = drive_k + g_k V_{k−1} + g_{k+1}ᵀ V_{k+1}``: the current the neighbours would push in."""
        h = drive[k]
        if k > 0:
            h = torch.addmm(h, state[k - 1], self.conductances[k].t())
        if k + 1 < len(state):
            h = torch.addmm(h, state[k + 1], self.conductances[k + 1])
        if h.dim() == 1:
            h = h.expand(state[k].shape)
        return h

    def block_minimizer(
        self, k: int, drive: tuple[Tensor, ...], *, shift: Tensor | None = None, scale: float | Tensor = 1.0
    ) -> Callable[[State], Tensor]:
        """Fused node-voltage update: one ``addmm`` per neighbour, then an in-place scale and diode clip."""
        if torch.is_grad_enabled():  # differentiable sweeps: the generic composition (out of place)
            return super().block_minimizer(k, drive, shift=shift, scale=scale)
        const = drive[k] if shift is None else drive[k] + shift
        n = len(self.conductances)
        gs = self.conductances._parameters  # plain dict lookups: ParameterList indexing is slow
        below = gs[str(k)].t() if k > 0 else None
        above = gs[str(k + 1)] if k + 1 < n else None
        lo, hi = self.block_bounds(k)
        unit = isinstance(scale, float) and scale == 1.0

        def update(state: State) -> Tensor:  # hot loop: 1-2 addmm, one multiply, one clip
            h = const
            if below is not None:
                h = torch.addmm(h, state[k - 1], below)
            if above is not None:
                h = torch.addmm(h, state[k + 1], above)
            if h is const:
                h = const.expand(state[k].shape).clone()
            if not unit:
                h.mul_(scale)
            return h if lo is None else h.clamp_(lo, hi)  # type: ignore[arg-type]

        return update

    def state_grad(self, x: Tensor, state: State, drive: tuple[Tensor, ...] | None = None) -> State:
        """``∂E/∂V_k = a_k·V_k − h_k``: minus the net current flowing into each node."""
        if drive is None:
            drive = self._drive(x)
        return tuple(
            s * self.block_curvature(k) - self.block_field(k, state, drive) for k, s in enumerate(state)
        )

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """Closed form: ``∂E/∂g_ij = ½⟨(V_i − V_j)²⟩`` (the local rule), ``∂E/∂b_j = −⟨V_j⟩`` (batch means)."""
        batch = x.shape[0]
        v = (self.input_potentials(x), *state)
        grads: dict[str, Tensor] = {}
        for j, (below, above) in enumerate(pairwise(v)):
            sq_above = (above * above).mean(0)
            sq_below = (below * below).mean(0)
            grads[f"conductances.{j}"] = (
                0.5 * (sq_above[:, None] + sq_below[None, :]) - above.t() @ below / batch
            )
        for k, s in enumerate(state):
            grads[f"biases.{k}"] = s.sum(0) / -batch
        return grads

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·[∂E/∂θ(V_b) − ∂E/∂θ(V_a)]``: ``½Δ⟨(V_i − V_j)²⟩`` per conductance, in one matmul each.

        The rank-one terms ``½Δ⟨V_i²⟩ + ½Δ⟨V_j²⟩`` ride along as two extra rows of the matmul's factors, so each
        conductance matrix is written once.
        """
        out = {} if out is None else out
        batch = x.shape[0]
        c = scale / batch
        v0 = self._input_potentials(x)
        va = (v0, *state_a)
        vb = (v0, *state_b)

        def mm(name: str, a: Tensor, b: Tensor) -> Tensor:
            return torch.mm(a, b, out=out[name]) if name in out else a @ b

        grads: dict[str, Tensor] = {}
        first_diff = None  # c·(V_a − V_b) of the first layer: a factor of g₀'s contrast and b₁'s whole one
        d_sq_lo = None  # ½c·Δ⟨V²⟩ of the layer below: the previous matrix's d_sq_hi (the same layer)
        for j in range(len(self.conductances)):
            a_hi, b_hi, a_lo, b_lo = va[j + 1], vb[j + 1], va[j], vb[j]
            d_sq_hi = ((b_hi * b_hi).sum(0) - (a_hi * a_hi).sum(0)).mul_(0.5 * c)[None]  # (1, n_out)
            if j == 0:  # the input is clamped: only the output side moves
                first_diff = (a_hi - b_hi).mul_(c)
                left = torch.cat((first_diff, d_sq_hi))  # (batch + 1, n_out)
                right = torch.cat((a_lo, torch.ones_like(a_lo[:1])))  # (batch + 1, n_in)
            else:
                assert d_sq_lo is not None
                left = torch.cat((a_hi * c, b_hi * -c, d_sq_hi, torch.ones_like(d_sq_hi)))
                right = torch.cat((a_lo, b_lo, torch.ones_like(d_sq_lo), d_sq_lo))
            grads[f"conductances.{j}"] = mm(f"conductances.{j}", left.t(), right)
            d_sq_lo = d_sq_hi
        for k in range(len(self.biases)):
            name = f"biases.{k}"
            diff = first_diff if k == 0 and first_diff is not None else (state_a[k] - state_b[k]).mul_(c)
            grads[name] = torch.sum(diff, 0, out=out[name]) if name in out else diff.sum(0)
        return grads
