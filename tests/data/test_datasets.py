"""Tests of the CIFAR and SVHN readers and of load_dataset, on small fake files written in tmp_path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqprop.data import (
    DATASETS,
    ENV_DATA_DIR,
    Dataset,
    Split,
    load_cifar,
    load_dataset,
    load_svhn,
    prepare_dataset,
    read_cifar_batch,
    read_svhn_mat,
)
from eqprop.errors import ConfigError, DataError
from helpers import make_fake_cifar, make_fake_fashion_mnist, make_fake_svhn, write_cifar_batch


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """$EQPROP_DATA_DIR from the caller's shell must not leak into these tests."""
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)


def _raw(path: Path) -> dict[bytes, object]:
    return pickle.loads(path.read_bytes())  # our own test file


# --- CIFAR --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_batch_rows_are_channel_major_images(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    write_cifar_batch(tmp_path / "b", data, {b"labels": [3, 0, 9]}, protocol=protocol)
    images, labels = read_cifar_batch(tmp_path / "b")
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [3, 0, 9] and labels.dtype == np.int64
    # pixel (c, r, col) of image i is value c·1024 + r·32 + col of its row
    for i, c, r, col in [(0, 0, 0, 0), (1, 1, 5, 7), (2, 2, 31, 31), (0, 2, 0, 31)]:
        assert images[i, c, r, col] == data[i, c * 1024 + r * 32 + col]


def test_cifar10_reads_the_five_training_batches_in_order(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path, "cifar10", n=4, n_test=6)
    folder = tmp_path / "cifar-10-batches-py"
    train_x, train_y, test_x, test_y, classes = load_cifar("cifar10", data_dir=tmp_path)
    assert classes == 10 and train_x.shape == (20, 3, 32, 32) and test_x.shape == (6, 3, 32, 32)
    expected = [_raw(folder / f"data_batch_{k}") for k in range(1, 6)]
    assert np.array_equal(train_x.reshape(20, -1), np.concatenate([b[b"data"] for b in expected]))
    assert train_y.tolist() == [label for b in expected for label in b[b"labels"]]
    assert test_y.tolist() == _raw(folder / "test_batch")[b"labels"]
    # the folder itself works as --data-dir too
    assert np.array_equal(load_cifar("cifar10", data_dir=folder)[2], test_x)


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path, "cifar100", n=4, n_test=6)
    raw = _raw(tmp_path / "cifar-100-python" / "train")
    fine = load_cifar("cifar100", data_dir=tmp_path)
    coarse = load_cifar("cifar100", data_dir=tmp_path, coarse_labels=True)
    assert fine[4] == 100 and coarse[4] == 20
    assert fine[1].tolist() == raw[b"fine_labels"] and coarse[1].tolist() == raw[b"coarse_labels"]
    assert np.array_equal(fine[0], coarse[0])


def test_missing_cifar_file_is_named_with_where_to_get_it(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="no data_batch_3") as info:
        load_cifar("cifar10", data_dir=tmp_path)
    assert "cifar-10-python.tar.gz" in info.value.hint and "--data-dir" in info.value.hint
    with pytest.raises(DataError, match=r"no such folder") as info:
        load_dataset("cifar100", data_dir=tmp_path / "nowhere")
    assert "cifar-100-python" in info.value.hint
    with pytest.raises(DataError, match=f"no --data-dir given and {ENV_DATA_DIR} is not set"):
        load_dataset("cifar10")


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fake_cifar(tmp_path / "cifar10", "cifar10")  # a per-dataset subfolder of the shared folder
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    assert load_dataset("cifar10").train.x.shape == (20, 3072)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Evil(marker)]}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="refusing to load the global"):
        read_cifar_batch(tmp_path / "b")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "has no b'labels' entry"),
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, r"shape \(n, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "must be a uint8 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"label 10 .* outside \[0, 10\)"),
        ([1, 2, 3], "not the dict of a CIFAR batch"),
    ],
)
def test_bad_cifar_batches_are_data_errors(tmp_path: Path, batch: object, message: str) -> None:
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=message):
        read_cifar_batch(tmp_path / "b")


def test_a_file_that_is_not_a_pickle_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="is not a CIFAR batch"):
        read_cifar_batch(tmp_path / "b")


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(
    flips=st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 20000)),
)
def test_a_damaged_cifar_file_is_a_data_error_or_reads(tmp_path_factory, flips, cut) -> None:
    """Bytes of the header flipped, or the file cut short: one DataError line, never another exception (a
    damaged length can make the unpickler ask for terabytes, a damaged encoding name raises LookupError)."""
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    write_cifar_batch(
        folder / "b", rng.integers(0, 256, (4, 3072), dtype=np.uint8), {b"labels": [1, 2, 3, 4]}
    )
    raw = bytearray((folder / "b").read_bytes())
    for i, value in flips:
        raw[i % len(raw)] = value
    (folder / "b").write_bytes(bytes(raw if cut is None else raw[:cut]))
    message = ""
    try:
        read_cifar_batch(folder / "b")
    except DataError as err:
        message = str(err)
    assert not message or str(folder / "b") in message


# --- SVHN ---------------------------------------------------------------------------------------------------
def test_svhn_maps_label_10_to_digit_0_and_transposes_images(tmp_path: Path) -> None:
    from scipy.io import loadmat

    make_fake_svhn(tmp_path, n=12, n_test=5)
    raw = loadmat(tmp_path / "train_32x32.mat")
    images, labels = read_svhn_mat(tmp_path / "train_32x32.mat")
    y = raw["y"].reshape(-1)
    assert 10 in y and labels.tolist() == [0 if v == 10 else int(v) for v in y]
    assert labels.min() >= 0 and labels.max() <= 9
    assert images.shape == (12, 3, 32, 32) and images.dtype == np.uint8
    for i, c, r, col in [(0, 0, 0, 0), (3, 1, 4, 9), (11, 2, 31, 30)]:
        assert images[i, c, r, col] == raw["X"][r, col, c, i]
    train_x, _, test_x, _, classes = load_svhn(data_dir=tmp_path)
    assert classes == 10 and train_x.shape[0] == 12 and test_x.shape[0] == 5


def test_missing_svhn_file_is_named(tmp_path: Path) -> None:
    make_fake_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"no test_32x32\.mat") as info:
        load_dataset("svhn", data_dir=tmp_path)
    assert "ufldl.stanford.edu/housenumbers" in info.value.hint


@pytest.mark.parametrize(("label", "message"), [(0, "label 0 .* outside 1…10"), (11, "label 11 .* outside")])
def test_svhn_labels_outside_1_to_10_are_refused(tmp_path: Path, label: int, message: str) -> None:
    from scipy.io import savemat

    savemat(
        tmp_path / "f.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [label]], np.uint8)}
    )
    with pytest.raises(DataError, match=message):
        read_svhn_mat(tmp_path / "f.mat")


def test_svhn_wrong_shapes_and_non_mat_files_are_refused(tmp_path: Path) -> None:
    from scipy.io import savemat

    savemat(tmp_path / "a.mat", {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(DataError, match=r"shape \(32, 32, 3, n\)"):
        read_svhn_mat(tmp_path / "a.mat")
    savemat(tmp_path / "b.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1), np.uint8)})
    with pytest.raises(DataError, match="for 2 images"):
        read_svhn_mat(tmp_path / "b.mat")
    (tmp_path / "c.mat").write_bytes(b"\x00" * 200)
    with pytest.raises(DataError, match=r"c\.mat"):
        read_svhn_mat(tmp_path / "c.mat")


def test_svhn_matlab_v73_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    """A v7.3 MAT file is HDF5 behind a 128-byte MATLAB header whose version field is 0x0200; scipy refuses
    it from the header alone, so the header is enough to exercise the branch."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116, b" ")
    (tmp_path / "train_32x32.mat").write_bytes(header + bytes(8) + b"\x00\x02" + b"IM" + bytes(512))
    with pytest.raises(DataError, match=r"v7\.3"):
        read_svhn_mat(tmp_path / "train_32x32.mat")


# --- load_dataset -----------------------------------------------------------------------------------------
def test_load_dataset_scales_to_unit_range_and_flattens(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path, "cifar10")
    images = load_dataset("cifar10", data_dir=tmp_path, flatten=False)
    flat = load_dataset("cifar10", data_dir=tmp_path)
    raw = load_cifar("cifar10", data_dir=tmp_path)[0]
    assert images.train.x.shape == (20, 3, 32, 32) and flat.train.x.shape == (20, 3072)
    assert images.image_shape == flat.image_shape == (3, 32, 32) and images.classes == 10
    assert torch.equal(images.train.x, torch.from_numpy(raw).float() / 255)
    assert torch.equal(flat.train.x, images.train.x.reshape(20, -1))
    assert images.train.y.dtype == torch.int64


def test_normalisation_is_per_channel(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path, "cifar10")
    mean, std = [0.4914, 0.4822, 0.4465], [0.6069, 0.5982, 0.6030]
    plain = load_dataset("cifar10", data_dir=tmp_path, flatten=False, dtype=torch.float64)
    norm = load_dataset("cifar10", data_dir=tmp_path, flatten=False, dtype=torch.float64, mean=mean, std=std)
    for c in range(3):
        expected = (plain.test.x[:, c] - mean[c]) / std[c]
        assert torch.allclose(norm.test.x[:, c], expected, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="both mean and std"):
        load_dataset("cifar10", data_dir=tmp_path, mean=mean)
    with pytest.raises(ConfigError, match="one per channel"):
        load_dataset("cifar10", data_dir=tmp_path, mean=[0.5, 0.5], std=[1.0, 1.0])
    with pytest.raises(ConfigError, match="must be > 0"):
        load_dataset("cifar10", data_dir=tmp_path, mean=[0.5], std=[0.0])


def test_pad_to_centres_mnist_family_images_in_zeros(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=8, n_test=4)
    plain = load_dataset("fashion-mnist", data_dir=tmp_path, flatten=False)
    padded = load_dataset("fashion-mnist", data_dir=tmp_path, flatten=False, pad_to=32, mean=[0.0], std=[0.5])
    assert padded.train.x.shape == (8, 1, 32, 32) and padded.image_shape == (1, 32, 32)
    assert torch.allclose(padded.train.x[:, :, 2:30, 2:30], plain.train.x / 0.5)
    border = padded.test.x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    with pytest.raises(ConfigError, match="cannot centre"):
        load_dataset("fashion-mnist", data_dir=tmp_path, pad_to=31)


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    make_fake_svhn(tmp_path, n=12)
    a = load_dataset("svhn", data_dir=tmp_path, validation=4, seed=3)
    b = load_dataset("svhn", data_dir=tmp_path, validation=4, seed=3)
    c = load_dataset("svhn", data_dir=tmp_path, validation=4, seed=4)
    assert a.validation is not None and b.validation is not None and c.validation is not None
    assert len(a.train) == 8 and len(a.validation) == 4
    assert torch.equal(a.validation.x, b.validation.x) and not torch.equal(a.validation.x, c.validation.x)
    full = load_dataset("svhn", data_dir=tmp_path).train.x
    rows = {tuple(r.tolist()) for r in full}
    both = [tuple(r.tolist()) for r in torch.cat([a.train.x, a.validation.x])]
    assert set(both) == rows and len(both) == len(rows)


def test_dataset_names_and_settings_are_checked(tmp_path: Path) -> None:
    assert {"cifar10", "cifar100", "svhn", "fashion-mnist"} <= set(DATASETS)
    with pytest.raises(ConfigError, match="unknown dataset") as info:
        load_dataset("cifar1000")
    assert info.value.hint is not None and "did you mean" in info.value.hint
    with pytest.raises(ConfigError, match="coarse_labels applies to cifar100 only"):
        load_dataset("cifar10", data_dir=tmp_path, coarse_labels=True)
    make_fake_cifar(tmp_path, "cifar100")
    assert load_dataset("CIFAR-100", data_dir=tmp_path, coarse_labels=True).classes == 20


# --- classes, train_size, test_size, crop, downsample ---------------------------------------------------------
def test_classes_keep_those_examples_relabelled_in_the_order_given(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=40, n_test=30)
    plain = load_dataset("fashion-mnist", data_dir=tmp_path, flatten=False)
    two = load_dataset("fashion-mnist", data_dir=tmp_path, flatten=False, classes=[2, 0])
    assert two.classes == 2 and two.image_shape == (1, 28, 28)
    for old, new in ((plain.train, two.train), (plain.test, two.test)):
        keep = (old.y == 2) | (old.y == 0)
        assert len(new) == int(keep.sum()) > 0
        assert torch.equal(new.x, old.x[keep])  # the files' order
        assert torch.equal(new.y, torch.where(old.y[keep] == 2, 0, 1))  # 2 -> 0, 0 -> 1


def test_classes_work_for_every_reader(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path, "cifar100", n=8)
    make_fake_svhn(tmp_path, n=30)
    coarse = load_dataset("cifar100", data_dir=tmp_path, coarse_labels=True)
    picked = load_dataset("cifar100", data_dir=tmp_path, coarse_labels=True, classes=[19, 3, 7])
    keep = torch.isin(coarse.train.y, torch.tensor([19, 3, 7]))
    assert picked.classes == 3 and torch.equal(picked.train.x, coarse.train.x[keep])
    assert set(picked.train.y.tolist()) <= {0, 1, 2}
    svhn = load_dataset("svhn", data_dir=tmp_path, classes=[0, 1, 2, 3, 4])
    assert svhn.classes == 5 and int(svhn.train.y.max()) <= 4 and len(svhn.train) < 30


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([0, 10], r"classes = \[0, 10\]: fashion-mnist has no class 10; choose classes from 0 … 9"),
        ([1, 2, 1], r"classes = \[1, 2, 1\]: class 1 is listed twice; list each class once"),
        ([3], "a classifier needs at least 2 classes"),
        ([0, -1], "class labels as ints >= 0"),
        ("012", "give a list of class labels"),
    ],
)
def test_bad_classes_are_one_line_config_errors(tmp_path: Path, classes: object, message: str) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=8, n_test=4)
    with pytest.raises(ConfigError, match=message) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path, classes=classes)  # type: ignore[arg-type]
    assert "\n" not in info.value.message


def test_sizes_keep_the_first_examples_after_the_class_filter(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=60, n_test=40)
    three = load_dataset("fashion-mnist", data_dir=tmp_path, classes=[0, 1, 2])
    small = load_dataset("fashion-mnist", data_dir=tmp_path, classes=[0, 1, 2], train_size=10, test_size=7)
    assert (len(small.train), len(small.test), small.validation) == (10, 7, None)
    assert torch.equal(small.train.x, three.train.x[:10]) and torch.equal(small.train.y, three.train.y[:10])
    assert torch.equal(small.test.x, three.test.x[:7]) and torch.equal(small.test.y, three.test.y[:7])
    # the validation split is held out of the first train_size examples
    held = load_dataset("fashion-mnist", data_dir=tmp_path, train_size=12, validation=4, seed=5)
    assert held.validation is not None and (len(held.train), len(held.validation)) == (8, 4)
    first = load_dataset("fashion-mnist", data_dir=tmp_path).train.x[:12]
    rows = {tuple(r.tolist()) for r in first}
    assert {tuple(r.tolist()) for r in torch.cat([held.train.x, held.validation.x])} == rows
    only_test = load_dataset("fashion-mnist", data_dir=tmp_path, test_size=5)
    assert (len(only_test.train), len(only_test.test)) == (60, 5)


def test_bad_sizes_are_config_errors_that_say_how_many_there_are(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=20, n_test=10)
    with pytest.raises(
        ConfigError, match=r"train_size = 21: fashion-mnist holds only 20 train examples$"
    ) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path, train_size=21)
    assert info.value.hint == "use at most 20, or leave train_size unset for all"
    n = len(load_dataset("fashion-mnist", data_dir=tmp_path, classes=[0, 1]).test)
    with pytest.raises(ConfigError, match=rf"holds only {n} test examples of classes \[0, 1\]"):
        load_dataset("fashion-mnist", data_dir=tmp_path, classes=[0, 1], test_size=n + 1)
    for size in (0, -3, True, 2.5):
        with pytest.raises(ConfigError, match=r"test_size = .*: give an int >= 1"):
            load_dataset("fashion-mnist", data_dir=tmp_path, test_size=size)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="validation=20 examples is out of range for 20"):
        load_dataset("fashion-mnist", data_dir=tmp_path, train_size=20, validation=20)


def _one_image_dataset(image: np.ndarray) -> Dataset:
    x = torch.from_numpy(image).to(torch.float64)[None, None]
    return Dataset(
        name="hand",
        train=Split(x=x, y=torch.zeros(1, dtype=torch.int64)),
        test=Split(x=x, y=torch.zeros(1, dtype=torch.int64)),
        validation=None,
        classes=2,
        image_shape=(1, *image.shape),
    )


def test_crop_and_downsample_match_a_hand_computation() -> None:
    image = np.arange(36, dtype=np.float64).reshape(6, 6)  # pixel (r, c) = 6r + c
    cropped = prepare_dataset(_one_image_dataset(image), crop=1, flatten=False)
    assert cropped.image_shape == (1, 4, 4)
    assert cropped.train.x[0, 0].tolist() == [
        [7, 8, 9, 10],
        [13, 14, 15, 16],
        [19, 20, 21, 22],
        [25, 26, 27, 28],
    ]
    both = prepare_dataset(_one_image_dataset(image), crop=1, downsample=2, flatten=False)
    # the blocks' means: (7 + 8 + 13 + 14) / 4 = 10.5, (9 + 10 + 15 + 16) / 4 = 12.5, ...
    assert both.image_shape == (1, 2, 2) and both.test.x[0, 0].tolist() == [[10.5, 12.5], [22.5, 24.5]]
    pooled = prepare_dataset(_one_image_dataset(image), downsample=3)  # no crop: 6x6 -> 2x2, flattened
    assert pooled.train.x.tolist() == [[7.0, 10.0, 25.0, 28.0]] and pooled.image_shape == (1, 2, 2)
    # then pad and normalise: crop 1, downsample 2, pad to 4, (x - 0.5) / 2
    padded = prepare_dataset(_one_image_dataset(image), crop=1, downsample=2, pad_to=4, mean=[0.5], std=[2.0])
    expected = np.full((4, 4), -0.25)
    expected[1:3, 1:3] = [[5.0, 6.0], [11.0, 12.0]]
    assert padded.image_shape == (1, 4, 4) and padded.train.x.tolist() == [expected.reshape(-1).tolist()]


def test_crop_and_downsample_of_fashion_mnist_and_npz(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=8, n_test=4)
    plain = load_dataset("fashion-mnist", data_dir=tmp_path, flatten=False, dtype=torch.float64)
    small = load_dataset("fashion-mnist", data_dir=tmp_path, crop=4, downsample=2, dtype=torch.float64)
    assert (
        small.image_shape == (1, 10, 10)
        and small.train.x.shape == (8, 100)
        and small.test.x.shape == (4, 100)
    )
    centre = plain.train.x[:, :, 4:24, 4:24]
    blocks = centre.reshape(8, 1, 10, 2, 10, 2).mean(dim=(3, 5))
    assert torch.allclose(small.train.x, blocks.reshape(8, 100), rtol=0, atol=1e-12)
    # the same on your own arrays (uint8, scaled to [0, 1] first)
    rng = np.random.default_rng(3)
    x, x_test = (
        rng.integers(0, 256, (6, 12, 12), dtype=np.uint8),
        rng.integers(0, 256, (3, 12, 12), dtype=np.uint8),
    )
    np.savez(
        tmp_path / "data.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]), x_test=x_test, y_test=np.array([2, 1, 0])
    )
    own = load_dataset(
        "npz", data_dir=tmp_path / "data.npz", crop=1, downsample=5, flatten=False, dtype=torch.float64
    )
    assert own.image_shape == (1, 2, 2)
    expected = x[:, 1:11, 1:11].reshape(6, 2, 5, 2, 5).astype(np.float64).mean(axis=(2, 4)) / 255
    assert np.allclose(own.train.x[:, 0].numpy(), expected, rtol=0, atol=1e-6)
    picked = load_dataset(
        "npz", data_dir=tmp_path / "data.npz", classes=[2, 1], train_size=3, test_size=1, validation=1
    )
    assert picked.classes == 2 and picked.test.y.tolist() == [
        0
    ]  # the first test example of class 2 or 1: 2 -> 0
    assert picked.validation is not None and len(picked.train) + len(picked.validation) == 3


def test_bad_crop_and_downsample_are_config_errors(tmp_path: Path) -> None:
    make_fake_fashion_mnist(tmp_path, n_train=8, n_test=4)
    with pytest.raises(
        ConfigError,
        match="crop = 14: removing 14 pixels from every border of fashion-mnist's 28×28 images leaves none",
    ) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path, crop=14)
    assert info.value.hint == "use a crop of at most 13"
    with pytest.raises(
        ConfigError,
        match=r"downsample = 3: fashion-mnist's 20×20 images \(after crop\) do not split into 3×3 blocks",
    ):
        load_dataset("fashion-mnist", data_dir=tmp_path, crop=4, downsample=3)
    with pytest.raises(ConfigError, match="downsample = 0: give an int >= 1"):
        load_dataset("fashion-mnist", data_dir=tmp_path, downsample=0)
    with pytest.raises(ConfigError, match="crop = -1: give an int >= 0"):
        load_dataset("fashion-mnist", data_dir=tmp_path, crop=-1)
    with pytest.raises(ConfigError, match="cannot centre fashion-mnist's 10×10 images in 13×13"):
        load_dataset("fashion-mnist", data_dir=tmp_path, crop=4, downsample=2, pad_to=13)
    padded = load_dataset("fashion-mnist", data_dir=tmp_path, crop=4, downsample=2, pad_to=14, flatten=False)
    assert padded.image_shape == (1, 14, 14) and not padded.train.x[:, :, :2].any()


def test_defaults_leave_the_data_as_before(tmp_path: Path) -> None:
    """The options at their defaults change nothing; and selecting everything gives the same data and the same
    validation split as no selection (it is drawn by the same permutation)."""
    make_fake_fashion_mnist(tmp_path, n_train=30, n_test=10)
    before = load_dataset("fashion-mnist", data_dir=tmp_path, validation=6, seed=2)
    same = load_dataset(
        "fashion-mnist",
        data_dir=tmp_path,
        validation=6,
        seed=2,
        classes=None,
        train_size=None,
        test_size=None,
        crop=0,
        downsample=1,
    )
    everything = load_dataset(
        "fashion-mnist",
        data_dir=tmp_path,
        validation=6,
        seed=2,
        classes=list(range(10)),
        train_size=30,
        test_size=10,
    )
    for other in (same, everything):
        assert other.validation is not None and before.validation is not None
        assert other.classes == before.classes == 10 and other.image_shape == before.image_shape == (
            1,
            28,
            28,
        )
        for a, b in (
            (before.train, other.train),
            (before.test, other.test),
            (before.validation, other.validation),
        ):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="Debian's Fashion-MNIST files are not installed")
def test_stern_10x10_task_on_the_real_fashion_mnist() -> None:
    data = load_dataset(
        "fashion-mnist",
        data_dir=REAL_FASHION_MNIST,
        classes=[0, 1, 2],
        crop=4,
        downsample=2,
        train_size=400,
        test_size=600,
    )
    assert data.classes == 3 and data.image_shape == (1, 10, 10)
    assert data.train.x.shape == (400, 100) and data.test.x.shape == (600, 100)
    assert set(data.train.y.tolist()) == set(data.test.y.tolist()) == {0, 1, 2}
    assert float(data.train.x.min()) >= 0 and float(data.train.x.max()) <= 1
