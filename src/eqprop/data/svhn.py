"""Reader for SVHN (Street View House Numbers), cropped-digits format, from its MATLAB files.

Nothing is downloaded. Get ``train_32x32.mat`` and ``test_32x32.mat`` from
http://ufldl.stanford.edu/housenumbers/ and pass their folder as ``--data-dir`` / ``data.data_dir`` (or a
folder with an ``svhn/`` subfolder holding them), or set ``$EQPROP_DATA_DIR``.

Each file is a MATLAB v5 file with ``X``, a ``(32, 32, 3, n)`` uint8 array (height, width, RGB, example),
and ``y``, an ``(n, 1)`` array of labels 1…10 in which **10 stands for the digit 0**; the reader maps it to 0,
so labels are the digits themselves. The files are read with :func:`scipy.io.loadmat`, which parses data
and runs no code. (The optional ``extra_32x32.mat`` is not read.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from eqprop.data._locate import locate
from eqprop.errors import DataError

__all__ = ["SVHN_FILES", "load_svhn", "read_svhn_mat"]

SVHN_FILES: tuple[str, str] = ("train_32x32.mat", "test_32x32.mat")
"""The two files read: the training set (73,257 digits) and the test set (26,032)."""

_HINT = (
    "download train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ and pass "
    "--data-dir DIR (or set EQPROP_DATA_DIR) to the folder holding them"
)


def read_svhn_mat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one SVHN ``*_32x32.mat`` file.

    Args:
        path: the file, e.g. ``train_32x32.mat``.

    Returns:
        ``(images, labels)``: ``(n, 3, 32, 32)`` uint8 and ``(n,)`` int64 digits in [0, 10) (the file's
        label 10 becomes 0).

    Raises:
        DataError: the file is missing, not a MATLAB v5 file (v7.3 / HDF5 files are not read), lacks ``X``
            or ``y``, has ``X`` of another shape or dtype than ``(32, 32, 3, n)`` uint8, a label count that
            differs from ``n``, or labels that are not integers in 1…10.
    """
    from scipy.io import loadmat  # imported here: scipy is only needed for SVHN
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"SVHN file {path} {what}", hint=_HINT)
    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except NotImplementedError as exc:  # scipy's message for MATLAB v7.3 (HDF5) files
        raise DataError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which is not read: {exc}",
            hint="use the official train_32x32.mat / test_32x32.mat (MATLAB v5) files",
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read SVHN file {path}: {exc.strerror or exc}") from exc
    except (MatReadError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise DataError(
            f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc})",
            hint="the file is damaged or incompletely copied; replace it with a fresh copy",
        ) from exc
    for key in ("X", "y"):
        if key not in mat:
            raise DataError(
                f"{path} has no variable {key!r}", hint="an SVHN cropped-digits file holds X and y"
            )
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"X in {path} must be a uint8 array of shape (32, 32, 3, n), got {x.dtype} {x.shape}")
    n = x.shape[3]
    labels = np.asarray(y).reshape(-1) if y.ndim == 2 and 1 in y.shape else np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataError(f"y in {path} must have shape ({n}, 1) for {n} images, got {y.shape}")
    if labels.size:
        if labels.dtype.kind not in "iuf" or not np.array_equal(labels, np.round(labels)):
            raise DataError(f"y in {path} must hold integer labels, got {labels.dtype}")
        lo, hi = labels.min(), labels.max()
        if lo < 1 or hi > 10:
            raise DataError(
                f"label {lo if lo < 1 else hi} in {path} is outside 1…10 (SVHN writes the digit 0 as 10)",
                hint="the file is damaged or not an SVHN cropped-digits file; replace it with a fresh copy",
            )
    labels = labels.astype(np.int64) % 10  # 10 -> 0: labels are the digits
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (32, 32, 3, n) -> (n, 3, 32, 32)
    return images, labels


def load_svhn(
    *, data_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Read SVHN's training and test files from local files.

    The folder is looked up in ``data_dir`` (only there, when given) or ``$EQPROP_DATA_DIR``: the folder
    itself or its subfolder ``svhn``.

    Returns:
        ``(train_images, train_labels, test_images, test_labels, 10)``; images ``(n, 3, 32, 32)`` uint8,
        labels ``(n,)`` int64 digits.

    Raises:
        DataError: missing or corrupt files (see :func:`read_svhn_mat`); the message names the file.
    """
    directory = locate("svhn", SVHN_FILES, data_dir=data_dir, subfolders=("svhn",), hint=_HINT)
    train_images, train_labels = read_svhn_mat(directory / SVHN_FILES[0])
    test_images, test_labels = read_svhn_mat(directory / SVHN_FILES[1])
    return train_images, train_labels, test_images, test_labels, 10
