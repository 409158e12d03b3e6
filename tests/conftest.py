"""Shared fixtures: float64 for the physics checks and a fresh seeded generator per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests import `helpers` directly

from helpers import default_dtype, make_fake_fashion_mnist

# The tests relax tiny nets: intra-op threads only add synchronisation, and on a busy machine a single
# softmax of a (5, 4) tensor was seen to take 10 ms with 2 threads against 2 µs with one.
torch.set_num_threads(1)


@pytest.fixture
def f64():
    """Run the test with ``torch.float64`` as the default dtype, restoring the previous one afterwards."""
    with default_dtype(torch.float64):
        yield torch.float64


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh generator with a fixed seed: every test draws the same numbers whatever runs before it."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four IDX files of a learnable fake Fashion-MNIST (256 train, 64 test); read-only."""
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))
