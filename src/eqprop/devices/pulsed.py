r"""Pulsed-update device models for trainable parameters: what a memristor, a ReRAM cell or a digital
potentiometer does with the update a learning rule asks for.

Every parameter element is one device with a range ``[w_min, w_max]``. An update ``Δ`` (what the optimizer's step
would have done) becomes a number of pulses ``Δ/Δw_min``, rounded to an integer (stochastically: unbiased; or to
the nearest), at most ``max_pulses`` per update; each pulse moves the device by its own response, up or down, and
the device never leaves its range. The responses are the published pulsed-device models that IBM's Analog
Hardware Acceleration Kit documents (``ConstantStepDevice``, ``LinearStepDevice``, ``SoftBoundsDevice``,
``ExpStepDevice``), written here from their formulas (aihwkit is a compiled extension tied to its own torch
builds; it is not a dependency):

- ``constant``: up ``+Δw⁺``, down ``−Δw⁻``;
- ``linear``: up ``+Δw⁺(1 − γ_up·u/(w_max − c))``, down ``−Δw⁻(1 + γ_down·u/(c − w_min))``, ``u = w − c``;
- ``soft_bounds``: ``linear`` with ``γ = 1``: the steps shrink linearly to 0 at the bounds;
- ``exponential``: step ``Δw^d·max(y, 0)``, ``y = 1 − A^d e^{dγ^d z}``, ``z = 2a·u/(w_max − w_min) + b``
  (``d = +1`` up, ``−1`` down).

``c`` is the centre of the range: for a range centred on 0 (aihwkit's ``[−1, 1]``) these are aihwkit's formulas
(its ``γ⁺ = −γ_up/b_max``, ``γ⁻ = −γ_down/b_min``); a range such as conductances' ``[0, g_max]`` is measured from
its centre, where aihwkit's ``γ⁻`` would divide by ``b_min = 0``.

``Δw⁺ = Δw_min(1 + up_down)``, ``Δw⁻ = Δw_min(1 − up_down)`` (a systematic up/down asymmetry), each device's
steps (and ``γ``) drawn once with a relative device-to-device spread, every pulse with a multiplicative
cycle-to-cycle noise, and a per-device update bias (Dillavou et al. 2025: an uncontrolled, deterministic offset of
every update, ``b_i·Δw_min`` with ``b_i ~ N(0, bias²)`` fixed per device).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

__all__ = ["DeviceArray", "Response"]

Response = Literal["constant", "linear", "soft_bounds", "exponential"]


@dataclass
class DeviceArray:
    """The devices of one parameter tensor: their fixed (device-to-device) properties and the pulse response.

    Attributes:
        w_min, w_max: the range.
        dw_up, dw_down: each device's step sizes (>= 0), shaped like the parameter.
        gamma_up, gamma_down: each device's ``γ_up``, ``γ_down`` (>= 0; ``linear`` and ``soft_bounds``).
        bias: each device's update offset, in pulses.
        response, rounding, max_pulses, c2c: see :class:`~eqprop.devices.HardwareConfig`.
        exp: ``(A_up, A_down, gamma_up, gamma_down, a, b)`` of the exponential response.
    """

    w_min: float
    w_max: float
    dw_up: Tensor
    dw_down: Tensor
    gamma_up: Tensor
    gamma_down: Tensor
    bias: Tensor
    response: Response
    rounding: Literal["stochastic", "deterministic"]
    max_pulses: int
    c2c: float
    exp: tuple[float, float, float, float, float, float]

    def to(self, like: Tensor) -> DeviceArray:
        """The arrays on ``like``'s device and dtype (a run moved to a GPU, or to float64)."""
        if self.dw_up.device == like.device and self.dw_up.dtype == like.dtype:
            return self
        moved = {k: getattr(self, k).to(like) for k in ("dw_up", "dw_down", "gamma_up", "gamma_down", "bias")}
        return replace(self, **moved)  # (re-runs __post_init__ on the moved tensors)

    def __post_init__(self) -> None:
        dw = 0.5 * (self.dw_up + self.dw_down)
        self._inv_dw = 1.0 / dw.clamp_min(torch.finfo(dw.dtype).tiny)
        # one step size for every device and direction (no asymmetry, no variation): scalar arithmetic
        same = bool(torch.equal(self.dw_up, self.dw_down)) and bool(
            (self.dw_up == self.dw_up.flatten()[0]).all()
        )
        self._uniform = float(self.dw_up.flatten()[0]) if same and self.dw_up.numel() else None
        self._biased = bool(self.bias.ne(0).any())

    def pulses(self, delta: Tensor) -> Tensor:
        """The signed number of pulses for the update ``delta`` (rounded, capped, bias included)."""
        n = delta * (1.0 / self._uniform) if self._uniform is not None else delta * self._inv_dw
        if self._biased:
            n = n.add_(self.bias)
        # stochastic: floor(n + U), U uniform in [0, 1): n's floor, or one more with the probability of its fraction
        n = n.add_(torch.rand_like(n)).floor_() if self.rounding == "stochastic" else n.round_()
        return n.clamp_(-self.max_pulses, self.max_pulses)

    def step(self, w: Tensor, up: Tensor) -> Tensor:
        """The change of each device for one pulse, up where ``up`` else down (>= 0 up, <= 0 down)."""
        c = 0.5 * (self.w_min + self.w_max)
        if self.response == "constant":
            size_up, size_down = self.dw_up, self.dw_down
        elif self.response in ("linear", "soft_bounds"):
            size_up = self.dw_up * (1.0 - self.gamma_up * (w - c) / (self.w_max - c))
            size_down = self.dw_down * (1.0 + self.gamma_down * (w - c) / (c - self.w_min))
        else:
            a_up, a_down, g_up, g_down, a, b = self.exp
            z = 2.0 * a * (w - c) / (self.w_max - self.w_min) + b
            size_up = self.dw_up * (1.0 - a_up * torch.exp(g_up * z)).clamp_min(0.0)
            size_down = self.dw_down * (1.0 - a_down * torch.exp(-g_down * z)).clamp_min(0.0)
        size = torch.where(up, size_up.clamp_min(0.0), -size_down.clamp_min(0.0))
        if self.c2c > 0:
            size = size * (1.0 + self.c2c * torch.randn_like(size))
        return size

    def apply(self, before: Tensor, after: Tensor) -> Tensor:
        """The devices' new values when the optimizer asked to go from ``before`` to ``after``."""
        n = self.pulses(after - before)
        if self.response == "constant" and self.c2c == 0:  # closed form: n equal steps, then the range
            if self._uniform is not None:
                w = torch.add(before, n, alpha=self._uniform)
            else:
                w = before.addcmul(n, torch.where(n > 0, self.dw_up, self.dw_down))
            return w.clamp_(self.w_min, self.w_max)
        w = before.clone()
        remaining = n.abs()
        up = n > 0
        for _ in range(int(remaining.max()) if remaining.numel() else 0):  # one pulse at a time, all devices
            active = remaining > 0
            w = torch.where(active, (w + self.step(w, up)).clamp(self.w_min, self.w_max), w)
            remaining = remaining - active.to(remaining.dtype)
        return w
