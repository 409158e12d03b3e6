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
    load_cifar,
    load_dataset,
    load_svhn,
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
