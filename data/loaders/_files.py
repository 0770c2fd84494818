"""Helpers shared by the file-based loaders: folder search, file probes, download, tensor conversion."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from data.datasets import default_data_root
from data.untrusted import BadFileError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Class names of the digit datasets (MNIST and SVHN).
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def search_dirs(root: Path | None, layouts: Sequence[str], extra: Sequence[Path] = ()) -> list[Path]:
    """Candidate folders: each layout under ``root``; without a root, under the default root, then ``extra``.

    An explicit ``root`` is the only place searched, so a wrong root fails instead of silently
    loading files found elsewhere.

    Args:
        root: the folder the caller passed.
        layouts: sub-folders to try below each base, ``""`` meaning the base itself.
        extra: further folders (system locations) tried last when no root is given.
    """
    if root is not None:
        extra = ()
    bases = [root] if root is not None else [default_data_root()]
    dirs: list[Path] = []
    for base in bases:
        for layout in layouts:
            candidate = base / layout if layout else base
            if candidate not in dirs:
                dirs.append(candidate)
    dirs.extend(d for d in extra if d not in dirs)
    return dirs


def find_first(dirs: Sequence[Path], probe: Callable[[Path], T | None]) -> tuple[Path, T] | None:
    """The first folder of ``dirs`` for which ``probe`` returns something, with that result."""
    for directory in dirs:
        found = probe(directory) if directory.is_dir() else None
        if found is not None:
            return directory, found
    return None


def files_probe(names: Sequence[str], allow_gz: bool = False) -> Callable[[Path], dict[str, Path] | None]:
    """A probe returning ``{name: path}`` when every file of ``names`` is in the folder.

    With ``allow_gz`` a file may also be present as ``name.gz`` (the plain file is preferred).
    """

    def probe(directory: Path) -> dict[str, Path] | None:
        found: dict[str, Path] = {}
        for name in names:
            options = [directory / name] + ([directory / f"{name}.gz"] if allow_gz else [])
            path = next((p for p in options if p.is_file()), None)
            if path is None:
                return None
            found[name] = path
        return found

    return probe


def searched(dirs: Sequence[Path]) -> str:
    """Human-readable list of the searched folders for error messages."""
    return "searched: " + ", ".join(str(d) for d in dirs)


def torchvision_download(class_name: str, root: Path | None, calls: Sequence[Mapping[str, Any]]) -> Path:
    """Fetch files with ``torchvision.datasets.<class_name>(root, download=True, **kwargs)``.

    Args:
        class_name: the torchvision dataset class, e.g. ``"MNIST"``.
        root: target folder (the default data root when ``None``).
        calls: keyword arguments of each constructor call (e.g. one per split).

    Returns:
        The folder the files were written under.
    """
    import torchvision.datasets

    target = root if root is not None else default_data_root()
    target.mkdir(parents=True, exist_ok=True)
    dataset_class = getattr(torchvision.datasets, class_name)
    logger.info("downloading %s into %s with torchvision", class_name, target)
    for kwargs in calls:
        dataset_class(str(target), download=True, **kwargs)
    return target


def to_pixels(images: np.ndarray) -> Tensor:
    """``uint8`` array to a float32 tensor in ``[0, 1]`` (always a fresh, writable copy)."""
    pixels = images.astype(np.float32, order="C")
    pixels /= 255.0
    return torch.from_numpy(pixels)


def to_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> Tensor:
    """Integer labels as an ``int64`` tensor, checked to lie in ``[0, num_classes)``."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise BadFileError(source, f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise BadFileError(
            source,
            f"labels span [{labels.min()}, {labels.max()}], expected [0, {num_classes}) (corrupt or wrong file?)",
        )
    return torch.from_numpy(labels)


def check_count(images: np.ndarray | Tensor, labels: np.ndarray | Tensor, source: Path | str) -> None:
    """Raise when the number of images and labels differ."""
    if len(images) != len(labels):
        raise BadFileError(source, f"{len(images)} images but {len(labels)} labels")
