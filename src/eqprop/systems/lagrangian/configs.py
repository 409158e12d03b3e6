"""The run-configuration kinds of the Lagrangian systems: ``spring_chain``, ``coupled_oscillators``,
``hamiltonian_rnn``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from eqprop.errors import ConfigError
from eqprop.systems.lagrangian.base import BOUNDARIES, OBSERVE, MechanicalSystem
from eqprop.systems.lagrangian.chain import SpringChain
from eqprop.systems.lagrangian.hamiltonian_rnn import HamiltonianRNN
from eqprop.systems.lagrangian.oscillators import CoupledOscillators

__all__ = ["CoupledOscillatorsConfig", "HamiltonianRNNConfig", "SpringChainConfig"]


@dataclass(frozen=True)
class _Mechanical:
    """Settings every Lagrangian system shares (see :class:`~eqprop.systems.lagrangian.MechanicalSystem`)."""

    units: int = 4
    outputs: int = 2
    """The last ``outputs`` units are what the cost reads."""
    input_shape: list[int] = field(default_factory=lambda: [41, 2])
    """``[points, features]`` for sequences, or ``[C, H, W]`` for images read row by row."""
    dt: float = 0.1
    boundary: Literal["fixed", "periodic", "initial"] = "initial"
    """``fixed`` or ``periodic``: Lagrangian EqProp (solver ``newton``); ``initial``: the physical initial-value
    problem (solver ``leapfrog``, rule ``echo`` or ``backprop``)."""
    observe: Literal["trajectory", "final"] = "trajectory"
    mass: float | list[float] = 1.0
    """One mass for all units, or one per unit: > 0 (the kinetic energy must be convex in the velocities)."""
    stiffness: float = 1.0
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.boundary not in BOUNDARIES:
            raise ConfigError(f"system.boundary = {self.boundary!r}: choose one of {', '.join(BOUNDARIES)}")
        if self.observe not in OBSERVE:
            raise ConfigError(f"system.observe = {self.observe!r}: choose 'trajectory' or 'final'")
        masses = self.mass if isinstance(self.mass, list) else [self.mass]
        if not masses or any(not m > 0 for m in masses):
            raise ConfigError(
                f"system.mass = {self.mass!r}: every mass must be > 0 — the kinetic energy ½q̇ᵀMq̇ must be convex "
                "in the velocities for the variational integrator (and the Newton solver) to be defined"
            )

    @property
    def layers(self) -> int:
        return 1

    @property
    def output_width(self) -> int:
        return self.outputs

    def _common(self) -> dict[str, object]:
        return {
            "outputs": self.outputs,
            "input_shape": tuple(self.input_shape),
            "dt": self.dt,
            "boundary": self.boundary,
            "observe": self.observe,
            "mass": self.mass,
            "stiffness": self.stiffness,
            "input_scale": self.input_scale,
        }

    def describe(self) -> str:
        kind = getattr(self, "kind", "")
        return f"{kind}: {self.units} units ({self.outputs} observed), {self.boundary} boundary, dt {self.dt}"


@dataclass(frozen=True)
class SpringChainConfig(_Mechanical):
    """A driven chain of masses and springs (:class:`~eqprop.systems.SpringChain`)."""

    kind: ClassVar[str] = "spring_chain"

    coupling: float = 1.0
    spread: float = 0.2

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> MechanicalSystem:
        return SpringChain(
            self.units,
            coupling=self.coupling,
            spread=self.spread,
            generator=generator,
            **self._common(),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class CoupledOscillatorsConfig(_Mechanical):
    """Coupled pendula (:class:`~eqprop.systems.CoupledOscillators`)."""

    kind: ClassVar[str] = "coupled_oscillators"

    coupling_scale: float = 0.5
    spread: float = 0.2

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> MechanicalSystem:
        return CoupledOscillators(
            self.units,
            coupling_scale=self.coupling_scale,
            spread=self.spread,
            generator=generator,
            **self._common(),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class HamiltonianRNNConfig(_Mechanical):
    """A Hamiltonian recurrent network (:class:`~eqprop.systems.HamiltonianRNN`): a sequence model for the echo."""

    kind: ClassVar[str] = "hamiltonian_rnn"

    springs: int | None = None
    coupling_scale: float = 1.0

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> MechanicalSystem:
        return HamiltonianRNN(
            self.units,
            springs=self.springs,
            coupling_scale=self.coupling_scale,
            generator=generator,
            **self._common(),  # type: ignore[arg-type]
        )
