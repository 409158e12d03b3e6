r"""Gibbs sampling of ±1 spins: the Gibbs distribution of an Ising-type energy, with optional simulated annealing."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.solvers.base import Solver, TotalEnergy

__all__ = ["GibbsSampler"]


@dataclass(frozen=True)
class GibbsSampler(Solver):
    r"""Block Gibbs (or Metropolis, ``update``) sweeps over ±1 spins: each layer, given its neighbours, is drawn from

    .. math::
        P(s_i = +1) = σ(2 h_i / T),

    with ``h_i`` the local field (:meth:`block_field`, plus the nudge's force ``β·l`` from the cost's model; for spins
    ``‖s‖²`` is constant, so a squared-error cost acts as the field ``β·y``). A layered system's layers couple only to
    their neighbours, so the odd layers are drawn together, then the even ones: an exact Gibbs sweep. Its stationary
    distribution is ``∝ exp(−(E + βC)/T)`` over the spins (the system's quadratic self term is constant on ±1 and
    drops out). ``anneal_from``: a simulated anneal, the temperature falling geometrically from ``anneal_from`` to
    ``temperature`` over the sweeps (Laydevant et al. anneal the free phase); at ``temperature = 0`` a spin takes the
    sign of its field (ties: +1). The last sweep's spins are the sample. Noise: torch's global generator.

    Use it with a layered energy whose units are boxed to ``[−1, 1]`` (``DeepHopfield(bounds=(-1, 1),
    output_bounds=(-1, 1))``: an Ising machine with couplings ``W`` and fields ``b``, ``E = −Σ s_(k+1)·W_k s_k − Σ b_k·s_k``
    plus a constant).

    Args:
        temperature: final ``T >= 0``.
        iterations: sweeps.
        anneal_from: starting temperature of an anneal (``None``: constant ``temperature``).
    """

    temperature: float = 0.1
    iterations: int = 100
    anneal_from: float | None = None
    update: Literal["heat_bath", "metropolis"] = "heat_bath"
    """``heat_bath``: each spin drawn from its conditional (Gibbs); ``metropolis``: each spin proposed flipped and the
    flip accepted with probability ``min(1, exp(−ΔE/T))``, ``ΔE = 2 h_i s_i`` (the same stationary distribution;
    at ``T = 0`` a flip is accepted only downhill or level)."""
    tol: float | None = None
    check_every: int = 10
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "gibbs"
    supports_clamp: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate()
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not (0 <= t < math.inf):
            raise ConfigError(f"GibbsSampler(temperature={t!r}): need a finite number >= 0")
        if self.update not in ("heat_bath", "metropolis"):
            raise ConfigError(f"GibbsSampler(update={self.update!r}): choose 'heat_bath' or 'metropolis'")
        if self.anneal_from is not None and not (self.anneal_from > 0 and self.anneal_from >= t):
            raise ConfigError(
                f"GibbsSampler(anneal_from={self.anneal_from!r}): need a starting temperature >= temperature, > 0"
            )

    def step(self, problem: TotalEnergy, state: State) -> State:
        return self._sweep(problem, state, self.temperature)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        if not (problem.system.has_block_minimizer and problem.system.quadratic_blocks):
            raise ConfigError(
                f"GibbsSampler draws each layer from its local field; {type(problem.system).__name__} has none",
                hint="use a layered Hopfield network with units boxed to [-1, 1] as the Ising machine",
            )
        temps = self._schedule()
        count = iter(range(len(temps)))

        def sweep(state: State) -> State:
            i = next(count, len(temps) - 1)
            return self._sweep(problem, state, temps[min(i, len(temps) - 1)])

        return sweep

    def _schedule(self) -> list[float]:
        n = max(self.iterations, 1)
        if self.anneal_from is None or n == 1:
            return [float(self.temperature)] * n
        start, end = float(self.anneal_from), max(float(self.temperature), 1e-12)
        ratio = (end / start) ** (1.0 / (n - 1))
        temps = [start * ratio**i for i in range(n)]
        temps[-1] = float(self.temperature)
        return temps

    def _sweep(self, problem: TotalEnergy, state: State, temperature: float) -> State:
        system = problem.system
        n = len(system.variables)
        out = list(state)
        for parity in (1, 0):  # odd layers (s1, s3, …) given the even ones, then the even ones
            for k in range(n):
                if (k + 1) % 2 != parity:
                    continue
                if k in problem.clamp:
                    out[k] = problem.clamp[k]
                    continue
                h = system.block_field(k, tuple(out), problem.drive)
                if problem.nudged and k == problem.nudged_index:
                    assert problem.cost is not None and problem.target is not None
                    _, lin = problem.cost.nudge(out[k], problem.target)
                    h = h + problem.beta * lin
                out[k] = (
                    _draw(h, temperature)
                    if self.update == "heat_bath"
                    else _metropolis(out[k], h, temperature)
                )
        return tuple(out)


def _draw(field: Tensor, temperature: float) -> Tensor:
    if temperature == 0:
        return torch.where(field >= 0, 1.0, -1.0).to(field.dtype)
    p_up = torch.sigmoid(2.0 * field / temperature)
    return torch.where(torch.rand_like(p_up) < p_up, 1.0, -1.0).to(field.dtype)


def _metropolis(spins: Tensor, field: Tensor, temperature: float) -> Tensor:
    """One Metropolis proposal per spin (a layer's spins are independent given its neighbours): flip ``s → −s``,
    which changes the energy by ``ΔE = 2hs``, accepted with probability ``min(1, exp(−ΔE/T))``. The state may
    start off ±1 (a relaxation's zero start): it is first set to the sign of the field."""
    s = torch.where(spins.abs() == 1, spins, torch.where(field >= 0, 1.0, -1.0).to(field.dtype))
    delta = 2.0 * field * s
    if temperature == 0:
        accept = delta <= 0
    else:
        accept = torch.rand_like(delta) < torch.exp(-delta.clamp_min(0.0) / temperature)
    return torch.where(accept, -s, s)
