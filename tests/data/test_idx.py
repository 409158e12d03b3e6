"""Tests of the IDX readers, the dataset loader and the mini-batch iterator."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from eqprop.data import (
    ENV_DATA_DIR,
    IDX_FILES,
    Batches,
    Dataset,
    Split,
    find_dataset_dir,
    load_idx_dataset,
    read_idx,
)
from eqprop.errors import ConfigError, DataError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` in the IDX format (big-endian)."""
    array = np.asarray(array)
    code = _CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file at ``path`` (gzip-compressed, with ``.gz`` appended, if ``gz``)."""
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_dataset(
    directory: Path, n_train: int = 50, n_test: int = 20, gz: bool = False, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Write a tiny fake 4-file dataset of 28×28 images into ``directory``; return the arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    train_y = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    test_y = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    for stem, array in zip(IDX_FILES, (train_x, train_y, test_x, test_y), strict=True):
        write_idx(directory / stem, array, gz=gz)
    return train_x, train_y, test_x, test_y


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure $EQPROP_DATA_DIR from the caller's shell does not leak into a test."""
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)


# --- read_idx ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(_CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type_code(tmp_path: Path, dtype: np.dtype, gz: bool) -> None:
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    array = np.array([[info.min, 0, 1], [info.max, 2, 3]], dtype=dtype).reshape(2, 1, 3)
    path = write_idx(tmp_path / "a-idx3-ubyte", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == dtype
    assert out.dtype.isnative
    assert out.shape == (2, 1, 3)
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable
    assert out.flags.c_contiguous


def test_read_idx_detects_gzip_by_magic_without_suffix(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "labels-idx2-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(str(path)), array)


def test_read_idx_accepts_zero_length_dimension(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "empty", np.zeros((0, 28, 28), dtype=np.uint8))
    assert read_idx(path).shape == (0, 28, 28)


@settings(max_examples=30, deadline=None)
@given(
    array=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
    gz=st.booleans(),
)
def test_read_idx_uint8_property(
    tmp_path_factory: pytest.TempPathFactory, array: np.ndarray, gz: bool
) -> None:
    path = write_idx(tmp_path_factory.mktemp("u8") / "x", array, gz=gz)
    out = read_idx(path)
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


@settings(max_examples=30, deadline=None)
@given(
    array=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    gz=st.booleans(),
)
def test_read_idx_float32_property(
    tmp_path_factory: pytest.TempPathFactory, array: np.ndarray, gz: bool
) -> None:
    path = write_idx(tmp_path_factory.mktemp("f32") / "x", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.float32
    assert out.shape == array.shape
    np.testing.assert_array_equal(out.view(np.uint32), array.view(np.uint32))  # bit-exact, NaN included


def test_read_idx_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte"
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*does not exist") as info:
        read_idx(path)
    assert info.value.hint is not None
    assert "dataset-fashion-mnist" in info.value.hint


def test_read_idx_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a file"):
        read_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_data(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.zeros((4, 5), dtype=np.int16))[:-3]  # 4 + 8 + 40 bytes expected, 49 present
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"truncated IDX file .*x.*expected 52 bytes.*got 49 bytes"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match=r"truncated.*expected 16 header bytes.*got 6 bytes"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match=r"truncated.*got 2 bytes"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"junk")
    with pytest.raises(DataError, match=r"trailing garbage .*expected 11 bytes.*got 15 bytes"):
        read_idx(path)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError, match=r"bad magic in IDX file .*x"):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError, match="unknown IDX type code 0x0A"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "x.gz"
    path.write_bytes(good[: len(good) // 2])  # cut short: EOFError inside gzip
    with pytest.raises(DataError, match=r"corrupt gzip stream in IDX file .*x\.gz"):
        read_idx(path)
    damaged = bytearray(good)
    damaged[20:40] = bytes(20)  # damage the deflate stream
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")  # .gz suffix but no gzip header
    with pytest.raises(DataError, match="corrupt gzip stream"):
        read_idx(path)


# --- find_dataset_dir ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
def test_find_dataset_dir_explicit(tmp_path: Path) -> None:
    make_dataset(tmp_path / "d", gz=True)
    assert find_dataset_dir("mnist", tmp_path / "d") == tmp_path / "d"
    assert find_dataset_dir("mnist", str(tmp_path / "d")) == tmp_path / "d"
    # a parent folder with one subfolder per dataset works too
    make_dataset(tmp_path / "kmnist")
    assert find_dataset_dir("kmnist", tmp_path) == tmp_path / "kmnist"


@pytest.mark.usefixtures("no_env")
def test_find_dataset_dir_mixed_plain_and_gz(tmp_path: Path) -> None:
    make_dataset(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").rename(tmp_path / "t10k-labels-idx1-ubyte")
    assert find_dataset_dir("mnist", tmp_path) == tmp_path


def test_find_dataset_dir_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path / "mnist")
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    assert find_dataset_dir("mnist") == tmp_path / "mnist"
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "mnist"))
    assert find_dataset_dir("mnist") == tmp_path / "mnist"
    # an explicit folder wins over the environment variable
    make_dataset(tmp_path / "other")
    assert find_dataset_dir("mnist", tmp_path / "other") == tmp_path / "other"
    data = load_idx_dataset("mnist")
    assert len(data.train) == 50


@pytest.mark.usefixtures("no_env")
def test_find_dataset_dir_missing_names_places_and_first_file(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"kmnist IDX files not found; searched .*no train-labels-idx1-ubyte"):
        find_dataset_dir("kmnist", tmp_path)
    with pytest.raises(DataError, match="no such folder") as info:
        find_dataset_dir("mnist", tmp_path / "nope")
    assert "nope" in str(info.value)
    assert info.value.hint is not None
    assert "--data-dir" in info.value.hint
    assert ENV_DATA_DIR in info.value.hint


def test_find_dataset_dir_missing_fashion_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fashion-mnist IDX files not found") as info:
        find_dataset_dir("fashion-mnist", tmp_path)
    assert info.value.hint is not None
    assert "sudo apt-get install dataset-fashion-mnist" in info.value.hint


def test_find_dataset_dir_env_var_without_files_nondebian(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    with pytest.raises(DataError, match=re.escape(f"searched {tmp_path} (no train-images-idx3-ubyte")):
        find_dataset_dir("mnist")


@pytest.mark.usefixtures("no_env")
def test_find_dataset_dir_nowhere_to_look() -> None:
    with pytest.raises(DataError, match=f"{ENV_DATA_DIR} is not set"):
        find_dataset_dir("kmnist")


def test_unknown_dataset_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="unknown dataset 'fashion-mnsit'; known: mnist, fashion-mnist"
    ) as info:
        find_dataset_dir("fashion-mnsit", tmp_path)
    assert info.value.hint == "did you mean 'fashion-mnist'?"
    with pytest.raises(ConfigError, match="unknown dataset 'cifar10'"):
        load_idx_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.usefixtures("no_env")
def test_dataset_name_is_normalised(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    assert load_idx_dataset("Fashion_MNIST", data_dir=tmp_path).name == "fashion-mnist"


# --- load_idx_dataset ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dataset(tmp_path: Path, gz: bool) -> None:
    train_x, train_y, test_x, test_y = make_dataset(tmp_path, gz=gz)
    data = load_idx_dataset("mnist", data_dir=tmp_path)
    assert isinstance(data, Dataset)
    assert data.name == "mnist"
    assert data.classes == 10
    assert data.validation is None
    assert data.train.x.shape == (50, 784)
    assert data.test.x.shape == (20, 784)
    assert len(data.train) == 50
    assert len(data.test) == 20
    assert data.train.x.dtype == torch.float32
    assert data.train.y.dtype == torch.int64
    assert data.train.y.shape == (50,)
    assert float(data.train.x.min()) >= 0.0
    assert float(data.train.x.max()) <= 1.0
    np.testing.assert_allclose(data.train.x.numpy(), train_x.reshape(50, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.train.y.numpy(), train_y)
    np.testing.assert_allclose(data.test.x.numpy(), test_x.reshape(20, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.test.y.numpy(), test_y)


@pytest.mark.usefixtures("no_env")
def test_load_idx_dataset_unflattened_float64(tmp_path: Path) -> None:
    train_x, *_ = make_dataset(tmp_path)
    data = load_idx_dataset("kmnist", data_dir=tmp_path, flatten=False, dtype=torch.float64)
    assert data.train.x.shape == (50, 1, 28, 28)
    assert data.test.x.shape == (20, 1, 28, 28)
    assert data.train.x.dtype == torch.float64
    np.testing.assert_allclose(data.train.x[:, 0].numpy(), train_x / 255.0)


@pytest.mark.usefixtures("no_env")
def test_load_idx_dataset_rejects_integer_dtype(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    with pytest.raises(ConfigError, match="floating-point"):
        load_idx_dataset("mnist", data_dir=tmp_path, dtype=torch.int32)


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize(
    ("validation", "expected"), [(10, 10), (0.2, 10), (1, 1), (49, 49), (0.5, 25), (0.0, 0)]
)
def test_validation_split(tmp_path: Path, validation: int | float, expected: int) -> None:
    train_x, train_y, *_ = make_dataset(tmp_path)
    data = load_idx_dataset("mnist", data_dir=tmp_path, validation=validation, seed=3)
    if expected == 0:
        assert data.validation is None
        assert len(data.train) == 50
        return
    assert data.validation is not None
    assert len(data.validation) == expected
    assert len(data.train) == 50 - expected
    # rows are identified by their pixels (random 784-byte images are distinct)
    all_rows = {row.tobytes(): i for i, row in enumerate(train_x.reshape(50, 784))}
    assert len(all_rows) == 50

    def to_index(split: Split) -> list[int]:
        return [all_rows[bytes(r)] for r in (split.x * 255).round().to(torch.uint8).numpy()]

    val_idx, train_idx = to_index(data.validation), to_index(data.train)
    assert set(val_idx).isdisjoint(train_idx)
    assert sorted(val_idx + train_idx) == list(range(50))
    assert train_idx == sorted(train_idx)  # the files' order is kept
    np.testing.assert_array_equal(data.validation.y.numpy(), train_y[val_idx])
    np.testing.assert_array_equal(data.train.y.numpy(), train_y[train_idx])


@pytest.mark.usefixtures("no_env")
def test_validation_split_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    a = load_idx_dataset("mnist", data_dir=tmp_path, validation=10, seed=7)
    b = load_idx_dataset("mnist", data_dir=tmp_path, validation=10, seed=7)
    c = load_idx_dataset("mnist", data_dir=tmp_path, validation=10, seed=8)
    assert a.validation is not None
    assert b.validation is not None
    assert c.validation is not None
    assert torch.equal(a.validation.x, b.validation.x)
    assert torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.validation.x, c.validation.x)


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("validation", [-1, 50, 51, 1.0, 1.5, -0.1, 0.001, float("nan"), True, "10"])
def test_validation_bad_values(tmp_path: Path, validation: object) -> None:
    make_dataset(tmp_path)
    with pytest.raises(ConfigError, match="validation"):
        load_idx_dataset("mnist", data_dir=tmp_path, validation=validation)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_env")
def test_load_count_mismatch_names_both_files(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(49, dtype=np.uint8))
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte holds 50 images but .*train-labels-idx1-ubyte holds 49 labels",
    ):
        load_idx_dataset("mnist", data_dir=tmp_path)


@pytest.mark.usefixtures("no_env")
def test_load_label_out_of_range(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    labels = np.zeros(20, dtype=np.uint8)
    labels[3] = 10
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=r"label 10 in .*t10k-labels-idx1-ubyte is outside \[0, 10\)"):
        load_idx_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, -1, dtype=np.int8))
    with pytest.raises(DataError, match=r"label -1 in .* is outside"):
        load_idx_dataset("mnist", data_dir=tmp_path)


@pytest.mark.usefixtures("no_env")
def test_load_wrong_ranks(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((50, 784), dtype=np.uint8))
    with pytest.raises(DataError, match=r"images in .*train-images-idx3-ubyte must be 3-D"):
        load_idx_dataset("mnist", data_dir=tmp_path)
    make_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((50, 1), dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels in .*train-labels-idx1-ubyte must be 1-D"):
        load_idx_dataset("mnist", data_dir=tmp_path)


@pytest.mark.usefixtures("no_env")
def test_load_corrupt_file_is_reported(tmp_path: Path) -> None:
    make_dataset(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"corrupt gzip stream in IDX file .*t10k-images-idx3-ubyte\.gz"):
        load_idx_dataset("mnist", data_dir=tmp_path)


@pytest.mark.skipif(
    not DEBIAN_FASHION.exists(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
@pytest.mark.usefixtures("no_env")
def test_real_fashion_mnist_from_debian() -> None:
    data = load_idx_dataset("fashion-mnist")
    assert data.train.x.shape == (60000, 784)
    assert data.test.x.shape == (10000, 784)
    assert data.train.y.shape == (60000,)
    assert data.test.y.shape == (10000,)
    for split in (data.train, data.test):
        assert int(split.y.min()) == 0
        assert int(split.y.max()) == 9
        assert float(split.x.min()) >= 0.0
        assert float(split.x.max()) <= 1.0


# --- Split and Batches ----------------------------------------------------------------------------


def make_split(n: int = 23) -> Split:
    return Split(x=torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3), y=torch.arange(n))


def test_split_rejects_mismatched_lengths() -> None:
    with pytest.raises(ConfigError, match="Split needs"):
        Split(x=torch.zeros(3, 2), y=torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize(
    ("batch_size", "drop_last", "expected"),
    [(5, False, 5), (5, True, 4), (23, False, 1), (50, True, 0), (1, False, 23)],
)
def test_batches_len(batch_size: int, drop_last: bool, expected: int) -> None:
    batches = Batches(make_split(), batch_size, shuffle=False, drop_last=drop_last)
    assert len(batches) == expected
    assert len(list(batches)) == expected


def test_batches_in_order() -> None:
    batches = list(Batches(make_split(), 5, shuffle=False))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(23))
    for x, y in batches:
        assert torch.equal(x[:, 0].long(), y)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_shuffle_covers_each_example_once_per_epoch(drop_last: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    batches = Batches(make_split(), 4, shuffle=True, generator=generator, drop_last=drop_last)
    orders = []
    for _ in range(3):
        seen = []
        for x, y in batches:
            assert torch.equal(x[:, 0].long(), y)  # x and y stay paired
            assert len(y) == 4 or not drop_last
            seen.append(y)
        order = torch.cat(seen)
        if drop_last:
            assert len(order) == 20
            assert len(set(order.tolist())) == 20
        else:
            assert sorted(order.tolist()) == list(range(23))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1])  # a new order every epoch


def test_batches_same_seed_same_order_and_resume() -> None:
    split = make_split()

    def epoch(batches: Batches) -> torch.Tensor:
        return torch.cat([y for _, y in batches])

    a = Batches(split, 5, shuffle=True, generator=torch.Generator().manual_seed(42))
    b = Batches(split, 5, shuffle=True, generator=torch.Generator().manual_seed(42))
    first_a, first_b = epoch(a), epoch(b)
    assert torch.equal(first_a, first_b)
    # resuming: restoring the generator's state after epoch 1 reproduces epoch 2
    assert a.generator is not None
    state = a.generator.get_state()
    second_a = epoch(a)
    resumed = torch.Generator()
    resumed.set_state(state)
    assert torch.equal(epoch(Batches(split, 5, shuffle=True, generator=resumed)), second_a)
    assert not torch.equal(first_a, second_a)


def test_batches_shuffle_without_generator() -> None:
    order = torch.cat([y for _, y in Batches(make_split(), 6, shuffle=True)])
    assert sorted(order.tolist()) == list(range(23))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_batches_bad_batch_size(batch_size: object) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        Batches(make_split(), batch_size, shuffle=False)  # type: ignore[arg-type]
