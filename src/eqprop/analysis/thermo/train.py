"""Training one architecture for the study: a backprop ReLU MLP or an EqProp-trained deep Hopfield net.

Internal module of :mod:`eqprop.analysis.study`. Both trainers are deterministic for a given seed (the
initialisation and the data order come from their own generators) and return plain floats.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from eqprop.analysis.thermo.arch import Arch
from eqprop.data import Batches, Split, load_idx_dataset
from eqprop.errors import ConfigError, DivergenceError

__all__ = [
    "BackpropSettings",
    "EqPropSettings",
    "StudyData",
    "load_study_data",
    "train_backprop",
    "train_eqprop",
]


@dataclass(frozen=True)
class BackpropSettings:
    """How the ReLU MLPs are trained (cross-entropy, Adam).

    Attributes:
        epochs: passes over the training examples.
        batch_size: examples per step.
        lr: Adam learning rate.
        train_examples: how many training examples (the first of a fixed shuffle); ``None`` for all.
    """

    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    train_examples: int | None = None


@dataclass(frozen=True)
class EqPropSettings:
    """How the deep Hopfield nets are trained (squared error, centered EqProp, odd-even block sweeps).

    The relaxation budget grows with depth: ``free_iterations + free_per_layer·L`` sweeps in the free
    phase, ``nudged_iterations + nudged_per_layer·L`` in each nudged phase (a deep net needs more sweeps to
    carry the nudge back to the first layer).

    Attributes:
        epochs, batch_size, train_examples: as for :class:`BackpropSettings`.
        lr: learning rate of ``optimizer`` (``"adam"`` or ``"sgd"``).
        beta: the nudging strength of centered EqProp. Small, because the estimator's O(β²) bias grows
            with depth: on a 784-56×6-10 net at initialisation, the per-layer cosine with the implicit
            gradient was 0.06–0.28 at β = 0.5, 0.50–0.89 at β = 0.05 and 0.88–0.98 at β = 0.01.
    """

    epochs: int = 2
    batch_size: int = 32
    lr: float = 2e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    beta: float = 0.05
    free_iterations: int = 20
    free_per_layer: int = 10
    nudged_iterations: int = 8
    nudged_per_layer: int = 4
    train_examples: int | None = 10000

    def sweeps(self, depth: int) -> tuple[int, int]:
        """``(free, nudged)`` sweeps for a net of ``depth`` hidden layers."""
        return (
            self.free_iterations + self.free_per_layer * depth,
            self.nudged_iterations + self.nudged_per_layer * depth,
        )


@dataclass(frozen=True, eq=False)
class StudyData:
    """The examples of a study: ``train`` (a fixed shuffle, the largest subset any method uses),
    ``test``, and the pixel mean/std the MLPs standardise with."""

    train: Split
    test: Split
    mean: float
    std: float


def load_study_data(
    dataset: str,
    *,
    data_dir: str | None,
    train_examples: int | None,
    test_examples: int | None,
    device: torch.device,
) -> StudyData:
    """Load the dataset once; subsets are the first examples of a permutation seeded 0 (the same for every
    architecture, method and seed)."""
    data = load_idx_dataset(dataset, data_dir=data_dir)

    def subset(split: Split, n: int | None, name: str) -> Split:
        if n is not None and n > len(split):
            raise ConfigError(
                f"the study asks for {n} {name} examples but {data.name} has {len(split)}",
                hint="lower the preset's example counts or use the full dataset",
            )
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n]
        return Split(x=split.x[order].to(device), y=split.y[order].to(device))

    train = subset(data.train, train_examples, "training")
    return StudyData(
        train=train,
        test=subset(data.test, test_examples, "test"),
        mean=float(train.x.mean()),
        std=float(train.x.std()),
    )


def _head(split: Split, n: int | None) -> Split:
    return split if n is None or n >= len(split) else Split(x=split.x[:n], y=split.y[:n])


def _mlp(arch: Arch) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(arch.widths[:-1], arch.widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < arch.depth:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def _mlp_eval(model: nn.Module, split: Split, mean: float, std: float) -> tuple[float, float]:
    correct, loss = 0, 0.0
    for x, y in Batches(split, 2000, shuffle=False):
        logits = model((x - mean) / std)
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
    n = max(len(split), 1)
    return correct / n, loss / n


def train_backprop(
    arch: Arch, data: StudyData, settings: BackpropSettings, *, seed: int, eval_train_examples: int | None
) -> dict[str, Any]:
    """Train a ReLU MLP with the widths of ``arch`` by backprop (Adam, cross-entropy, PyTorch's default
    initialisation); return its final accuracies and losses, and ``grad_norm_init``: the norm of the
    gradient of the loss on 128 training examples at initialisation (a trainability baseline)."""
    train = _head(data.train, settings.train_examples)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _mlp(arch).to(train.x.device)
    x0, y0 = train.x[:128], train.y[:128]
    loss0 = nn.functional.cross_entropy(model((x0 - data.mean) / data.std), y0)
    grads = torch.autograd.grad(loss0, list(model.parameters()))
    grad_norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    order = torch.Generator().manual_seed(seed + 1)
    began = time.perf_counter()
    for _ in range(settings.epochs):
        for x, y in Batches(train, settings.batch_size, shuffle=True, generator=order):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model((x - data.mean) / data.std), y).backward()
            optimizer.step()
    seconds = time.perf_counter() - began
    test_acc, test_loss = _mlp_eval(model, data.test, data.mean, data.std)
    train_acc, train_loss = _mlp_eval(model, _head(train, eval_train_examples), data.mean, data.std)
    return _record(train_acc, train_loss, test_acc, test_loss, seconds, len(train) * settings.epochs) | {
        "grad_norm_init": grad_norm
    }


def train_eqprop(
    arch: Arch, data: StudyData, settings: EqPropSettings, *, seed: int, eval_train_examples: int | None
) -> dict[str, Any]:
    """Train a :class:`~eqprop.DeepHopfield` with the widths of ``arch`` by centered EqProp on the squared
    error (inputs in [0, 1], hidden units boxed to [0, 1], linear output); return its final accuracies and
    losses (at the free equilibrium). A diverging run is returned with ``diverged: true`` and no metrics."""
    from eqprop import BlockCoordinate, DeepHopfield, EqProp, SquaredError
    from eqprop.train import evaluate

    train = _head(data.train, settings.train_examples)
    device, dtype = train.x.device, train.x.dtype
    system = DeepHopfield(list(arch.widths), generator=torch.Generator().manual_seed(seed)).to(device, dtype)
    cost = SquaredError()
    free, nudged = settings.sweeps(arch.depth)
    solver = BlockCoordinate(iterations=free, order="odd-even")
    nudged_solver = BlockCoordinate(iterations=nudged, order="odd-even")
    rule = EqProp(beta=settings.beta, variant="centered")
    if settings.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(system.parameters(), lr=settings.lr)
    else:
        optimizer = torch.optim.SGD(system.parameters(), lr=settings.lr)
    order = torch.Generator().manual_seed(seed + 1)
    began = time.perf_counter()
    try:
        for _ in range(settings.epochs):
            for x, y in Batches(train, settings.batch_size, shuffle=True, generator=order):
                rule.gradients(system, cost, solver, x, y, nudged_solver=nudged_solver, out="grad")
                optimizer.step()
        seconds = time.perf_counter() - began
        test = evaluate(system, cost, solver, data.test)
        fit = evaluate(system, cost, solver, _head(train, eval_train_examples))
    except DivergenceError as err:
        return {"diverged": True, "error": str(err), "seconds": time.perf_counter() - began}
    return _record(
        fit["accuracy"], fit["loss"], test["accuracy"], test["loss"], seconds, len(train) * settings.epochs
    ) | {"free_sweeps": free, "nudged_sweeps": nudged}


def _record(
    train_acc: float, train_loss: float, test_acc: float, test_loss: float, seconds: float, examples: int
) -> dict[str, Any]:
    finite = all(math.isfinite(v) for v in (train_loss, test_loss))
    return {
        "diverged": not finite,
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "test_loss": test_loss if finite else None,
        "train_loss": train_loss if finite else None,
        "gap": train_acc - test_acc,
        "seconds": seconds,
        "examples_per_s": examples / seconds if seconds > 0 else None,
    }
