"""Cost functions C(s, y): how far the output is from the target.

A cost reads one state variable (``target_index``, the last by default), returns the cost of each example,
and tells the solver how to nudge: a local quadratic model ``C ≈ ½·c‖s‖² − l·s + const`` of itself in that
variable, so that the exact block minimiser of the nudged layer stays closed-form
(``s ← clip((h + βl) / (a + βc))``). For the squared error the model is exact; for the cross-entropy readout
it is the linearisation at the current state (the nudging force −β∂C/∂s evaluated at the previous sweep).
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eqprop._types import State
from eqprop.errors import ConfigError

__all__ = [
    "COSTS",
    "Cost",
    "CostConfig",
    "CrossEntropyReadout",
    "CrossEntropyReadoutConfig",
    "PhaseSquaredError",
    "PhaseSquaredErrorConfig",
    "SquaredError",
    "SquaredErrorConfig",
]


class Cost(nn.Module, metaclass=ABCMeta):
    """Base class of costs. Costs may own parameters (a readout); rules train them like the system's."""

    target_index: int = -1
    exact_quadratic: bool = False
    """Whether :meth:`nudge` is the exact cost (then the nudged block minimiser is exact)."""
    constant_nudge: bool = False
    """Whether :meth:`nudge` does not depend on the state (then it is folded in once per relaxation)."""

    @abstractmethod
    def forward(self, state: State, target: Tensor) -> Tensor:
        """The cost of each example, shape ``(batch,)``. ``target`` comes from :meth:`prepare_target`."""

    @abstractmethod
    def predict(self, state: State) -> Tensor:
        """Class scores ``(batch, classes)`` read from the state (argmax = prediction)."""

    @abstractmethod
    def nudge(self, s: Tensor | None, target: Tensor) -> tuple[float, Tensor]:
        """Local quadratic model ``(c, l)`` of the cost in the variable it reads: ``C ≈ ½c‖s‖² − l·s``, tangent at
        ``s``: ``c·s − l`` is ``∂C/∂s`` there (the nudging force the block and synchronous updates apply)."""

    @property
    def curvature(self) -> float:
        """The ``c`` of :meth:`nudge` (constant per cost); ``1 + β·c`` must stay > 0."""
        return 0.0

    def output_grad(self, s: Tensor, target: Tensor) -> Tensor | None:
        """``∂C/∂s`` per example in closed form, for the gradient solvers' nudged steps; ``None`` (the default):
        autograd on :meth:`forward`."""
        return None

    def prepare_target(self, y: Tensor, state_like: Tensor) -> Tensor:
        """Turn labels ``(batch,)`` (int) or targets ``(batch, n)`` (float) into what :meth:`forward` reads."""
        return y

    def check_beta(self, beta: float, system: Any = None) -> None:
        """Raise :class:`ConfigError` when the nudged block minimiser of ``system`` is undefined at ``beta``."""
        if not math.isfinite(beta):
            raise ConfigError(f"beta={beta} is not a finite number")


def _one_hot(y: Tensor, classes: int, like: Tensor) -> Tensor:
    if y.dim() != 1:
        raise ConfigError(f"integer labels must have shape (batch,), got {tuple(y.shape)}")
    try:
        return F.one_hot(y, classes).to(dtype=like.dtype)  # checks the range itself
    except RuntimeError as err:
        raise ConfigError(
            f"labels must lie in [0, {classes}), got values in [{int(y.min())}, {int(y.max())}]",
            hint="check the dataset's label range against the output layer's width",
        ) from err


class SquaredError(Cost):
    r"""``C(s, y) = ½‖s_L − y‖²`` on the output variable; ``y`` as labels (one-hot inside) or float targets.

    Nudging by ``β`` adds ``β/2‖s_L − y‖²`` to the energy; with unit self-curvature the nudged output block
    minimiser is ``(h + βy)/(1 + β)``, defined only for ``1 + β > 0``.

    Example:
        >>> cost = SquaredError()
        >>> state = (torch.zeros(2, 4), torch.zeros(2, 3))
        >>> cost(state, cost.prepare_target(torch.tensor([0, 2]), state[-1]))
        tensor([0.5000, 0.5000])
    """

    exact_quadratic = True
    constant_nudge = True
    _smallest_curvature: tuple[Tensor, int, float] | None = None  # (a, a._version, min a): see check_beta

    def __init__(
        self,
        *,
        target_index: int = -1,
        class_means: int | None = None,
        spread: float = 2.0,
        outputs: int = 0,
        off_target: float = 0.0,
        duplicates: int = 1,
    ) -> None:
        super().__init__()
        self.target_index = target_index
        if isinstance(duplicates, bool) or not isinstance(duplicates, int) or duplicates < 1:
            raise ConfigError(f"SquaredError(duplicates={duplicates!r}): need an integer >= 1")
        if not math.isfinite(off_target):
            raise ConfigError(f"SquaredError(off_target={off_target!r}): need a finite number")
        self.off_target = float(off_target)
        self.duplicates = duplicates
        if class_means is not None:
            if class_means < 2 or outputs < 1 or not spread > 0:
                raise ConfigError(
                    f"SquaredError(class_means={class_means}, outputs={outputs}, spread={spread}): need >= 2 "
                    "classes, >= 1 output and spread > 0"
                )
            self.spread = float(spread)
            # Stern et al.'s targets, one output vector per class, set by `calibrate` before training
            self.register_buffer("class_targets", torch.full((class_means, outputs), math.nan))
        else:
            self.class_targets: Tensor | None = None

    @property
    def needs_calibration(self) -> bool:
        """Whether the class targets still have to be set from the untrained network's outputs (:meth:`calibrate`)."""
        return self.class_targets is not None and bool(torch.isnan(self.class_targets).any())

    def calibrate(self, outputs: Tensor, labels: Tensor) -> None:
        """Stern et al.'s targets from the free outputs of the untrained network on the training set:
        ``T_c = m + spread·(m_c − m)``, ``m`` the mean output, ``m_c`` the mean output of class ``c`` (the class
        means pushed apart)."""
        assert self.class_targets is not None
        m = outputs.mean(0)
        for c in range(self.class_targets.shape[0]):
            pick = labels == c
            if not bool(pick.any()):
                raise ConfigError(f"SquaredError: no training example of class {c} to set its target from")
            self.class_targets[c] = m + self.spread * (outputs[pick].mean(0) - m)

    @property
    def curvature(self) -> float:
        return 1.0

    def prepare_target(self, y: Tensor, state_like: Tensor) -> Tensor:
        if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            if self.class_targets is not None:
                if self.needs_calibration:
                    raise ConfigError(
                        "SquaredError: the class targets are not set yet",
                        hint="call cost.calibrate(free outputs, labels) on the training set first (a run does)",
                    )
                return self.class_targets[y.long()].to(state_like.dtype)
            width = state_like.shape[-1]
            if width % self.duplicates:
                raise ConfigError(
                    f"SquaredError(duplicates={self.duplicates}): the output's {width} units do not split into "
                    f"{self.duplicates} per class"
                )
            t = _one_hot(y.long(), width // self.duplicates, state_like)
            if self.off_target != 0.0:  # e.g. -1: the other classes' spins are pushed down, not left alone
                t = t * (1.0 - self.off_target) + self.off_target
            return t if self.duplicates == 1 else t.repeat_interleave(self.duplicates, dim=-1)
        if y.shape != state_like.shape:
            raise ConfigError(
                f"SquaredError: float targets must have the output's shape {tuple(state_like.shape)}, "
                f"got {tuple(y.shape)}",
                hint="float targets have the output's shape per example (a trajectory: one row per time point the "
                "cost sees); or pass integer class labels of shape (batch,) to get one-hot targets",
            )
        return y.to(state_like.dtype)

    def forward(self, state: State, target: Tensor) -> Tensor:
        d = state[self.target_index] - target
        return 0.5 * (d * d).flatten(1).sum(1)  # over every unit of an example (a trajectory's, too)

    def predict(self, state: State) -> Tensor:
        """The output itself, or with class targets minus the squared distance to each (the nearest wins)."""
        out = state[self.target_index]
        if self.class_targets is None:
            if self.duplicates > 1:  # each class's block of units votes
                return out.reshape(*out.shape[:-1], -1, self.duplicates).sum(-1)
            return out
        return -(torch.cdist(out.flatten(1), self.class_targets.to(out.dtype)) ** 2)

    def nudge(self, s: Tensor | None, target: Tensor) -> tuple[float, Tensor]:
        return 1.0, target

    def check_beta(self, beta: float, system: Any = None) -> None:
        """The nudged output's energy ``½a‖s‖² + β/2‖s − y‖²`` must stay convex: ``a + β > 0`` for every unit,
        with ``a`` the system's curvature in its output (1 for Hopfield networks, the total conductance at
        each output node of a resistive network). When ``a`` is a tensor its minimum costs one host sync, once
        per curvature tensor: a system's cached curvature stays the same tensor until its parameters change,
        so the checks of one training step (the rule's, then each nudged phase's) share one."""
        super().check_beta(beta)
        a: float | Tensor = 1.0
        if system is not None and system.has_block_minimizer:
            k = self.target_index % len(system.variables)
            if torch.is_grad_enabled():
                with torch.no_grad():  # only the value is needed: the system's cached curvature, no graph
                    a = system.block_curvature(k)
            else:  # already off (inside a rule or `solve`): no context to enter
                a = system.block_curvature(k)
        if isinstance(a, Tensor):
            seen = self._smallest_curvature
            if seen is not None and seen[0] is a and seen[1] == a._version:
                low = seen[2]
            else:
                low = float(a.min())  # host sync
                self._smallest_curvature = (a, a._version, low)  # holds `a`: its identity stays unique
        else:
            low = float(a)
        if low + beta <= 0.0:
            need = (
                f"needs a + beta > 0 for every output unit; the smallest curvature a is {low:.4g}"
                if isinstance(a, Tensor)
                else f"needs {low:g} + beta > 0"
            )
            raise ConfigError(
                f"beta={beta} makes the nudged output's block minimiser undefined ({need})",
                hint=(
                    f"use |beta| < {low:.4g} with this system (e.g. a smaller --set rule.beta=...)"
                    if isinstance(a, Tensor)
                    else f"use |beta| < {low:g} with the squared-error cost (0.1-0.5 is usual)"
                ),
            )


class CrossEntropyReadout(Cost):
    r"""Softmax readout on the last layer: ``C(s, y) = −log softmax(W_o s_L + b_o)_y`` (Laborieux et al. 2021).

    The readout ``(W_o, b_o)`` lives outside the energy: it is trained from the cost term of the total
    energy ``F = E + βC`` (for centered EqProp, the mean of ``∂C/∂W_o`` at ``s^{+β}`` and ``s^{−β}``).
    Nudging is the force ``−β W_oᵀ(softmax − y)`` evaluated at the previous sweep.

    Args:
        in_features: width of the layer it reads.
        classes: number of classes.
        generator: optional generator for the ``U(±1/√in)`` initialisation.

    Example:
        >>> cost = CrossEntropyReadout(16, 10)
        >>> state = (torch.rand(4, 16),)
        >>> cost(state, torch.tensor([1, 2, 3, 4])).shape
        torch.Size([4])
    """

    def __init__(
        self,
        in_features: int,
        classes: int,
        *,
        target_index: int = -1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or classes < 2:
            raise ConfigError(
                f"CrossEntropyReadout(in_features={in_features}, classes={classes}): need in_features >= 1 "
                "and classes >= 2"
            )
        self.target_index = target_index
        self.classes = classes
        scale = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(classes, in_features).uniform_(-scale, scale, generator=generator)
        )
        self.bias = nn.Parameter(torch.zeros(classes))

    def prepare_target(self, y: Tensor, state_like: Tensor) -> Tensor:
        if y.is_floating_point():
            if y.shape != (state_like.shape[0], self.classes):
                raise ConfigError(
                    f"CrossEntropyReadout: soft targets must have shape (batch, {self.classes}), "
                    f"got {tuple(y.shape)}"
                )
            return y.to(state_like.dtype)
        return _one_hot(y.long(), self.classes, state_like)

    def logits(self, s: Tensor) -> Tensor:
        return torch.addmm(self.bias, s, self.weight.t())

    def forward(self, state: State, target: Tensor) -> Tensor:
        logp = F.log_softmax(self.logits(state[self.target_index]), dim=-1)
        return -(target * logp).sum(-1)

    def predict(self, state: State) -> Tensor:
        return self.logits(state[self.target_index])

    def nudge(self, s: Tensor | None, target: Tensor) -> tuple[float, Tensor]:
        if s is None:
            raise ConfigError("CrossEntropyReadout.nudge needs the current state (its force depends on it)")
        err = torch.softmax(self.logits(s), dim=-1) - target  # ∂C/∂logits, (batch, classes)
        return 0.0, -(err @ self.weight)  # l = −∂C/∂s


class PhaseSquaredError(Cost):
    r"""``C(φ, y) = ½‖cos φ_L − t‖²`` for phase units read as ``cos φ`` (an oscillator Ising machine's output,
    Gower 2025), with ``t = 2·onehot(y) − 1``: the target is phase 0 for the class, π for the others. Float targets
    ``(batch, outputs)`` in [−1, 1] are used as given. The prediction is the argmax of ``cos φ_L``.

    Its gradient ``−sin φ·(cos φ − t)`` depends on the phase: nudge with a gradient solver (``gradient_flow``,
    ``langevin``), not a block minimiser.
    """

    def __init__(self, *, target_index: int = -1) -> None:
        super().__init__()
        self.target_index = target_index

    def prepare_target(self, y: Tensor, state_like: Tensor) -> Tensor:
        if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            return 2 * _one_hot(y.long(), state_like.shape[-1], state_like) - 1
        if y.shape != state_like.shape:
            raise ConfigError(
                f"PhaseSquaredError: float targets must have the output's shape {tuple(state_like.shape)}, "
                f"got {tuple(y.shape)}"
            )
        return y.to(state_like.dtype)

    def forward(self, state: State, target: Tensor) -> Tensor:
        d = torch.cos(state[self.target_index]) - target
        return 0.5 * (d * d).flatten(1).sum(1)

    def predict(self, state: State) -> Tensor:
        return torch.cos(state[self.target_index])

    def output_grad(self, s: Tensor, target: Tensor) -> Tensor:
        return -torch.sin(s) * (torch.cos(s) - target)

    def nudge(self, s: Tensor | None, target: Tensor) -> tuple[float, Tensor]:
        raise ConfigError(
            "PhaseSquaredError reads cos φ: its nudge depends on the phase and has no block-minimiser form",
            hint="relax phase networks with solver.kind = 'gradient_flow' (or 'langevin')",
        )


# -- the cost kinds of a run configuration ---------------------------------------------------------------------
class CostConfig(Protocol):
    """What the run asks of a cost kind's settings."""

    kind: ClassVar[str]
    boxed_output: ClassVar[bool]

    def predicted_classes(self, output_width: int) -> int: ...

    def build(self, *, in_features: int, generator: torch.Generator | None) -> Cost: ...


@dataclass(frozen=True)
class SquaredErrorConfig:
    """``cost.kind = "squared_error"``: :class:`SquaredError` on the output layer."""

    kind: ClassVar[str] = "squared_error"
    boxed_output: ClassVar[bool] = False
    """Whether the system's output units should default to the hidden units' box."""

    targets: Literal["one_hot", "class_means"] = "one_hot"
    """``one_hot``: one output unit per class; ``class_means``: one target vector per class, the untrained
    network's class-mean outputs pushed apart by ``spread`` (Stern et al.'s coupled-learning networks), the
    nearest target is the prediction."""
    classes: int = 10
    """Classes, with ``targets = "class_means"``."""
    spread: float = 2.0
    """How far ``class_means`` pushes the class means from their mean (Stern: 2)."""
    off_target: float = 0.0
    """The one-hot target of the other classes' units: 0, or −1 for ±1 spins (the nudge then pushes them down)."""
    duplicates: int = 1
    """Output units per class (Laydevant et al.'s output duplication: 4); the prediction sums each class's block."""

    def __post_init__(self) -> None:
        if self.targets not in ("one_hot", "class_means"):
            raise ConfigError(f"cost.targets = {self.targets!r}: choose 'one_hot' or 'class_means'")
        if self.targets == "class_means" and (self.classes < 2 or not self.spread > 0):
            raise ConfigError(
                f"cost.classes = {self.classes}, cost.spread = {self.spread}: need >= 2 and > 0"
            )

    def predicted_classes(self, output_width: int) -> int:
        """How many classes the model predicts: one per output unit (per ``duplicates`` units), or ``classes``
        with class targets."""
        return self.classes if self.targets == "class_means" else output_width // self.duplicates

    def build(self, *, in_features: int, generator: torch.Generator | None) -> SquaredError:
        if self.targets == "class_means":
            return SquaredError(class_means=self.classes, spread=self.spread, outputs=in_features)
        return SquaredError(off_target=self.off_target, duplicates=self.duplicates)


@dataclass(frozen=True)
class CrossEntropyReadoutConfig:
    """``cost.kind = "cross_entropy_readout"``: a trained softmax readout of the output layer
    (:class:`CrossEntropyReadout`); the output units are then boxed like the hidden ones by default."""

    kind: ClassVar[str] = "cross_entropy_readout"
    boxed_output: ClassVar[bool] = True

    classes: int = 10
    """Classes of the readout."""

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ConfigError(f"cost.classes = {self.classes}: a readout needs at least 2 classes")

    def predicted_classes(self, output_width: int) -> int:
        return self.classes

    def build(self, *, in_features: int, generator: torch.Generator | None) -> CrossEntropyReadout:
        return CrossEntropyReadout(in_features, self.classes, generator=generator)


@dataclass(frozen=True)
class PhaseSquaredErrorConfig:
    """``cost.kind = "phase_squared_error"``: :class:`PhaseSquaredError`, the output phases read as ``cos φ``
    against ±1 targets (phase networks)."""

    kind: ClassVar[str] = "phase_squared_error"
    boxed_output: ClassVar[bool] = False

    def predicted_classes(self, output_width: int) -> int:
        return output_width

    def build(self, *, in_features: int, generator: torch.Generator | None) -> PhaseSquaredError:
        return PhaseSquaredError()


COSTS: dict[str, type] = {
    cls.kind: cls for cls in (SquaredErrorConfig, CrossEntropyReadoutConfig, PhaseSquaredErrorConfig)
}
"""``cost.kind`` → its config class."""
