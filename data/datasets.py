"""Dataset registry: ``load_dataset(name, ...)`` returns class-balanced train/val/test splits.

A loader returns :class:`RawSplits` (pixels in ``[0, 1]``); this module normalizes them with the
dataset's official mean/std and carves the seeded, class-balanced validation split from train.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from data._registry import Registry
from data.image import ImageDataset, class_balanced_indices

DATA_ENV_VAR = "CONDENSE_DATA"


@dataclass(frozen=True)
class RawSplits:
    """What a loader returns: float pixels in ``[0, 1]``, ``N x C x H x W``, and int labels.

    ``mean``/``std`` are the normalization constants; ``None`` means "compute them on train".
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


class DatasetSplits(NamedTuple):
    """``train, val, test = load_dataset(...)``."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


Loader = Callable[..., RawSplits]
DATASETS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering a loader ``fn(root: Path | None, download: bool, **options)``."""
    return DATASETS.register(name)  # type: ignore[return-value]


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered image dataset names."""
    return DATASETS.names(pattern)


def default_data_root() -> Path:
    """``$CONDENSE_DATA`` if set, else ``./datasets``."""
    return Path(os.environ.get(DATA_ENV_VAR, "datasets")).expanduser()


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    **options: object,
) -> DatasetSplits:
    """Load a registered dataset as normalized train/val/test splits.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: folder holding the files; defaults to ``$CONDENSE_DATA`` or ``./datasets``.
        download: allow fetching the files (needs internet; off by default).
        seed: seeds the class-balanced validation split carved from train.
        val_fraction: share of each training class moved to the validation split.
        **options: loader-specific options (e.g. ``image_size`` for ``imagefolder``).

    Returns:
        ``(train, val, test)``; the test split is the dataset's official one.
    """
    loader = DATASETS.get(name)
    raw = loader(root=Path(root).expanduser() if root is not None else None, download=download, **options)
    return normalize_and_split(raw, name=name, seed=seed, val_fraction=val_fraction)


def normalize_and_split(raw: RawSplits, *, name: str, seed: int, val_fraction: float) -> DatasetSplits:
    """Normalize ``raw`` with its (or train-computed) mean/std and carve the validation split."""
    train_images = raw.train_images.float()
    channels = train_images.shape[1]
    if raw.mean is None or raw.std is None:
        mean = tuple(float(v) for v in train_images.mean(dim=(0, 2, 3)))
        std = tuple(float(v) for v in train_images.std(dim=(0, 2, 3)))
    else:
        mean, std = tuple(raw.mean), tuple(raw.std)
    if len(mean) != channels:
        raise ValueError(f"{name}: mean has {len(mean)} values for {channels} channels")
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    num_classes = len(raw.class_names)

    def make(images: Tensor, labels: Tensor, split: str) -> ImageDataset:
        labels = labels.long()
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name}: {split} labels outside [0, {num_classes})")
        return ImageDataset(
            images=((images.float() - mean_t) / std_t).contiguous(),
            labels=labels,
            num_classes=num_classes,
            mean=mean,
            std=std,
            name=name,
            class_names=tuple(raw.class_names),
            split=split,
        )

    full_train = make(train_images, raw.train_labels, "train")
    generator = torch.Generator().manual_seed(seed)
    kept, held = class_balanced_indices(full_train.labels, num_classes, val_fraction, generator)
    return DatasetSplits(
        train=full_train.subset(kept, split="train"),
        val=full_train.subset(held, split="val"),
        test=make(raw.test_images, raw.test_labels, "test"),
    )


def missing_files_error(name: str, root: Path | None, expected: str, download_hint: bool = True) -> FileNotFoundError:
    """A uniform, actionable error for a dataset whose files are absent."""
    where = root if root is not None else default_data_root()
    hint = " or pass download=true (dataset.download=true) where there is internet" if download_hint else ""
    return FileNotFoundError(
        f"dataset {name!r} not found under {where}. Put the files there as {expected}{hint}; "
        f"set the folder with root=... (dataset.root=... on the command line) or ${DATA_ENV_VAR}."
    )


# Digits is embedded in scikit-learn and its test split is fixed (independent of the run seed).
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 20_211_797


@register_dataset("digits")
def load_digits_splits(root: Path | None = None, download: bool = False) -> RawSplits:
    """scikit-learn's 8x8 digits (1,797 images); a fixed stratified 20% test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    generator = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    train_idx, test_idx = class_balanced_indices(labels, 10, DIGITS_TEST_FRACTION, generator)
    return RawSplits(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        class_names=tuple(str(d) for d in range(10)),
    )
