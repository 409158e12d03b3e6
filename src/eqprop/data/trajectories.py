r"""Generated trajectory-fitting tasks that ship with the code: a teacher spring chain driven by smooth signals.

``driven-chain``: the physical initial-value problem. A teacher :class:`~eqprop.systems.SpringChain` (4 masses, 2
observed, Δt 0.1, 41 time points) starts at rest and is driven by two smooth random forces (each a sum of three
sinusoids of random amplitude, frequency in [0.5, 3] rad per time unit and phase); the target is the observed
masses' trajectory ``q_1 … q_N``. ``driven-chain-fixed``: the same teacher and drives, with the trajectory held at
rest at both ends (the fixed-endpoint boundary-value problem of Lagrangian EqProp), so the targets are the
interior points ``q_1 … q_{N−1}``. A student with the teacher's architecture but its own initial springs and input
weights can fit either exactly: the task is realisable, and its test loss says how close training gets.

Everything is drawn from fixed seeds (the teacher from 2024, the training drives from 0, the test drives from 1):
the same dataset on every machine, nothing downloaded, nothing stored.
"""

from __future__ import annotations

import math

import torch

from eqprop.data.split import Dataset, Split
from eqprop.errors import ConfigError

__all__ = [
    "TRAJECTORY_DATASETS",
    "driven_chain_teacher",
    "load_trajectories",
    "refuse_regression",
    "smooth_drives",
]

TRAJECTORY_DATASETS: tuple[str, ...] = ("driven-chain", "driven-chain-fixed")
"""The generated trajectory datasets (regression: ``classes = 0``, float targets)."""


def refuse_regression(dataset: str, command: str) -> None:
    """Raise :class:`ConfigError` when ``command``, which tabulates test accuracies, is given a regression dataset."""
    from eqprop.data.elastic_tasks import ELASTIC_DATASETS

    if dataset in TRAJECTORY_DATASETS or dataset in ELASTIC_DATASETS:
        raise ConfigError(
            f"{command} tabulates test accuracies, and {dataset} is a regression task: its runs report a test loss "
            "and no accuracy",
            hint="train the runs with `eqprop train` (each summary.json holds test_loss) and `eqprop report` them",
        )


POINTS, FEATURES, UNITS, OUTPUTS, DT = 41, 2, 4, 2, 0.1
TRAIN, TEST = 1000, 200


def smooth_drives(n: int, points: int, features: int, dt: float, seed: int) -> torch.Tensor:
    """``n`` drives ``(n, points, features)``: per feature, a sum of three sinusoids with amplitudes N(0, 1/3),
    angular frequencies U(0.5, 3) and phases U(0, 2π), from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(points, dtype=torch.float64) * dt
    amp = torch.randn(n, 3, features, generator=g, dtype=torch.float64) / math.sqrt(3)
    omega = 0.5 + 2.5 * torch.rand(n, 3, features, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, 3, features, generator=g, dtype=torch.float64)
    waves = amp[:, :, None] * torch.sin(omega[:, :, None] * t[None, None, :, None] + phase[:, :, None])
    return waves.sum(1)


def driven_chain_teacher(
    boundary: str,
):  # -> SpringChain (imported lazily: data does not need systems to load)
    """The teacher of the driven-chain tasks, in float64."""
    from eqprop.systems.lagrangian import SpringChain

    return SpringChain(
        UNITS,
        outputs=OUTPUTS,
        input_shape=(POINTS, FEATURES),
        dt=DT,
        boundary=boundary,  # type: ignore[arg-type]
        observe="trajectory",
        stiffness=1.5,
        coupling=1.0,
        spread=1.0,
        input_scale=1.5,
        generator=torch.Generator().manual_seed(2024),
    ).double()


def _targets(teacher, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The teacher's observed trajectory: leapfrog from rest, or, with fixed ends, the stationary point of its
    action, which for the (quadratic) spring chain is one exact Newton step from rest."""
    with torch.no_grad():
        if teacher.boundary == "initial":
            return teacher.integrate(x)[-1]
        rest = teacher.init_state(x)
        step = teacher.hessian_solve(x, rest, teacher.state_grad(x, rest))
        return -step[-1]


def load_trajectories(name: str, *, dtype: torch.dtype = torch.float32) -> Dataset:
    """The generated dataset ``name`` (one of :data:`TRAJECTORY_DATASETS`): x ``(n, 41, 2)`` drives, y the target
    trajectories of the two observed masses, ``(n, 40, 2)`` (``driven-chain``) or ``(n, 39, 2)`` (fixed ends)."""
    if name not in TRAJECTORY_DATASETS:
        raise ConfigError(f"unknown trajectory dataset {name!r}; known: {', '.join(TRAJECTORY_DATASETS)}")
    teacher = driven_chain_teacher("fixed" if name.endswith("-fixed") else "initial")
    splits = []
    for n, seed in ((TRAIN, 0), (TEST, 1)):
        x = smooth_drives(n, POINTS, FEATURES, DT, seed)
        y = _targets(teacher, x)
        splits.append(Split(x=x.to(dtype), y=y.to(dtype)))
    return Dataset(name=name, train=splits[0], test=splits[1], validation=None, classes=0, image_shape=None)
