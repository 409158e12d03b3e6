"""Small systems, orders and numerical oracles shared by the physics tests.

Every factory builds its system and data in float64 whatever the default dtype, from its own seed, so a
test gets the same problem whichever tests ran before it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import settings
from torch import Tensor

from eqprop import DeepHopfield, TotalEnergy, solve
from eqprop.costs import Cost
from eqprop.solvers import Solver

Problem = tuple[DeepHopfield, Tensor, Tensor]

PROPERTY = settings(max_examples=20, deadline=None, database=None)
"""Hypothesis settings of the physics properties: few examples (each relaxes a net), no example database."""

ALL_ORDERS = ("odd-even", "forward", "backward", "synchronous")
DESCENT_ORDERS = ("odd-even", "forward", "backward")
"""The block Gauss–Seidel orders: each sweep is a sequence of exact block minimisations (not Jacobi)."""


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def make_hopfield(
    sizes: list[int],
    seed: int = 0,
    *,
    batch: int = 5,
    gains: float = 1.0,
    bias_range: tuple[float, float] = (-0.3, 0.6),
    **kwargs,
) -> Problem:
    """A float64 :class:`DeepHopfield` with biases ``U(bias_range)`` (so that, at equilibrium, some hidden
    units clip at 0 and some at 1), inputs ``U(0, 1)`` and integer labels."""
    gen = torch.Generator().manual_seed(seed)
    with default_dtype(torch.float64):
        net = DeepHopfield(sizes, gains=gains, generator=gen, **kwargs)
        lo, hi = bias_range
        with torch.no_grad():
            for b in net.biases:
                b.uniform_(lo, hi, generator=gen)
        x = torch.rand(batch, sizes[0], generator=gen)
        y = torch.randint(0, sizes[-1], (batch,), generator=gen)
    return net, x, y


SMALL_SYSTEMS: dict[str, Callable[..., Problem]] = {
    "1h": partial(make_hopfield, [5, 9, 3]),
    "2h": partial(make_hopfield, [6, 8, 7, 4]),
    "3h": partial(make_hopfield, [4, 6, 6, 6, 3]),
    "2h-boxed-output": partial(make_hopfield, [6, 8, 7, 4], output_bounds=(0.0, 1.0)),
    "2h-rho": partial(make_hopfield, [6, 8, 7, 4], energy_form="rho"),
}
"""name -> factory ``(seed=0) -> (system, x, y)``."""

NO_HIDDEN: Callable[..., Problem] = partial(make_hopfield, [5, 3], output_bounds=(0.0, 1.0))
"""An edge case for the fast paths: a single (boxed) layer, whose block field is its drive alone."""

BOXED_SYSTEMS = [name for name in SMALL_SYSTEMS if not name.endswith("rho")]
"""The systems whose energy is smooth in the state (the ``rho`` form has kinks at the box bounds)."""


def tiny_problem(seed: int = 7, **kwargs) -> Problem:
    """The smallest interesting net, for finite differences: 2 examples, [3, 4, 2]. With the default seed,
    4 of its 8 hidden units clip at 0 and 2 at 1, and every field is over 0.05 away from a kink (also with
    ``output_bounds=(0, 1)``, where 1 output unit clips as well)."""
    return make_hopfield([3, 4, 2], seed, batch=2, **kwargs)


def random_state(system: DeepHopfield, batch: int, gen: torch.Generator, *, spread: float = 0.0):
    """A random state: uniform in each block box widened by ``spread`` on both sides; N(0, 1) where unbounded."""
    out = []
    for k, v in enumerate(system.variables):
        lo, hi = system.block_bounds(k)
        if lo is None or hi is None:
            s = torch.randn(batch, *v.shape, generator=gen, dtype=torch.float64)
        else:
            s = torch.rand(batch, *v.shape, generator=gen, dtype=torch.float64)
            s = lo - spread + s * (hi - lo + 2 * spread)
        out.append(s)
    return tuple(out)


def flat(grads: dict[str, Tensor]) -> Tensor:
    """The gradients as one vector, in sorted key order (so two estimates line up)."""
    return torch.cat([grads[k].detach().reshape(-1) for k in sorted(grads)])


def cosine(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    assert sorted(a) == sorted(b)
    u, v = flat(a), flat(b)
    return float(u @ v / (u.norm() * v.norm()))


def rel_err(estimate: dict[str, Tensor], reference: dict[str, Tensor]) -> float:
    """``‖estimate − reference‖ / ‖reference‖`` over all parameters together."""
    assert sorted(estimate) == sorted(reference)
    u, v = flat(estimate), flat(reference)
    return float((u - v).norm() / v.norm())


def kink_margin(system: DeepHopfield, x: Tensor, state) -> float:
    """How far an equilibrium is from a kink of ``s*(θ)``: the smallest distance from any unit's field
    ``h_k`` (its unconstrained block minimiser) to a bound of its box."""
    gap = math.inf
    with torch.no_grad():
        drive = system.prepare(x)
        for k in range(len(state)):
            h = system.block_field(k, state, drive)
            for bound in system.block_bounds(k):
                if bound is not None:
                    gap = min(gap, float((h - bound).abs().min()))
    return gap


def fd_loss_grad(
    system: DeepHopfield, cost: Cost, solver: Solver, x: Tensor, y: Tensor, eps: float = 1e-6
) -> dict[str, Tensor]:
    """Central differences of the mean cost at the free equilibrium, one parameter entry at a time, keyed like
    :func:`eqprop.rules.named_parameters`. Two relaxations per entry: for tiny nets only."""

    def loss() -> float:
        eq = solve(system, x, solver)
        target = cost.prepare_target(y, eq.state[cost.target_index])
        return float(cost(eq.state, target).mean())

    params = {f"system.{n}": p for n, p in system.named_parameters()}
    params.update({f"cost.{n}": p for n, p in cost.named_parameters()})
    grads = {}
    with torch.no_grad():
        for name, p in params.items():
            g = torch.zeros_like(p)
            flat_p, flat_g = p.view(-1), g.view(-1)
            for i in range(flat_p.numel()):
                orig = float(flat_p[i])
                flat_p[i] = orig + eps
                up = loss()
                flat_p[i] = orig - eps
                down = loss()
                flat_p[i] = orig
                flat_g[i] = (up - down) / (2 * eps)
            grads[name] = g
    return grads


def kkt_violation(problem: TotalEnergy, state, layers=None) -> float:
    """The largest violation of the KKT conditions of ``min F`` over the blocks' boxes at ``state``, with
    ``g = ∂F/∂s`` from autograd on :meth:`TotalEnergy.energy`: ``|g|`` for a unit strictly inside its box,
    ``max(−g, 0)`` for one at its lower bound, ``max(g, 0)`` at its upper bound (0 = a minimum of a convex
    F). For the ρ form the box is ρ's, and autograd takes ρ' = 1 at the bounds: the derivative from inside.
    """
    system = problem.system
    with torch.enable_grad():
        leaves = tuple(s.detach().requires_grad_(True) for s in state)
        grads = torch.autograd.grad(problem.energy(leaves).sum(), leaves)
    worst = 0.0
    for k in range(len(state)) if layers is None else layers:
        s, g = state[k], grads[k]
        lo, hi = system.block_bounds(k)
        lo, hi = -math.inf if lo is None else lo, math.inf if hi is None else hi
        at_lo, at_hi, inside = s == lo, s == hi, (s > lo) & (s < hi)
        assert (at_lo | at_hi | inside).all(), f"layer {k} leaves its box [{lo}, {hi}]"
        v = torch.where(inside, g.abs(), torch.where(at_lo, (-g).clamp_min(0), g.clamp_min(0)))
        worst = max(worst, float(v.max()))
    return worst


# -- a learnable fake Fashion-MNIST on disk (tests never need the real dataset) -----------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file: 00 00, type code 0x08, ndim, big-endian uint32 sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def make_fake_fashion_mnist(directory: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """Write the four IDX files of a learnable fake Fashion-MNIST into ``directory`` and return it:
    class c lights the c-th 7×7 block of the image over background noise."""
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


def write_cifar_batch(
    path: Path, images: np.ndarray, labels: dict[bytes, list[int]], protocol: int = 2
) -> None:
    """Write a pickled CIFAR batch with the real key layout: ``b"data"`` (n, 3072) uint8, channel-major rows,
    plus the given label lists (``b"labels"``, or ``b"fine_labels"`` and ``b"coarse_labels"``)."""
    import pickle

    batch = {b"batch_label": b"fake", b"data": images.reshape(len(images), -1), **labels}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def make_fake_cifar(
    directory: Path, name: str = "cifar10", *, n: int = 4, n_test: int = 6, seed: int = 0
) -> Path:
    """Write a tiny fake CIFAR-10 (5 training batches of ``n`` images) or CIFAR-100 (one ``train`` file of
    ``5·n``) under ``directory/<archive folder>/``; return ``directory``."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder = directory / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(1, 6):
            images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            write_cifar_batch(
                folder / f"data_batch_{k}", images, {b"labels": rng.integers(0, 10, n).tolist()}
            )
        images = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
        write_cifar_batch(folder / "test_batch", images, {b"labels": rng.integers(0, 10, n_test).tolist()})
        return directory
    folder = directory / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for file, count in (("train", 5 * n), ("test", n_test)):
        images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, count).tolist()
        write_cifar_batch(
            folder / file, images, {b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
        )
    return directory


def make_fake_svhn(directory: Path, *, n: int = 12, n_test: int = 5, seed: int = 0) -> Path:
    """Write ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB v5: X (32, 32, 3, n) uint8, y (n, 1) in 1…10,
    10 meaning the digit 0) into ``directory``; return it."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for file, count in (("train_32x32.mat", n), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        y = rng.integers(1, 11, (count, 1)).astype(np.uint8)
        y[0, 0] = 10  # at least one digit 0
        savemat(directory / file, {"X": x, "y": y})
    return directory


def assert_same(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Bit-exact equality of nested checkpoint data (tensors with torch.equal: same dtype, shape and bits)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
