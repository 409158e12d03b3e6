"""Data augmentation on whole batches of tensors: random crops and horizontal flips.

Everything is batched (no Python loop over examples) and runs where the batch lives, CPU or CUDA. The random
numbers come from the ``torch.Generator`` passed in, drawn on that generator's device and then moved to the
batch's: the same generator state gives the same augmented batch on any device, and a training run that
checkpoints the generator's state resumes bit-exactly. Augmentation is for training batches only; the
training loop never applies it to validation or test data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from eqprop.errors import ConfigError

__all__ = ["Augment", "random_crop", "random_flip"]

Fill = Literal["zeros", "edge"]
FILLS: tuple[str, ...] = ("zeros", "edge")


def _images(x: Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ConfigError(
            f"{what} needs images of shape (batch, channels, height, width), got {tuple(x.shape)}"
        )


def random_flip(x: Tensor, *, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``p``, independently per example.

    Args:
        x: images, ``(batch, C, H, W)``.
        generator: draws one uniform number per example (on the generator's device).
        p: probability of flipping an example.

    Returns:
        A new tensor shaped like ``x``.
    """
    _images(x, "random_flip")
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < p  # (batch,)
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: Tensor, padding: int, *, generator: torch.Generator, fill: Fill = "zeros") -> Tensor:
    """Pad each image by ``padding`` pixels on every side, then crop back to its size at a random offset.

    Every output image is the window ``padded[:, i:i+H, j:j+W]`` of its padded input, with ``(i, j)`` drawn
    uniformly from ``{0, …, 2·padding}²`` per example: a random shift by up to ``padding`` pixels.

    Args:
        x: images, ``(batch, C, H, W)``.
        padding: pixels added on each side (0 returns ``x`` unchanged and draws nothing).
        generator: draws two integers per example (rows first, then columns), on its own device.
        fill: ``"zeros"`` pads with 0 (in the units of ``x``: after normalisation, 0 is the mean);
            ``"edge"`` repeats the border pixels (torchvision's ``padding_mode="edge"``).

    Returns:
        A new tensor shaped like ``x``.
    """
    _images(x, "random_crop")
    if fill not in FILLS:
        raise ConfigError(f"random_crop(fill={fill!r}): choose 'zeros' or 'edge'")
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="constant" if fill == "zeros" else "replicate")
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device)
    offsets = offsets.to(x.device)
    rows = (offsets[0].view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)  # (n, 1, H, 1)
    cols = (offsets[1].view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)  # (n, 1, 1, W)
    band = padded.gather(2, rows.expand(n, c, h, padded.shape[3]))  # (n, C, H, W + 2p): the chosen rows
    return band.gather(3, cols.expand(n, c, h, w))  # (n, C, H, W): the chosen columns


@dataclass(frozen=True)
class Augment:
    """The training-batch augmentation of a run: a random horizontal flip, then a random padded crop.

    Args:
        crop_padding: pixels of padding for :func:`random_crop` (0 = no crop).
        flip: apply :func:`random_flip` with p = 0.5.
        fill: what the crop's padding holds, ``"zeros"`` or ``"edge"``.
        image_shape: ``(C, H, W)``: lets the augmentation see flattened ``(batch, C·H·W)`` rows (the input
            of dense systems) as images; the result is flattened again.

    Raises:
        ConfigError: a negative ``crop_padding``, an unknown ``fill`` or a bad ``image_shape``.

    Example:
        >>> import torch
        >>> from eqprop.data import Augment
        >>> aug = Augment(crop_padding=4, flip=True)
        >>> aug(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """

    crop_padding: int = 0
    flip: bool = False
    fill: Fill = "zeros"
    image_shape: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.crop_padding, bool)
            or not isinstance(self.crop_padding, int)
            or self.crop_padding < 0
        ):
            raise ConfigError(f"Augment(crop_padding={self.crop_padding!r}): give an integer >= 0")
        if self.fill not in FILLS:
            raise ConfigError(f"Augment(fill={self.fill!r}): choose 'zeros' or 'edge'")
        if self.image_shape is not None and (
            len(self.image_shape) != 3 or any(int(d) < 1 for d in self.image_shape)
        ):
            raise ConfigError(f"Augment(image_shape={self.image_shape!r}): give (channels, height, width)")

    @property
    def enabled(self) -> bool:
        """Whether calling it changes anything (and draws random numbers)."""
        return self.crop_padding > 0 or self.flip

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Augment a batch ``(batch, C, H, W)``, or ``(batch, C·H·W)`` rows given ``image_shape``."""
        if not self.enabled:
            return x
        flat = x.ndim == 2
        if flat:
            if self.image_shape is None:
                raise ConfigError(
                    f"Augment got flattened rows {tuple(x.shape)} but no image_shape to see them as images"
                )
            x = x.view(x.shape[0], *(int(d) for d in self.image_shape))
        if self.flip:
            x = random_flip(x, generator=generator)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator=generator, fill=self.fill)
        return x.flatten(1) if flat else x
