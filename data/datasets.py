"""The dataset registry, images and graphs alike: ``load_dataset(name, ...)`` returns seeded splits.

Every dataset is registered with its modality. An image loader returns :class:`RawSplits` (pixels
in ``[0, 1]``); this module normalizes them with the dataset's official mean/std and carves the
seeded, class-balanced validation split from train. Graph datasets (``data.graphs``) register
their own splitter (a seeded stratified train/val/test split).

The split seed (``split_seed``, default :data:`DEFAULT_SPLIT_SEED`) is a dataset option of its
own, not a run's seed: every seed of a benchmark cell distils from the same pool, so the dataset
fingerprint, and every cache keyed on it (experts, proxies, teachers), is shared across seeds.
Image datasets also carry their flip policy (``flip``): whether a horizontal flip keeps an
image's class (not for digits), which every augmentation reads from the dataset.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from data._registry import Registry
from data.image import ImageDataset, class_balanced_indices

DATA_ENV_VAR = "CONDENSE_DATA"
#: The validation (and graph test) split's seed unless ``split_seed`` says otherwise.
DEFAULT_SPLIT_SEED = 0
#: Split options of image datasets and their defaults; digit datasets register ``flip=False``.
IMAGE_SPLIT_OPTIONS: tuple[tuple[str, Any], ...] = (("val_fraction", 0.1), ("flip", True))
#: The split options of digit datasets, where a horizontal flip changes the class.
DIGIT_SPLIT_OPTIONS: tuple[tuple[str, Any], ...] = (("val_fraction", 0.1), ("flip", False))


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


Loader = Callable[..., Any]
#: Turns what a loader returned into ``(train, val, test)``: ``split(raw, name=, seed=, **split_options)``.
Splitter = Callable[..., Any]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its loader, its modality and how its splits are made.

    Attributes:
        loader: ``fn(root: Path | None, download: bool, **options)`` returning the raw data.
        modality: ``image`` (the loader returns :class:`RawSplits`) or ``graph``.
        splitter: makes the train/val/test splits from the raw data.
        split_options: the options ``splitter`` takes (``val_fraction``, ...), with their defaults.
    """

    loader: Loader
    modality: str
    splitter: Splitter
    split_options: tuple[tuple[str, Any], ...]

    def options(self) -> list[str]:
        """Every option ``load_dataset`` accepts for this dataset."""
        parameters = inspect.signature(self.loader).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            loader_options = {n for n in parameters if parameters[n].kind is not inspect.Parameter.VAR_KEYWORD}
        else:
            loader_options = set(parameters)
        split_options = (name for name, _ in self.split_options)
        return sorted({"root", "download", "split_seed", *loader_options, *split_options})

    def load(self, name: str, *, root: Path | None, download: bool, seed: int, **options: Any) -> Any:
        """Read the files and make the seeded splits (``split_seed``, when given, is the seed)."""
        seed = options.pop("split_seed", seed)
        split = {key: options.pop(key, default) for key, default in self.split_options}
        raw = self.loader(root=root, download=download, **options)
        return self.splitter(raw, name=name, seed=seed, **split)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    modality: str = "image",
    splitter: Splitter | None = None,
    split_options: tuple[tuple[str, Any], ...] = IMAGE_SPLIT_OPTIONS,
) -> Callable[[Loader], Loader]:
    """Decorator registering a loader ``fn(root: Path | None, download: bool, **options)``.

    Image loaders return :class:`RawSplits`, normalized and split by :func:`normalize_and_split`;
    other modalities pass their own ``splitter`` and its ``split_options``.
    """

    def _register(loader: Loader) -> Loader:
        DATASETS.register(name, DatasetEntry(loader, modality, splitter or normalize_and_split, split_options))
        return loader

    return _register


def list_datasets(pattern: str = "*", *, modality: str | None = None) -> list[str]:
    """Registered dataset names, optionally of one modality (``image`` or ``graph``)."""
    return [n for n in DATASETS.names(pattern) if modality is None or DATASETS.get(n).modality == modality]


def dataset_modality(name: str) -> str:
    """``image`` or ``graph``: the data dataset ``name`` holds (unknown names list the valid ones)."""
    return DATASETS.get(name).modality


def check_dataset_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every option dataset ``name`` does not take."""
    valid = DATASETS.get(name).options()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no option(s) {', '.join(f'dataset.{u}' for u in unknown)}; valid options: "
            f"{', '.join(valid)}"
        )


def default_data_root() -> Path:
    """``$CONDENSE_DATA`` if set, else ``./datasets``."""
    return Path(os.environ.get(DATA_ENV_VAR, "datasets")).expanduser()


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = DEFAULT_SPLIT_SEED,
    **options: Any,
) -> Any:
    """Load a registered dataset (images or graphs) as seeded train/val/test splits.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: folder holding the files; defaults to ``$CONDENSE_DATA`` or ``./datasets``.
        download: allow fetching the files (needs internet; off by default).
        seed: seeds the validation (and, for graphs, test) split; the option ``split_seed`` is the
            same (the benchmark passes ``dataset.split_seed``, never a cell's seed).
        **options: split options (``val_fraction``: share of each training class moved to the
            validation split; ``flip``: whether horizontal flips keep the class, images only;
            graphs also ``test_fraction``) and loader options (``image_size`` for
            ``imagefolder``, ``tu_name`` for ``tu``).

    Returns:
        ``(train, val, test)``: :class:`DatasetSplits` of images (the test split is the dataset's
        official one) or ``GraphSplits`` (a seeded stratified split).
    """
    check_dataset_options(name, {"root": root, "download": download, **options})
    folder = Path(root).expanduser() if root is not None else None
    return DATASETS.get(name).load(name, root=folder, download=download, seed=seed, **options)


def normalize_and_split(
    raw: RawSplits, *, name: str, seed: int, val_fraction: float = 0.1, flip: bool = True
) -> DatasetSplits:
    """Normalize ``raw`` with its (or train-computed) mean/std and carve the validation split.

    ``flip`` is the splits' flip policy (:attr:`ImageDataset.flip`).
    """
    if not isinstance(flip, bool):
        raise ValueError(f"{name}: flip must be true or false, got {flip!r}")
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
            flip=flip,
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


@register_dataset("digits", split_options=DIGIT_SPLIT_OPTIONS)
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
