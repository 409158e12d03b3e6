"""The optimizer and learning-rate schedule kinds of a run configuration, and how they are built.

Every parameter tensor gets its own group (its rate may be per layer, and differ for biases), so any
``torch.optim`` optimizer steps it; a rule that implies its own rates (AEqprop: ``ε·(β₂ − β₁)``) gives them
through :meth:`~eqprop.rules.Rule.learning_rates`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from eqprop._types import PER_LAYER
from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Rule
from eqprop.systems.base import EnergySystem, layer_value

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AdamConfig",
    "ConstantScheduleConfig",
    "CosineScheduleConfig",
    "ExponentialScheduleConfig",
    "OptimizerConfig",
    "SGDConfig",
    "ScheduleConfig",
    "make_optimizer",
]


def _positive(name: str, value: float | list[float] | None) -> None:
    if value is not None and any(not v > 0 for v in (value if isinstance(value, list) else [value])):
        raise ConfigError(f"optimizer.{name} = {value}: values must be > 0")


def _not_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"optimizer.{name} = {value}: must be >= 0")


class OptimizerConfig(Protocol):
    kind: ClassVar[str]
    lr: float | list[float]
    lr_biases: float | list[float] | None
    readout_lr: float | None

    def build(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer: ...


@dataclass(frozen=True)
class SGDConfig:
    """``optimizer.kind = "sgd"``: ``torch.optim.SGD``."""

    kind: ClassVar[str] = "sgd"

    lr: float | list[float] = field(default=0.05, metadata=PER_LAYER)
    """One rate, or one per layer (weight k with the bias of the layer it feeds)."""
    lr_biases: float | list[float] | None = field(default=None, metadata=PER_LAYER)
    """Rates of the biases, if they differ from `lr` (one, or one per layer)."""
    readout_lr: float | None = None
    """Rate of a readout cost's parameters; default: the last layer's rate."""
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("lr", "lr_biases", "readout_lr"):
            _positive(name, getattr(self, name))
        _not_negative("momentum", self.momentum)
        _not_negative("weight_decay", self.weight_decay)

    def build(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            groups, lr=groups[0]["lr"], momentum=self.momentum, weight_decay=self.weight_decay
        )


@dataclass(frozen=True)
class AdamConfig:
    """``optimizer.kind = "adam"``: ``torch.optim.Adam`` (its default betas and eps)."""

    kind: ClassVar[str] = "adam"

    lr: float | list[float] = field(default=0.001, metadata=PER_LAYER)
    lr_biases: float | list[float] | None = field(default=None, metadata=PER_LAYER)
    readout_lr: float | None = None
    weight_decay: float = 0.0
    fused: bool = False
    """torch's fused Adam kernel: one pass per tensor instead of six (worth it when the optimizer steps often, as
    continual EqProp's does at every nudged step); its results differ from the default's in round-off."""

    def __post_init__(self) -> None:
        for name in ("lr", "lr_biases", "readout_lr"):
            _positive(name, getattr(self, name))
        _not_negative("weight_decay", self.weight_decay)
        if not isinstance(self.fused, bool):
            raise ConfigError(f"optimizer.fused = {self.fused!r}: need true or false")

    def build(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        fused = {"fused": True} if self.fused else {}  # the default stays torch's own (bit-identical runs)
        return torch.optim.Adam(groups, lr=groups[0]["lr"], weight_decay=self.weight_decay, **fused)


OPTIMIZERS: dict[str, type] = {cls.kind: cls for cls in (SGDConfig, AdamConfig)}
"""``optimizer.kind`` → its config class."""


def make_optimizer(
    config: OptimizerConfig, system: EnergySystem, cost: Cost, rule: Rule
) -> torch.optim.Optimizer:
    """The optimizer of ``config`` with one parameter group per tensor of ``system`` (rates from ``rule`` when
    it implies them, else from ``config``, per layer), plus one group for a readout cost's parameters."""
    implied = rule.learning_rates(system)
    groups: list[dict[str, Any]] = []
    for name, p in system.named_parameters():
        lr = implied[name] if implied is not None else layer_value(name, config.lr, config.lr_biases)
        groups.append({"params": [p], "lr": lr, "name": name})
    readout = list(cost.parameters())
    if readout:
        last = config.lr[-1] if isinstance(config.lr, list) else config.lr
        lr = config.readout_lr if config.readout_lr is not None else last
        groups.append({"params": readout, "lr": lr, "name": "cost"})
    return config.build(groups)


class ScheduleConfig(Protocol):
    kind: ClassVar[str]

    def build(
        self, optimizer: torch.optim.Optimizer, epochs: int
    ) -> torch.optim.lr_scheduler.LRScheduler: ...

    def retarget(self, scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None: ...


@dataclass(frozen=True)
class ConstantScheduleConfig:
    """``schedule.kind = "constant"``: the rates never change."""

    kind: ClassVar[str] = "constant"

    def build(self, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)

    def retarget(self, scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None:
        """A resumed run's new epoch budget changes nothing."""
        return


@dataclass(frozen=True)
class ExponentialScheduleConfig:
    """``schedule.kind = "exponential"``: every rate multiplied by ``gamma`` after every epoch."""

    kind: ClassVar[str] = "exponential"

    gamma: float = 0.99

    def __post_init__(self) -> None:
        if not self.gamma > 0:
            raise ConfigError(
                f"schedule.gamma = {self.gamma}: must be > 0 (the factor on every rate after each epoch)",
                hint="e.g. 0.99; use schedule.kind=constant for no decay",
            )

    def build(self, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.gamma)

    def retarget(self, scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None:
        return


@dataclass(frozen=True)
class CosineScheduleConfig:
    """``schedule.kind = "cosine"``: cosine annealing from the initial rates to ``eta_min`` over the run's
    epochs (``CosineAnnealingLR(T_max=epochs)``, stepped per epoch)."""

    kind: ClassVar[str] = "cosine"

    eta_min: float = 0.0
    """The final rate."""

    def __post_init__(self) -> None:
        if not self.eta_min >= 0:
            raise ConfigError(f"schedule.eta_min = {self.eta_min}: must be >= 0")

    def build(self, optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(epochs, 1), eta_min=self.eta_min
        )

    def retarget(self, scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None:
        """A resumed run anneals over its new epoch budget."""
        scheduler.T_max = max(epochs, 1)  # type: ignore[attr-defined]


SCHEDULES: dict[str, type] = {
    cls.kind: cls for cls in (ConstantScheduleConfig, ExponentialScheduleConfig, CosineScheduleConfig)
}
"""``schedule.kind`` → its config class."""
