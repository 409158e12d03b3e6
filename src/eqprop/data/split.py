"""In-memory datasets: :class:`Split` (one part of a dataset), :class:`Dataset` (its train, validation and
test splits) and :class:`Batches` (mini-batches of a Split), shared by every loader of :mod:`eqprop.data`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from eqprop.errors import ConfigError

__all__ = ["Batches", "Dataset", "Split"]

_DEFAULT_CLASSES = 10
"""The default number of classes of a :class:`Dataset` (the MNIST family's)."""


@dataclass(frozen=True, eq=False)
class Split:
    """One part (train, validation or test) of a dataset, held in memory.

    Attributes:
        x: the images, ``(n, features)`` flattened or ``(n, channels, height, width)``, floating point
            (in [0, 1] unless normalised), e.g. ``(n, 784)`` or ``(n, 1, 28, 28)`` for MNIST.
        y: the labels, ``(n,)`` int64 in [0, classes); or, for a regression task (``classes = 0``), float targets
            ``(n, ...)`` (e.g. the target trajectories of :mod:`eqprop.data.trajectories`).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        labels = not self.y.is_floating_point()
        if (
            (labels and self.y.ndim != 1)
            or self.y.ndim < 1
            or self.x.ndim < 1
            or self.x.shape[0] != self.y.shape[0]
        ):
            raise ConfigError(
                f"Split needs x of shape (n, ...) and y of shape (n,) (labels) or (n, ...) (float targets), got x "
                f"{tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset loaded by :func:`eqprop.data.load_idx_dataset` or :func:`eqprop.data.load_dataset`.

    Attributes:
        name: the canonical dataset name, e.g. ``"fashion-mnist"``.
        train: the training examples (without the held-out validation examples).
        test: the test examples.
        validation: the held-out validation examples, or None if none were requested.
        classes: the number of classes; 0 for a regression task (float targets, no accuracy).
        image_shape: ``(channels, height, width)`` of one image, also when ``x`` holds flattened rows
            (what batch augmentation needs to see a row as an image); None if unknown.
    """

    name: str
    train: Split
    test: Split
    validation: Split | None
    classes: int = _DEFAULT_CLASSES
    image_shape: tuple[int, int, int] | None = None


def _validation_count(validation: int | float, n_train: int) -> int:
    """Turn the ``validation`` argument into a number of held-out examples (0 for none)."""
    if isinstance(validation, bool) or not isinstance(validation, int | float):
        raise ConfigError(
            f"validation must be an int count or a float fraction in (0, 1), got {validation!r}"
        )
    if isinstance(validation, int):
        count = validation
        if (
            count == 0
        ):  # none held out (also of an empty training set: its emptiness is reported where it matters)
            return 0
        if count < 0 or count >= n_train:
            raise ConfigError(
                f"validation={count} examples is out of range for {n_train} training examples",
                hint=f"use 0 (none) up to {n_train - 1}, or a fraction in (0, 1)",
            )
        return count
    if not math.isfinite(validation) or validation < 0 or validation >= 1:
        raise ConfigError(
            f"validation fraction must be in [0, 1), got {validation!r}",
            hint="pass an int for a number of examples, or a fraction such as 0.1",
        )
    if validation == 0:
        return 0
    count = round(validation * n_train)
    if count < 1 or count >= n_train:
        raise ConfigError(
            f"validation fraction {validation!r} of {n_train} training examples gives {count} examples",
            hint=f"choose a fraction that leaves between 1 and {n_train - 1} examples held out",
        )
    return count


class Batches:
    """Mini-batches of an in-memory Split, without the overhead of ``torch.utils.data.DataLoader``.

    Each iteration is one epoch. With ``shuffle``, every epoch draws one ``torch.randperm(n,
    generator=generator)``, so the generator's state advances once per epoch: a resumed run that restores
    the generator's state gets the same order as an uninterrupted one.

    Args:
        split: the examples to iterate over.
        batch_size: examples per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: draw a new random order every epoch; otherwise batches are contiguous views in order.
        generator: the random generator for shuffling (torch's global one if None).
        drop_last: drop a final batch smaller than ``batch_size``.

    Raises:
        ConfigError: if ``batch_size`` < 1.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.starting_at(0)

    def starting_at(self, first: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch from batch ``first`` on: the epoch's order is drawn in full (the generator advances as for
        a whole epoch), the batches before ``first`` are skipped without being gathered. A run resumed in the
        middle of an epoch restores the generator to the epoch's start and continues here."""
        x, y = self.split.x, self.split.y
        n, bs = len(self.split), self.batch_size
        stop = len(self) * bs
        if self.shuffle:
            perm = torch.randperm(n, generator=self.generator).to(x.device)
            for start in range(first * bs, stop, bs):
                index = perm[start : start + bs]
                yield x[index], y[index]
        else:
            for start in range(first * bs, stop, bs):
                yield x[start : start + bs], y[start : start + bs]
