"""What every learning rule shares: the :class:`Rule` contract, the :class:`Estimate` it returns, and the one
β convention of the two-phase rules.

**The β convention.** A two-phase rule (EqProp, coupled learning, AEqprop) contrasts two phases nudged (or
clamped) at ``β₁ < β₂``, chosen by its ``variant`` from one ``beta > 0``: ``"positive"`` (0, +β),
``"negative"`` (−β, 0) or ``"centered"`` (−β, +β). The estimate is divided by ``β₂ − β₁``: β for the one-sided
variants, 2β for the centered one. This is the convention of Laborieux et al. (2021) and of Scellier, Ernoult,
Kendall & Kumar (2023); the AEqprop paper's β is the spread ``β₂ − β₁`` (its centered mode nudges at ±β/2).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor, nn

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.solvers.base import Equilibrium, Solver
from eqprop.solvers.phases import Phases
from eqprop.systems.base import EnergySystem

if TYPE_CHECKING:
    from typing import Self

__all__ = ["VARIANTS", "Estimate", "Rule", "Variant", "named_parameters", "phase_betas"]

Variant = Literal["positive", "negative", "centered"]
VARIANTS: tuple[str, ...] = ("positive", "negative", "centered")


def phase_betas(variant: str, beta: float) -> tuple[float, float]:
    """``(β₁, β₂)`` of a two-phase rule: (0, β), (−β, 0) or (−β, +β) (see the module docstring)."""
    b = float(beta)
    return {"positive": (0.0, b), "negative": (-b, 0.0), "centered": (-b, b)}[variant]


def check_beta_and_variant(owner: str, beta: object, variant: object) -> None:
    """Raise :class:`ConfigError` unless ``beta`` is a finite number > 0 and ``variant`` one of :data:`VARIANTS`."""
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < float("inf"):
        raise ConfigError(
            f"{owner}(beta={beta!r}): beta must be a finite number > 0; the sign of each phase comes from "
            "`variant`"
        )
    if variant not in VARIANTS:
        raise ConfigError(f"{owner}(variant={variant!r}): choose 'positive', 'negative' or 'centered'")


def named_parameters(system: EnergySystem, cost: Cost | None) -> dict[str, nn.Parameter]:
    """The trainable parameters a rule estimates, keyed ``"system.<name>"`` and ``"cost.<name>"``."""
    out = {f"system.{n}": p for n, p in system.named_parameters()}
    if cost is not None:
        out.update({f"cost.{n}": p for n, p in cost.named_parameters()})
    return out


@dataclass(frozen=True)
class Estimate:
    """A rule's output: an estimate of ∂L/∂θ plus what was measured on the way.

    Attributes:
        grads: keyed like :func:`named_parameters` (``"system.weights.0"``, ``"cost.weight"``).
        loss: mean cost at the free equilibrium (0-dim tensor, on the device).
        scores: class scores at the free equilibrium ``(batch, classes)`` (for accuracy).
        phases: the equilibria the rule relaxed to (free first).
        metrics: extra tensors (e.g. residuals); the trainer syncs them once per log interval.
        final_state: the state the system was left in, if not the last phase's (see :attr:`last_state`).
        applied: the rule has already applied its updates through the ``apply`` callback of
            :meth:`Rule.gradients` (continual EqProp learns during the nudged phase); ``grads`` then sums what it
            applied, and the caller must not step the optimizer again.
    """

    grads: dict[str, Tensor]
    loss: Tensor
    scores: Tensor
    phases: tuple[Equilibrium, ...] = ()
    metrics: dict[str, Tensor] = field(default_factory=dict)
    final_state: State | None = None
    applied: bool = False

    @property
    def last_state(self) -> State | None:
        """The state the system was left in: ``final_state``, else the last phase's state (``None`` without
        phases). With ``train.warm_start`` the next mini-batch's free phase starts from it."""
        if self.final_state is not None:
            return self.final_state
        return self.phases[-1].state if self.phases else None

    def write_grad(self, system: EnergySystem, cost: Cost | None = None) -> None:
        """Store the estimate in each parameter's ``.grad`` (replacing it), ready for ``optimizer.step()``."""
        for name, p in named_parameters(system, cost).items():
            g = self.grads.get(name)
            if g is None or g is p.grad:  # already written in place (`gradients(..., out="grad")`)
                continue
            if p.grad is None or p.grad.shape != p.shape or p.grad.dtype != p.dtype:
                p.grad = g.detach().to(dtype=p.dtype).clone()
            else:  # reuse the buffer: replacing it would free and re-fault megabytes every step
                p.grad.copy_(g)


class Rule(metaclass=ABCMeta):
    """A learning rule: relaxes the system as it needs and returns an :class:`Estimate` of ∂L/∂θ.

    :meth:`gradients` is the one entry point. Subclasses implement :meth:`_estimate`, which receives the
    batch's :class:`~eqprop.solvers.Phases` (the free phase and the nudged ones, sharing the input drive and
    the target) and, when the caller asked for ``.grad``, the parameters' existing gradient buffers to write
    into. ``bias_order`` is the order of the estimator's bias in β (1 one-sided, 2 centered); ``None`` for the
    exact references, and for rules that do not tend to ∂L/∂θ as β → 0 (contrastive and coupled learning).

    A rule says what it needs from a training run through hooks that do nothing by default (the training loop
    never names a rule): :meth:`check` refuses a system, cost or optimizer it cannot train,
    :meth:`check_data_parallel` a batch split among processes, :meth:`learning_rates` gives the per-tensor rates
    it implies, and :meth:`follow_schedule` says how it follows the learning-rate schedule.
    """

    kind: ClassVar[str]
    """The rule's name in a run configuration (``rule.kind``)."""
    bias_order: int | None = None
    reads_stationary: ClassVar[bool] = True
    """Whether the rule reads the solver's states as stationary points of ``E + βC`` (every two-phase rule and
    implicit differentiation do; backprop through the solver and the Hamiltonian echo do not)."""

    def gradients(
        self,
        system: EnergySystem,
        cost: Cost,
        solver: Solver,
        x: Tensor,
        y: Tensor,
        *,
        nudged_solver: Solver | None = None,
        init: State | None = None,
        out: Literal["grad"] | None = None,
        apply: Callable[[], None] | None = None,
    ) -> Estimate:
        """Estimate ∂L/∂θ for the batch ``(x, y)``.

        Main arguments:
            system, cost: the model; solver: relaxes the free phase; x, y: the batch.

        Other arguments:
            nudged_solver: relaxes the nudged phases (default ``solver``); they start from the free equilibrium.
            init: where the free phase starts (default: the system's zero state), e.g. the previous batch's
                :attr:`Estimate.last_state` (warm start).
            out: ``None`` (pure: nothing is written) or ``"grad"``: the estimate is also written into each
                parameter's ``.grad`` (reusing the buffers; then call ``optimizer.step()``). With ``"grad"``
                the estimate's system gradients may be the ``.grad`` tensors themselves, which the next call
                overwrites: clone them to keep them.
            apply: with ``out="grad"``, a callback that applies the gradients just written in ``.grad`` (an
                optimizer step and the parameters' constraints). A rule that learns *during* its phases
                (:class:`~eqprop.rules.ContinualEqProp`) calls it at every step and returns an estimate with
                ``applied=True``; the others ignore it and leave the step to the caller.

        Raises:
            ConfigError: bad shapes, dtypes, β, or a system or cost this rule cannot train.
            DivergenceError: a relaxation became non-finite.
        """
        if out not in (None, "grad"):
            raise ConfigError(f"gradients(out={out!r}): choose None (return the estimate) or 'grad'")
        self.check_physics(system)
        self.check(system, cost)
        phases = Phases(system, cost, solver, x, y, nudged_solver=nudged_solver, init=init)
        buffers = None
        if out == "grad":
            buffers = {
                n: p.grad
                for n, p in system.named_parameters()
                if p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == p.dtype
            }
        est = self._estimate(phases, buffers or None)
        if out == "grad":
            est.write_grad(system, cost)
        return est

    @abstractmethod
    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        """The estimate for ``phases``' batch. ``out`` (name → buffer, names as ``system.named_parameters()``):
        where the system's gradients may be written in place (a rule free to ignore it)."""

    def fits_warm_start(self, warm: State | None, x: Tensor) -> bool:
        """Whether ``warm`` (the state the previous batch left, :attr:`Estimate.last_state`) can start this batch's
        free phase (``train.warm_start``): by default when it holds one state per example of ``x``."""
        return warm is not None and warm[0].shape[0] == x.shape[0]

    def check_physics(self, system: EnergySystem) -> None:
        """Raise :class:`ConfigError` if this rule reads stationary points and ``system``'s solver does not give
        them (a trajectory integrated from initial conditions): the system names what to use instead."""
        if self.reads_stationary:
            system.check_stationary(f"rule '{self.kind}'")

    # -- hooks for the training run (defaults: nothing) -----------------------------------------------------
    def check(self, system: EnergySystem, cost: Cost, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Raise :class:`ConfigError` if this rule cannot train ``system`` with ``cost`` (and ``optimizer``).
        Default: any will do."""
        return

    def check_data_parallel(self, processes: int) -> None:
        """Raise :class:`ConfigError` if this rule's estimate on a batch split among ``processes`` processes is not
        the all-reduced mean of the processes' estimates (what data-parallel training computes). Default: it is
        (every estimate here is a mean over the batch of per-example terms)."""
        return

    def learning_rates(self, system: EnergySystem) -> dict[str, float] | None:
        """The learning rate of each parameter tensor of ``system`` that this rule implies, or ``None`` (the
        default): the run's optimizer settings choose them."""
        return None

    def follow_schedule(self, factor: float) -> Self:
        """This rule after the learning-rate schedule has scaled the rates by ``factor`` (relative to the
        start of training); default: unchanged."""
        return self


def cost_param_grads(cost: Cost, objective: Tensor) -> dict[str, Tensor]:
    """Gradients of ``objective`` with respect to the cost's own parameters (a readout), keyed ``cost.*``."""
    params = dict(cost.named_parameters())
    if not params:
        return {}
    grads = torch.autograd.grad(objective, list(params.values()), allow_unused=True)
    return {
        f"cost.{n}": torch.zeros_like(p) if g is None else g
        for (n, p), g in zip(params.items(), grads, strict=True)
    }


def has_parameters(cost: Cost) -> bool:
    """Whether ``cost`` carries trainable parameters (a readout)."""
    return any(True for _ in cost.parameters())
