"""Your own data: from_arrays, from_torch, the .npz format, and training on them from Python and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqprop.cli import main
from eqprop.data import from_arrays, from_torch, load_dataset, load_npz
from eqprop.errors import ConfigError, DataError
from eqprop.train import apply_overrides, fit, load_preset, resume
from eqprop.train.monitor import Monitoring


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 3-class problem on 8 features: class c is a bump at features 2c, 2c+1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.random((n, 8)).astype(np.float32) * 0.2
    x[np.arange(n), 2 * y] += 0.8
    x[np.arange(n), 2 * y + 1] += 0.8
    return x, y


def test_arrays_become_images_with_a_held_out_test_split() -> None:
    x, y = _blobs(50)
    data = from_arrays(x, y, seed=1)
    assert (len(data.train), len(data.test), data.classes, data.image_shape) == (45, 5, 3, (1, 1, 8))
    assert data.train.x.shape == (45, 1, 1, 8) and data.train.y.dtype == torch.int64
    # the held-out examples are a seeded choice, disjoint from training, and the same for the same seed
    again = from_arrays(x, y, seed=1)
    assert torch.equal(again.test.x, data.test.x)
    rows = {tuple(r) for r in data.train.x.reshape(45, 8).tolist()}
    assert not rows & {tuple(r) for r in data.test.x.reshape(5, 8).tolist()}
    # uint8 images are scaled to [0, 1]; (n, H, W) gets one channel; given test examples are used as given
    images = np.full((6, 4, 5), 255, dtype=np.uint8)
    img = from_arrays(images, [0, 1, 0, 1, 0, 1], images[:2], [1, 0], classes=4)
    assert img.image_shape == (1, 4, 5) and float(img.train.x.max()) == 1.0 and img.classes == 4
    assert len(img.test) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": np.zeros((4, 2)), "y": [0, 1, 2]}, r"y must have shape \(4,\)"),
        ({"x": np.zeros(4), "y": [0, 1, 0, 1]}, "x must have shape"),
        ({"x": np.zeros((4, 2)), "y": [0, 1, -1, 0]}, "negative label"),
        ({"x": np.zeros((4, 2)), "y": [0.5, 1, 0, 1]}, "integer class labels"),
        ({"x": np.array([[np.nan, 0]] * 4), "y": [0, 1, 0, 1]}, "NaN or infinite"),
        ({"x": np.zeros((4, 2)), "y": [0, 1, 0, 1], "classes": 1}, "classes = 1"),
        ({"x": np.zeros((4, 2)), "y": [0, 0, 0, 0]}, "at least 2"),
        ({"x": np.zeros((4, 2)), "y": [0, 1, 0, 1], "x_test": np.zeros((2, 2))}, "both x_test and y_test"),
        (
            {"x": np.zeros((4, 2)), "y": [0, 1, 0, 1], "x_test": np.zeros((2, 3)), "y_test": [0, 1]},
            "x_test holds inputs of shape",
        ),
        ({"x": np.zeros((1, 2)), "y": [0]}, "need at least 2"),
    ],
)
def test_arrays_that_make_no_dataset_are_data_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        from_arrays(**kwargs)  # type: ignore[arg-type]


def test_torch_datasets_are_read_once_into_memory() -> None:
    x, y = _blobs(30)
    train = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    data = from_torch(train, torch.utils.data.TensorDataset(torch.from_numpy(x[:6]), torch.from_numpy(y[:6])))
    assert (len(data.train), len(data.test), data.classes) == (30, 6, 3)
    assert torch.equal(data.train.x.reshape(30, 8), torch.from_numpy(x))


def test_the_npz_format_and_its_errors(tmp_path: Path) -> None:
    x, y = _blobs(40)
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:10], y_test=y[:10], classes=np.int64(5))
    data = load_npz(tmp_path)  # a folder holding data.npz
    assert (len(data.train), len(data.test), data.classes) == (40, 10, 5)
    assert len(load_npz(tmp_path / "data.npz").train) == 40  # or the file itself
    # through load_dataset: the validation hold-out and flattening apply as for the other datasets
    flat = load_dataset("npz", data_dir=tmp_path, validation=8, flatten=True)
    assert flat.train.x.shape == (32, 8) and flat.validation is not None and len(flat.validation) == 8
    np.savez(tmp_path / "bad.npz", inputs=x)
    with pytest.raises(DataError, match="lacks x, y"):
        load_npz(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "none.npz")


@pytest.mark.usefixtures("quiet_torch")
def test_fit_trains_on_arrays_and_resumes_only_with_the_same_data(tmp_path: Path) -> None:
    x, y = _blobs(320)
    data = from_arrays(x, y, seed=0)
    config = apply_overrides(
        load_preset("fmnist-quick"),
        ["system.sizes=[8,16,3]", "train.epochs=2", "train.batch_size=16", "optimizer.lr=0.1"],
    )
    quiet = Monitoring(tensorboard=False)
    summary = fit(config, tmp_path / "run", progress=False, monitoring=quiet, data=data)
    assert summary["test_accuracy"] > 0.9  # the blobs are easy
    other = from_arrays(*_blobs(320, seed=5), seed=0)
    with pytest.raises(ConfigError, match="is not the data the run"):
        resume(tmp_path / "run", epochs=3, progress=False, monitoring=quiet, data=other)
    assert resume(tmp_path / "run", epochs=3, progress=False, monitoring=quiet, data=data)["epochs"] == 3


def test_the_cli_trains_on_an_npz_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs(200)
    np.savez(tmp_path / "blobs.npz", x=(x * 255).astype(np.uint8), y=y)
    args = ["train", "--set", "data.dataset=npz", "--data-dir", str(tmp_path / "blobs.npz")]
    args += [
        "--set",
        "system.sizes=[8,16,3]",
        "--set",
        "optimizer.lr=0.1",
        "--no-progress",
        "--no-tensorboard",
    ]
    assert main([*args, "--out", str(tmp_path / "run"), "--epochs", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.8
    # a model whose output does not fit the labels is refused before training
    assert main([*args, "--out", str(tmp_path / "bad"), "--set", "system.sizes=[8,16,10]"]) == 2
    assert "predicts 10 classes but npz has 3" in capsys.readouterr().err
