"""Datasets, synthetic sets, budgets and the registry helper shared by the whole suite."""

# Importing the loader module registers the file-based datasets.
from data import loaders as _loaders  # noqa: E402,F401
from data._registry import Registry
from data.datasets import (
    DATASETS,
    DatasetSplits,
    RawSplits,
    default_data_root,
    list_datasets,
    load_dataset,
    register_dataset,
)
from data.image import ImageDataset, class_balanced_indices

__all__ = [
    "DATASETS",
    "DatasetSplits",
    "ImageDataset",
    "RawSplits",
    "Registry",
    "class_balanced_indices",
    "default_data_root",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
