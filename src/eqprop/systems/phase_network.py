r"""Networks of phase oscillators: oscillator Ising machines (Gower 2025) and XY networks (Wang, Wanjura & Marquardt
2024), layered or all-to-all.

Every unit is a phase ``φ`` (unbounded: the energy is 2π-periodic). With ``c = cos φ`` and ``s = sin φ`` every
coupling ``−J cos(φ_i − φ_j) = −J(c_i c_j + s_i s_j)`` is two bilinear forms, so the energy, its gradient and the
parameter gradients are matrix products (no ``batch × n × n`` table of phase differences):

.. math::
    E = −\sum_{j} (J^0 u)_j\,\cdot\,(c_j, s_j) − \sum_{k} \big(c_{k+1}^⊤ J^k c_k + s_{k+1}^⊤ J^k s_k\big)
        − \sum_i \big(h_i c_i + g_i s_i\big) − \tfrac12 \sum_i K_i \cos 2φ_i

- **input**: ``"amplitude"`` (the OIM): the input is a field ``J⁰x`` along the phase-0 axis, ``−Σ(J⁰x)_j cos φ_j``;
  ``"phase"`` (XY): the input units are oscillators held at phases ``ψ = π·x``, coupled like the others,
  ``−Σ J⁰_ji cos(φ_j − ψ_i)``.
- **fields**: ``h cos φ``; with ``field_phases`` also ``g sin φ``, i.e. ``|h| cos(φ − ψ_h)`` with a trainable
  phase (the XY bias of Wang et al.).
- **sync**: the second-harmonic injection locking ``−½K cos 2φ`` (trainable ``K``, initial 0): it pulls the phases
  to 0 or π, which makes the OIM an Ising machine.
- **topology**: ``"layered"`` (couplings between consecutive layers only), or ``"all_to_all"`` (one hidden and
  one output layer, every pair of units coupled through one symmetric ``J`` without self-coupling, every unit fed
  by the input).

The output is read as ``cos φ`` (:class:`~eqprop.costs.PhaseSquaredError` targets ±1). Relax with
``gradient_flow`` (Gower's Euler steps: ``φ ← φ − ε∂F/∂φ``, ε = 0.1) or, with phase noise, ``langevin`` (his noise
level σ is a temperature ``T = εσ²/2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, Literal

import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem

__all__ = ["PhaseNetwork"]


class PhaseNetwork(EnergySystem):
    """Phase oscillators with the energy of the module docstring.

    Args:
        sizes: ``[inputs, hidden..., outputs]`` (``all_to_all``: exactly one hidden layer).
        input: ``"amplitude"`` (OIM) or ``"phase"`` (XY).
        sync: whether the second-harmonic term ``−½K cos 2φ`` exists (trainable, initial 0).
        field_phases: whether the fields have a trainable phase (``g sin φ``).
        topology: ``"layered"`` or ``"all_to_all"``.
        initial_phase: where the phases start: a number (Gower: π/2), or ``"random"`` (uniform in [0, 2π), drawn per
            example from torch's global generator: restarts differ).
        gains: weights start ``U(±gain/√fan_in)`` (torch's ``nn.Linear`` default at gain 1, Gower's init).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        input: Literal["amplitude", "phase"] = "amplitude",
        sync: bool = True,
        field_phases: bool = False,
        topology: Literal["layered", "all_to_all"] = "layered",
        initial_phase: float | Literal["random"] = math.pi / 2,
        gains: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ConfigError(
                f"PhaseNetwork(sizes={sizes}): need at least two positive widths, e.g. [784, 512, 10]"
            )
        if input not in ("amplitude", "phase"):
            raise ConfigError(f"PhaseNetwork(input={input!r}): choose 'amplitude' (OIM) or 'phase' (XY)")
        if topology not in ("layered", "all_to_all"):
            raise ConfigError(f"PhaseNetwork(topology={topology!r}): choose 'layered' or 'all_to_all'")
        if topology == "all_to_all" and len(sizes) != 3:
            raise ConfigError(
                f"PhaseNetwork(sizes={sizes}, topology='all_to_all'): give [inputs, hidden, outputs]: every unit of "
                "the hidden and output layers is coupled to every other"
            )
        if initial_phase != "random" and not (
            isinstance(initial_phase, int | float) and math.isfinite(initial_phase)
        ):
            raise ConfigError(f"PhaseNetwork(initial_phase={initial_phase!r}): a finite number, or 'random'")
        self.sizes = sizes
        self.input_kind = input
        self.topology = topology
        self.initial_phase = initial_phase
        self.input_shape = (sizes[0],)
        self.variables = tuple(Variable(f"phi{k}", (n,)) for k, n in enumerate(sizes[1:], start=1))

        def uniform(rows: int, cols: int) -> nn.Parameter:
            bound = gains / math.sqrt(cols)
            return nn.Parameter((2 * torch.rand(rows, cols, generator=generator) - 1) * bound)

        units = sizes[1:]
        self.weights = nn.ParameterList()
        if topology == "layered":
            self.weights.append(uniform(units[0], sizes[0]))
            for a, b in pairwise(units):
                self.weights.append(uniform(b, a))
        else:
            n = sum(units)
            self.weights.append(uniform(n, sizes[0]))
            j = uniform(n, n).detach()
            self.weights.append(nn.Parameter(0.5 * (j + j.T) * (1 - torch.eye(n))))
        self.fields = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in units)
        self.field_phases = (
            nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in units) if field_phases else None
        )
        self.syncs = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in units) if sync else None

    # -- helpers --------------------------------------------------------------------------------------------
    def _pair(self) -> Tensor:
        """The symmetric all-to-all coupling, self-coupling removed (the raw parameter may drift off symmetry
        under an optimizer; its symmetric part is what the energy reads)."""
        w = self.weights[1]
        return 0.5 * (w + w.T) * (1 - torch.eye(w.shape[0], dtype=w.dtype, device=w.device))

    def prepare(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The input drive along the cos and sin axes: ``(J⁰x, 0)`` (amplitude) or ``(J⁰cos ψ, J⁰sin ψ)``."""
        w = self.weights[0]
        if self.input_kind == "amplitude":
            return x @ w.T, None
        psi = math.pi * x
        return torch.cos(psi) @ w.T, torch.sin(psi) @ w.T

    def _split(self, flat: Tensor) -> tuple[Tensor, ...]:
        return tuple(torch.split(flat, self.sizes[1:], dim=-1))

    def init_state(self, x: Tensor) -> State:
        b = x.shape[0]
        if self.initial_phase == "random":
            return tuple(
                2 * math.pi * torch.rand(b, n, dtype=x.dtype, device=x.device) for n in self.sizes[1:]
            )
        return tuple(x.new_full((b, n), float(self.initial_phase)) for n in self.sizes[1:])

    # -- energy ---------------------------------------------------------------------------------------------
    def energy(self, x: Tensor, state: State) -> Tensor:
        dc, ds = self.prepare(x)
        cs = [torch.cos(p) for p in state]
        ss = [torch.sin(p) for p in state]
        c_all, s_all = torch.cat(cs, -1), torch.cat(ss, -1)
        e = -(dc * c_all).sum(-1) if self.topology == "all_to_all" else -(dc * cs[0]).sum(-1)
        if ds is not None:
            e = e - (ds * (s_all if self.topology == "all_to_all" else ss[0])).sum(-1)
        if self.topology == "layered":
            for k, w in enumerate(self.weights[1:]):
                e = e - ((cs[k + 1] @ w) * cs[k]).sum(-1) - ((ss[k + 1] @ w) * ss[k]).sum(-1)
        else:
            j = self._pair()
            e = e - 0.5 * ((c_all @ j) * c_all).sum(-1) - 0.5 * ((s_all @ j) * s_all).sum(-1)
        for k, p in enumerate(state):
            e = e - (self.fields[k] * cs[k]).sum(-1)
            if self.field_phases is not None:
                e = e - (self.field_phases[k] * ss[k]).sum(-1)
            if self.syncs is not None:
                e = e - 0.5 * (self.syncs[k] * torch.cos(2 * p)).sum(-1)
        return e

    def state_grad(self, x: Tensor, state: State, drive: Any = None) -> State:
        """``∂E/∂φ``: for a coupling ``−(c'ᵀJc + s'ᵀJs)``, ``∂/∂φ = s ⊙ (Jᵀc') − c ⊙ (Jᵀs')``; fields and sync
        term unit by unit (``sin 2φ = 2 sin φ cos φ``: no third trigonometric call)."""
        dc, ds = self.prepare(x) if drive is None else drive
        cs = [torch.cos(p) for p in state]
        ss = [torch.sin(p) for p in state]
        n = len(state)
        weights = list(self.weights)  # (slicing a ParameterList builds a new module: index a plain list)
        if self.topology == "layered":
            # the field each unit feels, along cos and sin: the input, the layers on both sides, its own field
            fc: list[Tensor] = []
            fs: list[Tensor] = []
            for k in range(n):
                hc = dc + self.fields[0] if k == 0 else torch.addmm(self.fields[k], cs[k - 1], weights[k].T)
                hs = (ds if k == 0 else ss[k - 1] @ weights[k].T) if (k > 0 or ds is not None) else None
                if k + 1 < n:
                    w = weights[k + 1]
                    hc = torch.addmm(hc, cs[k + 1], w)
                    hs = ss[k + 1] @ w if hs is None else torch.addmm(hs, ss[k + 1], w)
                fc.append(hc)
                fs.append(hs if hs is not None else torch.zeros_like(hc))
        else:
            j = self._pair()
            c_all, s_all = torch.cat(cs, -1), torch.cat(ss, -1)
            fc = [c + h for c, h in zip(self._split(torch.addmm(dc, c_all, j)), self.fields, strict=True)]
            fs = list(self._split(s_all @ j if ds is None else torch.addmm(ds, s_all, j)))
        out = []
        for k in range(n):
            hs = fs[k] if self.field_phases is None else fs[k] + self.field_phases[k]
            g = ss[k] * fc[k] - cs[k] * hs  # −∂/∂φ of (hc·cos φ + hs·sin φ)
            if self.syncs is not None:
                g = g + 2 * self.syncs[k] * ss[k] * cs[k]
            out.append(g)
        return tuple(out)

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·[∂E/∂θ(s_b) − ∂E/∂θ(s_a)]``, batch mean, as products of the phases' cosines and sines."""
        b = x.shape[0]
        f = scale / b

        def trig(state: State) -> tuple[list[Tensor], list[Tensor]]:
            return [torch.cos(p) for p in state], [torch.sin(p) for p in state]

        (ca, sa), (cb, sb) = trig(state_a), trig(state_b)
        grads: dict[str, Tensor] = {}
        if self.input_kind == "amplitude":
            left_c = [x]
            left_s = None
        else:
            left_c, left_s = [torch.cos(math.pi * x)], [torch.sin(math.pi * x)]
        if self.topology == "layered":
            d0 = -(cb[0] - ca[0]).T @ left_c[0]
            if left_s is not None:
                d0 = d0 - (sb[0] - sa[0]).T @ left_s[0]
            grads["weights.0"] = d0 * f
            for k in range(1, len(self.weights)):
                g = -(cb[k].T @ cb[k - 1] - ca[k].T @ ca[k - 1]) - (sb[k].T @ sb[k - 1] - sa[k].T @ sa[k - 1])
                grads[f"weights.{k}"] = g * f
        else:
            call_a, call_b = torch.cat(ca, -1), torch.cat(cb, -1)
            sall_a, sall_b = torch.cat(sa, -1), torch.cat(sb, -1)
            d0 = -(call_b - call_a).T @ left_c[0]
            if left_s is not None:
                d0 = d0 - (sall_b - sall_a).T @ left_s[0]
            grads["weights.0"] = d0 * f
            pair = -(call_b.T @ call_b - call_a.T @ call_a) - (sall_b.T @ sall_b - sall_a.T @ sall_a)
            # E reads ½·sym(W)·(1 − I): the gradient of the raw parameter is the symmetric part, halved, off the diagonal
            pair = 0.5 * pair * (1 - torch.eye(pair.shape[0], dtype=pair.dtype, device=pair.device))
            grads["weights.1"] = pair * f
        for k in range(len(state_a)):
            grads[f"fields.{k}"] = -(cb[k] - ca[k]).sum(0) * f
            if self.field_phases is not None:
                grads[f"field_phases.{k}"] = -(sb[k] - sa[k]).sum(0) * f
            if self.syncs is not None:
                grads[f"syncs.{k}"] = (
                    -0.5 * (torch.cos(2 * state_b[k]) - torch.cos(2 * state_a[k])).sum(0) * f
                )
        if out is not None:
            for name, buffer in out.items():
                grads[name] = buffer.copy_(grads[name])
        return grads

    def describe(self) -> str:
        kind = "OIM" if self.input_kind == "amplitude" and self.syncs is not None else "XY"
        return "-".join(map(str, self.sizes)) + f" {kind} phase network ({self.topology})"
