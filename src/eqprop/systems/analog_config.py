"""``system.kind = "analog_resistive"``: the analog network of Kendall et al. with real circuit elements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from eqprop.errors import ConfigError
from eqprop.systems.analog import AnalogResistive
from eqprop.systems.config_checks import Layered, per_layer, widths
from eqprop.systems.junction import ShockleyDiode

__all__ = ["AnalogResistiveConfig"]


@dataclass(frozen=True)
class AnalogResistiveConfig(Layered):
    """An end-to-end analog network: Shockley-diode neurons, bidirectional amplifiers (:class:`~eqprop.AnalogResistive`).
    Conductances in siemens, potentials in volts, currents in amperes."""

    kind: ClassVar[str] = "analog_resistive"

    sizes: list[int] = field(default_factory=lambda: [784, 100, 10])
    """Layer widths, input first; each input feature drives two voltage sources, +gain·x and −gain·x."""
    input_gain: float = 1.0
    """Volts per unit of the input."""
    gains: float | list[float] = 1.0
    """Conductance init max(0, U(±gain/√fan_in)) in siemens: one gain, or one per conductance matrix."""
    amplifier_gain: float = 4.0
    """A: the bidirectional amplifiers' voltage gain."""
    backward_gain: float | None = None
    """B: their backward current gain (default 1/A, Kendall et al.); B/A must be > 0."""
    levels: list[float] = field(default_factory=lambda: [-0.5, 0.5])
    """[lo, hi]: the bias sources of each neuron's diode pair, volts."""
    diode: Literal["shockley", "ideal"] = "shockley"
    """Shockley junctions (i = IS(exp(v/(N·Vt)) − 1)) or ideal diodes (a hard clip to the levels)."""
    saturation_current: float = 1e-8
    """IS of the Shockley diodes, amperes."""
    emission: float = 1.0
    """N of the Shockley diodes."""
    temperature: float = 27.0
    """Junction temperature, °C (Vt = kT/q)."""
    inverting: bool = True
    """Also drive −A·V through an inverting amplifier (signed weights in the next layer)."""

    def __post_init__(self) -> None:
        widths(self.sizes)
        per_layer("gains", self.gains, self.layers, f"sizes {self.sizes}")
        if len(self.levels) != 2:
            raise ConfigError(f"system.levels = {self.levels}: give [lo, hi] in volts")
        self.build(boxed_output=False, generator=torch.Generator())  # the other checks (global RNG untouched)

    def build(self, *, boxed_output: bool, generator: torch.Generator | None) -> AnalogResistive:
        diode = (
            ShockleyDiode(self.saturation_current, self.emission, self.temperature)
            if self.diode == "shockley"
            else None
        )
        return AnalogResistive(
            self.sizes,
            input_gain=self.input_gain,
            gains=self.gains,
            amplifier_gain=self.amplifier_gain,
            backward_gain=self.backward_gain,
            levels=(self.levels[0], self.levels[1]),
            diode=diode,
            inverting=self.inverting,
            generator=generator,
        )

    def describe(self) -> str:
        return (
            "-".join(map(str, self.sizes))
            + f" {self.kind} ({self.diode} diodes, amplifier gain {self.amplifier_gain:g}, input {self.input_gain:g} V)"
        )
