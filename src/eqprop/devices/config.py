"""``[hardware]`` of a run configuration: the non-idealities of the hardware a run simulates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from eqprop.devices.pulsed import DeviceArray, Response
from eqprop.devices.readout import NoisyReadout
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver

__all__ = ["Devices", "HardwareConfig"]


@dataclass(frozen=True)
class HardwareConfig:
    """The hardware's non-idealities; every setting at its default is the ideal machine (bit for bit today's run).

    Read noise acts on what is measured (the equilibria a rule reads and the outputs a prediction reads, in every
    phase, training and test); pulsed updates act on every parameter of the system after each optimizer step (see
    :mod:`eqprop.devices.pulsed` for the responses and their source).
    """

    parameters: list[str] | None = None
    """Which system parameters are devices (pulsed), by name or by the name before its first dot (e.g.
    ``["conductances"]``: the biases of a resistive network stay ideal); None = all of them."""
    read_noise: float = 0.0
    """Standard deviation of the Gaussian noise on every measured state value (volts for a circuit)."""
    read_bits: int = 0
    """Measurement resolution: every measured state value rounded to one of ``2**read_bits`` levels spanning
    ``read_range`` (after the read noise); 0 = exact."""
    read_range: list[float] | None = None
    """``[lo, hi]`` of the quantised measurement; values outside are clipped, or wrapped when ``read_periodic``."""
    read_periodic: bool = False
    """The measured values are angles of period ``hi − lo`` (an oscillator's phase, Gower's 4-bit phase readout:
    ``read_range = [0, 2π]``): wrapped into the range, ``2**read_bits`` levels around the circle."""
    update: Literal["ideal", "pulsed"] = "ideal"
    """``ideal``: the optimizer's step as computed; ``pulsed``: through the device model below."""
    response: Response = "constant"
    """``constant``, ``linear``, ``soft_bounds`` or ``exponential`` step."""
    range: list[float] | None = None
    """``[w_min, w_max]`` of every device (pulsed); the parameters must start inside it."""
    bits: int | None = None
    """Resolution: ``Δw_min = (w_max − w_min)/2**bits`` (give ``bits`` or ``dw_min``)."""
    dw_min: float | None = None
    """The nominal step of one pulse, in parameter units."""
    rounding: Literal["stochastic", "deterministic"] = "stochastic"
    """Pulses per update: rounded stochastically (unbiased) or to the nearest integer."""
    max_pulses: int = 31
    """At most this many pulses per update and device (aihwkit's default bit length, 31)."""
    up_down: float = 0.0
    """Systematic asymmetry: ``Δw⁺ = Δw_min(1 + up_down)``, ``Δw⁻ = Δw_min(1 − up_down)``; in (−1, 1)."""
    dw_min_dtod: float = 0.0
    """Device-to-device relative spread (std) of the step sizes, drawn once per device."""
    gamma_up: float = 0.0
    """``linear`` response: how much the up step shrinks at the upper bound (``soft_bounds``: 1)."""
    gamma_down: float = 0.0
    """``linear`` response: how much the down step shrinks at the lower bound (``soft_bounds``: 1)."""
    gamma_dtod: float = 0.0
    """Device-to-device spread (std) of ``γ``."""
    exp: list[float] = field(default_factory=lambda: [0.00081, 0.36833, 12.44625, 12.78785, 0.244, 0.2425])
    """``exponential`` response: ``[A_up, A_down, gamma_up, gamma_down, a, b]`` (aihwkit's ExpStepDevice defaults)."""
    c2c: float = 0.0
    """Cycle-to-cycle multiplicative noise (std) of every pulse."""
    bias: float = 0.0
    """Per-device update bias (Dillavou et al.): each device's every update is offset by ``b_i`` pulses,
    ``b_i ~ N(0, bias²)`` drawn once."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.read_noise) and self.read_noise >= 0):
            raise ConfigError(f"hardware.read_noise = {self.read_noise}: need a noise level >= 0")
        if (
            isinstance(self.read_bits, bool)
            or not isinstance(self.read_bits, int)
            or not 0 <= self.read_bits <= 24
        ):
            raise ConfigError(
                f"hardware.read_bits = {self.read_bits!r}: an integer in 0 … 24 (0: exact readout)"
            )
        if self.read_bits and (
            self.read_range is None
            or len(self.read_range) != 2
            or not self.read_range[0] < self.read_range[1]
        ):
            raise ConfigError(
                f"hardware.read_range = {self.read_range}: quantised readout needs [lo, hi] with lo < hi",
                hint="e.g. read_range = [0, 6.283185307179586] and read_periodic = true for phases",
            )
        for name in ("dw_min_dtod", "gamma_dtod", "c2c", "bias", "gamma_up", "gamma_down"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"hardware.{name} = {value}: need a finite number >= 0")
        if not -1 < self.up_down < 1:
            raise ConfigError(f"hardware.up_down = {self.up_down}: need -1 < up_down < 1")
        if self.parameters is not None and not self.parameters:
            raise ConfigError(
                "hardware.parameters = []: name at least one parameter (or leave it unset for all)"
            )
        if self.update == "pulsed":
            if self.range is None or len(self.range) != 2 or not self.range[0] < self.range[1]:
                raise ConfigError(
                    f"hardware.range = {self.range}: pulsed devices need [w_min, w_max] with w_min < w_max"
                )
            if (self.bits is None) == (self.dw_min is None):
                raise ConfigError("hardware: give the resolution as bits or dw_min (one of them)")
            if self.bits is not None and not 1 <= self.bits <= 24:
                raise ConfigError(f"hardware.bits = {self.bits}: need 1 to 24")
            if self.dw_min is not None and not self.dw_min > 0:
                raise ConfigError(f"hardware.dw_min = {self.dw_min}: need > 0")
            if self.max_pulses < 1:
                raise ConfigError(f"hardware.max_pulses = {self.max_pulses}: need >= 1")
            if len(self.exp) != 6:
                raise ConfigError(
                    f"hardware.exp = {self.exp}: give [A_up, A_down, gamma_up, gamma_down, a, b]"
                )

    @property
    def step(self) -> float:
        """``Δw_min``."""
        assert self.range is not None
        if self.dw_min is not None:
            return float(self.dw_min)
        assert self.bits is not None
        return (self.range[1] - self.range[0]) / 2**self.bits

    def build(self, system: nn.Module, generator: torch.Generator) -> Devices:
        """The run's devices, their device-to-device properties drawn from ``generator`` (fixed by the seed)."""
        return Devices(self, system, generator)


class Devices:
    """The non-idealities of one run: a solver wrapper for read noise and the pulsed update of the parameters.

    Raises:
        ConfigError: a parameter outside the devices' range at the start.
    """

    def __init__(self, config: HardwareConfig, system: nn.Module, generator: torch.Generator) -> None:
        self.config = config
        self.arrays: dict[str, DeviceArray] = {}
        if config.update != "pulsed":
            return
        assert config.range is not None
        lo, hi = float(config.range[0]), float(config.range[1])
        soft = config.response == "soft_bounds"
        chosen = None if config.parameters is None else set(config.parameters)
        for name, p in system.named_parameters():
            if chosen is not None and name not in chosen and name.partition(".")[0] not in chosen:
                continue
            low, high = float(p.detach().min()), float(p.detach().max())
            if low < lo or high > hi:
                raise ConfigError(
                    f"hardware.range = [{lo:g}, {hi:g}] excludes the initial values of {name} "
                    f"(from {low:.4g} to {high:.4g})",
                    hint="widen hardware.range to hold every parameter, or initialise the system inside it",
                )

            def draw(p: Tensor = p) -> Tensor:  # one standard normal per device, fixed by the seed
                return torch.randn(p.shape, generator=generator, dtype=torch.float64)

            dw, dtod = config.step, config.dw_min_dtod
            dw_up = (dw * (1 + config.up_down) * (1.0 + dtod * draw())).clamp_min(0.0)
            dw_down = (dw * (1 - config.up_down) * (1.0 + dtod * draw())).clamp_min(0.0)
            gamma_up = (1.0 if soft else config.gamma_up) + config.gamma_dtod * draw()
            gamma_down = (1.0 if soft else config.gamma_down) + config.gamma_dtod * draw()
            self.arrays[name] = DeviceArray(
                w_min=lo,
                w_max=hi,
                dw_up=dw_up.to(p.dtype),
                dw_down=dw_down.to(p.dtype),
                gamma_up=gamma_up.abs().to(p.dtype),
                gamma_down=gamma_down.abs().to(p.dtype),
                bias=(config.bias * draw()).to(p.dtype),
                response=config.response,
                rounding=config.rounding,
                max_pulses=int(config.max_pulses),
                c2c=float(config.c2c),
                exp=tuple(float(v) for v in config.exp),  # type: ignore[arg-type]
            )

    def check_data_parallel(self, processes: int) -> None:
        """Refuse several processes with non-ideal hardware: each rank would draw its own read noise and rounding
        from its own generator, and the ranks' parameters would drift apart."""
        ideal = self.config.read_noise == 0 and self.config.read_bits == 0 and not self.pulsed
        if processes > 1 and not ideal:
            raise ConfigError(
                f"hardware non-idealities are simulated in one process; this run has {processes}",
                hint="run it with one process (no torchrun), or without [hardware] settings",
            )

    @property
    def pulsed(self) -> bool:
        return bool(self.arrays)

    def wrap(self, solver: Solver | None) -> Solver | None:
        """``solver`` whose results are read with the configured noise (unchanged without read noise)."""
        c = self.config
        if solver is None or (c.read_noise == 0 and c.read_bits == 0):
            return solver
        lo, hi = c.read_range if c.read_bits else (0.0, 1.0)
        return NoisyReadout(
            inner=solver,
            noise=c.read_noise,
            bits=c.read_bits,
            low=float(lo),
            high=float(hi),
            periodic=c.read_periodic,
        )

    def apply(self, system: nn.Module, before: dict[str, Tensor]) -> None:
        """Replace each parameter's new value (the optimizer's step from ``before``) by what its devices do."""
        with torch.no_grad():
            for name, p in system.named_parameters():
                devices = self.arrays.get(name)
                if devices is not None:
                    p.copy_(devices.to(p).apply(before[name], p))
