"""Datasets, synthetic sets, budgets and the registry helper shared by the whole suite."""

# Importing the loaders and the graph package registers the file-based and the graph datasets.
from data import graphs as _graphs  # noqa: F401
from data import loaders as _loaders  # noqa: F401
from data._registry import Registry
from data.datasets import (
    DATASETS,
    DatasetSplits,
    RawSplits,
    check_dataset_options,
    dataset_modality,
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
    "check_dataset_options",
    "class_balanced_indices",
    "dataset_modality",
    "default_data_root",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
