"""One entry point for every dataset: :func:`load_dataset` reads local files and returns tensors.

| name | files | images | classes |
|---|---|---|---|
| ``fashion-mnist``, ``mnist``, ``kmnist`` | four IDX files (:mod:`eqprop.data.idx`) | 1×28×28 | 10 |
| ``cifar10`` | ``cifar-10-batches-py/`` (:mod:`eqprop.data.cifar`) | 3×32×32 | 10 |
| ``cifar100`` | ``cifar-100-python/`` | 3×32×32 | 100 (20 with ``coarse_labels``) |
| ``svhn`` | ``train_32x32.mat``, ``test_32x32.mat`` (:mod:`eqprop.data.svhn`) | 3×32×32 | 10 |
| ``npz`` | your own ``x``, ``y`` (, ``x_test``, ``y_test``) in one ``.npz`` file (:mod:`eqprop.data.arrays`) | any | any |

Nothing is downloaded: a missing file is a :class:`~eqprop.errors.DataError` naming it and saying where to
put it. Preprocessing happens once, at load time, in this order: scale to [0, 1]; zero-pad to ``pad_to``;
normalise ``(x − mean) / std`` per channel; flatten for dense systems. Random augmentation is separate and
applies to training batches only (:mod:`eqprop.data.augment`).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eqprop.data.idx import DATASET_NAMES, load_idx_dataset
from eqprop.data.split import Dataset, Split, _validation_count
from eqprop.errors import ConfigError, DataError

__all__ = ["DATASETS", "hold_out", "load_dataset", "prepare_dataset"]

DATASETS: tuple[str, ...] = (*DATASET_NAMES, "cifar10", "cifar100", "svhn", "npz")
"""Every dataset name :func:`load_dataset` accepts."""

_ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100"}


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {type(name).__name__} {name!r}")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in DATASETS:
        return key
    close = difflib.get_close_matches(key, DATASETS, n=1)
    raise ConfigError(
        f"unknown dataset {name!r}; known: {', '.join(DATASETS)}",
        hint=f"did you mean {close[0]!r}?" if close else None,
    )


def _channel_values(what: str, values: Sequence[float] | None, channels: int) -> torch.Tensor | None:
    """``mean`` or ``std`` as a ``(channels, 1, 1)`` tensor (one value is used for every channel)."""
    if values is None:
        return None
    out = [float(v) for v in values]
    if len(out) not in (1, channels) or not all(math.isfinite(v) for v in out):
        raise ConfigError(
            f"{what} = {list(values)}: give one finite value, or one per channel ({channels} here)"
        )
    if what == "std" and min(out) <= 0:
        raise ConfigError(f"std = {list(values)}: every value must be > 0")
    return torch.tensor(out * (channels if len(out) == 1 else 1), dtype=torch.float64).view(-1, 1, 1)


def _arrays_to_dataset(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
    validation: int | float,
    seed: int,
    dtype: torch.dtype,
) -> Dataset:
    """A Dataset of ``(n, C, H, W)`` images in [0, 1] from uint8 arrays, with a seeded validation split."""
    train_images, train_labels, test_images, test_labels, classes = arrays

    def split(images: np.ndarray, labels: np.ndarray, index: torch.Tensor | None) -> Split:
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        if index is not None:
            x, y = x[index], y[index]
        return Split(x=x.to(dtype).div_(255.0), y=y.to(torch.int64))

    channels, height, width = train_images.shape[1:]
    n_val = _validation_count(validation, train_images.shape[0])
    val_split, train_index = None, None
    if n_val > 0:  # the same permutation load_idx_dataset draws
        perm = torch.randperm(train_images.shape[0], generator=torch.Generator().manual_seed(seed))
        val_split = split(train_images, train_labels, perm[:n_val].sort().values)
        train_index = perm[n_val:].sort().values
    return Dataset(
        name=name,
        train=split(train_images, train_labels, train_index),
        test=split(test_images, test_labels, None),
        validation=val_split,
        classes=classes,
        image_shape=(channels, height, width),
    )


def load_dataset(
    name: str = "fashion-mnist",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    validation: int | float = 0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    flatten: bool = True,
    pad_to: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    coarse_labels: bool = False,
) -> Dataset:
    """Load a dataset from local files, preprocessed and held in memory.

    Main arguments:
        name: one of :data:`DATASETS` (case and ``_``/``-`` are ignored; ``cifar-10`` means ``cifar10``).
        data_dir: the folder holding the files (or a parent with one subfolder per dataset); default:
            ``$EQPROP_DATA_DIR``, then (Fashion-MNIST only) Debian's ``/usr/share/datasets/fashion-mnist``.
        validation: training examples held out for validation: a count, a fraction in (0, 1), or 0. They
            are drawn by a permutation seeded with ``seed`` and removed from the training split.
        flatten: images as ``(n, C·H·W)`` rows (dense systems) if True, else ``(n, C, H, W)``.

    Other arguments:
        seed: seed of the validation permutation.
        dtype: floating-point dtype of the images.
        pad_to: zero-pad every image (training and test) to ``pad_to × pad_to``, centred, before
            normalising: 32 turns 28×28 MNIST-family images into the 32×32 inputs of the comparative
            study's DCHN. None or the image size: no padding.
        mean, std: per-channel normalisation ``(x − mean) / std`` after scaling to [0, 1] (one value, or
            one per channel). Both or neither. E.g. the comparative study's CIFAR-10 uses mean
            (0.4914, 0.4822, 0.4465) and three times the per-channel std, (0.6069, 0.5982, 0.6030).
        coarse_labels: CIFAR-100 only: the 20 superclasses instead of the 100 classes.

    Returns:
        The :class:`~eqprop.data.Dataset`, labels int64, ``image_shape`` set (after padding).

    Raises:
        ConfigError: an unknown name, a bad ``validation``, ``dtype``, ``pad_to``, ``mean`` or ``std``, or
            ``coarse_labels`` with another dataset than CIFAR-100.
        DataError: missing, corrupt or inconsistent files; the message names the file and the folders
            searched, the hint where to get the files.

    Example:
        >>> from eqprop.data import load_dataset
        >>> data = load_dataset("cifar10", data_dir="~/data", flatten=False)  # doctest: +SKIP
        >>> data.train.x.shape, data.classes
        (torch.Size([50000, 3, 32, 32]), 10)
    """
    canonical = _canonical(name)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    if (mean is None) != (std is None):
        raise ConfigError(
            f"normalisation needs both mean and std, got mean={mean!r} and std={std!r}",
            hint="set both (one value, or one per channel), or neither",
        )
    if coarse_labels and canonical != "cifar100":
        raise ConfigError(f"coarse_labels applies to cifar100 only, not {canonical!r}")
    if pad_to is not None and (isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 1):
        raise ConfigError(f"pad_to = {pad_to!r}: give an image size in pixels, e.g. 32, or None")

    if canonical == "npz":
        from eqprop.data.arrays import load_npz

        data = hold_out(load_npz(data_dir, seed=seed), validation, seed)
        data = Dataset(
            name=data.name,
            train=Split(x=data.train.x.to(dtype), y=data.train.y),
            test=Split(x=data.test.x.to(dtype), y=data.test.y),
            validation=None
            if data.validation is None
            else Split(x=data.validation.x.to(dtype), y=data.validation.y),
            classes=data.classes,
            image_shape=data.image_shape,
        )
    elif canonical in DATASET_NAMES:
        data = load_idx_dataset(
            canonical, data_dir=data_dir, validation=validation, seed=seed, dtype=dtype, flatten=False
        )
    else:
        if canonical == "svhn":
            from eqprop.data.svhn import load_svhn

            arrays = load_svhn(data_dir=data_dir)
        else:
            from eqprop.data.cifar import load_cifar

            arrays = load_cifar(canonical, data_dir=data_dir, coarse_labels=coarse_labels)
        if arrays[0].shape[1:] != arrays[2].shape[1:]:
            raise DataError(
                f"{canonical} training images are {arrays[0].shape[1:]} but test images {arrays[2].shape[1:]}"
            )
        data = _arrays_to_dataset(canonical, arrays, validation, seed, dtype)

    return prepare_dataset(data, pad_to=pad_to, mean=mean, std=std, flatten=flatten)


def hold_out(data: Dataset, validation: int | float, seed: int) -> Dataset:
    """``data`` with ``validation`` training examples (a count or a fraction) moved to its validation split,
    drawn by a permutation seeded with ``seed`` (the permutation the file readers draw)."""
    n_val = _validation_count(validation, len(data.train))
    if n_val == 0:
        return data
    perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    x, y = data.train.x, data.train.y
    return Dataset(
        name=data.name,
        train=Split(x=x[train], y=y[train]),
        test=data.test,
        validation=Split(x=x[val], y=y[val]),
        classes=data.classes,
        image_shape=data.image_shape,
    )


def prepare_dataset(
    data: Dataset,
    *,
    pad_to: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    flatten: bool = True,
) -> Dataset:
    """The preprocessing of :func:`load_dataset` applied to ``data`` (images ``(n, C, H, W)``): zero-pad to
    ``pad_to``, normalise per channel, flatten for dense systems.

    Raises:
        ConfigError: a ``pad_to`` that cannot centre the images, a bad ``mean`` or ``std``.
    """
    canonical = data.name
    if data.train.x.dim() != 4:
        raise ConfigError(
            f"{data.name}: prepare_dataset needs images (n, C, H, W), got {tuple(data.train.x.shape)}"
        )
    channels, height, width = data.train.x.shape[1:]
    pad = (0, 0, 0, 0)
    if pad_to is not None and (pad_to, pad_to) != (height, width):
        dh, dw = pad_to - height, pad_to - width
        if dh < 0 or dw < 0 or dh % 2 or dw % 2:
            raise ConfigError(
                f"pad_to = {pad_to}: cannot centre {canonical}'s {height}×{width} images in {pad_to}×{pad_to}",
                hint=f"choose a size >= {max(height, width)} that differs from it by an even number of pixels",
            )
        pad = (dw // 2, dw // 2, dh // 2, dh // 2)
    mean_t = _channel_values("mean", mean, channels)
    std_t = _channel_values("std", std, channels)

    def prepare(split: Split | None) -> Split | None:
        if split is None:
            return None
        x = split.x
        if any(pad):
            x = F.pad(x, pad)  # zeros: black borders, before normalisation
        if mean_t is not None and std_t is not None:
            x = (x - mean_t.to(x.dtype)) / std_t.to(x.dtype)
        x = x.flatten(1) if flatten else x.contiguous()
        return Split(x=x, y=split.y)

    train, test = prepare(data.train), prepare(data.test)
    assert train is not None and test is not None
    return Dataset(
        name=canonical,
        train=train,
        test=test,
        validation=prepare(data.validation),
        classes=data.classes,
        image_shape=(channels, height + pad[2] + pad[3], width + pad[0] + pad[1]),
    )
