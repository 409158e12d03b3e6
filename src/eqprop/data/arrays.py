"""Your own data: NumPy arrays, torch datasets, or a ``.npz`` file, as a :class:`~eqprop.data.Dataset`.

The ``.npz`` format (``eqprop train --set data.dataset=npz --data-dir FILE.npz``, or a folder holding
``data.npz``):

| key | shape | dtype | meaning |
|---|---|---|---|
| ``x`` | ``(n, features)``, ``(n, H, W)`` or ``(n, C, H, W)`` | uint8 (scaled to [0, 1]) or float | training inputs |
| ``y`` | ``(n,)`` | integer, ``0 <= y < classes`` | training labels |
| ``x_test``, ``y_test`` | as ``x``, ``y`` | | test examples (optional) |
| ``classes`` | scalar | integer | number of classes (optional; default ``max(y) + 1``) |

Without ``x_test`` and ``y_test`` a seeded tenth of the examples (at least one) is held out as the test split.
Inputs are held as images ``(n, C, H, W)`` (vectors as ``1×1×features``), so that padding, normalisation and
augmentation apply as for the other datasets; dense systems read them flattened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqprop.data.split import Dataset, Split
from eqprop.errors import DataError

__all__ = ["NPZ_FILE", "from_arrays", "from_torch", "load_npz"]

NPZ_FILE = "data.npz"
"""The file a ``--data-dir`` folder holds for ``data.dataset = "npz"``."""

TEST_FRACTION = 0.1
"""The share of the examples held out as the test split when no test examples are given."""


def _images(x: Any, what: str) -> torch.Tensor:
    """``x`` as float images ``(n, C, H, W)``: uint8 scaled to [0, 1], floats as given (must be finite)."""
    a = np.asarray(x)
    if a.ndim not in (2, 3, 4):
        raise DataError(f"{what} must have shape (n, features), (n, H, W) or (n, C, H, W), got {a.shape}")
    if a.dtype == np.uint8:
        t = torch.from_numpy(a.astype(np.float32) / 255.0)
    elif np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer):
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if not bool(torch.isfinite(t).all()):
            raise DataError(f"{what} holds NaN or infinite values")
    else:
        raise DataError(f"{what} must hold numbers (uint8 images or floats), got dtype {a.dtype}")
    if t.dim() == 2:
        t = t[:, None, None, :]
    elif t.dim() == 3:
        t = t[:, None]
    return t.contiguous()


def _labels(y: Any, n: int, what: str) -> torch.Tensor:
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise DataError(f"{what} must have shape ({n},), one label per example, got {a.shape}")
    whole = np.issubdtype(a.dtype, np.integer) or (
        np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))
    )
    if a.size and not whole:
        raise DataError(f"{what} must hold integer class labels, got dtype {a.dtype}")
    t = torch.from_numpy(a.astype(np.int64))
    if t.numel() and int(t.min()) < 0:
        raise DataError(f"{what} holds a negative label ({int(t.min())}): labels are 0 ... classes-1")
    return t


def from_arrays(
    x: Any,
    y: Any,
    x_test: Any = None,
    y_test: Any = None,
    *,
    classes: int | None = None,
    seed: int = 0,
    name: str = "arrays",
) -> Dataset:
    """A :class:`~eqprop.data.Dataset` from arrays (NumPy, torch or lists; see the module docstring).

    Args:
        x, y: training inputs and integer labels.
        x_test, y_test: test examples; without them a seeded tenth of ``x`` (at least one) is held out.
        classes: number of classes (default: the largest label + 1).
        seed: seed of the held-out test split.
        name: the dataset's name in messages and summaries.

    Raises:
        DataError: shapes, dtypes or labels that do not make a dataset (the message says which).

    Example:
        >>> data = from_arrays(np.random.rand(100, 8), np.random.randint(0, 3, 100))
        >>> len(data.train), len(data.test), data.classes, data.image_shape
        (90, 10, 3, (1, 1, 8))
    """
    if (x_test is None) != (y_test is None):
        raise DataError("give both x_test and y_test, or neither")
    train_x = _images(x, "x")
    train_y = _labels(y, train_x.shape[0], "y")
    if x_test is None:
        n = train_x.shape[0]
        if n < 2:
            raise DataError(f"x holds {n} example(s): need at least 2 to hold one out for testing")
        held = max(1, round(TEST_FRACTION * n))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        test_index, train_index = perm[:held].sort().values, perm[held:].sort().values
        test_x, test_y = train_x[test_index], train_y[test_index]
        train_x, train_y = train_x[train_index], train_y[train_index]
    else:
        test_x = _images(x_test, "x_test")
        test_y = _labels(y_test, test_x.shape[0], "y_test")
        if test_x.shape[1:] != train_x.shape[1:]:
            raise DataError(
                f"x_test holds inputs of shape {tuple(test_x.shape[1:])}, x of {tuple(train_x.shape[1:])}"
            )
    largest = max([int(t.max()) for t in (train_y, test_y) if t.numel()], default=0)
    if classes is None:
        classes = largest + 1
    elif largest >= classes:
        raise DataError(f"a label is {largest} but classes = {classes}: labels are 0 ... classes-1")
    if classes < 2:
        raise DataError(f"the labels name {classes} class: a classifier needs at least 2")
    c, h, w = train_x.shape[1:]
    return Dataset(
        name=name,
        train=Split(x=train_x, y=train_y),
        test=Split(x=test_x, y=test_y),
        validation=None,
        classes=int(classes),
        image_shape=(int(c), int(h), int(w)),
    )


def from_torch(
    train: torch.utils.data.Dataset[Any],
    test: torch.utils.data.Dataset[Any] | None = None,
    *,
    classes: int | None = None,
    seed: int = 0,
    name: str = "torch-dataset",
) -> Dataset:
    """A :class:`~eqprop.data.Dataset` from map-style torch datasets of ``(input, label)`` pairs (read once,
    held in memory); as :func:`from_arrays` otherwise."""

    def arrays(ds: torch.utils.data.Dataset[Any], what: str) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            items = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]
        except TypeError as err:
            raise DataError(f"{what} must be a map-style dataset with len() and [i]") from err
        if not items:
            raise DataError(f"{what} is empty")
        xs = torch.stack([torch.as_tensor(item[0]) for item in items])
        ys = torch.as_tensor([int(item[1]) for item in items])
        return xs, ys

    x, y = arrays(train, "the training dataset")
    x_test, y_test = arrays(test, "the test dataset") if test is not None else (None, None)
    return from_arrays(x, y, x_test, y_test, classes=classes, seed=seed, name=name)


def load_npz(data_dir: str | os.PathLike[str] | None, *, seed: int = 0) -> Dataset:
    """The dataset of a ``.npz`` file (see the module docstring): ``data_dir`` is the file, or a folder holding
    ``data.npz`` (default: ``$EQPROP_DATA_DIR``).

    Raises:
        DataError: no such file, not an ``.npz`` archive, missing keys, or arrays that do not make a dataset.
    """
    from eqprop.data.idx import ENV_DATA_DIR

    where = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR)
    if not where:
        raise DataError(
            "npz data: no --data-dir given and $EQPROP_DATA_DIR is not set",
            hint="pass --data-dir FILE.npz (or a folder holding data.npz)",
        )
    path = Path(where).expanduser()
    if path.is_dir():
        path = path / NPZ_FILE
    if not path.is_file():
        raise DataError(
            f"npz data file {path} does not exist",
            hint="pass --data-dir FILE.npz (or a folder holding data.npz)",
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path} is not a readable .npz archive ({type(err).__name__}: {err})") from err
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)} (it holds {', '.join(arrays) or 'nothing'})",
            hint="save the training inputs as x and the labels as y, e.g. np.savez(path, x=x, y=y)",
        )
    classes = arrays.get("classes")
    try:
        return from_arrays(
            arrays["x"],
            arrays["y"],
            arrays.get("x_test"),
            arrays.get("y_test"),
            classes=None if classes is None else int(classes),
            seed=seed,
            name="npz",
        )
    except DataError as err:
        raise DataError(f"{path}: {err.message}", hint=err.hint) from err
