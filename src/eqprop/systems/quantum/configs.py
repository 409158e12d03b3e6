"""The run-configuration kinds of quantum systems: ``system.kind = "quantum_ising"`` and
``cost.kind = "observable_readout"``.

The cost kind lives here, beside the system, because :class:`~eqprop.systems.quantum.ObservableCost` is built
from the qubit operators: :mod:`eqprop.costs`, which the systems import, cannot import it back.
:data:`eqprop.systems.configs.SYSTEM_COSTS` lists it, and the run configuration reads that table beside
``eqprop.costs.COSTS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from eqprop.errors import ConfigError
from eqprop.systems.quantum.cost import ObservableCost
from eqprop.systems.quantum.operators import check_memory
from eqprop.systems.quantum.system import QuantumSystem, transverse_ising_network

__all__ = ["ObservableReadoutConfig", "QuantumIsingConfig"]


@dataclass(frozen=True)
class QuantumIsingConfig:
    """A transverse-field Ising network of qubits (:func:`~eqprop.systems.quantum.transverse_ising_network`): one
    input qubit per feature, ``hidden`` hidden qubits and a readout qubit last; ``H₀ = −transverse·Σ X_q``, the input
    ``x_i`` a field ``x_i·Z_i`` (or ``X_i``), trained fields ``Z_q`` on every qubit and couplings ``Z_pZ_q`` on every
    pair. Relax it with ``solver.kind = "ground_state"``; read it with ``cost.kind = "observable_readout"``."""

    kind: ClassVar[str] = "quantum_ising"

    inputs: int = 3
    """Input qubits: one per input feature."""
    hidden: int = 1
    """Hidden qubits."""
    transverse: float = 1.0
    """The transverse field of ``H₀``: > 0 keeps the ground state unique (Perron–Frobenius), so EqProp's state is a
    smooth function of the couplings."""
    input_operator: Literal["Z", "X"] = "Z"
    """The Pauli operator each input multiplies on its qubit."""
    init_scale: float = 0.1
    """The couplings start ``U(−init_scale, init_scale)``; 0 starts every prediction at a tie."""

    def __post_init__(self) -> None:
        if self.inputs < 1 or self.hidden < 0:
            raise ConfigError(
                f"system.inputs = {self.inputs}, system.hidden = {self.hidden}: need >= 1 input qubit and >= 0 "
                "hidden ones"
            )
        if not 0 < self.transverse < math.inf:
            raise ConfigError(
                f"system.transverse = {self.transverse}: must be a finite number > 0 (without a transverse field "
                "the ground state can be degenerate, and EqProp's state is then no function of the couplings)"
            )
        if self.input_operator not in ("Z", "X"):
            raise ConfigError(f"system.input_operator = {self.input_operator!r}: choose 'Z' or 'X'")
        if not 0 <= self.init_scale < math.inf:
            raise ConfigError(f"system.init_scale = {self.init_scale}: must be a finite number >= 0")
        check_memory(self.output_width, what="system.kind = 'quantum_ising'")  # the qubit and memory limits

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.inputs,)

    @property
    def layers(self) -> int:
        """One parameter vector (the couplings): per-layer settings take one value."""
        return 1

    @property
    def output_width(self) -> int:
        """The qubits, all of which the readout cost's operators act on."""
        return self.inputs + self.hidden + 1

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> QuantumSystem:
        system, _ = transverse_ising_network(
            self.inputs,
            self.hidden,
            transverse=self.transverse,
            input_operator=self.input_operator,
            init_scale=self.init_scale,
            generator=generator,
        )
        return system

    def describe(self) -> str:
        return (
            f"{self.kind}: {self.output_width} qubits ({self.inputs} input, {self.hidden} hidden, 1 readout), "
            f"transverse field {self.transverse:g}"
        )


@dataclass(frozen=True)
class ObservableReadoutConfig:
    """``cost.kind = "observable_readout"``: two classes read on one qubit of a quantum system
    (:meth:`ObservableCost.readout <eqprop.systems.quantum.ObservableCost.readout>`): ``C = ½(1 − s_y⟨Z_q⟩)``, the
    probability of reading the wrong outcome; class 0 when ``⟨Z_q⟩ > 0``."""

    kind: ClassVar[str] = "observable_readout"
    boxed_output: ClassVar[bool] = False

    qubit: int = -1
    """The readout qubit (negative: counted from the last)."""

    def predicted_classes(self, output_width: int) -> int:
        return 2

    def build(self, *, in_features: int, generator: torch.Generator | None) -> ObservableCost:
        return ObservableCost.readout(in_features, self.qubit)
