"""Shared fixtures: float64 for the physics checks and a fresh seeded generator per test."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

# numpy's and scipy's OpenBLAS spin their threads: on a busy 2-core machine that made ARPACK (the quantum
# systems' Lanczos) 40-300x slower. Set before numpy loads OpenBLAS; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
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


@pytest.fixture
def quiet_torch() -> Iterator[None]:
    """One torch thread (tiny matmuls on a shared 2-core machine are far faster, and uninterrupted and
    resumed runs then use the same kernels); the global RNGs, which a resumed run resets from its
    checkpoint, are restored afterwards."""
    threads = torch.get_num_threads()
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
