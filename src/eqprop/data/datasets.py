"""One entry point for every dataset: :func:`load_dataset` reads local files and returns tensors.

| name | files | images | classes |
|---|---|---|---|
| ``fashion-mnist``, ``mnist``, ``kmnist`` | four IDX files (:mod:`eqprop.data.idx`) | 1×28×28 | 10 |
| ``cifar10`` | ``cifar-10-batches-py/`` (:mod:`eqprop.data.cifar`) | 3×32×32 | 10 |
| ``cifar100`` | ``cifar-100-python/`` | 3×32×32 | 100 (20 with ``coarse_labels``) |
| ``svhn`` | ``train_32x32.mat``, ``test_32x32.mat`` (:mod:`eqprop.data.svhn`) | 3×32×32 | 10 |
| ``npz`` | your own ``x``, ``y`` (, ``x_test``, ``y_test``) in one ``.npz`` file (:mod:`eqprop.data.arrays`) | any | any |
| ``driven-chain``, ``driven-chain-fixed`` | none: generated (:mod:`eqprop.data.trajectories`) | drives 41×2 | 0 (target trajectories) |
| ``tfim-phases`` | none: generated (:mod:`eqprop.data.quantum_phases`) | 3 probe features | 2 (ordered, disordered) |
| ``allostery``, ``strain-regression`` | none: generated (:mod:`eqprop.data.elastic_tasks`) | 1 or 2 source strains | 0 (target strains) |

Nothing is downloaded: a missing file is a :class:`~eqprop.errors.DataError` naming it and saying where to
put it. Preprocessing happens once, at load time, in this order (each step optional but the first):

1. keep the examples of ``classes`` only, relabelled 0 … k−1 in the order given (train and test);
2. keep the first ``train_size`` training and the first ``test_size`` test examples (the validation split is
   then held out of those training examples);
3. scale to [0, 1];
4. ``crop``: remove that many pixels from every border;
5. ``downsample``: the mean of each non-overlapping k×k block (average pooling by k);
6. zero-pad to ``pad_to``;
7. normalise ``(x − mean) / std`` per channel;
8. flatten for dense systems.

Steps 1–2 are :func:`select_examples`, 4–8 :func:`prepare_dataset`. E.g. Stern et al.'s small-data
"10×10 digits" task on Fashion-MNIST: ``classes=[0, 1, 2]``, ``train_size=400``, ``test_size=600``,
``crop=4`` (28×28 → 20×20) and ``downsample=2`` (→ 10×10). Random augmentation is separate and applies to
training batches only (:mod:`eqprop.data.augment`).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from eqprop.data.elastic_tasks import ELASTIC_DATASETS, load_elastic_task
from eqprop.data.idx import DATASET_NAMES, load_idx_dataset
from eqprop.data.quantum_phases import PHASE_DATASETS, load_phase_dataset
from eqprop.data.split import Dataset, Split, _validation_count
from eqprop.data.trajectories import TRAJECTORY_DATASETS, load_trajectories
from eqprop.errors import ConfigError, DataError

__all__ = ["DATASETS", "hold_out", "load_dataset", "prepare_dataset", "select_examples"]

DATASETS: tuple[str, ...] = (
    *DATASET_NAMES,
    "cifar10",
    "cifar100",
    "svhn",
    "npz",
    *TRAJECTORY_DATASETS,
    *PHASE_DATASETS,
    *ELASTIC_DATASETS,
)
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


def _count(what: str, value: object, least: int, example: str) -> int:
    """``value`` checked to be an int >= ``least`` (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{what} = {value!r}: give an int >= {least}, e.g. {example}")
    return value


def _class_list(classes: Sequence[int]) -> list[int]:
    """``classes`` checked: at least two distinct non-negative ints."""
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence):
        raise ConfigError(f"classes = {classes!r}: give a list of class labels, e.g. [0, 1, 2]")
    out = list(classes)
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in out):
        raise ConfigError(f"classes = {out!r}: give class labels as ints >= 0, e.g. [0, 1, 2]")
    if len(set(out)) != len(out):
        twice = next(c for c in out if out.count(c) > 1)
        raise ConfigError(f"classes = {out}: class {twice} is listed twice; list each class once")
    if len(out) < 2:
        raise ConfigError(f"classes = {out}: a classifier needs at least 2 classes, e.g. [0, 1, 2]")
    return out


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
    classes: Sequence[int] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    crop: int = 0,
    downsample: int = 1,
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
        classes, train_size, test_size: keep the examples of these classes only (relabelled 0 … k−1 in the
            order given), then the first ``train_size`` training and ``test_size`` test examples; the
            validation split is held out of what is kept. See :func:`select_examples`.
        crop, downsample: remove ``crop`` pixels from every border, then average-pool by ``downsample``
            (non-overlapping blocks), before padding. See :func:`prepare_dataset`.

    Returns:
        The :class:`~eqprop.data.Dataset`, labels int64, ``image_shape`` set (after crop, downsample and
        padding), ``classes`` the number kept.

    Raises:
        ConfigError: an unknown name, a bad ``validation``, ``dtype``, ``pad_to``, ``mean``, ``std``,
            ``classes``, ``train_size``, ``test_size``, ``crop`` or ``downsample`` (a class the dataset lacks,
            more examples than it holds, a crop that leaves no pixels, a size the factor does not divide), or
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
    _count("crop", crop, 0, "4")
    _count("downsample", downsample, 1, "2")
    if classes is not None:
        _class_list(classes)
    for what, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None:
            _count(what, size, 1, "400")
    selecting = classes is not None or train_size is not None or test_size is not None
    # with a selection, the readers hold nothing out: the validation split is drawn from the examples it keeps
    read_validation = 0 if selecting else validation

    if canonical in (*TRAJECTORY_DATASETS, *PHASE_DATASETS, *ELASTIC_DATASETS):
        return _generated(
            canonical, dtype, validation, seed, classes, train_size, test_size, crop, downsample, pad_to, mean
        )
    if canonical == "npz":
        from eqprop.data.arrays import load_npz

        data = load_npz(data_dir, seed=seed)
        data = Dataset(
            name=data.name,
            train=Split(x=data.train.x.to(dtype), y=data.train.y),
            test=Split(x=data.test.x.to(dtype), y=data.test.y),
            validation=None,
            classes=data.classes,
            image_shape=data.image_shape,
        )
        read_validation = 0
    elif canonical in DATASET_NAMES:
        data = load_idx_dataset(
            canonical, data_dir=data_dir, validation=read_validation, seed=seed, dtype=dtype, flatten=False
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
        data = _arrays_to_dataset(canonical, arrays, read_validation, seed, dtype)
    if selecting:
        data = select_examples(data, classes=classes, train_size=train_size, test_size=test_size)
    if read_validation != validation:
        data = hold_out(data, validation, seed)

    return prepare_dataset(
        data, crop=crop, downsample=downsample, pad_to=pad_to, mean=mean, std=std, flatten=flatten
    )


def _generated(
    name: str,
    dtype: torch.dtype,
    validation: int | float,
    seed: int,
    classes: Sequence[int] | None,
    train_size: int | None,
    test_size: int | None,
    *image_options: object,
) -> Dataset:
    """A generated dataset (trajectories, or quantum phase probes): the first ``train_size`` / ``test_size`` examples,
    then the validation split; the class and image options do not apply to it."""
    crop, downsample, pad_to, mean = image_options
    if classes is not None or crop or downsample != 1 or pad_to is not None or mean is not None:
        what = (
            "a regression task on sequences"
            if name in TRAJECTORY_DATASETS
            else "a regression task on strains"
            if name in ELASTIC_DATASETS
            else "a 2-class task on standardised probe features"
        )
        raise ConfigError(
            f"{name} is {what}: data.classes, crop, downsample, pad_to and mean/std do not apply to it"
        )
    if name in TRAJECTORY_DATASETS:
        data = load_trajectories(name, dtype=dtype)
    elif name in ELASTIC_DATASETS:
        data = load_elastic_task(name, dtype=dtype)
    else:
        data = load_phase_dataset(name, dtype=dtype)

    def first(split: Split, size: int | None, what: str) -> Split:
        if size is None:
            return split
        if size > len(split):
            raise ConfigError(f"{what} = {size}: {name} has {len(split)} such examples")
        return Split(x=split.x[:size], y=split.y[:size])

    data = Dataset(
        name=name,
        train=first(data.train, train_size, "train_size"),
        test=first(data.test, test_size, "test_size"),
        validation=None,
        classes=data.classes,
        image_shape=None,
    )
    return hold_out(data, validation, seed)


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


def select_examples(
    data: Dataset,
    *,
    classes: Sequence[int] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """``data`` with the examples of ``classes`` only (train, test and validation), relabelled 0 … k−1 in the
    order given (``[2, 0]``: class 2 becomes 0, class 0 becomes 1), then the first ``train_size`` training and
    the first ``test_size`` test examples (in the splits' order). None: keep all. Images of any shape.

    Raises:
        ConfigError: duplicate classes, fewer than two, a class ``data`` does not have, or a size < 1 or
            larger than the examples there are (after the class filter).
    """
    if classes is not None:
        keep = _class_list(classes)
        missing = [c for c in keep if c >= data.classes]
        if missing:
            raise ConfigError(
                f"classes = {keep}: {data.name} has no class {missing[0]}; choose classes from 0 … {data.classes - 1}"
            )
        relabel = torch.full((data.classes,), -1, dtype=torch.int64)
        relabel[keep] = torch.arange(len(keep))

        def only(split: Split) -> Split:
            y = relabel.to(split.y.device)[split.y]
            mask = y >= 0
            return Split(x=split.x[mask], y=y[mask])

        data = Dataset(
            name=data.name,
            train=only(data.train),
            test=only(data.test),
            validation=None if data.validation is None else only(data.validation),
            classes=len(keep),
            image_shape=data.image_shape,
        )

    def first(split: Split, size: int | None, what: str) -> Split:
        if size is None:
            return split
        _count(f"{what}_size", size, 1, "400")
        if size > len(split):
            of = "" if classes is None else f" of classes {list(classes)}"
            raise ConfigError(
                f"{what}_size = {size}: {data.name} holds only {len(split)} {what} examples{of}",
                hint=f"use at most {len(split)}, or leave {what}_size unset for all",
            )
        return Split(x=split.x[:size].clone(), y=split.y[:size].clone())  # a copy: frees the rest

    return Dataset(
        name=data.name,
        train=first(data.train, train_size, "train"),
        test=first(data.test, test_size, "test"),
        validation=data.validation,
        classes=data.classes,
        image_shape=data.image_shape,
    )


def prepare_dataset(
    data: Dataset,
    *,
    crop: int = 0,
    downsample: int = 1,
    pad_to: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    flatten: bool = True,
) -> Dataset:
    """The preprocessing of :func:`load_dataset` applied to ``data`` (images ``(n, C, H, W)``), in this
    order: remove ``crop`` pixels from every border; average-pool by ``downsample`` (each output pixel the
    mean of a non-overlapping ``downsample × downsample`` block); zero-pad to ``pad_to``; normalise per
    channel; flatten for dense systems.

    Raises:
        ConfigError: a ``crop`` that leaves no pixels, a ``downsample`` that does not divide the cropped
            size, a ``pad_to`` that cannot centre the images, a bad ``mean`` or ``std``.
    """
    canonical = data.name
    if data.train.x.dim() != 4:
        raise ConfigError(
            f"{data.name}: prepare_dataset needs images (n, C, H, W), got {tuple(data.train.x.shape)}"
        )
    channels, full_height, full_width = data.train.x.shape[1:]
    _count("crop", crop, 0, "4")
    _count("downsample", downsample, 1, "2")
    height, width = full_height - 2 * crop, full_width - 2 * crop
    if height < 1 or width < 1:
        raise ConfigError(
            f"crop = {crop}: removing {crop} pixels from every border of {canonical}'s "
            f"{full_height}×{full_width} images leaves none",
            hint=f"use a crop of at most {(min(full_height, full_width) - 1) // 2}",
        )
    if height % downsample or width % downsample:
        raise ConfigError(
            f"downsample = {downsample}: {canonical}'s {height}×{width} images"
            f"{' (after crop)' if crop else ''} do not split into {downsample}×{downsample} blocks",
            hint="choose a factor that divides both sides, or change crop",
        )
    height, width = height // downsample, width // downsample
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
        if crop:
            x = x[:, :, crop:-crop, crop:-crop]
        if downsample > 1:
            x = F.avg_pool2d(x, downsample)  # the mean of each downsample×downsample block
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
