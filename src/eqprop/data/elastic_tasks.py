r"""Generated strain tasks for elastic networks (regression, ``classes = 0``): nothing downloaded, fixed seeds.

``allostery``: one source pair strained by ``x ∈ U(−0.1, 0.1)``; the target pair must strain by the same amount,
``y = x`` (allosteric response of ratio 1, as in Rocks et al. 2017; Stern et al. 2020 train it by coupled
learning). ``strain-regression``: two source strains ``x ∈ U(−0.1, 0.1)²`` and two target strains
``y = M x`` with ``M = [[1, −½], [½, 1]]``: a network must mix and invert its inputs' signs. 400 training and 200 test
examples each (training from seed 0, test from seed 1).
"""

from __future__ import annotations

import torch

from eqprop.data.split import Dataset, Split
from eqprop.errors import ConfigError

__all__ = ["ELASTIC_DATASETS", "load_elastic_task"]

ELASTIC_DATASETS: tuple[str, ...] = ("allostery", "strain-regression")
"""The generated strain tasks (regression)."""

TRAIN, TEST, AMPLITUDE = 400, 200, 0.1
_MIXING = torch.tensor([[1.0, -0.5], [0.5, 1.0]], dtype=torch.float64)


def load_elastic_task(name: str, *, dtype: torch.dtype = torch.float32) -> Dataset:
    """The generated task ``name`` (one of :data:`ELASTIC_DATASETS`): x the source strains, y the target strains."""
    if name not in ELASTIC_DATASETS:
        raise ConfigError(f"unknown strain task {name!r}; known: {', '.join(ELASTIC_DATASETS)}")
    features = 1 if name == "allostery" else 2
    splits = []
    for n, seed in ((TRAIN, 0), (TEST, 1)):
        g = torch.Generator().manual_seed(seed)
        x = AMPLITUDE * (2 * torch.rand(n, features, generator=g, dtype=torch.float64) - 1)
        y = x.clone() if name == "allostery" else x @ _MIXING.T
        splits.append(Split(x=x.to(dtype), y=y.to(dtype)))
    return Dataset(name=name, train=splits[0], test=splits[1], validation=None, classes=0, image_shape=None)
