"""``system.kind = "central_force"``: a nonlinear spring network on a random triangulation, laid out for a strain task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from eqprop.errors import ConfigError
from eqprop.systems.elastic import CentralForceNetwork
from eqprop.systems.spring_network import triangulated_network

__all__ = ["CentralForceConfig", "strain_layout"]


def strain_layout(
    positions: torch.Tensor, edges: torch.Tensor, sources: int, targets: int, pinned: int
) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """Source pairs: the springs nearest the left side; target pairs: those nearest the right side, on nodes of their
    own; pinned: the nodes nearest the bottom that are neither (three of them hold a planar network still)."""
    mid_x = (positions[edges[:, 0], 0] + positions[edges[:, 1], 0]) / 2
    used: set[int] = set()
    src: list[list[int]] = []
    for e in torch.argsort(mid_x).tolist():
        a, b = edges[e].tolist()
        if len(src) < sources and not {a, b} & used:
            src.append([a, b])
            used |= {a, b}
    tgt: list[list[int]] = []
    for e in torch.argsort(mid_x, descending=True).tolist():
        a, b = edges[e].tolist()
        if len(tgt) < targets and not {a, b} & used:
            tgt.append([a, b])
            used |= {a, b}
    pins = [i for i in torch.argsort(positions[:, 1]).tolist() if i not in used][:pinned]
    if len(src) < sources or len(tgt) < targets or len(pins) < pinned:
        raise ConfigError(
            f"system.nodes: too few nodes for {sources} source pairs, {targets} target pairs and {pinned} pinned nodes"
        )
    return src, tgt, pins


@dataclass(frozen=True)
class CentralForceConfig:
    """A :class:`~eqprop.systems.elastic.CentralForceNetwork` on the Delaunay triangulation of ``nodes`` random
    points in the unit square: strains in at source pairs on the left, strains out at target pairs on the right."""

    kind: ClassVar[str] = "central_force"

    nodes: int = 60
    """Random points in the unit square, joined by the springs of their Delaunay triangulation."""
    graph_seed: int = 0
    """Seed of the geometry (the architecture; the initial stiffnesses come from the run's seed)."""
    sources: int = 1
    """Source pairs (input features): springs nearest the left side, strained by the input."""
    targets: int = 1
    """Target pairs (outputs): springs nearest the right side, whose strain is read."""
    pinned: int = 3
    """Nodes held in place (nearest the bottom)."""
    stiffness: float = 1.0
    """Mean initial stiffness."""
    spread: float = 0.1
    """Relative spread of the initial stiffness."""
    input_stiffness: float = 100.0
    """The actuators' stiffness."""
    bounds: list[float] = field(default_factory=lambda: [1e-3, 1e2])
    """Stiffness bounds ``[k_min, k_max]`` after every update."""
    min_length: float = 0.1
    """Rest lengths' lower bound, as a fraction of their reference length."""
    grounding: float = 1e-4
    """k₀: each free node's weak spring to its reference position."""
    train_rest_length: bool = False
    """Train the rest lengths too (the stiffnesses always learn). Off by default: tuning rest lengths prestresses the
    network, whose response then jumps between minima (measured: the allostery task did not converge with them)."""

    def __post_init__(self) -> None:
        if self.nodes < 8:
            raise ConfigError(f"system.nodes = {self.nodes}: need at least 8 nodes")
        if self.sources < 1 or self.targets < 1 or self.pinned < 1:
            raise ConfigError("system.sources, targets and pinned must each be >= 1")
        if len(self.bounds) != 2:
            raise ConfigError(f"system.bounds = {self.bounds}: give [k_min, k_max]")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.sources,)

    @property
    def layers(self) -> int:
        return 1

    @property
    def output_width(self) -> int:
        return self.targets

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> CentralForceNetwork:
        positions, edges = triangulated_network(self.nodes, torch.Generator().manual_seed(self.graph_seed))
        src, tgt, pins = strain_layout(positions, edges, self.sources, self.targets, self.pinned)
        return CentralForceNetwork(
            positions,
            edges,
            pinned=pins,
            sources=src,
            targets=tgt,
            stiffness=(self.stiffness, self.spread),
            input_stiffness=self.input_stiffness,
            bounds=(self.bounds[0], self.bounds[1]),
            min_length=self.min_length,
            grounding=self.grounding,
            train_rest_length=self.train_rest_length,
            generator=generator,
        )

    def describe(self) -> str:
        return (
            f"{self.kind}: {self.nodes} nodes (Delaunay), {self.sources} source pair(s), {self.targets} target "
            f"pair(s), {self.pinned} pinned"
        )
