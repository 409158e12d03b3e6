"""The system kinds of a run configuration: one frozen dataclass per kind, whose fields are that kind's settings.

``SYSTEMS`` maps ``system.kind`` to its config class. Each class builds its system and says what the run needs
to know before building it: the input it reads, its output width and how many layers per-layer settings
(learning rates, AEqprop's ε) have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import torch

from eqprop.errors import ConfigError
from eqprop.systems.analog_config import AnalogResistiveConfig
from eqprop.systems.base import EnergySystem
from eqprop.systems.config_checks import Layered as _Layered
from eqprop.systems.config_checks import per_layer as _per_layer
from eqprop.systems.config_checks import widths as _widths
from eqprop.systems.conv_hopfield import ConvHopfield
from eqprop.systems.conv_vector_field import ConvVectorField
from eqprop.systems.elastic_config import CentralForceConfig
from eqprop.systems.flow_network import FlowNetwork, pick_terminals, random_graph
from eqprop.systems.hopfield import DeepHopfield
from eqprop.systems.lagrangian.configs import (
    CoupledOscillatorsConfig,
    HamiltonianRNNConfig,
    SpringChainConfig,
)
from eqprop.systems.phase_network import PhaseNetwork
from eqprop.systems.quantum.configs import ObservableReadoutConfig, QuantumIsingConfig
from eqprop.systems.resistive import DeepResistive
from eqprop.systems.smooth_hopfield import SmoothHopfield
from eqprop.systems.spring_network import SpringNetwork, pick_nodes, triangulated_network
from eqprop.systems.vector_field import VectorFieldHopfield

__all__ = [
    "SYSTEMS",
    "SYSTEM_COSTS",
    "AnalogResistiveConfig",
    "ConvHopfieldConfig",
    "ConvVectorFieldConfig",
    "DeepHopfieldConfig",
    "DeepResistiveConfig",
    "FlowNetworkConfig",
    "SmoothHopfieldConfig",
    "SystemConfig",
    "VectorFieldConfig",
]


class SystemConfig(Protocol):
    """What the run asks of a system kind's settings."""

    kind: ClassVar[str]

    @property
    def input_shape(self) -> Sequence[int]:
        """The shape of one input: ``(features,)`` for a dense system (images are flattened), else
        ``(channels, height, width)``."""
        ...

    @property
    def layers(self) -> int:
        """Weight matrices (or kernels): the length of per-layer settings."""
        ...

    @property
    def output_width(self) -> int:
        """Units of the output layer."""
        ...

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> EnergySystem:
        """The system, initialised from ``generator``; ``boxed_output``: bound the output units like the hidden
        ones unless ``output_bounds`` says otherwise (a readout reads them)."""
        ...

    def describe(self) -> str:
        """The architecture in one line, e.g. ``784-1024-10 deep_hopfield``."""
        ...


def _box(bounds: list[float] | None) -> tuple[float, float] | None:
    return None if bounds is None else (bounds[0], bounds[1])


@dataclass(frozen=True)
class DeepHopfieldConfig(_Layered):
    """A layered Hopfield network (:class:`~eqprop.DeepHopfield`)."""

    kind: ClassVar[str] = "deep_hopfield"

    sizes: list[int] = field(default_factory=lambda: [784, 1024, 10])
    """Layer widths, input first."""
    gains: float | list[float] = 0.7
    """Weight init U(±gain/√fan_in): one gain, or one per weight matrix."""
    bounds: list[float] = field(default_factory=lambda: [0.0, 1.0])
    """Box of the hidden units (the hard sigmoid)."""
    output_bounds: list[float] | None = None
    """Box of the output units; None = linear output (the hidden units' box under a readout)."""
    energy_form: Literal["boxed", "rho"] = "boxed"
    """``boxed``: ½‖s‖² − b·s − s·Ws' on boxed units; ``rho``: the 2017 paper's form with ρ(s) = clip(s)."""
    clip: float | None = None
    """Clip every weight and bias to ``[−clip, clip]`` after each update (an Ising machine's realisable couplings:
    Laydevant et al. use 1); None: no clipping."""
    self_curvature: float = 1.0
    """``a`` in the self term ``½a‖s‖²``: 2 with gradient_flow steps of 0.5 is Laborieux et al.'s ``my_hard_sig``."""
    activation: Literal["hard_sigmoid", "sigmoid"] = "hard_sigmoid"
    """``sigmoid``: the units boxed to [0, 1] settle to σ(h) = sigmoid(4(h − ½)) (Laborieux et al.'s
    ``my_sigmoid``; relax with the ``synchronous`` solver) instead of clip(h)."""

    def __post_init__(self) -> None:
        _widths(self.sizes)
        _per_layer("gains", self.gains, self.layers, f"sizes {self.sizes}")
        if not 0 < self.self_curvature < float("inf"):
            raise ConfigError(f"system.self_curvature = {self.self_curvature}: must be a finite number > 0")

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> DeepHopfield:
        out = (
            self.output_bounds if self.output_bounds is not None else (self.bounds if boxed_output else None)
        )
        return DeepHopfield(
            self.sizes,
            bounds=_box(self.bounds),
            output_bounds=_box(out),
            gains=self.gains,
            energy_form=self.energy_form,
            self_curvature=self.self_curvature,
            activation=self.activation,
            clip=self.clip,
            generator=generator,
        )

    def describe(self) -> str:
        sig = " (sigmoid units)" if self.activation == "sigmoid" else ""
        return "-".join(map(str, self.sizes)) + f" {self.kind}{sig}"


@dataclass(frozen=True)
class ConvHopfieldConfig:
    """A convolutional Hopfield network (:class:`~eqprop.ConvHopfield`): conv layers with 2×2 pooling, then
    dense layers."""

    kind: ClassVar[str] = "conv_hopfield"

    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    """(channels, height, width) of the input images."""
    channels: list[int] = field(default_factory=lambda: [32, 64])
    """Output channels of each conv layer (each followed by 2×2 pooling)."""
    kernel_size: int | list[int] = 5
    padding: int | list[int] = 0
    pool: Literal["avg", "max"] = "avg"
    dense: list[int] = field(default_factory=lambda: [10])
    """Widths of the dense layers after the conv stack, output last."""
    gains: float | list[float] = 0.7
    """Weight init U(±gain/√fan_in): one gain, or one per weight (convs, then dense)."""
    bounds: list[float] = field(default_factory=lambda: [0.0, 1.0])
    output_bounds: list[float] | None = None
    self_curvature: float = 1.0
    """``a`` in the self term ``½a‖s‖²``: 2 with the synchronous solver is Laborieux et al.'s ``my_hard_sig``."""
    activation: Literal["hard_sigmoid", "sigmoid"] = "hard_sigmoid"
    """``sigmoid``: units settling to sigmoid(4(h − ½)) (their ``my_sigmoid``; relax with ``synchronous``)."""

    def __post_init__(self) -> None:
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(
                f"system.input_shape = {list(self.input_shape)}: give (channels, height, width), e.g. [1, 28, 28]"
            )
        if not self.channels or not self.dense or min(*self.channels, *self.dense) < 1:
            raise ConfigError(
                f"system.channels = {self.channels}, system.dense = {self.dense}: need at least one conv layer "
                "and one dense layer, all of positive width"
            )
        _per_layer("gains", self.gains, self.layers, f"channels {self.channels} and dense {self.dense}")

    @property
    def layers(self) -> int:
        return len(self.channels) + len(self.dense)

    @property
    def output_width(self) -> int:
        return self.dense[-1]

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> ConvHopfield:
        return self._build(ConvHopfield, boxed_output=boxed_output, generator=generator)

    def _build(self, cls: type[ConvHopfield], **kwargs: Any) -> Any:
        """``cls`` (ConvHopfield or a subclass) from these settings; ``kwargs``: ``boxed_output``, ``generator``
        and the subclass's own."""
        boxed = kwargs.pop("boxed_output")
        out = self.output_bounds if self.output_bounds is not None else (self.bounds if boxed else None)
        return cls(
            self.input_shape,
            self.channels,
            self.dense,
            kernel_size=self.kernel_size,
            padding=self.padding,
            pool=self.pool,
            bounds=_box(self.bounds),
            output_bounds=_box(out),
            gains=self.gains,
            self_curvature=self.self_curvature,
            activation=self.activation,
            **kwargs,
        )

    def describe(self) -> str:
        convs = "-".join(f"conv{c}" for c in self.channels)
        shape = "x".join(map(str, self.input_shape))
        dense = "-".join(map(str, self.dense))
        return f"{shape}-{convs}-{dense} {self.kind} (k{self.kernel_size}, {self.pool}-pool)"


@dataclass(frozen=True)
class DeepResistiveConfig(_Layered):
    """A deep resistive network of conductances and ideal diodes (:class:`~eqprop.DeepResistive`)."""

    kind: ClassVar[str] = "deep_resistive"

    sizes: list[int] = field(default_factory=lambda: [784, 1024, 10])
    """Layer widths, input first; each input feature drives two voltage sources, +gain·x and −gain·x."""
    input_gain: float = 1.0
    """Amplification of the input voltage sources."""
    gains: float | list[float] = 1.0
    """Conductance init max(0, U(±gain/√fan_in)): one gain, or one per conductance matrix."""

    def __post_init__(self) -> None:
        _widths(self.sizes)
        if not 0 < self.input_gain < float("inf"):
            raise ConfigError(f"system.input_gain = {self.input_gain}: must be a finite number > 0")
        _per_layer("gains", self.gains, self.layers, f"sizes {self.sizes}")

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> DeepResistive:
        return DeepResistive(self.sizes, input_gain=self.input_gain, gains=self.gains, generator=generator)

    def describe(self) -> str:
        return "-".join(map(str, self.sizes)) + f" {self.kind} (input gain {self.input_gain:g})"


@dataclass(frozen=True)
class VectorFieldConfig(_Layered):
    """A layered network with backward weights of its own (:class:`~eqprop.systems.VectorFieldHopfield`): the
    dynamics of vector-field EqProp, which has no energy."""

    kind: ClassVar[str] = "vector_field"

    sizes: list[int] = field(default_factory=lambda: [784, 512, 10])
    """Layer widths, input first (at least one hidden layer)."""
    gains: float | list[float] = 1.0
    """Init U(±gain/√fan_in) of the forward weights and of the backward ones: one gain, or one per layer."""
    bounds: list[float] = field(default_factory=lambda: [0.0, 1.0])
    output_bounds: list[float] | None = None
    tied: bool = False
    """Start with the backward weights equal to the forward ones."""

    def __post_init__(self) -> None:
        _widths(self.sizes)
        if len(self.sizes) < 3:
            raise ConfigError(f"system.sizes = {self.sizes}: a vector-field net needs a hidden layer")
        _per_layer("gains", self.gains, self.layers, f"sizes {self.sizes}")

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> VectorFieldHopfield:
        out = (
            self.output_bounds if self.output_bounds is not None else (self.bounds if boxed_output else None)
        )
        return VectorFieldHopfield(
            self.sizes,
            bounds=_box(self.bounds),
            output_bounds=_box(out),
            gains=self.gains,
            tied=self.tied,
            generator=generator,
        )

    def describe(self) -> str:
        return "-".join(map(str, self.sizes)) + f" {self.kind}" + (" (tied at init)" if self.tied else "")


@dataclass(frozen=True)
class ConvVectorFieldConfig(ConvHopfieldConfig):
    """A convolutional network with backward weights of its own (:class:`~eqprop.systems.ConvVectorField`,
    Laborieux et al.'s ``VF_CNN``): conv layers with 2×2 pooling, then dense layers; no energy."""

    kind: ClassVar[str] = "conv_vector_field"

    tied: bool = False
    """Start with the backward weights equal to the forward ones."""

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> ConvVectorField:
        # (a conv net always has a hidden layer: at least one conv and one dense layer)
        return self._build(ConvVectorField, boxed_output=boxed_output, generator=generator, tied=self.tied)  # type: ignore[no-any-return]

    def describe(self) -> str:
        return super().describe() + (" (tied at init)" if self.tied else "")


@dataclass(frozen=True)
class FlowNetworkConfig:
    """A linear flow (resistor) network on a graph (:class:`~eqprop.systems.FlowNetwork`), Stern et al.'s coupled
    learning network: the input applied as pressure drops across edges (or pressures at nodes), the output read
    the same way; relax it with the ``direct`` solver."""

    kind: ClassVar[str] = "flow_network"

    nodes: int = 300
    edges: int = 1500
    """Edges of a random graph (each a pair of distinct nodes drawn uniformly, from ``graph_seed``)."""
    edge_list: list[list[int]] | None = None
    """The graph itself, as ``[[a, b], ...]`` (then ``edges`` is ignored)."""
    graph_seed: int = 0
    """Seed of the random graph and of the random choice of terminals: the architecture, the same for every
    ``train.seed``."""
    ground: list[int] = field(default_factory=lambda: [0])
    inputs: int = 100
    """Input terminals: one per input feature."""
    outputs: int = 3
    input_on: Literal["edges", "nodes"] = "edges"
    output_on: Literal["edges", "nodes"] = "edges"
    sources: list[int] | None = None
    """The input edges (or nodes); None = drawn at random (edges forming no cycle, nodes other than the ground)."""
    targets: list[int] | None = None
    """The output edges (or nodes); None = drawn at random like ``sources``."""
    conductance: list[float] = field(default_factory=lambda: [1.0, 0.1])
    """Initial conductances ``mean·(1 + spread·U(−½, ½))`` as ``[mean, spread]`` (Stern: 1 ± 5 %)."""
    bounds: list[float] = field(default_factory=lambda: [1e-6, 1e4])
    """``[k_min, k_max]``, enforced after every update."""

    def __post_init__(self) -> None:
        if self.nodes < 2 or self.inputs < 1 or self.outputs < 1:
            raise ConfigError(
                f"system.nodes = {self.nodes}, inputs = {self.inputs}, outputs = {self.outputs}: need >= 2, >= 1, >= 1"
            )
        if self.edge_list is None and self.edges < 1:
            raise ConfigError(f"system.edges = {self.edges}: need at least one edge")
        for name in ("input_on", "output_on"):
            if getattr(self, name) not in ("edges", "nodes"):
                raise ConfigError(f"system.{name} = {getattr(self, name)!r}: choose 'edges' or 'nodes'")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.inputs,)

    @property
    def layers(self) -> int:
        return 1

    @property
    def output_width(self) -> int:
        return self.outputs

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> FlowNetwork:
        graph = torch.Generator().manual_seed(self.graph_seed)
        pairs = (
            torch.tensor(self.edge_list, dtype=torch.long)
            if self.edge_list is not None
            else random_graph(self.nodes, self.edges, graph)
        )
        sources, targets = pick_terminals(
            self.nodes,
            pairs,
            self.ground,
            (self.input_on, self.inputs, self.sources),
            (self.output_on, self.outputs, self.targets),
            graph,
        )
        return FlowNetwork(
            self.nodes,
            pairs,
            ground=self.ground,
            source_nodes=sources if self.input_on == "nodes" else (),
            source_edges=sources if self.input_on == "edges" else (),
            target_nodes=targets if self.output_on == "nodes" else (),
            target_edges=targets if self.output_on == "edges" else (),
            conductance=(self.conductance[0], self.conductance[1]),
            bounds=(self.bounds[0], self.bounds[1]),
            generator=generator,
        )

    def describe(self) -> str:
        size = len(self.edge_list) if self.edge_list is not None else self.edges
        return (
            f"{self.kind}: {self.nodes} nodes, {size} edges, {self.inputs} input {self.input_on}, "
            f"{self.outputs} output {self.output_on}"
        )


@dataclass(frozen=True)
class SmoothHopfieldConfig(_Layered):
    """A layered Hopfield network with a smooth, holomorphic activation (:class:`~eqprop.systems.SmoothHopfield`):
    the network of holomorphic EqProp; relax it with ``gradient_flow``."""

    kind: ClassVar[str] = "smooth_hopfield"

    sizes: list[int] = field(default_factory=lambda: [784, 512, 10])
    activation: Literal["sigmoid", "tanh"] = "sigmoid"
    """``sigmoid``: sigmoid(4(s − ½)), Laborieux et al.'s ``my_sigmoid``; or ``tanh``."""
    gains: float | list[float] = 1.0

    def __post_init__(self) -> None:
        _widths(self.sizes)
        _per_layer("gains", self.gains, self.layers, f"sizes {self.sizes}")

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> SmoothHopfield:
        return SmoothHopfield(self.sizes, activation=self.activation, gains=self.gains, generator=generator)

    def describe(self) -> str:
        return "-".join(map(str, self.sizes)) + f" {self.kind} ({self.activation})"


@dataclass(frozen=True)
class SpringNetworkConfig:
    """A linear elastic network (:class:`~eqprop.systems.SpringNetwork`): random points in the unit square joined by
    the springs of their Delaunay triangulation, three nodes pinned, the input as forces on source nodes, the output
    the x-displacements of target nodes; relax with the ``direct`` solver."""

    kind: ClassVar[str] = "spring_network"

    nodes: int = 300
    graph_seed: int = 0
    """Seed of the geometry and of the choice of pinned, source and target nodes (the architecture)."""
    pinned: int = 3
    inputs: int = 100
    outputs: int = 3
    stiffness: list[float] = field(default_factory=lambda: [1.0, 0.1])
    """Initial stiffnesses ``mean·(1 + spread·U(−½, ½))`` as ``[mean, spread]``."""
    bounds: list[float] = field(default_factory=lambda: [1e-4, 1e2])
    grounding: float = 1e-6

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.inputs,)

    @property
    def layers(self) -> int:
        return 1

    @property
    def output_width(self) -> int:
        return self.outputs

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> SpringNetwork:
        geometry = torch.Generator().manual_seed(self.graph_seed)
        pos, pairs = triangulated_network(self.nodes, geometry)
        pinned, sources, targets = pick_nodes(self.nodes, [self.pinned, self.inputs, self.outputs], geometry)
        return SpringNetwork(
            pos,
            pairs,
            pinned=pinned,
            sources=sources,
            targets=targets,
            stiffness=(self.stiffness[0], self.stiffness[1]),
            bounds=(self.bounds[0], self.bounds[1]),
            grounding=self.grounding,
            generator=generator,
        )

    def describe(self) -> str:
        return f"{self.kind}: {self.nodes} nodes (Delaunay), {self.inputs} loaded, {self.outputs} read"


@dataclass(frozen=True)
class PhaseNetworkConfig(_Layered):
    """Phase oscillators (:class:`~eqprop.systems.PhaseNetwork`): ``oscillator_ising`` is Gower's OIM (amplitude
    input, fields along phase 0, a trainable second-harmonic sync term); relax with ``gradient_flow``, cost
    ``phase_squared_error``."""

    kind: ClassVar[str] = "oscillator_ising"

    sizes: list[int] = field(default_factory=lambda: [784, 512, 10])
    input: Literal["amplitude", "phase"] = "amplitude"
    """``amplitude``: the input is a field ``J⁰x`` on cos φ (OIM); ``phase``: input oscillators held at ``π·x`` (XY)."""
    sync: bool = True
    """The trainable second-harmonic term ``−½K cos 2φ`` (initial 0)."""
    field_phases: bool = False
    """Fields with a trainable phase ``|h| cos(φ − ψ_h)`` (XY networks), not only along phase 0."""
    topology: Literal["layered", "all_to_all"] = "layered"
    initial_phase: float | Literal["random"] = math.pi / 2
    """Where every phase starts: Gower's π/2, or ``"random"`` (uniform, per example: a restart)."""
    gains: float = 1.0
    """Weights start ``U(±gain/√fan_in)``: torch's ``nn.Linear`` default at 1 (Gower's init)."""

    def __post_init__(self) -> None:
        _widths(self.sizes)

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> PhaseNetwork:
        return PhaseNetwork(
            self.sizes,
            input=self.input,
            sync=self.sync,
            field_phases=self.field_phases,
            topology=self.topology,
            initial_phase=self.initial_phase,
            gains=self.gains,
            generator=generator,
        )

    def describe(self) -> str:
        return "-".join(map(str, self.sizes)) + f" {self.kind} ({self.input} input, {self.topology})"


@dataclass(frozen=True)
class XYNetworkConfig(PhaseNetworkConfig):
    """An XY network (Wang, Wanjura & Marquardt 2024): ``E = −ΣJ cos(φᵢ − φⱼ) − Σh cos(φᵢ − ψᵢ)``, the input as
    oscillator phases ``π·x``, fields with trainable phases, no sync term; layered or all-to-all."""

    kind: ClassVar[str] = "xy_network"

    input: Literal["amplitude", "phase"] = "phase"
    sync: bool = False
    field_phases: bool = True


SYSTEMS: dict[str, type] = {
    cls.kind: cls
    for cls in (
        DeepHopfieldConfig,
        ConvHopfieldConfig,
        ConvVectorFieldConfig,
        DeepResistiveConfig,
        AnalogResistiveConfig,
        FlowNetworkConfig,
        VectorFieldConfig,
        SmoothHopfieldConfig,
        SpringChainConfig,
        CoupledOscillatorsConfig,
        HamiltonianRNNConfig,
        PhaseNetworkConfig,
        XYNetworkConfig,
        SpringNetworkConfig,
        QuantumIsingConfig,
        CentralForceConfig,
    )
}
"""``system.kind`` → its config class."""

SYSTEM_COSTS: dict[str, type] = {cls.kind: cls for cls in (ObservableReadoutConfig,)}
"""``cost.kind`` → its config class, for the cost kinds that belong to a family of systems: a cost built from the
system's own operators (a quantum observable) lives beside the system, since :mod:`eqprop.costs`, which the
systems import, cannot import it. The run configuration reads these beside ``eqprop.costs.COSTS``."""
