"""Tests of the batched augmentation: random flips and padded random crops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eqprop.data import Augment, random_crop, random_flip
from eqprop.errors import ConfigError

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


def _batch(n: int = 32, c: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flip_is_an_involution_per_example() -> None:
    x = _batch()
    once = random_flip(x, generator=_seeded(5))
    assert torch.equal(random_flip(once, generator=_seeded(5)), x)  # same draws flip the same examples back
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(once, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(once, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each example: mirrored or untouched
    assert 0 < sum(flipped) < len(x)  # p = 0.5 over 32 examples: both happen


@pytest.mark.parametrize("fill", ["zeros", "edge"])
@pytest.mark.parametrize("padding", [1, 3])
def test_crop_is_a_shifted_window_of_the_padded_input(fill: str, padding: int) -> None:
    x = _batch(n=16)
    out = random_crop(x, padding, generator=_seeded(1), fill=fill)
    assert out.shape == x.shape
    padded = F.pad(x, (padding,) * 4, mode="constant" if fill == "zeros" else "replicate")
    _, _, h, w = x.shape
    offsets = set()
    for i in range(len(x)):
        hits = [
            (a, b)
            for a in range(2 * padding + 1)
            for b in range(2 * padding + 1)
            if torch.equal(out[i], padded[i, :, a : a + h, b : b + w])
        ]
        assert hits, f"example {i} is no window of its padded input"
        offsets.add(hits[0])
    assert len(offsets) > 1  # the offset is drawn per example, not once per batch


def test_zero_padding_brings_in_zeros_and_edge_padding_does_not() -> None:
    x = _batch(n=64) + 1.0  # no zero anywhere in the input
    zeros = random_crop(x, 4, generator=_seeded(2), fill="zeros")
    edge = random_crop(x, 4, generator=_seeded(2), fill="edge")
    assert (zeros == 0).any() and not (edge == 0).any()


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_batch_other_seed_other_batch(device: str) -> None:
    x = _batch().to(device)
    aug = Augment(crop_padding=2, flip=True)
    a, b, c = aug(x, _seeded(7)), aug(x, _seeded(7)), aug(x, _seeded(8))
    assert a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the draws come from the (CPU) generator, so every device gets the same augmented batch
    assert torch.equal(a.cpu(), aug(x.cpu(), _seeded(7)))


def test_flip_then_crop_composes_the_two() -> None:
    x = _batch()
    gen = _seeded(3)
    expected = random_crop(random_flip(x, generator=gen), 2, generator=gen, fill="edge")
    assert torch.equal(Augment(crop_padding=2, flip=True, fill="edge")(x, _seeded(3)), expected)


def test_disabled_augmentation_returns_the_batch_and_draws_nothing() -> None:
    x = _batch()
    gen = _seeded(4)
    before = gen.get_state()
    aug = Augment()
    assert not aug.enabled and aug(x, gen) is x
    assert torch.equal(gen.get_state(), before)
    assert Augment(flip=True).enabled and Augment(crop_padding=1).enabled


def test_flattened_rows_are_augmented_as_images() -> None:
    x = _batch(c=1, h=6, w=6)
    aug = Augment(crop_padding=1, flip=True, image_shape=(1, 6, 6))
    rows = aug(x.reshape(len(x), -1), _seeded(9))
    assert rows.shape == (len(x), 36)
    assert torch.equal(rows, aug(x, _seeded(9)).reshape(len(x), -1))
    with pytest.raises(ConfigError, match="no image_shape"):
        Augment(flip=True)(x.reshape(len(x), -1), _seeded(0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_padding": -1}, "integer >= 0"),
        ({"fill": "reflect"}, "choose 'zeros' or 'edge'"),
        ({"image_shape": (6, 6)}, r"\(channels, height, width\)"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Augment(**kwargs)
