"""Readers for the MNIST-family IDX files (MNIST, Fashion-MNIST, KMNIST).

All three datasets share one layout: four files named ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either
plain or gzip-compressed with a ``.gz`` suffix. Nothing is ever downloaded: the files are looked up in
``--data-dir``, in ``$EQPROP_DATA_DIR``, or (for Fashion-MNIST) where Debian's ``dataset-fashion-mnist``
package installs them.

The IDX format: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C``
int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, that many big-endian uint32
sizes, then the data in C order, big-endian.
"""

from __future__ import annotations

import difflib
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from eqprop.data.split import Dataset, Split, _validation_count
from eqprop.errors import ConfigError, DataError

__all__ = [
    "DATASET_NAMES",
    "ENV_DATA_DIR",
    "IDX_FILES",
    "find_dataset_dir",
    "load_idx_dataset",
    "read_idx",
]

DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "kmnist")
"""The dataset names :func:`find_dataset_dir` and :func:`load_idx_dataset` accept."""

ENV_DATA_DIR = "EQPROP_DATA_DIR"
"""Environment variable naming a folder with the IDX files (or with one subfolder per dataset)."""

IDX_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four file names every MNIST-family dataset uses (each may also carry a ``.gz`` suffix)."""

_DEBIAN_DIRS: dict[str, Path] = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_NUM_CLASSES = 10


def _missing_hint(name: str | None) -> str:
    """Say how to get the IDX files of dataset ``name`` (``None`` when unknown)."""
    files = ", ".join(IDX_FILES)
    if name == "fashion-mnist":
        return (
            "install Debian's package: sudo apt-get install dataset-fashion-mnist, or pass --data-dir DIR / "
            f"set {ENV_DATA_DIR} to a folder holding train-images-idx3-ubyte(.gz), "
            "train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz)"
        )
    return (
        f"put the four IDX files ({files}; plain or .gz) in DIR and pass --data-dir DIR or set {ENV_DATA_DIR}"
    )


def _guess_name(path: Path) -> str | None:
    """Guess which dataset a file belongs to from its path, for the hint of a missing file."""
    text = str(path).lower().replace("_", "-")
    if "fashion" in text:
        return "fashion-mnist"
    for name in ("kmnist", "mnist"):
        if name in text:
            return name
    return None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, plain or gzip-compressed.

    A file is decompressed when its name ends in ``.gz`` or when it starts with the gzip magic bytes
    ``1f 8b``. Multi-byte values are converted from big-endian to the native byte order.

    Args:
        path: the file to read.

    Returns:
        A new, writable C-contiguous array with the file's shape and dtype (uint8, int8, int16, int32,
        float32 or float64, native byte order).

    Raises:
        DataError: if the file is missing or unreadable, the gzip stream is corrupt, the header is not an
            IDX header, the type code is unknown, or the data is shorter or longer than the header says.
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"IDX file {path} {what}", hint=_missing_hint(_guess_name(path)))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc

    if path.name.endswith(".gz") or raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"corrupt gzip stream in IDX file {path}: {exc}",
                hint="the file is damaged or incompletely copied; replace it with a fresh copy",
            ) from exc

    if len(raw) < 4:
        raise DataError(
            f"truncated IDX file {path}: expected at least 4 header bytes, got {len(raw)} bytes",
            hint="the file is damaged or incompletely copied; replace it with a fresh copy",
        )
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"bad magic in IDX file {path}: expected first bytes 00 00, got {raw[:4].hex(' ')}",
            hint="this is not an IDX file; check the path",
        )
    code, ndim = raw[2], raw[3]
    dtype = _DTYPES.get(code)
    if dtype is None:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise DataError(
            f"unknown IDX type code 0x{code:02X} in {path} (known: {known})",
            hint="this is not an IDX file, or it is damaged; check the path",
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"truncated IDX file {path}: expected {header} header bytes for {ndim} dimensions, "
            f"got {len(raw)} bytes",
            hint="the file is damaged or incompletely copied; replace it with a fresh copy",
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = math.prod(shape)
    expected = header + count * dtype.itemsize
    if len(raw) < expected:
        raise DataError(
            f"truncated IDX file {path}: expected {expected} bytes for shape {shape}, got {len(raw)} bytes",
            hint="the file is damaged or incompletely copied; replace it with a fresh copy",
        )
    if len(raw) > expected:
        raise DataError(
            f"trailing garbage in IDX file {path}: expected {expected} bytes for shape {shape}, "
            f"got {len(raw)} bytes ({len(raw) - expected} extra)",
            hint="the file is damaged or not an IDX file; replace it with a fresh copy",
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    # astype copies: the result is writable (torch.from_numpy warns on read-only arrays) and native-endian.
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _canonical_name(name: str) -> str:
    """Return the canonical dataset name, or raise ConfigError listing the known names."""
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {type(name).__name__} {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key in DATASET_NAMES:
        return key
    close = difflib.get_close_matches(key, DATASET_NAMES, n=1)
    hint = f"did you mean {close[0]!r}?" if close else None
    raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}", hint=hint)


def _idx_file(directory: Path, stem: str) -> Path | None:
    """Return ``directory/stem`` or ``directory/stem.gz`` (plain preferred), or None if neither exists."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _first_missing(directory: Path) -> str | None:
    """Return the first of :data:`IDX_FILES` that ``directory`` lacks, or None if it holds all four."""
    for stem in IDX_FILES:
        if _idx_file(directory, stem) is None:
            return stem
    return None


def find_dataset_dir(name: str = "fashion-mnist", data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Find the folder holding the four IDX files of a dataset.

    A folder counts if it holds all four files of :data:`IDX_FILES`, plain or ``.gz``. Searched in order:

    1. ``data_dir``, when given: that folder or its subfolder ``name``. An explicit folder is the only
       place searched, so a wrong ``--data-dir`` is reported instead of silently replaced.
    2. ``$EQPROP_DATA_DIR``, when set: that folder or its subfolder ``name``.
    3. For ``fashion-mnist``: ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist).

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"`` (case and ``_``/``-`` are ignored).
        data_dir: an explicit folder to use.

    Returns:
        The folder holding the files.

    Raises:
        ConfigError: if ``name`` is not a known dataset.
        DataError: if no searched folder holds the four files; the message names each folder searched and
            the first file it lacks.
    """
    name = _canonical_name(name)
    candidates: list[Path] = []
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        candidates += [base, base / name]
    else:
        env = os.environ.get(ENV_DATA_DIR, "").strip()
        if env:
            base = Path(env).expanduser()
            candidates += [base, base / name]
        if name in _DEBIAN_DIRS:
            candidates.append(_DEBIAN_DIRS[name])

    searched: list[str] = []
    for directory in candidates:
        if not directory.is_dir():
            searched.append(f"{directory} (no such folder)")
            continue
        missing = _first_missing(directory)
        if missing is None:
            return directory
        searched.append(f"{directory} (no {missing}[.gz])")
    where = "; ".join(searched) if searched else f"nowhere: no --data-dir given and {ENV_DATA_DIR} is not set"
    raise DataError(f"{name} IDX files not found; searched {where}", hint=_missing_hint(name))


def _to_split(
    images: np.ndarray, labels: np.ndarray, dtype: torch.dtype, flatten: bool, index: torch.Tensor | None
) -> Split:
    """Convert uint8 images and integer labels (already checked) to a Split, optionally selecting rows."""
    x = torch.from_numpy(images)
    y = torch.from_numpy(labels).to(torch.int64)
    if index is not None:
        x, y = x[index], y[index]
    n = x.shape[0]
    x = x.to(dtype).div_(255.0)
    x = x.reshape(n, -1) if flatten else x.reshape(n, 1, *images.shape[1:])
    return Split(x=x.contiguous(), y=y.contiguous())


def _read_pair(directory: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one images/labels file pair."""
    images_path = _idx_file(directory, images_stem) or directory / images_stem
    labels_path = _idx_file(directory, labels_stem) or directory / labels_stem
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"images in {images_path} must be 3-D (n, rows, cols), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"images in {images_path} must be uint8 (type code 0x08), got {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"labels in {labels_path} must be 1-D (n,), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"labels in {labels_path} must be integers, got {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels",
            hint="the files come from different datasets or one is damaged; replace them with a matching set",
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= _NUM_CLASSES:
            bad = lo if lo < 0 else hi
            raise DataError(
                f"label {bad} in {labels_path} is outside [0, {_NUM_CLASSES})",
                hint="the file is damaged or not an MNIST-family labels file; replace it with a fresh copy",
            )
    return images, labels


def load_idx_dataset(
    name: str = "fashion-mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    validation: int | float = 0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    flatten: bool = True,
) -> Dataset:
    """Load an MNIST-family dataset from its four IDX files.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        data_dir: an explicit folder holding the files (see :func:`find_dataset_dir`).
        validation: how many training examples to hold out: an int count, a float fraction in (0, 1), or
            0 for none. They are chosen by a random permutation seeded with ``seed`` and removed from
            the training split; both splits keep the files' order.
        seed: seed of the permutation choosing the validation examples.
        dtype: floating-point dtype of the images.
        flatten: images as ``(n, rows * cols)`` (784) if True, else ``(n, 1, rows, cols)``.

    Returns:
        The dataset, images scaled to [0, 1] (divided by 255), labels int64.

    Raises:
        ConfigError: for an unknown name, a non-floating dtype, or a bad ``validation``.
        DataError: if the files are missing, corrupt or inconsistent (image/label counts differ, labels
            outside [0, 10), wrong ranks, train and test image sizes differ).
    """
    canonical = _canonical_name(name)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    directory = find_dataset_dir(canonical, data_dir)
    train_images, train_labels = _read_pair(directory, IDX_FILES[0], IDX_FILES[1])
    test_images, test_labels = _read_pair(directory, IDX_FILES[2], IDX_FILES[3])
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"train images in {directory} are {train_images.shape[1:]} but test images are "
            f"{test_images.shape[1:]}",
            hint="the files come from different datasets; replace them with a matching set",
        )

    n_train = train_images.shape[0]
    n_val = _validation_count(validation, n_train)
    val_split: Split | None = None
    train_index: torch.Tensor | None = None
    if n_val > 0:
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(n_train, generator=generator)
        val_index = perm[:n_val].sort().values
        train_index = perm[n_val:].sort().values
        val_split = _to_split(train_images, train_labels, dtype, flatten, val_index)
    train_split = _to_split(train_images, train_labels, dtype, flatten, train_index)
    test_split = _to_split(test_images, test_labels, dtype, flatten, None)
    rows, cols = train_images.shape[1:]
    return Dataset(
        name=canonical,
        train=train_split,
        test=test_split,
        validation=val_split,
        classes=_NUM_CLASSES,
        image_shape=(1, rows, cols),
    )
