"""Datasets: readers for the MNIST-family IDX files and in-memory mini-batching."""

from eqprop.data.idx import (
    DATASET_NAMES,
    ENV_DATA_DIR,
    IDX_FILES,
    Batches,
    Dataset,
    Split,
    find_dataset_dir,
    load_idx_dataset,
    read_idx,
)

__all__ = [
    "DATASET_NAMES",
    "ENV_DATA_DIR",
    "IDX_FILES",
    "Batches",
    "Dataset",
    "Split",
    "find_dataset_dir",
    "load_idx_dataset",
    "read_idx",
]
