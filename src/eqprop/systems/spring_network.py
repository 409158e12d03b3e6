r"""Elastic networks: nodes in the plane joined by springs, loaded by the input, read by their displacements
(the mechanical networks of coupled learning, Stern et al. 2020–21)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem

__all__ = ["SpringNetwork", "pick_nodes", "triangulated_network"]


def triangulated_network(nodes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``nodes`` points uniform in the unit square and the edges of their Delaunay triangulation (a rigid network
    once three non-collinear nodes are pinned): ``(positions (N, 2), pairs (E, 2))``."""
    from scipy.spatial import Delaunay

    pos = torch.rand(nodes, 2, generator=generator, dtype=torch.float64)
    tri = Delaunay(pos.numpy()).simplices
    edges = {
        tuple(sorted((int(a), int(b)))) for t in tri for a, b in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))
    }
    return pos, torch.tensor(sorted(edges), dtype=torch.long)


class SpringNetwork(EnergySystem):
    r"""A linear elastic network: nodes at ``positions`` joined by springs of stiffness ``k_e`` along the unit
    vectors ``n̂_e``; small displacements ``u`` (two per free node) stretch spring ``e`` by ``n̂_e·(u_b − u_a)``, and

    .. math::
        E(k, x, u) = ½ \sum_e k_e \big(n̂_e·(u_{b_e} − u_{a_e})\big)^2 + ½ k_0 ‖u‖² − f(x)·u,

    with the input a set of forces (``x_i`` pushes source node ``i`` along x) and the output the x-displacement of
    each target node (the last state variable; coupled learning clamps it). ``pinned`` nodes do not move. ``k₀``
    (tiny) keeps the quadratic form positive definite on a floppy network. Quadratic in ``u`` with one Hessian for the
    batch: relax with the ``direct`` solver. ``∂E/∂k_e = ½(stretch)²``: coupled learning's and EqProp's local rule.

    Args:
        positions: ``(N, 2)`` node coordinates.
        edges: ``(E, 2)`` node pairs.
        pinned: nodes held in place (at least one; three non-collinear ones pin a rigid network).
        sources: nodes the input pushes (one input feature each); targets: nodes read (one output each).
        stiffness: ``(mean, spread)`` of the initial ``k``, ``mean·(1 + spread·U(−½, ½))``.
        bounds: ``(k_min, k_max)`` after every update.
        grounding: ``k₀``.
    """

    def __init__(
        self,
        positions: Tensor,
        edges: Tensor,
        *,
        pinned: Sequence[int],
        sources: Sequence[int],
        targets: Sequence[int],
        stiffness: tuple[float, float] = (1.0, 0.1),
        bounds: tuple[float, float] = (1e-4, 1e2),
        grounding: float = 1e-6,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        pos = torch.as_tensor(positions, dtype=torch.float64)
        pairs = torch.as_tensor(edges, dtype=torch.long)
        n = pos.shape[0]
        if pos.dim() != 2 or pos.shape[1] != 2 or pairs.dim() != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            raise ConfigError("SpringNetwork: positions must be (N, 2) and edges (E, 2) with E >= 1")
        if int(pairs.min()) < 0 or int(pairs.max()) >= n or bool((pairs[:, 0] == pairs[:, 1]).any()):
            raise ConfigError(f"SpringNetwork: edges must join two different nodes among 0 … {n - 1}")
        pinned, sources, targets = list(pinned), list(sources), list(targets)
        used = pinned + sources + targets
        if not pinned or not targets or not sources:
            raise ConfigError("SpringNetwork: give at least one pinned, one source and one target node")
        if len(set(used)) != len(used) or min(used) < 0 or max(used) >= n:
            raise ConfigError(
                f"SpringNetwork: pinned, source and target nodes must be distinct nodes among 0 … {n - 1}"
            )
        lo, hi = bounds
        if not 0 <= lo < hi:
            raise ConfigError(f"SpringNetwork(bounds={bounds}): need 0 <= k_min < k_max")
        d = pos[pairs[:, 1]] - pos[pairs[:, 0]]
        length = d.norm(dim=1)
        if bool((length == 0).any()):
            raise ConfigError(
                "SpringNetwork: two joined nodes sit at the same place (a spring of zero length)"
            )
        unit = d / length.unsqueeze(1)
        # the free degrees of freedom, the outputs' x-displacements last: (node, axis) -> column of the state
        free_nodes = [i for i in range(n) if i not in set(pinned)]
        hidden = [(i, a) for i in free_nodes for a in (0, 1) if not (a == 0 and i in set(targets))]
        order = hidden + [(t, 0) for t in targets]
        column = {dof: c for c, dof in enumerate(order)}
        stretch = torch.zeros(len(pairs), len(order), dtype=torch.float64)  # A: stretch = A u
        for e, (a, b) in enumerate(pairs.tolist()):
            for axis in (0, 1):
                if (b, axis) in column:
                    stretch[e, column[(b, axis)]] += unit[e, axis]
                if (a, axis) in column:
                    stretch[e, column[(a, axis)]] -= unit[e, axis]
        load = torch.zeros(len(sources), len(order), dtype=torch.float64)
        for i, s in enumerate(sources):
            load[i, column[(s, 0)]] = 1.0
        self.register_buffer("stretch_matrix", stretch)
        self.register_buffer("load_matrix", load)
        self.register_buffer("positions", pos)
        self.register_buffer("pairs", pairs)
        self.pinned, self.sources, self.targets = pinned, sources, targets
        self.bounds = (float(lo), float(hi))
        self.grounding = float(grounding)
        mean, spread = stiffness
        self.stiffness = nn.Parameter(
            mean * (1 + spread * (torch.rand(len(pairs), generator=generator, dtype=torch.float64) - 0.5))
        )
        self.input_shape = (len(sources),)
        self.variables = (Variable("u", (len(hidden),)), Variable("output", (len(targets),)))

    def constrain_parameters(self) -> None:
        with torch.no_grad():
            self.stiffness.clamp_(*self.bounds)

    def stretches(self, state: State) -> Tensor:
        """Every spring's stretch ``n̂·(u_b − u_a)``, ``(batch, E)``."""
        return torch.cat(tuple(state), 1) @ self.stretch_matrix.T.to(state[0].dtype)

    def prepare(self, x: Tensor) -> Tensor:
        """The forces on the free degrees of freedom, ``(batch, n)``."""
        return x @ self.load_matrix.to(x.dtype)

    def energy(self, x: Tensor, state: State) -> Tensor:
        z = torch.cat(tuple(state), 1)
        s = self.stretches(state)
        return (
            0.5 * (s * s) @ self.stiffness
            + 0.5 * self.grounding * (z * z).sum(1)
            - (self.prepare(x) * z).sum(1)
        )

    def hessian(self) -> Tensor:
        """``Aᵀ diag(k) A + k₀ I`` over the state flattened (shared by the batch)."""
        a = self.stretch_matrix.to(self.stiffness.dtype)
        return a.T @ (self.stiffness.unsqueeze(1) * a) + self.grounding * torch.eye(a.shape[1], dtype=a.dtype)

    def linear_term(self, drive: Tensor) -> Tensor:
        return drive

    def state_grad(self, x: Tensor, state: State, drive: Any = None) -> State:
        f = self.prepare(x) if drive is None else drive
        z = torch.cat(tuple(state), 1)
        g = z @ self.hessian() - f
        return tuple(g.split([v.shape[0] for v in self.variables], 1))

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        s = self.stretches(state)
        return {"stiffness": 0.5 * (s * s).mean(0)}

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·½⟨s_b² − s_a²⟩``: each spring's own stretch, before and after."""
        sa, sb = self.stretches(state_a), self.stretches(state_b)
        g = ((sb - sa) * (sb + sa)).mean(0).mul_(0.5 * scale)
        if out is not None and "stiffness" in out:
            g = out["stiffness"].copy_(g)
        return {"stiffness": g}

    def extra_repr(self) -> str:
        return (
            f"{self.positions.shape[0]} nodes, {len(self.pairs)} springs, {len(self.sources)} sources, "
            f"{len(self.targets)} targets, {len(self.pinned)} pinned"
        )


def pick_nodes(nodes: int, counts: Sequence[int], generator: torch.Generator) -> list[list[int]]:
    """Disjoint random node sets of the given sizes (pinned, sources, targets)."""
    if sum(counts) > nodes:
        raise ConfigError(
            f"SpringNetwork: {sum(counts)} pinned, source and target nodes but only {nodes} nodes"
        )
    perm = torch.randperm(nodes, generator=generator).tolist()
    out, start = [], 0
    for c in counts:
        out.append(sorted(perm[start : start + c]))
        start += c
    return out
