"""The graph datasets (``mutag``, ``tu``) of the one dataset registry, and their seeded stratified splits.

``load_dataset("mutag", seed=0)`` returns :class:`GraphSplits`. ``tu`` reads any TU dataset
(``tu_name=PROTEINS``) from ``root`` (``$CONDENSE_DATA`` or ``./datasets``), downloaded only with
``download=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from data.datasets import default_data_root, register_dataset
from data.graphs.dataset import GraphDataset
from data.graphs.tu import download_tu, grakel_data_folder, read_tu
from data.image import class_balanced_indices


class GraphSplits(NamedTuple):
    """``train, val, test = load_dataset("mutag", ...)``."""

    train: GraphDataset
    val: GraphDataset
    test: GraphDataset


def stratified_split(
    dataset: GraphDataset, *, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> GraphSplits:
    """Seeded stratified train/validation/test split (each class split in the same proportions)."""
    generator = torch.Generator().manual_seed(seed)
    rest, test_idx = class_balanced_indices(dataset.labels, dataset.num_classes, test_fraction, generator)
    rest_labels = dataset.labels[rest]
    share = val_fraction / (1 - test_fraction)
    kept, held = class_balanced_indices(rest_labels, dataset.num_classes, share, generator)
    return GraphSplits(
        train=dataset.subset(rest[kept], split="train"),
        val=dataset.subset(rest[held], split="val"),
        test=dataset.subset(test_idx, split="test"),
    )


def _split_graphs(dataset: GraphDataset, *, name: str, seed: int, **fractions: float) -> GraphSplits:
    """The registry's splitter for graph datasets (the loader already named the dataset)."""
    return stratified_split(dataset, seed=seed, **fractions)


#: The split options of every graph dataset, with their defaults (the DosCond/GC-Bench 80/10/10).
GRAPH_SPLIT_OPTIONS = (("val_fraction", 0.1), ("test_fraction", 0.1))


def register_graph_dataset(name: str) -> Callable[[Callable[..., GraphDataset]], Callable[..., GraphDataset]]:
    """Decorator registering ``fn(root: Path | None, download: bool, **options) -> GraphDataset``."""
    return register_dataset(name, modality="graph", splitter=_split_graphs, split_options=GRAPH_SPLIT_OPTIONS)


def _tu_folder(tu_name: str, root: Path | None, download: bool) -> Path:
    base = root if root is not None else default_data_root()
    for candidate in (base / tu_name, base / tu_name / tu_name, base):
        if (candidate / f"{tu_name}_A.txt").is_file():
            return candidate
    if download:
        folder = download_tu(tu_name, base)
        return folder if (folder / f"{tu_name}_A.txt").is_file() else folder / tu_name
    raise FileNotFoundError(
        f"TU dataset {tu_name!r} not found under {base}. Put {tu_name}_A.txt, {tu_name}_graph_indicator.txt, "
        f"{tu_name}_graph_labels.txt (and label files) in {base / tu_name}, set root=... (dataset.root=...) "
        "or $CONDENSE_DATA, or pass download=true where there is internet."
    )


@register_graph_dataset("mutag")
def load_mutag(root: Path | None = None, download: bool = False) -> GraphDataset:
    """MUTAG (188 graphs, 125 mutagenic / 63 not): from ``root`` if there, else the grakel wheel."""
    if root is not None:
        return read_tu(_tu_folder("MUTAG", root, download), "MUTAG")
    folder = grakel_data_folder("MUTAG")
    if folder is None:
        return read_tu(_tu_folder("MUTAG", None, download), "MUTAG")
    return read_tu(folder, "MUTAG")


@register_graph_dataset("tu")
def load_tu(root: Path | None = None, download: bool = False, tu_name: str | None = None) -> GraphDataset:
    """Any TU dataset ``tu_name`` (e.g. ``PROTEINS``, ``NCI1``) from ``root``/``<tu_name>``."""
    if not tu_name:
        raise ValueError("dataset 'tu' needs tu_name=<TU dataset name>, e.g. tu_name=PROTEINS")
    return read_tu(_tu_folder(tu_name, root, download), tu_name)
