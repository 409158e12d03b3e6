"""Arbitrary (non-layered) resistive circuits: a SPICE-like netlist, and the trainable system it compiles to.

:class:`Netlist` is a plain description of a DC circuit of ideal elements: resistors (conductances), ideal
diodes, independent voltage sources and current sources between numbered nodes (0 is ground), plus the nodes
read as outputs. :class:`ResistiveCircuit` turns one into an :class:`~eqprop.systems.base.EnergySystem` in
sparse incidence form: the conductances and the source currents become trainable parameters, chosen voltage
sources carry the input, and the free node potentials are the state. Its steady state minimises the co-content

.. math::
    E(V) = \\sum_{\\text{resistors } (i, j)} ½\\,g_{ij}(V_i − V_j)^2 − \\sum_{\\text{current sources}} I_n V_n

subject to the diodes (``V_anode ≤ V_cathode`` unless the diode conducts). A diode must have one terminal at a
fixed potential (ground or a constant voltage source): it is then a bound on the other node's potential, which
is what keeps the exact coordinate descent exact. The free nodes are coloured so that no resistor joins two
nodes of one colour; each colour is a state variable whose exact block minimiser is the node-voltage rule, and
the output nodes form the last variable (the cost reads it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._types import Bound, State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem, kkt_residual
from eqprop.systems.junction import ShockleyDiode

__all__ = ["Netlist", "ResistiveCircuit"]


def _pairs(rows: Any) -> Tensor:
    return torch.as_tensor(rows, dtype=torch.long).reshape(-1, 2)


@dataclass(frozen=True, eq=False)
class Netlist:
    """A DC circuit between nodes ``0 … n_nodes`` (``0`` is ground): resistors, diodes, sources, amplifiers.

    Attributes:
        n_nodes: the number of non-ground nodes.
        resistors: ``(R, 2)`` node pairs; ``conductances``: ``(R,)`` in siemens (``>= 0``).
        diodes: ``(D, 2)`` ``(anode, cathode)`` pairs: current flows only from anode to cathode, so
            ``V_anode ≤ V_cathode`` unless the diode conducts (then they are equal). One terminal must be fixed.
        sources: ``(S,)`` nodes held by voltage sources (the other terminal at ground); ``voltages``: ``(S,)``.
        injections: ``(C,)`` nodes into which current sources push current from ground; ``currents``: ``(C,)``.
        outputs: ``(O,)`` free nodes read as the output, in order.
        names: optional node names (for SPICE files and messages), ``{node: name}``.
        amplifiers: ``(K, 2)`` ``(input, output)`` pairs of bidirectional amplifiers (Kendall et al. 2020): a
            voltage-controlled voltage source holds ``V_output = gain·V_input`` and a current-controlled current
            source draws ``back_gain·I`` out of the input node, ``I`` being the current the output delivers into
            the circuit. ``gains``, ``back_gains``: ``(K,)``. The circuit keeps an energy when ``back_gain/gain > 0``
            (each amplifier then weighs the co-content on its output side by that ratio; Kendall's ``1/gain``
            gives ``1/gain²``); the output node is driven, not free.
        diode_model: ``None``: ideal diodes (a bound on a node's potential); a :class:`ShockleyDiode`: every diode
            follows Shockley's law.
    """

    n_nodes: int
    resistors: Tensor
    conductances: Tensor
    diodes: Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))
    sources: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    voltages: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    injections: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    currents: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    outputs: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    names: Mapping[int, str] = field(default_factory=dict)
    amplifiers: Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))
    gains: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    back_gains: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    diode_model: ShockleyDiode | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "resistors", _pairs(self.resistors))
        set_(self, "diodes", _pairs(self.diodes))
        set_(self, "amplifiers", _pairs(self.amplifiers))
        for name in ("sources", "injections", "outputs"):
            set_(self, name, torch.as_tensor(getattr(self, name), dtype=torch.long).reshape(-1))
        for name in ("conductances", "voltages", "currents", "gains", "back_gains"):
            set_(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float64).reshape(-1).detach())
        n = self.n_nodes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"Netlist(n_nodes={n!r}): need a positive number of nodes")
        for name in ("resistors", "diodes", "sources", "injections", "outputs", "amplifiers"):
            t = getattr(self, name)
            if t.numel() and (int(t.min()) < 0 or int(t.max()) > n):
                raise ConfigError(f"Netlist.{name}: node numbers must lie in 0..{n} (0 is ground)")
        for elems, values in (
            ("resistors", "conductances"),
            ("sources", "voltages"),
            ("injections", "currents"),
            ("amplifiers", "gains"),
            ("amplifiers", "back_gains"),
        ):
            if len(getattr(self, elems)) != len(getattr(self, values)):
                raise ConfigError(
                    f"Netlist: {len(getattr(self, elems))} {elems} but {len(getattr(self, values))} {values}"
                )
        if self.conductances.numel() and not bool((self.conductances >= 0).all()):
            raise ConfigError("Netlist.conductances must be >= 0 (a passive resistor)")
        if bool((self.resistors[:, 0] == self.resistors[:, 1]).any()):
            raise ConfigError("Netlist.resistors: a resistor joins a node to itself")
        if bool((self.sources == 0).any()) or len(set(self.sources.tolist())) != len(self.sources):
            raise ConfigError("Netlist.sources: each voltage source holds a distinct non-ground node")
        if self.diode_model is not None and not isinstance(self.diode_model, ShockleyDiode):
            raise ConfigError(
                f"Netlist.diode_model: a ShockleyDiode or None (ideal), got {self.diode_model!r}"
            )
        self._check_amplifiers()
        driven = self.driven_nodes()
        if bool((self.outputs == 0).any()) or bool(torch.isin(self.outputs, driven).any()):
            raise ConfigError(
                "Netlist.outputs must be free nodes (not ground, not held by a voltage source or an amplifier)"
            )

    def _check_amplifiers(self) -> None:
        amps = self.amplifiers
        if not len(amps):
            return
        out = amps[:, 1]
        if bool((amps == 0).any()) or bool((amps[:, 0] == out).any()):
            raise ConfigError("Netlist.amplifiers: each joins two distinct non-ground nodes (input, output)")
        if len(set(out.tolist())) != len(out) or bool(torch.isin(out, self.sources).any()):
            raise ConfigError(
                "Netlist.amplifiers: each output node is driven by exactly one amplifier and no voltage source"
            )
        if bool(torch.isin(amps[:, 0], out).any()):
            raise ConfigError(
                "Netlist.amplifiers: an amplifier's input is another amplifier's output (chain them "
                "through a resistor)"
            )
        a, b = self.gains, self.back_gains
        if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all()) and bool((a != 0).all())):
            raise ConfigError("Netlist.gains / back_gains: need finite values and nonzero voltage gains")
        bad = torch.nonzero(b / a <= 0).flatten()
        if len(bad):
            k = int(bad[0])
            raise ConfigError(
                f"Netlist.amplifiers[{k}] ({self.name(int(amps[k, 0]))} -> {self.name(int(amps[k, 1]))}): voltage "
                f"gain {float(a[k]):g} with backward current gain {float(b[k]):g} makes the energy unbounded below "
                "(it weighs the output side's co-content by back_gain/gain <= 0): the steady state is no minimum",
                hint="give the backward gain the sign of the voltage gain (Kendall et al.: back_gain = 1/gain)",
            )
        self.energy_weights()  # refuses amplifier loops whose gains admit no energy

    def driven_nodes(self) -> Tensor:
        """The nodes whose potential an element imposes: ground, voltage sources and amplifier outputs."""
        return torch.cat((torch.zeros(1, dtype=torch.long), self.sources, self.amplifiers[:, 1]))

    def energy_weights(self) -> Tensor:
        """The weight of each node's Kirchhoff equation in the circuit's energy, ``(n_nodes + 1,)``.

        Amplifiers cut the circuit into parts joined only through them; the energy is ``Σ w_part·(co-content of the
        part)``, with ``w_out/w_in = back_gain/gain`` across each amplifier, scaled so that the largest weight of a
        part holding an output node is 1 (all ones without amplifiers). Driven nodes take their part's weight.

        Raises:
            ConfigError: a loop of amplifiers whose ratios do not multiply to 1 (no energy exists).
        """
        n = self.n_nodes + 1
        parent = list(range(n))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        fixed = torch.zeros(n, dtype=torch.bool)
        fixed[0] = True
        fixed[self.sources] = True
        for a, b in torch.cat((self.resistors, self.diodes)).tolist():
            if not fixed[a] and not fixed[b]:
                parent[find(a)] = find(b)
        w: dict[int, float] = {}
        links: dict[int, list[tuple[int, float]]] = {}
        for (i, o), ratio in zip(
            self.amplifiers.tolist(), (self.back_gains / self.gains).tolist(), strict=True
        ):
            links.setdefault(find(i), []).append((find(o), ratio))
            links.setdefault(find(o), []).append((find(i), 1.0 / ratio))
        for root in sorted({find(v) for v in range(n)}):
            if root in w:
                continue
            w[root] = 1.0
            todo = [root]
            while todo:
                p = todo.pop()
                for q, ratio in links.get(p, []):
                    if q not in w:
                        w[q] = w[p] * ratio
                        todo.append(q)
                    elif not math.isclose(w[q], w[p] * ratio, rel_tol=1e-9):
                        raise ConfigError(
                            "Netlist.amplifiers form a loop whose back_gain/gain ratios do not multiply to 1: the "
                            "circuit has no energy (EqProp does not apply)"
                        )
        weights = torch.tensor([w[find(v)] for v in range(n)], dtype=torch.float64)
        if len(self.outputs):
            weights = weights / float(weights[self.outputs].max())
        return weights

    def name(self, node: int) -> str:
        """The node's name: ``names[node]``, else ``n<node>`` (``0`` for ground)."""
        return "0" if node == 0 else self.names.get(node, f"n{node}")

    def free_nodes(self) -> Tensor:
        """The nodes whose potential the circuit settles (not ground, not held by a source or an amplifier)."""
        fixed = torch.zeros(self.n_nodes + 1, dtype=torch.bool)
        fixed[self.driven_nodes()] = True
        return torch.nonzero(~fixed).flatten()


class ResistiveCircuit(EnergySystem):
    """A :class:`Netlist` as a trainable energy-based system (sparse incidence form).

    The conductances and the currents of the current sources become parameters (``conductances`` ``>= 0``:
    :meth:`constrain_parameters` clips them after an update; ``currents`` signed). The input ``x`` of shape
    ``(batch, n_inputs)`` drives voltage sources: ``inputs[i] = (source, feature, gain)`` sets source ``source``
    (an index into ``netlist.sources``) to ``gain·x[:, feature]``; the other sources keep their voltages.

    Args:
        netlist: the circuit; it needs at least one output node.
        inputs: the input-driven sources, ``(source index, feature, gain)`` triples.
        n_inputs: input features (default: one more than the largest feature index used).
        dtype: of the parameters (default: torch's default dtype; float64 keeps a netlist's values exactly).

    Example:
        >>> net = Netlist(3, resistors=[(1, 2), (2, 3), (3, 0)], conductances=[1.0, 2.0, 0.5],
        ...               sources=[1], voltages=[0.0], outputs=[3], diodes=[(0, 2)])
        >>> circuit = ResistiveCircuit(net, inputs=[(0, 0, 1.0)])
        >>> eq = eqprop.solve(circuit, torch.tensor([[1.0]]), eqprop.BlockCoordinate(50, order="forward"))
    """

    def __init__(
        self,
        netlist: Netlist,
        *,
        inputs: Sequence[tuple[int, int, float]] = (),
        n_inputs: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if len(netlist.outputs) == 0:
            raise ConfigError("ResistiveCircuit: the netlist names no output nodes (Netlist(outputs=[...]))")
        if len(netlist.amplifiers) or netlist.diode_model is not None:
            raise ConfigError(
                "ResistiveCircuit solves circuits of ideal elements; this netlist has "
                + ("amplifiers" if len(netlist.amplifiers) else "Shockley diodes"),
                hint="layered circuits with Shockley diodes and bidirectional amplifiers are eqprop.AnalogResistive",
            )
        self.netlist = netlist
        n = netlist.n_nodes
        src = netlist.sources
        inputs = [(int(s), int(f), float(g)) for s, f, g in inputs]
        for s, f, g in inputs:
            if not 0 <= s < len(src) or f < 0 or not math.isfinite(g):
                raise ConfigError(
                    f"ResistiveCircuit(inputs=...): bad input ({s}, {f}, {g}) for {len(src)} sources"
                )
        if len({s for s, _, _ in inputs}) != len(inputs):
            raise ConfigError("ResistiveCircuit(inputs=...): a voltage source is driven by two inputs")
        used = max((f for _, f, _ in inputs), default=-1) + 1
        self.n_inputs = used if n_inputs is None else int(n_inputs)
        if self.n_inputs < used:
            raise ConfigError(f"ResistiveCircuit(n_inputs={n_inputs}): inputs use feature {used - 1}")
        self.input_shape = (self.n_inputs,)
        driven = torch.zeros(len(src), dtype=torch.bool)
        for s, _, _ in inputs:
            driven[s] = True

        # -- order of the potentials: [ground, sources…, colour 0…, colour 1…, …, outputs…] ---------------------
        free = netlist.free_nodes()
        outputs = netlist.outputs
        if len(set(outputs.tolist())) != len(outputs):
            raise ConfigError("Netlist.outputs: a node is listed twice")
        r = netlist.resistors
        is_out = torch.zeros(n + 1, dtype=torch.bool)
        is_out[outputs] = True
        if bool((is_out[r[:, 0]] & is_out[r[:, 1]]).any()):
            raise ConfigError(
                "ResistiveCircuit: a resistor joins two output nodes; the outputs must form one block whose "
                "nodes do not touch (add a hidden node between them)"
            )
        hidden = [int(v) for v in free if not is_out[v]]
        colour = _greedy_colouring(hidden, r, n)
        n_colours = max(colour.values(), default=-1) + 1
        groups = [[v for v in hidden if colour[v] == c] for c in range(n_colours)]
        groups.append(outputs.tolist())
        order = [0, *src.tolist(), *(v for g in groups for v in g)]
        pos = torch.full((n + 1,), -1, dtype=torch.long)
        pos[torch.tensor(order)] = torch.arange(len(order))
        self.register_buffer("_position", pos, persistent=False)  # netlist node -> index in the potentials
        self._group_nodes = [torch.tensor(g, dtype=torch.long) for g in groups]
        self._offsets = [1 + len(src)]
        for g in groups:
            self._offsets.append(self._offsets[-1] + len(g))

        # -- which colour blocks touch (for the block solver's schedule) ------------------------------------------
        block_of = torch.full((n + 1,), -1, dtype=torch.long)
        for b, g in enumerate(groups):
            block_of[torch.tensor(g, dtype=torch.long)] = b
        ends = block_of[r]  # (R, 2)
        touching = ends[(ends[:, 0] >= 0) & (ends[:, 1] >= 0)]
        self._coupled = {(int(a), int(b)) for a, b in touching.tolist()} | {
            (int(b), int(a)) for a, b in touching.tolist()
        }

        # -- parameters ----------------------------------------------------------------------------------------
        dtype = torch.get_default_dtype() if dtype is None else dtype
        self.conductances = nn.Parameter(netlist.conductances.to(dtype))
        self.currents = nn.Parameter(netlist.currents.to(dtype))
        self.register_buffer("_voltages", netlist.voltages.to(dtype), persistent=False)
        self.register_buffer("_ends", pos[r].clone(), persistent=False)  # (R, 2) positions
        self.register_buffer("_injected_at", pos[netlist.injections].clone(), persistent=False)
        self._driven = driven
        self._inputs = inputs

        # -- per block: incident resistors and bias currents --------------------------------------------------------
        self._incidence: list[dict[str, Tensor]] = []
        ends_pos = pos[r]
        for b in range(len(groups)):
            lo_pos, hi_pos = self._offsets[b], self._offsets[b + 1]
            edge, local, other = [], [], []
            for side in (0, 1):
                mine = (ends_pos[:, side] >= lo_pos) & (ends_pos[:, side] < hi_pos)
                idx = torch.nonzero(mine).flatten()
                edge.append(idx)
                local.append(ends_pos[idx, side] - lo_pos)
                other.append(ends_pos[idx, 1 - side])
            inj = pos[netlist.injections]
            mine = (inj >= lo_pos) & (inj < hi_pos)
            self._incidence.append(
                {
                    "edge": torch.cat(edge),
                    "local": torch.cat(local),
                    "other": torch.cat(other),
                    "inj": torch.nonzero(mine).flatten(),
                    "inj_local": inj[mine] - lo_pos,
                }
            )
        for b, inc in enumerate(self._incidence):
            for key, t in inc.items():
                self.register_buffer(f"_inc{b}_{key}", t, persistent=False)

        # -- diode bounds ---------------------------------------------------------------------------------------------
        lower = torch.full((n + 1,), -math.inf, dtype=torch.float64)
        upper = torch.full((n + 1,), math.inf, dtype=torch.float64)
        fixed_value = torch.full((n + 1,), math.nan, dtype=torch.float64)
        fixed_value[0] = 0.0
        const = src[~driven]
        fixed_value[const] = netlist.voltages[~driven]
        is_free = torch.zeros(n + 1, dtype=torch.bool)
        is_free[free] = True
        for anode, cathode in netlist.diodes.tolist():
            if is_free[anode] and is_free[cathode]:
                raise ConfigError(
                    f"ResistiveCircuit: diode {netlist.name(anode)} -> {netlist.name(cathode)} joins two free nodes; "
                    "give every diode one terminal at ground or at a constant voltage source"
                )
            if is_free[cathode]:  # V_cathode >= V_anode
                if math.isnan(float(fixed_value[anode])):
                    raise ConfigError(
                        f"ResistiveCircuit: diode anode {netlist.name(anode)} is an input-driven source"
                    )
                lower[cathode] = max(float(lower[cathode]), float(fixed_value[anode]))
            elif is_free[anode]:  # V_anode <= V_cathode
                if math.isnan(float(fixed_value[cathode])):
                    raise ConfigError(
                        f"ResistiveCircuit: diode cathode {netlist.name(cathode)} is an input-driven source"
                    )
                upper[anode] = min(float(upper[anode]), float(fixed_value[cathode]))
        for b, g in enumerate(groups):
            idx = torch.tensor(g, dtype=torch.long)
            if bool((lower[idx] > upper[idx]).any()):
                raise ConfigError("ResistiveCircuit: diodes leave a node no feasible potential")
            self.register_buffer(f"_lower{b}", lower[idx].to(dtype), persistent=False)
            self.register_buffer(f"_upper{b}", upper[idx].to(dtype), persistent=False)
        self._bounded = [
            bool(
                torch.isfinite(lower[torch.tensor(g, dtype=torch.long)]).any()
                or torch.isfinite(upper[torch.tensor(g, dtype=torch.long)]).any()
            )
            for g in groups
        ]

    # -- structure --------------------------------------------------------------------------------------------
    @property
    def variables(self) -> tuple[Variable, ...]:  # type: ignore[override]
        out = []
        last = len(self._group_nodes) - 1
        for b, nodes in enumerate(self._group_nodes):
            bounds: tuple[Bound, Bound] = (
                (getattr(self, f"_lower{b}"), getattr(self, f"_upper{b}"))
                if self._bounded[b]
                else (None, None)
            )
            out.append(Variable("out" if b == last else f"colour{b}", (len(nodes),), bounds))
        return tuple(out)

    def blocks_coupled(self, i: int, j: int) -> bool:
        """Whether a resistor joins a node of block ``i`` to one of block ``j``."""
        return (i, j) in self._coupled

    def constrain_parameters(self) -> None:
        with torch.no_grad():
            self.conductances.clamp_(min=0.0)

    def _label(self) -> str:
        return f"ResistiveCircuit({self.netlist.n_nodes} nodes, {len(self.netlist.resistors)} resistors)"

    def source_potentials(self, x: Tensor) -> Tensor:
        """The potentials of the voltage-source nodes for each example, ``(batch, S)``."""
        v = self._voltages.to(x.dtype).expand(x.shape[0], -1).clone()
        for s, f, g in self._inputs:
            v[:, s] = g * x[:, f]
        return v

    def potentials(self, x: Tensor, state: State) -> Tensor:
        """All node potentials in the internal order ``[ground, sources, blocks…]``, ``(batch, N+1)``."""
        return torch.cat((x.new_zeros(x.shape[0], 1), self.source_potentials(x), *state), dim=1)

    def node_potentials(self, x: Tensor, state: State) -> Tensor:
        """The potential of every netlist node ``0 … n_nodes`` (ground first), ``(batch, n_nodes + 1)``."""
        return self.potentials(x, state)[:, self._position]

    # -- energy -----------------------------------------------------------------------------------------------------
    def energy(self, x: Tensor, state: State) -> Tensor:
        v = self.potentials(x, state)
        drop = v[:, self._ends[:, 0]] - v[:, self._ends[:, 1]]
        e = 0.5 * (drop * drop) @ self.conductances
        return e - v[:, self._injected_at] @ self.currents

    def dissipated_power(self, x: Tensor, state: State) -> Tensor:
        """``Σ g(V_a − V_b)²`` over the resistors, per example (watts for siemens and volts)."""
        v = self.potentials(x, state)
        drop = v[:, self._ends[:, 0]] - v[:, self._ends[:, 1]]
        return (drop * drop) @ self.conductances

    def kcl_residual(self, x: Tensor, state: State) -> Tensor:
        """The largest Kirchhoff-current imbalance (or diode-complementarity violation) at a free node, per
        example, in amperes."""
        with torch.no_grad():
            grads = self.state_grad(x, state)  # ∂E/∂V = −(net current into the node)
        return kkt_residual(state, grads, self.variables)

    # -- fast paths -------------------------------------------------------------------------------------------------
    @property
    def has_block_minimizer(self) -> bool:
        return True

    def _inc(self, b: int, key: str) -> Tensor:
        return getattr(self, f"_inc{b}_{key}")

    def block_curvature(self, k: int) -> Tensor:
        """Total conductance at each node of block ``k``."""
        g = self.conductances[self._inc(k, "edge")]
        a = g.new_zeros(len(self._group_nodes[k])).index_add(0, self._inc(k, "local"), g)
        return a.clamp_min(torch.finfo(a.dtype).tiny)

    def prepare(self, x: Tensor) -> Tensor:
        self.check_steady_state()
        return self.source_potentials(x)

    def check_steady_state(self) -> None:
        """Refuse a circuit without a unique, bounded steady state where it matters, before it is solved.

        The free nodes that no conductive path (resistors of conductance > 0) joins to ground or a voltage source
        form islands, whose potentials the resistive network does not fix. An island that holds an output node
        (it would read an arbitrary value, 0 V from the solver's start), or that a current source charges with no
        diode to stop it in that direction (its potential would run off to ±∞), is an error. Other islands (a node
        cut off by a conductance trained to 0) do not change any output: they are left where they are, as
        :func:`eqprop.analysis.spice.spice_check` leaves them out. Checked once per parameter update (cached).

        Raises:
            ConfigError: naming the island's nodes and what is wrong with them.
        """
        key = (self.conductances._version, self.currents._version, self.conductances.data_ptr())
        if getattr(self, "_steady_checked", None) == key:
            return
        net = self.netlist
        g = self.conductances.detach().cpu()
        parent = list(range(net.n_nodes + 1))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for (a, b), gk in zip(net.resistors.tolist(), g.tolist(), strict=True):
            if gk > 0:
                parent[find(a)] = find(b)
        anchored = {find(0), *(find(int(v)) for v in net.sources)}
        islands: dict[int, list[int]] = {}
        for v in net.free_nodes().tolist():
            r = find(v)
            if r not in anchored:
                islands.setdefault(r, []).append(v)
        if islands:
            outputs = set(net.outputs.tolist())
            currents = dict.fromkeys(net.injections.tolist(), 0.0)
            for node, i in zip(net.injections.tolist(), self.currents.detach().cpu().tolist(), strict=True):
                currents[node] += i
            fixed_diode = {}  # node -> the directions a diode stops it in: "up" (anode) / "down" (cathode)
            for anode, cathode in net.diodes.tolist():
                fixed_diode.setdefault(anode, set()).add("up")
                fixed_diode.setdefault(cathode, set()).add("down")
            for nodes in islands.values():
                names = ", ".join(net.name(v) for v in nodes[:6]) + (", …" if len(nodes) > 6 else "")
                if outputs & set(nodes):
                    raise ConfigError(
                        f"{self._label()}: output node(s) {names} have no conductive path to ground or a voltage "
                        "source: their potential is undetermined (the solver would report its starting value)",
                        hint="connect them through a resistor of conductance > 0 (a conductance trained to 0 may "
                        "have cut them off)",
                    )
                net_in = sum(currents.get(v, 0.0) for v in nodes)
                stops = set().union(*(fixed_diode.get(v, set()) for v in nodes))
                if net_in != 0.0 and ("up" if net_in > 0 else "down") not in stops:
                    raise ConfigError(
                        f"{self._label()}: current sources push {net_in:+.3g} A into node(s) {names}, which have no "
                        "conductive path to ground or a voltage source and no diode to stop them: the potential "
                        "grows without bound",
                        hint="connect them through a resistor, or remove the current source",
                    )
        self._steady_checked = key

    def block_field(self, k: int, state: State, drive: Any) -> Tensor:
        """``h = Σ g·V_neighbour + I`` at each node of block ``k``."""
        x_sources = drive
        batch = state[0].shape[0]
        v = torch.cat((state[0].new_zeros(batch, 1), x_sources, *state), dim=1)
        g = self.conductances[self._inc(k, "edge")]
        contrib = v[:, self._inc(k, "other")] * g
        h = contrib.new_zeros(batch, len(self._group_nodes[k])).index_add(1, self._inc(k, "local"), contrib)
        inj = self._inc(k, "inj")
        if len(inj):
            h = h.index_add(1, self._inc(k, "inj_local"), self.currents[inj].expand(batch, -1))
        return h

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """``∂E/∂g = ½⟨ΔV²⟩`` per resistor, ``∂E/∂I = −⟨V⟩`` at each current source (batch means)."""
        v = self.potentials(x, state)
        drop = v[:, self._ends[:, 0]] - v[:, self._ends[:, 1]]
        return {"conductances": 0.5 * (drop * drop).mean(0), "currents": -v[:, self._injected_at].mean(0)}

    def to_netlist(self, x: Tensor) -> Netlist:
        """The circuit with its current parameter values and the sources set by one example ``x`` (``(n_inputs,)``
        or ``(1, n_inputs)``): what :mod:`eqprop.analysis.spice` exports."""
        x = x.reshape(1, -1)
        self.check_input(x.to(self.conductances.dtype))
        n = self.netlist
        return Netlist(
            n.n_nodes,
            resistors=n.resistors,
            conductances=self.conductances.detach().double().clamp_min(0),
            diodes=n.diodes,
            sources=n.sources,
            voltages=self.source_potentials(x.to(self.conductances.dtype)).detach().double()[0],
            injections=n.injections,
            currents=self.currents.detach().double(),
            outputs=n.outputs,
            names=dict(n.names),
        )


def _greedy_colouring(nodes: list[int], resistors: Tensor, n: int) -> dict[int, int]:
    """Colour the free nodes so that no resistor joins two nodes of one colour (largest degree first)."""
    neighbours: dict[int, set[int]] = {v: set() for v in nodes}
    for a, b in resistors.tolist():
        if a in neighbours and b in neighbours:
            neighbours[a].add(b)
            neighbours[b].add(a)
    colour: dict[int, int] = {}
    for v in sorted(nodes, key=lambda u: (-len(neighbours[u]), u)):
        taken = {colour[u] for u in neighbours[v] if u in colour}
        c = 0
        while c in taken:
            c += 1
        colour[v] = c
    return colour
