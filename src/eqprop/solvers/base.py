"""What every solver shares: the total energy F = E + βC, the result types, and :func:`solve`."""

from __future__ import annotations

import cmath
import copy
import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError, ConvergenceError, DivergenceError
from eqprop.systems.base import EnergySystem, kkt_residual

__all__ = ["Equilibrium", "SolveStats", "Solver", "TotalEnergy", "relax", "solve"]


class TotalEnergy:
    r"""The function a relaxation minimises: ``F(s) = E(θ, x, s) + β·C(s, y)``, with the system's fast paths.

    Built once per batch: it checks the input (and the labels) once, and holds what stays constant while the
    state relaxes, the input drive (``system.prepare(x)``) and the prepared target, so that nothing constant is
    recomputed inside the relaxation loop. :meth:`with_nudging` gives the same batch at another β, or with
    variables clamped, sharing both: that is how the phases of one training step reuse them.

    ``clamp`` (optional) holds some state variables fixed: ``{k: value}`` with ``value`` of shape
    ``(batch, *variables[k].shape)``. A clamped variable is a constant of the relaxation (as the input is):
    the solvers leave it at ``value`` exactly (not projected onto its box) and minimise ``F`` over the
    others. This is how contrastive and coupled learning hold the output layer at a target.
    :meth:`energy` and :meth:`grad` are unchanged (``grad`` still reports ``∂F/∂s_k`` of a clamped ``k``).

    Raises:
        ConfigError: ``x`` of the wrong shape or dtype, ``y`` of another batch size or not a valid target,
            a nonzero ``beta`` without ``cost`` and ``y``, a ``beta`` the cost refuses, a bad ``clamp``.
    """

    def __init__(
        self,
        system: EnergySystem,
        x: Tensor,
        *,
        cost: Cost | None = None,
        y: Tensor | None = None,
        beta: float = 0.0,
        clamp: Mapping[int, Tensor] | None = None,
    ) -> None:
        system.check_input(x)
        self.system = system
        self.x = x
        self.cost = cost
        self.target: Tensor | None = None
        self.nudged_index: int | None = None
        if cost is not None and y is not None:
            if y.shape[0] != x.shape[0]:
                raise ConfigError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
            self.nudged_index = cost.target_index % len(system.variables)
            like = torch.empty(
                (x.shape[0], *system.variables[self.nudged_index].shape), dtype=x.dtype, device=x.device
            )
            self.target = cost.prepare_target(y, like)
        self.drive = system.prepare(x)
        self._set_nudging(beta, clamp)

    def with_nudging(self, beta: float = 0.0, *, clamp: Mapping[int, Tensor] | None = None) -> TotalEnergy:
        """The same batch at nudging ``beta`` (and with ``clamp``), sharing this one's input drive and target:
        only ``beta`` and ``clamp`` are checked."""
        other = copy.copy(self)
        other._set_nudging(beta, clamp)
        return other

    def _set_nudging(self, beta: float | complex, clamp: Mapping[int, Tensor] | None) -> None:
        if isinstance(beta, complex) and beta.imag == 0.0:
            beta = beta.real
        beta = beta if isinstance(beta, complex) else float(beta)
        if beta != 0.0 and self.target is None:
            raise ConfigError(f"solve(beta={beta}) nudges the output: pass cost=... and y=... (or beta=0.0)")
        if isinstance(beta, complex):  # holomorphic EqProp: the state is complex, the cost's bound is moot
            if not cmath.isfinite(beta):
                raise ConfigError(f"beta={beta} is not a finite number")
        elif self.cost is not None:
            self.cost.check_beta(beta, self.system)
        self.beta = beta
        self.clamp: dict[int, Tensor] = _check_clamp(self.system, self.x, clamp)
        self._updates: list[Callable[[State], Tensor]] | None = None

    @property
    def nudged(self) -> bool:
        return self.beta != 0.0 and self.target is not None

    def energy(self, state: State) -> Tensor:
        """``F`` per example, shape ``(batch,)``."""
        e = self.system.energy(self.x, state)
        if self.nudged:
            assert self.cost is not None and self.target is not None  # narrowed by `nudged`
            e = e + self.beta * self.cost(state, self.target)
        return e

    def grad(self, state: State) -> State:
        """``∂F/∂s`` for every variable (system fast path when it has one, else autograd)."""
        g = list(self.system.state_grad(self.x, state, self.drive))
        if self.nudged and state[self.nudged_index].is_complex():  # holomorphic: the cost's tangent model
            assert self.cost is not None and self.target is not None and self.nudged_index is not None
            k = self.nudged_index
            c, lin = self.cost.nudge(state[k], self.target)
            g[k] = g[k] + self.beta * (c * state[k] - lin)
        elif (
            self.nudged and (fast := self.cost.output_grad(state[self.nudged_index], self.target)) is not None
        ):  # type: ignore[union-attr, arg-type]
            g[self.nudged_index] = g[self.nudged_index] + self.beta * fast  # type: ignore[index]
        elif self.nudged:
            assert self.cost is not None and self.target is not None and self.nudged_index is not None
            k = self.nudged_index
            create = torch.is_grad_enabled()  # inside backprop-through-the-solver: keep the graph
            with torch.enable_grad():
                sk = state[k] if create and state[k].requires_grad else state[k].detach().requires_grad_(True)
                leaves = (*state[:k], sk, *state[k + 1 :])
                (gc,) = torch.autograd.grad(self.cost(leaves, self.target).sum(), [sk], create_graph=create)
            g[k] = g[k] + self.beta * gc
        return tuple(g)

    def block_minimize(self, k: int, state: State) -> Tensor:
        """The exact minimiser of ``F`` in variable ``k`` given the others, projected onto its box.

        With curvature ``a`` of ``E`` in ``s_k`` and the cost's quadratic model ``(c, l)`` this is
        ``clip((h_k + βl) / (a + βc))``. For a cost whose model depends on the state (cross-entropy readout)
        the model is re-evaluated at the current state: a fixed-point step, not an exact minimisation.
        """
        return self.block_updates()[k](state)

    def block_updates(self) -> list[Callable[[State], Tensor]]:
        """One closure per variable with every constant of this relaxation folded in (built once)."""
        if self._updates is None:
            self._updates = self._build_updates()
        return self._updates

    def _build_updates(self) -> list[Callable[[State], Tensor]]:
        system = self.system
        nudged = self.nudged_index if self.nudged else None
        updates: list[Callable[[State], Tensor]] = []
        for k in range(len(system.variables)):
            if k in self.clamp:  # held fixed: its "minimiser" is the clamp value itself
                updates.append(_held(self.clamp[k]))
                continue
            if k == nudged:
                assert self.cost is not None and self.target is not None
                if self.cost.constant_nudge:
                    c, lin = self.cost.nudge(None, self.target)
                    updates.append(
                        system.block_minimizer(
                            k, self.drive, shift=self.beta * lin, scale=system.block_scale(k, self.beta * c)
                        )
                    )
                else:
                    updates.append(self._moving_nudge_update(k, system.block_curvature(k)))
            else:  # the system's 1/a_k: computed once per parameter update where it caches it
                updates.append(system.block_minimizer(k, self.drive, scale=system.block_scale(k)))
        return updates

    def _moving_nudge_update(self, k: int, a: float | Tensor) -> Callable[[State], Tensor]:
        system, cost, target, beta = self.system, self.cost, self.target, self.beta
        assert cost is not None and target is not None
        lo, hi = system.block_bounds(k)

        def update(state: State) -> Tensor:
            c, lin = cost.nudge(state[k], target)  # the nudging force at the current state
            h = (system.block_field(k, state, self.drive) + beta * lin) / (a + beta * c)
            return h.clamp(lo, hi) if (lo is not None or hi is not None) else h

        return update


def _held(value: Tensor) -> Callable[[State], Tensor]:
    return lambda state: value


def _check_clamp(system: EnergySystem, x: Tensor, clamp: Mapping[int, Tensor] | None) -> dict[int, Tensor]:
    """``clamp`` with its keys made non-negative and its values on ``x``'s device and dtype."""
    if not clamp:
        return {}
    n = len(system.variables)
    out: dict[int, Tensor] = {}
    for key, value in clamp.items():
        if isinstance(key, bool) or not isinstance(key, int) or not -n <= key < n:
            raise ConfigError(
                f"clamp key {key!r}: expected the index of a state variable, an integer in [{-n}, {n})",
                hint=f"the variables are {', '.join(v.name for v in system.variables)}",
            )
        k = key % n
        v = system.variables[k]
        if not isinstance(value, Tensor) or tuple(value.shape) != (x.shape[0], *v.shape):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ConfigError(
                f"clamp[{key}] must be a tensor of shape {(x.shape[0], *v.shape)} (variable {v.name}), got {got}"
            )
        if k in out:
            raise ConfigError(f"clamp names variable {v.name} twice (keys {k} and {k - n})")
        out[k] = value.to(device=x.device, dtype=x.dtype)
    return out


@dataclass(frozen=True)
class SolveStats:
    """Diagnostics of one relaxation. Tensors are ``(batch,)`` and stay on the device (no host sync).

    Attributes:
        iterations: sweeps performed.
        residual: largest change of any unit during the last sweep, per example (0 at an exact fixed point).
        converged: ``residual <= tol`` (all True when the solver has no tolerance).
        finite: whether every unit of the example's final state is finite.
    """

    iterations: int
    residual: Tensor
    converged: Tensor
    finite: Tensor


@dataclass(frozen=True)
class Equilibrium:
    """A relaxed state and how it was reached. ``energy`` is ``F = E + βC`` per example, computed on demand."""

    state: State
    beta: float | complex
    stats: SolveStats
    problem: TotalEnergy

    @property
    def energy(self) -> Tensor:
        return self.problem.energy(self.state)

    @property
    def kkt_residual(self) -> Tensor:
        """How far the state is from a minimum of ``F`` over the boxes, per example: the largest ``|∂F/∂s|`` of
        a unit inside its box, ``max(∓∂F/∂s, 0)`` of a unit on a lower / upper bound, and the distance of a
        unit outside its box. 0 exactly at an equilibrium. For a resistive network ``∂E/∂V`` is minus the net
        current into a node, so this is the largest Kirchhoff imbalance (or diode-complementarity violation)
        in amperes. Computed on demand (one gradient evaluation)."""
        with torch.no_grad():
            grads = self.problem.grad(self.state)
        return kkt_residual(self.state, grads, self.problem.system.variables)


class Solver(metaclass=ABCMeta):
    """A relaxation algorithm: :meth:`step` is one sweep; :meth:`run` repeats it, with no host sync inside
    except the tolerance check every ``check_every`` sweeps (when ``tol`` is set).

    Subclasses are frozen dataclasses with the fields ``iterations``, ``tol``, ``check_every`` and ``norm``:
    ``norm="max"`` measures each example's largest change of any unit in a sweep and stops when every
    example is within ``tol``; ``norm="layer-l1"`` is the criterion of the AEqprop reference code: stop when,
    for every layer, the change summed over units *and over the batch* is within ``tol``.
    """

    iterations: int
    tol: float | None
    check_every: int
    norm: str
    kind: ClassVar[str]
    """The solver's name in a run configuration (``solver.kind``)."""
    supports_clamp: ClassVar[bool] = False
    """Whether :meth:`step` holds the variables of ``problem.clamp`` fixed (``solve`` refuses a clamp otherwise)."""

    @abstractmethod
    def step(self, problem: TotalEnergy, state: State) -> State:
        """One sweep, out of place and differentiable (backprop through the relaxation uses it)."""

    def _validate(self) -> None:
        name = type(self).__name__
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ConfigError(f"{name}(iterations={self.iterations!r}): need an integer >= 0")
        if self.tol is not None and not self.tol > 0:
            raise ConfigError(f"{name}(tol={self.tol!r}): need tol > 0, or None for a fixed number of sweeps")
        if (
            isinstance(self.check_every, bool)
            or not isinstance(self.check_every, int)
            or self.check_every < 1
        ):
            raise ConfigError(f"{name}(check_every={self.check_every!r}): need an integer >= 1")
        if self.norm not in NORMS:
            raise ConfigError(f"{name}(norm={self.norm!r}): choose one of {', '.join(map(repr, NORMS))}")

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        """The sweep as a closure over ``problem``, built once per relaxation (solvers override it to bind
        their per-layer updates in advance: the hot loop then makes no lookups)."""
        return lambda state: self.step(problem, state)

    def run(self, problem: TotalEnergy, state: State) -> tuple[State, SolveStats]:
        """Relax ``state``: ``iterations`` sweeps, or fewer once every example is within ``tol``."""
        n = self.iterations
        sweep = self.make_sweep(problem)  # also where a solver refuses the problem, even for 0 sweeps
        if n == 0:  # no sweep at all
            residual = state[0].new_zeros(state[0].shape[0])
            converged = torch.ones_like(residual, dtype=torch.bool)
            return state, SolveStats(
                iterations=0, residual=residual, converged=converged, finite=_finite(state)
            )
        tol, norm = self.tol, self.norm
        done = n
        if tol is None:  # hot loop: the sweeps alone; the statistics of the last one only
            for _ in range(n - 1):
                state = sweep(state)
            new = sweep(state)
            residual, within = _change(state, new, norm, None)
            state = new
        else:
            every = self.check_every
            residual = within = None
            for it in range(1, n + 1):  # no .item() but the tolerance check every `check_every` sweeps
                new = sweep(state)
                last = it == n
                checking = it % every == 0
                if last or checking:
                    residual, within = _change(state, new, norm, tol)
                state = new
                if checking and not last and bool(within.all()):  # type: ignore[union-attr]  # host sync
                    done = it
                    break
            assert residual is not None
        converged = within if within is not None else torch.ones_like(residual, dtype=torch.bool)
        # A non-finite unit makes the last sweep's change NaN or inf (NaN and inf persist through the
        # updates), so the residual's finiteness is the state's. The residual is a largest or summed
        # absolute change, >= 0 or NaN or +inf, so `residual < inf` is `isfinite(residual)` in one kernel
        # (torch.isfinite is four).
        finite = torch.lt(residual, _INF)
        return state, SolveStats(iterations=done, residual=residual, converged=converged, finite=finite)


_INF = torch.tensor(math.inf)  # a 0-dim CPU tensor: a scalar operand on any device, no wrapping per call


NORMS = ("max", "layer-l1")


def _change(old: State, new: State, norm: str, tol: float | None) -> tuple[Tensor, Tensor | None]:
    """``(residual, within)`` per example: the sweep's change, and whether it meets ``tol`` (see Solver;
    ``None`` without a tolerance)."""
    l1 = norm == "layer-l1"
    if not l1 and _concatenable(old, new):  # one sub, abs and amax for all the layers: fewer small kernels
        d = torch.sub(torch.cat(new, 1), torch.cat(old, 1))
        residual = (d.abs() if d.is_complex() else d.abs_()).amax(1)
        return residual, (None if tol is None else residual <= tol)
    residual = None
    batch_ok = None
    for a, b in zip(old, new, strict=True):
        d = torch.sub(b, a)
        d = d.abs() if d.is_complex() else d.abs_()
        if d.dim() != 2:
            d = d.flatten(1)
        r = d.sum(1) if l1 else d.amax(1)
        residual = r if residual is None else torch.maximum(residual, r)
        if l1 and tol is not None:
            ok = r.sum() <= tol  # summed over the batch too, as the AEqprop reference code does
            batch_ok = ok if batch_ok is None else batch_ok & ok
    assert residual is not None  # a system has at least one variable
    if tol is None:
        return residual, None
    if l1:
        assert batch_ok is not None
        return residual, batch_ok.expand(residual.shape)
    return residual, residual <= tol


_CONCAT_LIMIT = 1 << 14
"""Largest state (elements, whole batch) whose change `_change` measures on the concatenated layers: there
the kernel launches dominate; above it the copies would cost more than the launches they save."""


def _concatenable(old: State, new: State) -> bool:
    """Whether the largest change of ``new`` over ``old`` can be taken on the concatenated layers: several 2-D
    layers of one dtype, small. (The maximum of the same absolute differences: the same residual, bit for bit.)"""
    if len(new) < 2 or len(old) != len(new):
        return False
    dtype = new[0].dtype
    size = 0
    for a, b in zip(old, new, strict=True):
        if a.dim() != 2 or b.dim() != 2 or a.dtype != dtype or b.dtype != dtype:
            return False
        size += b.numel()
    return size <= _CONCAT_LIMIT


def _finite(state: State) -> Tensor:
    flags = [torch.isfinite(s).flatten(1).all(1) for s in state]
    out = flags[0]
    for f in flags[1:]:
        out = out & f
    return out


def solve(
    system: EnergySystem,
    x: Tensor,
    solver: Solver,
    *,
    cost: Cost | None = None,
    y: Tensor | None = None,
    beta: float = 0.0,
    init: State | None = None,
    throw: bool = True,
    clamp: Mapping[int, Tensor] | None = None,
) -> Equilibrium:
    r"""Relax ``system`` with input ``x`` to an equilibrium of ``F = E + β·C``.

    Main arguments:
        system: the physical system (its energy and state variables).
        x: the input, ``(batch, *system.input_shape)``.
        solver: how to relax, e.g. ``BlockCoordinate(iterations=15)``.

    Other arguments:
        cost, y, beta: the nudging (``beta = 0`` is the free phase; a nonzero ``beta`` needs ``cost`` and ``y``).
        init: starting state (warm start, e.g. ``init=free.state`` for a nudged phase); default zeros.
        throw: raise at the end if the state is non-finite, or above the solver's tolerance.
        clamp: ``{k: value}``: hold variable ``k`` at ``value`` ``(batch, *shape)`` and relax the others
            (e.g. ``clamp={-1: y_onehot}`` clamps the output, as contrastive learning does). The starting
            state takes the clamp values; they are used as given (not projected onto the box).

    Returns:
        :class:`Equilibrium` with the state, ``beta`` and :class:`SolveStats`.

    Raises:
        ConfigError: bad shapes, ``beta`` or ``clamp``. DivergenceError: non-finite state (``throw=True``).
        ConvergenceError: examples above ``solver.tol`` (``throw=True``).

    Several relaxations of one batch (a free phase, then nudged ones) share the input drive and the target:
    :class:`~eqprop.solvers.Phases` relaxes them without computing those twice.
    """
    problem = TotalEnergy(system, x, cost=cost, y=y, beta=beta, clamp=clamp)
    return relax(problem, solver, init=init, throw=throw)


def relax(
    problem: TotalEnergy, solver: Solver, *, init: State | None = None, throw: bool = True
) -> Equilibrium:
    """Relax a prepared :class:`TotalEnergy` (what :func:`solve` does once it has built one); ``init`` and
    ``throw`` as in :func:`solve`."""
    system = problem.system
    if problem.clamp and not solver.supports_clamp:
        raise ConfigError(
            f"{type(solver).__name__} cannot hold state variables fixed (clamp=...)",
            hint="relax with BlockCoordinate(...) or GradientFlow(...)",
        )
    if init is None:
        init = system.init_state(problem.x)
    else:
        system.check_state(init, problem.x.shape[0])
    if problem.clamp:
        init = tuple(problem.clamp.get(k, s) for k, s in enumerate(init))
    if torch.is_grad_enabled():
        with torch.no_grad():
            state, stats = solver.run(problem, tuple(init))
    else:  # already off (e.g. inside a rule): no context to enter
        state, stats = solver.run(problem, tuple(init))
    eq = Equilibrium(state=state, beta=problem.beta, stats=stats, problem=problem)
    if throw:
        check_equilibrium(eq, solver)
    return eq


def check_equilibrium(eq: Equilibrium, solver: Solver) -> None:
    """Raise if ``eq`` is non-finite or (with a tolerance) unconverged. One host sync."""
    stats = eq.stats
    bad = int((~stats.finite).sum())  # host sync, once per relaxation
    if bad:
        raise DivergenceError(
            f"non-finite state in {bad} of {len(stats.finite)} examples after {stats.iterations} sweeps "
            f"(beta={eq.beta})",
            hint="lower the learning rate or beta, or check the inputs for NaN/inf",
        )
    if solver.tol is not None:
        late = int((~stats.converged).sum())
        if late:
            raise ConvergenceError(
                f"{late} of {len(stats.converged)} examples above tol={solver.tol} after "
                f"{stats.iterations} sweeps (largest residual {float(stats.residual.max()):.3g})",
                hint="raise `iterations`, loosen `tol`, or pass throw=False",
            )
