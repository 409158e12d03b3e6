"""Datasets: local-file readers (MNIST-family IDX, CIFAR-10/100, SVHN), one loader, augmentation, mini-batching."""

from eqprop.data.arrays import NPZ_FILE, from_arrays, from_torch, load_npz
from eqprop.data.augment import Augment, random_crop, random_flip
from eqprop.data.cifar import CIFAR_FILES, load_cifar, read_cifar_batch
from eqprop.data.datasets import DATASETS, hold_out, load_dataset, prepare_dataset, select_examples
from eqprop.data.idx import (
    DATASET_NAMES,
    ENV_DATA_DIR,
    IDX_FILES,
    find_dataset_dir,
    load_idx_dataset,
    read_idx,
)
from eqprop.data.split import Batches, Dataset, Split
from eqprop.data.svhn import SVHN_FILES, load_svhn, read_svhn_mat

__all__ = [
    "CIFAR_FILES",
    "DATASETS",
    "DATASET_NAMES",
    "ENV_DATA_DIR",
    "IDX_FILES",
    "NPZ_FILE",
    "SVHN_FILES",
    "Augment",
    "Batches",
    "Dataset",
    "Split",
    "find_dataset_dir",
    "from_arrays",
    "from_torch",
    "hold_out",
    "load_cifar",
    "load_dataset",
    "load_idx_dataset",
    "load_npz",
    "load_svhn",
    "prepare_dataset",
    "random_crop",
    "random_flip",
    "read_cifar_batch",
    "read_idx",
    "read_svhn_mat",
    "select_examples",
]
