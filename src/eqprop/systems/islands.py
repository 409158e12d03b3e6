"""Before a layered circuit is solved: is its steady state determined and bounded?

A node of a layered resistive network is *anchored* when a path of conductances ``> 0`` joins it to the input
sources (which hold their potentials). The nodes that are not form islands whose potentials the resistive network
does not fix: an island holding an output node reads an arbitrary value, and one into which the bias currents push
a net current that no diode stops runs off to infinity (an iterative solver used to stop at 1e306 V and call it
converged). Other islands (a hidden node cut off by conductances trained to 0, with no net current) change nothing
and are left alone. :class:`~eqprop.systems.netlist.ResistiveCircuit` makes the same check on arbitrary graphs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from eqprop.errors import ConfigError

__all__ = ["check_layered_circuit"]


def _anchored(conductances: Sequence[Tensor], first_rows: Tensor) -> list[Tensor]:
    """Per layer, which nodes a path of conductances > 0 joins to the inputs (forward, then back, to a fixed point)."""
    anchored = [first_rows > 0]
    for k in range(1, len(conductances)):  # (g_0 is the largest: its row sums are given)
        anchored.append((conductances[k] > 0).to(torch.float32) @ anchored[k - 1].to(torch.float32) > 0)
    if all(bool(a.all()) for a in anchored):  # the usual case: one host sync per layer
        return anchored
    conn = [g > 0 for g in conductances]
    for _ in range(len(conn)):
        before = [a.clone() for a in anchored]
        for k in range(len(conn) - 2, -1, -1):  # back from the layer above
            anchored[k] |= (anchored[k + 1].to(torch.float32) @ conn[k + 1].to(torch.float32)) > 0
        for k in range(1, len(conn)):
            anchored[k] |= (conn[k].to(torch.float32) @ anchored[k - 1].to(torch.float32)) > 0
        if all(bool(torch.equal(a, b)) for a, b in zip(anchored, before, strict=True)):
            break
    return anchored


def check_layered_circuit(
    label: str,
    conductances: Sequence[Tensor],
    biases: Sequence[Tensor],
    stops: Sequence[tuple[Tensor, Tensor]],
    *,
    first_rows: Tensor,
) -> None:
    """Raise :class:`ConfigError` when a layered circuit's steady state is undetermined or unbounded.

    Args:
        label: the system, for the message.
        conductances: ``g_k`` of shape ``(n_{k+1}, n_k)``, layer 0 being the inputs (``g_0`` joins them to layer 1).
        biases: the current injected into each node of each layer above the inputs.
        stops: for each hidden layer, ``(up, down)``: per node, whether a diode stops its potential rising
            (falling). The output layer has none.
        first_rows: ``g_0.sum(1)`` (the first layer's conductance to the inputs), often already computed.
    """
    with torch.no_grad():
        anchored = _anchored(conductances, first_rows)
        if all(bool(a.all()) for a in anchored):
            return
        last = len(anchored) - 1
        cut = torch.nonzero(~anchored[last]).flatten().tolist()
        if cut:
            names = ", ".join(f"out{i}" for i in cut[:6]) + (", …" if len(cut) > 6 else "")
            raise ConfigError(
                f"{label}: output node(s) {names} have no conductive path to an input source: their potential is "
                "undetermined (the solver would report a value set by its start or by a vanishing conductance)",
                hint="a conductance trained to 0 may have cut them off; raise the conductances' lower bound",
            )
        # islands of hidden nodes: join the cut-off nodes joined by a conductance > 0, sum their currents
        nodes = [(k, int(i)) for k in range(last) for i in torch.nonzero(~anchored[k]).flatten().tolist()]
        parent = {v: v for v in nodes}

        def find(v: tuple[int, int]) -> tuple[int, int]:
            while parent[v] != v:
                parent[v] = parent[parent[v]]
                v = parent[v]
            return v

        for k in range(1, last):
            g = conductances[k]
            for i, j in torch.nonzero(g > 0).tolist():  # (node of layer k, node of layer k-1)
                a, b = (k, i), (k - 1, j)
                if a in parent and b in parent:
                    parent[find(a)] = find(b)
        groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for v in nodes:
            groups.setdefault(find(v), []).append(v)
        for members in groups.values():
            net = sum(float(biases[k][i]) for k, i in members)
            up = any(bool(stops[k][0][i]) for k, i in members)
            down = any(bool(stops[k][1][i]) for k, i in members)
            if (net > 0 and not up) or (net < 0 and not down):
                names = ", ".join(f"h{k + 1}_{i}" for k, i in members[:6]) + (
                    ", …" if len(members) > 6 else ""
                )
                raise ConfigError(
                    f"{label}: bias currents push {net:+.3g} A into hidden node(s) {names}, which have no "
                    "conductive path to an input source and no diode to stop them: the potential grows without bound",
                    hint="a conductance trained to 0 may have cut them off; raise the conductances' lower bound",
                )
