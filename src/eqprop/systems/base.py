"""The contract every physical system follows.

A system is a ``torch.nn.Module`` with ordinary parameters. It names its state variables (with their box
constraints) and returns the energy of each example, ``energy(x, state) -> (batch,)``. Everything else is an
optional fast path with a generic autograd fallback, and the tests check that the two agree:

- ``prepare(x)``: whatever is constant during a relaxation (for layered nets, the input drive ``W₀x + b₁``),
  computed once per batch and handed back to the other fast paths as ``drive``;
- ``block_field(k, state, drive)`` and ``block_curvature(k)``: for energies that are quadratic in one
  variable given the others, ``E = ½·a‖s_k‖² − h_k·s_k + (terms without s_k)``; the exact block minimiser over
  the box is then ``clip(h_k / a)``, with ``block_scale(k, shift)`` = ``1/(a + shift)`` its factor (which a
  system with a per-unit curvature computes once per parameter update);
- ``state_grad(x, state, drive)``: ∂E/∂s for every variable;
- ``param_grad_difference(x, state_a, state_b)``: ∂E/∂θ(s_b) − ∂E/∂θ(s_a), batch mean — what EqProp needs.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._types import Bound, State, Variable
from eqprop.errors import ConfigError

__all__ = ["EnergySystem", "kkt_residual", "layer_count", "layer_value"]


class EnergySystem(nn.Module, metaclass=ABCMeta):
    """Base class of energy-based systems: ``E(θ, x, s)`` per example, plus optional fast paths.

    Subclasses set ``self.variables`` (a tuple of :class:`~eqprop.Variable`) and ``self.input_shape`` and
    implement :meth:`energy`.
    """

    variables: tuple[Variable, ...]
    input_shape: tuple[int, ...]

    # -- the generic contract -------------------------------------------------------------------------------
    @abstractmethod
    def energy(self, x: Tensor, state: State) -> Tensor:
        """The energy of each example, shape ``(batch,)``."""

    def init_state(self, x: Tensor) -> State:
        """The starting state of a relaxation: zeros, projected into each variable's box."""
        batch = x.shape[0]
        out = []
        for v in self.variables:
            s = torch.zeros((batch, *v.shape), dtype=x.dtype, device=x.device)
            out.append(self.project(s, v))
        return tuple(out)

    @staticmethod
    def project(s: Tensor, variable: Variable) -> Tensor:
        """Project ``s`` onto the box of ``variable`` (no copy when unbounded)."""
        lo, hi = variable.bounds
        if lo is None and hi is None:
            return s
        return s.clamp(lo, hi)

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`ConfigError` unless ``x`` has shape ``(batch, *input_shape)`` and a float dtype."""
        if not isinstance(x, Tensor):
            raise ConfigError(f"{self._label()} expects x as a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != tuple(self.input_shape) or x.dim() != len(self.input_shape) + 1:
            raise ConfigError(
                f"{self._label()} expects x of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}",
                hint="flatten images to (batch, features) for dense systems, or fix the system's input size",
            )
        if not x.is_floating_point():
            raise ConfigError(f"{self._label()} expects a floating-point x, got dtype {x.dtype}")
        param = next(self.parameters(), None)
        if param is not None and param.dtype != x.dtype:
            raise ConfigError(
                f"{self._label()} has {str(param.dtype).removeprefix('torch.')} parameters but x is "
                f"{str(x.dtype).removeprefix('torch.')}",
                hint=f"convert one of them: x.to({param.dtype}), or system.to({x.dtype})",
            )

    def check_state(self, state: Sequence[Tensor], batch: int) -> None:
        """Raise :class:`ConfigError` unless ``state`` matches ``self.variables`` for ``batch`` examples."""
        if len(state) != len(self.variables):
            raise ConfigError(
                f"{self._label()} has {len(self.variables)} state variables "
                f"({', '.join(v.name for v in self.variables)}), got a state of {len(state)} tensors"
            )
        for v, s in zip(self.variables, state, strict=True):
            if tuple(s.shape) != (batch, *v.shape):
                raise ConfigError(
                    f"state variable {v.name} must have shape {(batch, *v.shape)}, got {tuple(s.shape)}"
                )

    def blocks_coupled(self, i: int, j: int) -> bool:
        """Whether state variables ``i`` and ``j`` share an energy term. Default: a layered chain, where each
        layer touches only its neighbours. Block solvers update uncoupled variables together."""
        return abs(i - j) == 1

    def check_cost(self, cost: nn.Module) -> None:
        """Raise :class:`ConfigError` if this system cannot be trained with ``cost``. Default: any cost will do."""
        return

    def constrain_parameters(self) -> None:
        """Project the parameters back onto the values the physics allows, in place, after an update (e.g.
        conductances ``>= 0``). The training loop calls it after every optimizer step. Default: nothing."""

    def active_mask(self, state: State) -> tuple[Tensor, ...]:
        """Which units are free (not held at a bound) at ``state``: the set implicit differentiation moves.

        A unit sitting exactly on its box bound is treated as clamped there; at an exact equilibrium of a
        block solver, those are the units whose unconstrained minimiser lies outside the box.
        """
        masks = []
        for v, s in zip(self.variables, state, strict=True):
            m = torch.ones_like(s, dtype=torch.bool)
            lo, hi = v.bounds
            if lo is not None:
                m &= s > lo
            if hi is not None:
                m &= s < hi
            masks.append(m)
        return tuple(masks)

    @property
    def stationary(self) -> bool:
        """Whether the solver's states are stationary points of ``E + βC``: what EqProp's theorem (and implicit
        differentiation) needs. False for a trajectory integrated forward from initial conditions. Default: True."""
        return True

    def check_stationary(self, rule: str) -> None:
        """Raise :class:`ConfigError` (naming what to use instead) if ``rule``, which reads the state as a
        stationary point of ``E + βC``, cannot train this system. Default: it can."""
        return

    def hessian_solve(self, x: Tensor, state: State, rhs: State, shift: State | None = None) -> State | None:
        """Solve ``(∂²E/∂s² + diag(shift)) z = rhs`` per example, exactly, when the system knows how (e.g. a
        block-tridiagonal action Hessian), else ``None`` (the default): implicit differentiation then uses
        conjugate gradients, and the Newton solver refuses the system."""
        return None

    @property
    def has_energy(self) -> bool:
        """Whether :meth:`energy` exists. False for a dynamics that is not a gradient field (a network with
        backward weights of its own): solvers follow its field, and what needs an energy (its value, the
        implicit-differentiation gradient) is skipped or refused. Default: True."""
        return True

    def diagnostics(self) -> dict[str, Tensor]:
        """Scalars about the parameters that a training run logs with its diagnostics (e.g. the angle between
        forward and backward weights), as 0-dim tensors. Default: none."""
        return {}

    # -- optional fast paths, with generic fallbacks ------------------------------------------------------
    def prepare(self, x: Tensor) -> Any:
        """Quantities that stay constant during a relaxation (computed once per batch)."""
        return None

    @property
    def quadratic_blocks(self) -> bool:
        """Whether each variable's energy, given the others, is ``½a‖s_k‖² − h_k·s_k`` on a box, so that its block
        minimiser is a clip of ``h_k/a`` (what solvers that model each unit as linear, like ``settling``, need).
        False for a system with nonlinear self terms (Shockley diodes), whose block minimiser solves them.
        Default: True."""
        return True

    @property
    def has_block_minimizer(self) -> bool:
        """Whether :meth:`block_field` / :meth:`block_curvature` are implemented."""
        return False

    def block_field(self, k: int, state: State, drive: Any) -> Tensor:
        """The linear coefficient ``h_k`` of ``E = ½·a‖s_k‖² − h_k·s_k + …`` (given the other variables)."""
        raise self._no_block_minimizer()

    def block_bounds(self, k: int) -> tuple[Bound, Bound]:
        """The box the exact block minimiser of variable ``k`` clips to (default: the variable's bounds)."""
        return self.variables[k].bounds

    def block_minimizer(
        self, k: int, drive: Any, *, shift: Tensor | None = None, scale: float | Tensor = 1.0
    ) -> Callable[[State], Tensor]:
        """The exact block minimiser of variable ``k`` as a function of the state, with everything constant
        bound in advance: ``state ↦ clip(scale·(h_k(state) + shift))`` onto :meth:`block_bounds`.

        Built once per relaxation (``shift`` and ``scale`` carry the nudging), called every sweep. Systems
        override it to fold the constants into fused kernels; this default composes :meth:`block_field`.
        """
        lo, hi = self.block_bounds(k)
        bounded = lo is not None or hi is not None
        unit = isinstance(scale, float) and scale == 1.0

        def update(state: State) -> Tensor:
            h = self.block_field(k, state, drive)
            if shift is not None:
                h = h + shift
            if not unit:
                h = h * scale
            return h.clamp(lo, hi) if bounded else h

        return update

    def block_activation(self, k: int) -> Callable[[Tensor], Tensor]:
        """``σ_k``: the minimiser over variable ``k``'s box of its self term minus ``h·s_k``, as a function of the
        field ``h`` (what :class:`~eqprop.solvers.Synchronous` applies to ``∂Φ/∂s_k``). Default, for the self term
        ``½a‖s_k‖²`` of :meth:`block_curvature`: ``h ↦ clip(h / a)`` onto :meth:`block_bounds`."""
        a = self.block_curvature(k)
        lo, hi = self.block_bounds(k)
        bounded = lo is not None or hi is not None
        unit = isinstance(a, float) and a == 1.0

        def activation(h: Tensor) -> Tensor:
            if not unit:
                h = h / a
            return h.clamp(lo, hi) if bounded else h

        return activation

    def block_curvature(self, k: int) -> float | Tensor:
        """The curvature ``a`` of the energy in variable ``k`` (a scalar or a per-unit tensor)."""
        raise self._no_block_minimizer()

    def block_scale(self, k: int, shift: Any = None) -> float | Tensor:
        """The ``scale`` that :meth:`block_minimizer` takes for variable ``k``: ``1/a`` (``shift=None``; exactly
        ``1.0`` for a float curvature of 1), or ``1/(a + shift)`` for a nudged layer (``shift = β·c``, the cost's
        curvature term), with ``a`` = :meth:`block_curvature`. Systems with a cached tensor curvature override
        it to compute each reciprocal once per parameter update instead of once per relaxation."""
        a = self.block_curvature(k)
        if shift is None:
            return 1.0 if isinstance(a, float) and a == 1.0 else 1.0 / a
        return 1.0 / (a + shift)

    def state_grad(self, x: Tensor, state: State, drive: Any = None) -> State:
        """∂E/∂s for every variable (per example, not averaged). Generic path: autograd on :meth:`energy`."""
        create = torch.is_grad_enabled()  # inside backprop-through-the-solver: keep the graph
        with torch.enable_grad():
            leaves = tuple(
                s if create and s.requires_grad else s.detach().requires_grad_(True) for s in state
            )
            grads = torch.autograd.grad(self.energy(x, leaves).sum(), leaves, create_graph=create)
        return tuple(grads)

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """∂E/∂θ at ``state``, averaged over the batch, keyed like ``named_parameters()``. Generic path."""
        params = dict(self.named_parameters())
        with torch.enable_grad():
            e = self.energy(x, tuple(s.detach() for s in state)).mean()
            grads = torch.autograd.grad(e, list(params.values()), allow_unused=True)
        return {
            name: torch.zeros_like(p) if g is None else g
            for (name, p), g in zip(params.items(), grads, strict=True)
        }

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·[∂E/∂θ(s_b) − ∂E/∂θ(s_a)]``, batch mean: the contrast every EqProp-type rule measures.

        ``out`` (optional): tensors to write the results into, keyed like the result (e.g. the ``.grad``
        buffers); the returned dict then holds those same tensors.
        """
        ga = self.param_grads(x, state_a)
        gb = self.param_grads(x, state_b)
        result = {name: (gb[name] - ga[name]) * scale for name in ga}
        if out is not None:
            for name, buffer in out.items():
                result[name] = buffer.copy_(result[name])
        return result

    def _no_block_minimizer(self) -> ConfigError:
        return ConfigError(
            f"{type(self).__name__} has no exact block minimiser",
            hint="relax it with GradientFlow(...) instead of BlockCoordinate(...)",
        )

    def _label(self) -> str:
        return type(self).__name__


def kkt_residual(state: Sequence[Tensor], grads: Sequence[Tensor], variables: Sequence[Variable]) -> Tensor:
    """The largest violation of the optimality conditions of ``min F`` over the variables' boxes, per example,
    given ``grads = ∂F/∂s`` at ``state``: ``|g|`` for a unit inside its box, ``max(−g, 0)`` on a lower bound,
    ``max(g, 0)`` on an upper bound, and the distance of a unit outside its box. 0 exactly at a minimum."""
    worst = state[0].new_zeros(state[0].shape[0])
    for s, g, v in zip(state, grads, variables, strict=True):
        lo, hi = v.bounds
        viol = g.abs()
        if lo is not None:
            viol = torch.where(s <= lo, (-g).clamp_min(0), viol).maximum((lo - s).clamp_min(0))
        if hi is not None:
            viol = torch.where(s >= hi, g.clamp_min(0), viol).maximum((s - hi).clamp_min(0))
        worst = torch.maximum(worst, viol.flatten(1).amax(1))
    return worst


_LAYER_KINDS = ("weights", "conductances", "biases", "feedback")
"""Parameter names ``<kind>.<k>`` that belong to layer ``k``: weight (or conductance) matrix ``k``, the bias
of the layer it feeds, and the backward weights of a vector-field net in weight ``k``'s place. Per-layer settings (learning rates, AEqprop's ε) are indexed this way."""


def layer_count(system: nn.Module) -> int:
    """How many layers per-layer settings have for ``system``: its weight (or conductance) tensors."""
    return sum(1 for n, _ in system.named_parameters() if n.partition(".")[0] in ("weights", "conductances"))


def layer_value(
    name: str, value: float | Sequence[float], biases: float | Sequence[float] | None = None
) -> float:
    """The value of a per-layer setting for the parameter ``name``: ``biases`` (when given) for ``biases.k``,
    else ``value``; a number applies to every layer, a list holds one value per layer ``k``.

    Raises:
        ConfigError: a list for a parameter that is not named ``weights.k``, ``conductances.k`` or ``biases.k``.
    """
    kind, _, index = name.partition(".")
    chosen = biases if kind == "biases" and biases is not None else value
    if isinstance(chosen, int | float):
        return float(chosen)
    if kind not in _LAYER_KINDS or not index.isdigit():
        raise ConfigError(
            f"per-layer values need parameters named weights.k (or conductances.k) / biases.k, got {name!r}",
            hint="give one value for every parameter instead of a list",
        )
    return float(chosen[int(index)])
