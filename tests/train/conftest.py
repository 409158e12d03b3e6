"""Fixtures of the training-loop and config tests: a tiny learnable fake Fashion-MNIST and a quiet torch.

The fake dataset is four real IDX files (256 training and 64 test 28×28 images) in which class ``c``
lights the ``c``-th 7×7 block of the image over background noise, so a 784-32-10 net learns it in an epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eqprop.train import RunConfig, apply_overrides, load_preset

TINY_SETS = ["system.sizes=[784,32,10]", "optimizer.lr=0.05", "train.batch_size=16"]
"""Overrides that shrink the default preset to a net that trains on the fake data in well under a second."""


@pytest.fixture
def tiny_config(fake_data: Path) -> Callable[..., RunConfig]:
    """``tiny_config(*sets)``: the default preset shrunk by :data:`TINY_SETS`, on the fake data, then ``sets``."""

    def make(*sets: str) -> RunConfig:
        base = [*TINY_SETS, f'data.data_dir="{fake_data}"']
        return apply_overrides(load_preset("fmnist-quick"), [*base, *sets])

    return make
