"""Fixtures of the training-loop and config tests: a tiny learnable fake Fashion-MNIST and a quiet torch.

The fake dataset is four real IDX files (256 training and 64 test 28×28 images) in which class ``c``
lights the ``c``-th 7×7 block of the image over background noise, so a 784-32-10 net learns it in an epoch.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from eqprop.train.config import RunConfig, apply_overrides, load_preset

TINY_SETS = ["system.sizes=[784,32,10]", "optimizer.lr=0.05", "train.batch_size=16"]
"""Overrides that shrink the default preset to a net that trains on the fake data in well under a second."""


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file: 00 00, type code 0x08, ndim, big-endian uint32 sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def make_fake_fashion_mnist(directory: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """Write the four IDX files of a learnable fake Fashion-MNIST into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            row, col = divmod(int(c), 4)
            images[i, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] = rng.integers(180, 256, (7, 7))
        write_idx(directory / f"{split}-images-idx3-ubyte", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels)
    return directory


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four IDX files of the fake dataset (shared, never modified by the tests)."""
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("fake-fashion-mnist"))


@pytest.fixture
def tiny_config(fake_data: Path) -> Callable[..., RunConfig]:
    """``tiny_config(*sets)``: the default preset shrunk by :data:`TINY_SETS`, on the fake data, then ``sets``."""

    def make(*sets: str) -> RunConfig:
        base = [*TINY_SETS, f'data.data_dir="{fake_data}"']
        return apply_overrides(load_preset("fmnist-quick"), [*base, *sets])

    return make


@pytest.fixture
def quiet_torch() -> Iterator[None]:
    """One torch thread (tiny matmuls on a shared 2-core machine are orders of magnitude faster, and the
    uninterrupted and resumed runs use the same kernels); the global RNGs are restored afterwards, since a
    resumed run restores the checkpoint's."""
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
