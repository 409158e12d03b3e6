r"""Linear flow (or resistor) networks on arbitrary graphs: the systems of coupled learning (Stern et al.).

References:
    Stern, Hexner, Rocks & Liu (2021), "Supervised learning in physical networks: from machine learning to learning
    machines", Phys. Rev. X 11, 021045; Stern's notebook ``NachiStern/MNIST-Contrasive-Local-Learning-Networks``
    (the 10×10-digit network: 300 nodes, 1500 edges, 100 input edges, 3 output edges).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem

__all__ = ["FlowNetwork", "pick_terminals", "random_graph"]


def random_graph(nodes: int, edges: int, generator: torch.Generator | None = None) -> Tensor:
    """``edges`` random pairs of distinct nodes, ``(edges, 2)``, as Stern's notebook draws them (repeated pairs
    allowed: parallel pipes)."""
    if nodes < 2 or edges < 1:
        raise ConfigError(f"random_graph(nodes={nodes}, edges={edges}): need at least 2 nodes and 1 edge")
    first = torch.randint(0, nodes, (edges,), generator=generator)
    shift = torch.randint(1, nodes, (edges,), generator=generator)  # a different node, uniformly
    return torch.stack((first, (first + shift) % nodes), 1)


def _rows_times(rows: Tensor, matrix: Tensor) -> Tensor:
    """``rows @ matrixᵀ`` for a sparse ``matrix`` ``(m, n)`` and dense ``rows`` ``(batch, n)``: ``(batch, m)``."""
    return torch.sparse.mm(matrix, rows.t()).t()


def pick_terminals(
    nodes: int,
    pairs: Tensor,
    ground: Sequence[int],
    inputs: tuple[str, int, Sequence[int] | None],
    outputs: tuple[str, int, Sequence[int] | None],
    generator: torch.Generator,
) -> tuple[list[int], list[int]]:
    """The input and output terminals: as given, or drawn at random. Each of ``inputs`` / ``outputs`` is
    ``(on, count, given)`` with ``on`` ``"edges"`` or ``"nodes"``. Random edges are taken in a random order,
    skipping any that would close a loop of terminal edges (whose drops would be over-determined) or that repeat;
    random nodes avoid the ground and each other."""
    parent = list(range(nodes))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    taken_nodes = set(ground)
    chosen: list[list[int]] = []
    for on, count, given in (inputs, outputs):
        if given is not None:
            if len(given) != count:
                raise ConfigError(f"FlowNetwork: {len(given)} terminals given for {count} {on}")
            picked = list(given)
            for t in picked:
                if on == "edges":
                    parent[find(int(pairs[t, 0]))] = find(int(pairs[t, 1]))
                else:
                    taken_nodes.add(t)
        else:
            picked = []
            pool = torch.randperm(len(pairs) if on == "edges" else nodes, generator=generator).tolist()
            for t in pool:
                if len(picked) == count:
                    break
                if on == "edges":
                    a, b = find(int(pairs[t, 0])), find(int(pairs[t, 1]))
                    if a == b or any(t in c for c in chosen):
                        continue
                    parent[a] = b
                elif t in taken_nodes:
                    continue
                else:
                    taken_nodes.add(t)
                picked.append(t)
            if len(picked) < count:
                raise ConfigError(
                    f"FlowNetwork: the graph has room for only {len(picked)} of {count} terminal {on}"
                )
        chosen.append(picked)
    return chosen[0], chosen[1]


class FlowNetwork(EnergySystem):
    r"""A linear flow network (pipes of conductance ``k_e``, or resistors): node pressures ``p``, and the power

    .. math::
        E(k, x, p) = ½ \sum_e k_e (p_{a_e} − p_{b_e})²

    minimised subject to the boundary conditions: ``ground`` nodes at pressure 0; the input ``x`` imposes the
    pressure at each source node and the pressure drop ``p_a − p_b`` across each source edge; the output ``o`` is
    the pressure at each target node and the drop across each target edge. The state holds the free pressures
    (``p``: one per set of nodes tied together by source and target edges that has no fixed pressure) and the
    outputs (``o``, the last variable, the one a cost reads and coupled learning clamps). Every node pressure is an
    affine function of them and of ``x``, fixed by the graph, so ``E`` is an unconstrained quadratic in the state,
    with a Hessian shared by every example: :class:`~eqprop.solvers.DirectSolver` factors it once per phase and
    solves the whole batch. ``∂E/∂k_e = ½ Δp_e²``: coupled learning's update ``−(α/η)·½(Δp_C² − Δp_F²)``.

    Args:
        nodes: number of nodes.
        edges: ``(E, 2)`` node pairs (pipes); an edge may appear twice (parallel pipes), not as a self-loop.
        ground: nodes held at pressure 0 (at least one, or a source node, must anchor every part of the graph).
        source_nodes, source_edges: where the input is applied, in that order in ``x``: a node pressure, or a
            pressure drop across an edge (an index into ``edges``).
        target_nodes, target_edges: the outputs, in that order in ``o``.
        conductance: ``(mean, spread)`` of the initial conductances, ``k ~ mean·(1 + spread·U(−½, ½))`` (Stern:
            1 ± 5 %).
        bounds: ``(k_min, k_max)``, enforced after every update (Stern: 1e-6 and 1e4).
        generator: for the initial conductances.

    Raises:
        ConfigError: a node out of range, a self-loop, a node or edge used twice as a terminal, no output, a part
            of the graph without a fixed pressure (a floating node, or a graph in pieces), a cycle of source and
            target edges (over-determined drops), bounds that are not ``0 ≤ k_min < k_max``.
    """

    def __init__(
        self,
        nodes: int,
        edges: Sequence[Sequence[int]] | Tensor,
        *,
        ground: Sequence[int] = (0,),
        source_nodes: Sequence[int] = (),
        source_edges: Sequence[int] = (),
        target_nodes: Sequence[int] = (),
        target_edges: Sequence[int] = (),
        conductance: tuple[float, float] = (1.0, 0.1),
        bounds: tuple[float, float] = (1e-6, 1e4),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        pairs = torch.as_tensor(edges, dtype=torch.long)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 2:
            raise ConfigError(f"FlowNetwork(nodes={nodes!r}): need an integer >= 2")
        if pairs.dim() != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            raise ConfigError(f"FlowNetwork: edges must be (E, 2) node pairs, got shape {tuple(pairs.shape)}")
        if int(pairs.min()) < 0 or int(pairs.max()) >= nodes:
            raise ConfigError(f"FlowNetwork: an edge names a node outside 0..{nodes - 1}")
        if bool((pairs[:, 0] == pairs[:, 1]).any()):
            e = int((pairs[:, 0] == pairs[:, 1]).nonzero()[0])
            raise ConfigError(f"FlowNetwork: edge {e} is a self-loop ({int(pairs[e, 0])} → itself)")
        lo, hi = (float(b) for b in bounds)
        if not 0 <= lo < hi:
            raise ConfigError(f"FlowNetwork(bounds={tuple(bounds)!r}): need 0 <= k_min < k_max")
        self.n_nodes, self.bounds = nodes, (lo, hi)
        self.register_buffer("edge_index", pairs, persistent=False)
        terminals = {
            "ground": list(ground),
            "source_nodes": list(source_nodes),
            "source_edges": list(source_edges),
            "target_nodes": list(target_nodes),
            "target_edges": list(target_edges),
        }
        self.terminals = terminals
        self.input_shape = (len(terminals["source_nodes"]) + len(terminals["source_edges"]),)
        n_out = len(terminals["target_nodes"]) + len(terminals["target_edges"])
        if n_out == 0:
            raise ConfigError("FlowNetwork: no output; give target_nodes or target_edges")
        free_of, offsets, n_free = _parametrise(nodes, pairs, terminals, self.input_shape[0], n_out)
        # p = N s + A [x; o]: N selects each node's free pressure, A holds the imposed offsets.
        n_map = torch.zeros(nodes, n_free, dtype=torch.float64)
        has_free = free_of >= 0
        n_map[has_free.nonzero().squeeze(1), free_of[has_free]] = 1.0
        incidence = torch.zeros(len(pairs), nodes, dtype=torch.float64)
        rows = torch.arange(len(pairs))
        incidence[rows, pairs[:, 0]] += 1.0
        incidence[rows, pairs[:, 1]] -= 1.0
        drop_state = incidence @ torch.cat(
            (n_map, offsets[:, self.input_shape[0] :]), 1
        )  # (E, n_free + n_out)
        drop_input = incidence @ offsets[:, : self.input_shape[0]]  # (E, n_in)
        _check_anchored(nodes, pairs, terminals, free_of)
        dtype = torch.get_default_dtype()
        self.register_buffer("drop_state", drop_state.to(dtype), persistent=False)
        # The same maps as sparse matrices (a few nonzeros per edge), for the products with a batch of states.
        self.register_buffer(
            "sparse_drop_state", drop_state.to(dtype).to_sparse().coalesce(), persistent=False
        )
        self.register_buffer(
            "sparse_drop_state_t", drop_state.t().to(dtype).to_sparse().coalesce(), persistent=False
        )
        self.register_buffer(
            "sparse_drop_input", drop_input.to(dtype).to_sparse().coalesce(), persistent=False
        )
        self.conductances = nn.Parameter(torch.empty(len(pairs)))
        self.conductance_init = (float(conductance[0]), float(conductance[1]))
        self.reset_parameters(generator)
        self.variables = (Variable("p", (n_free,), (None, None)), Variable("o", (n_out,), (None, None)))
        self._hessian_cache: tuple[tuple[int, int, torch.dtype], Tensor] | None = None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        mean, spread = self.conductance_init
        with torch.no_grad():
            u = torch.rand(self.conductances.shape, generator=generator, dtype=self.conductances.dtype)
            self.conductances.copy_(mean * (1.0 + spread * (u - 0.5)))

    def extra_repr(self) -> str:
        t = self.terminals
        return (
            f"nodes={self.n_nodes}, edges={len(self.conductances)}, inputs={self.input_shape[0]} "
            f"({len(t['source_nodes'])} nodes, {len(t['source_edges'])} edges), outputs={self.variables[1].shape[0]}"
        )

    def _label(self) -> str:
        return f"FlowNetwork({self.n_nodes} nodes, {len(self.conductances)} edges)"

    def constrain_parameters(self) -> None:
        """Clip the conductances to ``[k_min, k_max]`` (a pipe cannot have negative or unbounded conductance)."""
        with torch.no_grad():
            self.conductances.clamp_(*self.bounds)

    # -- the quadratic ----------------------------------------------------------------------------------------
    def drops(self, x: Tensor, state: State) -> Tensor:
        """The pressure drop across every edge, ``(batch, E)``."""
        z = torch.cat(tuple(state), 1)
        return _rows_times(z, self.sparse_drop_state) + _rows_times(x, self.sparse_drop_input)

    def energy(self, x: Tensor, state: State) -> Tensor:
        d = self.drops(x, state)
        return 0.5 * (d * d) @ self.conductances

    def dissipated_power(self, x: Tensor, state: State) -> Tensor:
        """``Σ k Δp²`` over the pipes (or resistors), per example: the power the flow dissipates."""
        d = self.drops(x, state)
        return (d * d) @ self.conductances

    def prepare(self, x: Tensor) -> Tensor:
        """The drops the input imposes, ``(batch, E)`` (computed once per batch)."""
        return _rows_times(x, self.sparse_drop_input)

    def hessian(self) -> Tensor:
        """``∂²E/∂z²`` over the state ``z = (p, o)`` flattened: ``Dᵀ diag(k) D``, shared by the batch (cached until
        the conductances change)."""
        k = self.conductances
        key = (k._version, k.data_ptr(), k.dtype)
        cached = self._hessian_cache
        if cached is not None and cached[0] == key and not torch.is_grad_enabled():
            return cached[1]
        d = self.drop_state.to(k.dtype)
        h = d.t() @ (k.unsqueeze(1) * d)
        if not torch.is_grad_enabled():
            self._hessian_cache = (key, h)
        return h

    def linear_term(self, drive: Tensor) -> Tensor:
        """``b`` in ``∂E/∂z = Hz − b``, ``(batch, n)``: the pull of the imposed drops."""
        return -_rows_times(drive * self.conductances, self.sparse_drop_state_t)

    def state_grad(self, x: Tensor, state: State, drive: Any = None) -> State:
        if drive is None:
            d = self.drops(x, state)
        else:
            d = _rows_times(torch.cat(tuple(state), 1), self.sparse_drop_state) + drive
        g = _rows_times(d * self.conductances, self.sparse_drop_state_t)
        return tuple(g.split([v.shape[0] for v in self.variables], 1))

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """``∂E/∂k_e = ½ Δp_e²``, batch mean."""
        d = self.drops(x, state)
        return {"conductances": 0.5 * (d * d).mean(0)}

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·½⟨Δp_b² − Δp_a²⟩``: coupled learning's and EqProp's local rule (one product per edge)."""
        da, db = self.drops(x, state_a), self.drops(x, state_b)
        g = ((db - da) * (db + da)).mean(0).mul_(0.5 * scale)
        if out is not None and "conductances" in out:
            g = out["conductances"].copy_(g)
        return {"conductances": g}


def _parametrise(
    nodes: int, pairs: Tensor, terminals: dict[str, list[int]], n_in: int, n_out: int
) -> tuple[Tensor, Tensor, int]:
    """Each node's pressure as its set's free pressure plus a fixed combination of ``[x; o]``.

    Source and target edges tie their two ends (``p_a − p_b`` = an input or an output); ground, source and target
    nodes fix a pressure (0, an input, an output). A weighted union-find over those ties gives every node an offset
    from its set's root; a set with a fixed pressure has no free variable. Returns ``free_of`` (the free variable of
    each node, −1 if none), ``offsets`` ``(nodes, n_in + n_out)`` and the number of free variables.
    """
    knowns = n_in + n_out
    parent = list(range(nodes))
    offset = torch.zeros(nodes, knowns, dtype=torch.float64)  # p_node − p_parent
    anchor: dict[int, Tensor] = {}  # root → its pressure as a combination of [x; o]
    used_nodes: dict[int, str] = {}
    used_edges: dict[int, str] = {}

    def find(i: int) -> int:
        path = []
        while parent[i] != i:
            path.append(i)
            i = parent[i]
        for j in reversed(path):  # compress, accumulating offsets to the root
            if parent[j] != i:
                offset[j] += offset[parent[j]]
                parent[j] = i
        return i

    def unit(col: int | None) -> Tensor:
        v = torch.zeros(knowns, dtype=torch.float64)
        if col is not None:
            v[col] = 1.0
        return v

    def fix(node: int, value: Tensor, role: str) -> None:
        if not 0 <= node < nodes:
            raise ConfigError(f"FlowNetwork: {role} node {node} is outside 0..{nodes - 1}")
        if node in used_nodes:
            raise ConfigError(f"FlowNetwork: node {node} is both a {used_nodes[node]} and a {role} node")
        used_nodes[node] = role
        root = find(node)
        if root in anchor:
            raise ConfigError(
                f"FlowNetwork: node {node} ({role}) is tied by source/target edges to a node whose pressure is "
                "already fixed: the pressures are over-determined",
                hint="use fewer ground, source or target terminals in that part of the network",
            )
        anchor[root] = value - offset[node]

    def tie(edge: int, value: Tensor, role: str) -> None:
        if not 0 <= edge < len(pairs):
            raise ConfigError(f"FlowNetwork: {role} edge {edge} is outside 0..{len(pairs) - 1}")
        if edge in used_edges:
            raise ConfigError(f"FlowNetwork: edge {edge} is both a {used_edges[edge]} and a {role} edge")
        used_edges[edge] = role
        a, b = int(pairs[edge, 0]), int(pairs[edge, 1])
        ra, rb = find(a), find(b)
        if ra == rb:
            raise ConfigError(
                f"FlowNetwork: {role} edge {edge} closes a loop of source/target edges: the drops around it are "
                "over-determined",
                hint="choose source and target edges that form no cycle",
            )
        if ra in anchor and rb in anchor:
            raise ConfigError(
                f"FlowNetwork: {role} edge {edge} joins two parts whose pressures are both fixed: over-determined"
            )
        # p_a − p_b = value  ⇒  p_rb = p_ra + off_a − value − off_b: hang rb under ra
        parent[rb] = ra
        offset[rb] = offset[a] - value - offset[b]
        if rb in anchor:
            anchor[ra] = anchor.pop(rb) - offset[rb]

    col = 0
    for n in terminals["ground"]:
        fix(n, unit(None), "ground")
    for n in terminals["source_nodes"]:
        fix(n, unit(col), "source")
        col += 1
    for e in terminals["source_edges"]:
        tie(e, unit(col), "source")
        col += 1
    for n in terminals["target_nodes"]:
        fix(n, unit(col), "target")
        col += 1
    for e in terminals["target_edges"]:
        tie(e, unit(col), "target")
        col += 1
    if not terminals["ground"] and not terminals["source_nodes"]:
        raise ConfigError("FlowNetwork: no node has a fixed pressure; give ground=[...] (or source nodes)")
    roots = [find(i) for i in range(nodes)]
    free_ids: dict[int, int] = {}
    free_of = torch.full((nodes,), -1, dtype=torch.long)
    offsets = offset.clone()
    for i, r in enumerate(roots):
        if r in anchor:
            offsets[i] = offset[i] + anchor[r] if i != r else anchor[r]
        else:
            free_of[i] = free_ids.setdefault(r, len(free_ids))
    # a target node fixes "its" pressure to the output o, which is free: outputs are state, not constants
    return free_of, offsets, len(free_ids)


def _check_anchored(nodes: int, pairs: Tensor, terminals: dict[str, list[int]], free_of: Tensor) -> None:
    """Every node must reach a fixed pressure (ground or a source node) through the pipes and terminal edges."""
    adjacency: list[list[int]] = [[] for _ in range(nodes)]
    for a, b in pairs.tolist():
        adjacency[a].append(b)
        adjacency[b].append(a)
    seen = set(terminals["ground"]) | set(terminals["source_nodes"])
    stack = list(seen)
    while stack:
        i = stack.pop()
        for j in adjacency[i]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    if len(seen) < nodes:
        loose = sorted(set(range(nodes)) - seen)
        shown = ", ".join(map(str, loose[:8])) + (", …" if len(loose) > 8 else "")
        raise ConfigError(
            f"FlowNetwork: {len(loose)} node(s) have no path to a ground or source node ({shown}): their pressure "
            "is undetermined (a floating node, or a graph in pieces)",
            hint="connect them, ground them, or drop them from the graph",
        )
