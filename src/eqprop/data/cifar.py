"""Readers for CIFAR-10 and CIFAR-100 in their standard "python version" pickled batches.

Nothing is downloaded. Get ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html, extract it (``tar xzf cifar-10-python.tar.gz``), and pass the
folder holding the extracted ``cifar-10-batches-py/`` (or ``cifar-100-python/``) folder, or that folder
itself, as ``--data-dir`` / ``data.data_dir``, or set ``$EQPROP_DATA_DIR``:

- CIFAR-10: ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` (10,000 images each) and ``test_batch``.
- CIFAR-100: ``cifar-100-python/train`` (50,000 images) and ``test`` (10,000).

Each file is a pickled dict whose key ``b"data"`` is an ``(n, 3072)`` uint8 array, one image per row in
channel-major order (1024 red, 1024 green, 1024 blue values, each 32×32 row-major), and whose labels are a
list of ints under ``b"labels"`` (CIFAR-10), ``b"fine_labels"`` (CIFAR-100, 100 classes) or
``b"coarse_labels"`` (CIFAR-100, 20 superclasses).

**Safety.** Unpickling a file can run arbitrary code: only load files you trust (the official archives).
As a second line of defence these readers refuse any pickled object other than the NumPy arrays, lists,
dicts, numbers and strings a CIFAR batch holds, and they unpickle nothing but the files named above.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from eqprop.data._locate import locate
from eqprop.errors import ConfigError, DataError

__all__ = ["CIFAR_FILES", "load_cifar", "read_cifar_batch"]

CIFAR_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cifar10": (
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"),
    ),
    "cifar100": ("cifar-100-python", ("train", "test")),
}
"""For each dataset: the folder its archive extracts to, and the files read (training files first, the test
file last)."""

_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
_SIDE, _CHANNELS = 32, 3
_PIXELS = _CHANNELS * _SIDE * _SIDE

# The only globals a CIFAR batch may name: NumPy's array reconstruction (old and new module paths) and
# the bytes helper of protocol-2 pickles written by Python 3. Nothing here runs code of the file's choosing.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only the objects a CIFAR batch holds."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # NumPy 2 renamed numpy.core
        return getattr(importlib.import_module(module), name)


def _hint(name: str) -> str:
    folder, files = CIFAR_FILES[name]
    return (
        f"download {_ARCHIVES[name]} from https://www.cs.toronto.edu/~kriz/cifar.html, extract it "
        f"(tar xzf {_ARCHIVES[name]}) and pass --data-dir DIR (or set EQPROP_DATA_DIR) to the folder "
        f"holding {folder}/ ({', '.join(files)})"
    )


_NOT_A_PICKLE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    LookupError,  # a damaged encoding name
    MemoryError,  # a damaged length field asks for an impossible allocation
    OverflowError,
)


def read_cifar_batch(
    path: str | os.PathLike[str], *, label_key: bytes = b"labels", classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch file (only load files you trust: see the module docstring).

    Args:
        path: the file, e.g. ``cifar-10-batches-py/data_batch_1``.
        label_key: the dict key of the labels: ``b"labels"``, ``b"fine_labels"`` or ``b"coarse_labels"``.
        classes: labels must lie in ``[0, classes)``.

    Returns:
        ``(images, labels)``: ``(n, 3, 32, 32)`` uint8 and ``(n,)`` int64.

    Raises:
        DataError: the file is missing, unreadable, not a pickle, holds objects other than a CIFAR batch's,
            lacks ``b"data"`` or ``label_key``, or has data of the wrong shape or dtype, a label count that
            differs from the image count, or labels outside ``[0, classes)``.
    """
    path = Path(path)
    name = "cifar100" if label_key != b"labels" else "cifar10"
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"CIFAR batch file {path} {what}", hint=_hint(name))
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR batch file {path}: {exc.strerror or exc}") from exc
    except _NOT_A_PICKLE as exc:  # a damaged file can make the unpickler fail in many ways
        raise DataError(
            f"{path} is not a CIFAR batch ({type(exc).__name__}: {exc})",
            hint=f"the file is damaged or not from the official archive; replace it ({_hint(name)})",
        ) from exc
    if not isinstance(batch, dict):
        raise DataError(
            f"{path} holds a {type(batch).__name__}, not the dict of a CIFAR batch", hint=_hint(name)
        )
    for key in (b"data", label_key):
        if key not in batch:
            keys = ", ".join(repr(k) for k in list(batch)[:8])
            raise DataError(
                f"{path} has no {key!r} entry (keys: {keys})",
                hint="a CIFAR-10 batch has b'data' and b'labels'; CIFAR-100 has b'data', b'fine_labels' "
                "and b'coarse_labels'",
            )
    data = batch[b"data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _PIXELS
    ):
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(f"b'data' in {path} must be a uint8 array of shape (n, {_PIXELS}), got {got}")
    try:
        labels = np.asarray(batch[label_key])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{label_key!r} in {path} is not a list of integers: {exc}") from exc
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{label_key!r} in {path} must be a flat list of integers, got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{path} holds {data.shape[0]} images but {labels.shape[0]} labels under {label_key!r}",
            hint="the file is damaged; replace it with a fresh copy",
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= classes:
            raise DataError(
                f"label {lo if lo < 0 else hi} under {label_key!r} in {path} is outside [0, {classes})",
                hint="the file is damaged or belongs to another dataset; replace it with a fresh copy",
            )
    images = np.ascontiguousarray(data.reshape(-1, _CHANNELS, _SIDE, _SIDE))  # channel-major rows
    return images, labels.astype(np.int64)


def load_cifar(
    name: str = "cifar10",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    coarse_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Read all of CIFAR-10 or CIFAR-100 from local files.

    The folder is looked up in ``data_dir`` (only there, when given) or ``$EQPROP_DATA_DIR``: the folder
    itself, or its subfolders ``<name>``, ``<archive folder>`` or ``<name>/<archive folder>``.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        data_dir: an explicit folder to use.
        coarse_labels: CIFAR-100 only: the 20 superclasses instead of the 100 classes.

    Returns:
        ``(train_images, train_labels, test_images, test_labels, classes)``; images ``(n, 3, 32, 32)``
        uint8, labels ``(n,)`` int64 (50,000 and 10,000 examples in the real files).

    Raises:
        ConfigError: an unknown name, or ``coarse_labels`` for CIFAR-10.
        DataError: missing or corrupt files (see :func:`read_cifar_batch`); the message names the file.
    """
    if name not in CIFAR_FILES:
        raise ConfigError(f"unknown CIFAR dataset {name!r}; choose 'cifar10' or 'cifar100'")
    if coarse_labels and name != "cifar100":
        raise ConfigError(f"coarse_labels applies to cifar100 only, not {name!r}")
    folder, files = CIFAR_FILES[name]
    directory = locate(
        name, files, data_dir=data_dir, subfolders=(folder, name, f"{name}/{folder}"), hint=_hint(name)
    )
    if name == "cifar10":
        label_key, classes = b"labels", 10
    else:
        label_key, classes = (b"coarse_labels", 20) if coarse_labels else (b"fine_labels", 100)
    parts = [read_cifar_batch(directory / f, label_key=label_key, classes=classes) for f in files]
    train_images = np.concatenate([images for images, _ in parts[:-1]])
    train_labels = np.concatenate([labels for _, labels in parts[:-1]])
    test_images, test_labels = parts[-1]
    return train_images, train_labels, test_images, test_labels, classes
