r"""The Shockley junction diode: its current, conductance and co-content, safe for any voltage.

A diode carrying ``i = IS·(exp(v/(N·Vt)) − 1)`` from anode to cathode at voltage ``v = V_anode − V_cathode`` has
the co-content ``𝒞(v) = ∫₀ᵛ i = IS·N·Vt·(exp(u) − 1 − u)`` with ``u = v/(N·Vt)``: convex, so a circuit of
resistors, sources and such diodes still settles at the minimum of its total co-content (Kirchhoff's current law
is its optimality condition). ``Vt = kT/q`` at the junction temperature, as SPICE computes it.

Beyond ``u = MAX_EXPONENT`` the exponential continues as its tangent line (SPICE's ``limexp`` does the same), so
that a solver's trial point far in forward bias stays finite in float32 as in float64; a settled circuit stays far
below it (a 1 A current through a 10 nA junction is ``u ≈ 18``), where the model is the exact exponential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from eqprop.errors import ConfigError

__all__ = ["BOLTZMANN", "CHARGE", "MAX_EXPONENT", "ShockleyDiode", "lambert_w_exp"]

BOLTZMANN = 1.380649e-23  # J/K (exact, SI 2019)
CHARGE = 1.602176634e-19  # C (exact)
MAX_EXPONENT = 40.0
"""Where the exponential turns linear: ``e⁴⁰ ≈ 2.4·10¹⁷`` (a current of 2.4·10⁹ A through a 10 nA junction), so
that even a kilovolt across a junction stays inside float32's range."""
_E_MAX = math.exp(MAX_EXPONENT)


def _exp(u: Tensor) -> Tensor:
    """``exp(u)``, continued by its tangent line above :data:`MAX_EXPONENT` (C¹, convex, increasing)."""
    return torch.where(
        u <= MAX_EXPONENT, torch.exp(u.clamp_max(MAX_EXPONENT)), _E_MAX * (1 + u - MAX_EXPONENT)
    )


def _exp_slope(u: Tensor) -> Tensor:
    """The derivative of :func:`_exp`."""
    return torch.exp(u.clamp_max(MAX_EXPONENT))


def _exp_integral(u: Tensor) -> Tensor:
    """``∫₀ᵘ (_exp(t) − 1) dt``: ``e^u − 1 − u`` below the limit, its quadratic continuation above."""
    low = torch.expm1(u.clamp_max(MAX_EXPONENT)) - u.clamp_max(MAX_EXPONENT)
    d = (u - MAX_EXPONENT).clamp_min(0.0)
    return low + (_E_MAX - 1) * d + 0.5 * _E_MAX * d * d


@dataclass(frozen=True)
class ShockleyDiode:
    """A junction diode ``i = IS·(exp(v/(N·Vt)) − 1)``, ``Vt = kT/q`` (SPICE's ``D`` element with ``IS`` and ``N``).

    Attributes:
        saturation_current: ``IS`` in amperes (``> 0``): the reverse leakage, and the scale of the forward current.
        emission: ``N`` (``> 0``): the ideality factor; the forward drop at a current ``I`` is ``N·Vt·ln(1 + I/IS)``.
        temperature: of the junction, in °C (SPICE's ``TEMP`` = ``TNOM``; 27 °C gives ``Vt = 25.865 mV``).

    The defaults, ``IS = 10 nA`` and ``N = 1``, drop about 0.46 V at 0.5 A and 0.34 V at 5 mA.
    """

    saturation_current: float = 1e-8
    emission: float = 1.0
    temperature: float = 27.0

    def __post_init__(self) -> None:
        for name in ("saturation_current", "emission"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ConfigError(f"ShockleyDiode({name}={value!r}): need a finite number > 0")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not -273.15 < t < math.inf:
            raise ConfigError(
                f"ShockleyDiode(temperature={t!r}): need a temperature above absolute zero (°C)"
            )

    @property
    def thermal_voltage(self) -> float:
        """``Vt = kT/q`` in volts."""
        return BOLTZMANN * (self.temperature + 273.15) / CHARGE

    @property
    def slope(self) -> float:
        """``N·Vt``: the voltage over which the current grows by a factor ``e``."""
        return self.emission * self.thermal_voltage

    def current(self, v: Tensor) -> Tensor:
        """The current from anode to cathode at the voltage ``v`` across the diode."""
        return self.saturation_current * (_exp(v / self.slope) - 1.0)

    def conductance(self, v: Tensor) -> Tensor:
        """``di/dv`` at ``v`` (the diode's small-signal conductance, ``> 0``)."""
        return (self.saturation_current / self.slope) * _exp_slope(v / self.slope)

    def co_content(self, v: Tensor) -> Tensor:
        """``∫₀ᵛ i(w) dw``: the diode's term of the circuit's energy."""
        return (self.saturation_current * self.slope) * _exp_integral(v / self.slope)

    def forward_drop(self, current: float) -> float:
        """The voltage across the diode carrying ``current`` amperes forward, ``N·Vt·ln(1 + I/IS)``."""
        return self.slope * math.log1p(max(current, 0.0) / self.saturation_current)


def lambert_w_exp(log_z: Tensor, iterations: int = 8) -> Tensor:
    """The principal Lambert function ``W(z)`` (``w·eʷ = z``) of ``z = exp(log_z)``, for any real ``log_z``.

    Works in the log domain (``w + ln w = log_z``), so ``z`` may be far beyond the float range. Newton's method on
    that concave increasing function from a point below the root climbs monotonically to it: the start is
    ``ln z − ln ln z`` for ``z ≥ e`` and ``z/(1 + z)`` below, both lower bounds of ``W``; from either, 8 steps
    reach round-off. Below ``z = e⁻³⁰`` it returns ``z`` (``W(z) = z − z² + …``).
    """
    tiny = log_z < -30.0  # W(z) = z − z² + …: z itself to 1e-13 (and no log of an underflowed w)
    log_c = log_z.clamp_min(-30.0)
    big = log_c >= 1.0
    safe = torch.where(big, log_c, log_c.new_ones(()))
    z_small = torch.exp(log_c.clamp_max(1.0))
    w = torch.where(big, safe - torch.log(safe), z_small / (1 + z_small))
    for _ in range(iterations):
        w = w * (1 + log_c - torch.log(w)) / (1 + w)
    return torch.where(tiny, torch.exp(log_z), w)
