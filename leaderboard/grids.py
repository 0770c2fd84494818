"""Image grids of the saved synthetic sets, read straight from their safetensors files.

A set file (written by the benchmark, one per cell) holds the tensor ``images`` (N x C x H x W,
normalized), ``labels`` (N class ids, or N x K soft labels) and, in the safetensors header
metadata under ``condense_bench``, a JSON object with the per-channel ``mean`` and ``std``
(:mod:`data.setfile`, the one reader of that format). Nothing from a file is ever executed. A
missing, foreign or unreadable file becomes a :class:`GridNote`, never an exception.
"""

from __future__ import annotations

import io
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data.files import StrPath
from data.setfile import SET_FILE_SUFFIX, open_set_file
from leaderboard.records import ResultRecord
from leaderboard.table import RANDOM_METHOD, REFERENCE_FAMILY, BudgetKey

logger = logging.getLogger(__name__)

MAX_CLASSES = 10
MAX_PER_CLASS = 10
#: Tiles are scaled up (nearest neighbour) to at least this many pixels, and larger images
#: are scaled down to at most :data:`MAX_TILE_PIXELS`.
MIN_TILE_PIXELS = 32
MAX_TILE_PIXELS = 64
_GAP = 2
_LABEL_WIDTH = 22
_BACKGROUND = (255, 255, 255)
_LABEL_COLOR = (89, 99, 110)


@dataclass(frozen=True)
class SetPreview:
    """The images of a set chosen for display, denormalized to ``[0, 1]``.

    Attributes:
        images: per shown class, its shown images as H x W x C float arrays in ``[0, 1]``.
        classes: the class ids shown, one per entry of ``images``.
        num_classes: classes in the set (from the metadata, else from the labels).
        num_images: images in the set.
        soft_labels: whether the labels are soft (the class shown is the arg-max).
    """

    images: list[list[np.ndarray]]
    classes: list[int]
    num_classes: int
    num_images: int
    soft_labels: bool


@dataclass(frozen=True)
class ImageGrid:
    """One rendered grid: rows are classes, columns the first images of each class."""

    dataset: str
    method: str
    budget: str
    seed: int
    cell_key: str
    set_path: str
    png: bytes
    classes_shown: int
    num_classes: int
    num_images: int
    max_per_class: int
    soft_labels: bool


@dataclass(frozen=True)
class GridNote:
    """Why no grid is shown for a (dataset, method, budget)."""

    dataset: str
    method: str
    budget: str
    message: str


def read_set_preview(
    path: StrPath, *, max_classes: int = MAX_CLASSES, max_per_class: int = MAX_PER_CLASS
) -> SetPreview:
    """Read up to ``max_per_class`` images of each of the first ``max_classes`` classes of a set.

    Only the chosen images are read from the file (the rest stays on disk).

    Raises:
        FileNotFoundError: when there is no file at ``path``.
        ValueError: when the file is not a synthetic set of the expected layout.
        Exception: whatever ``safetensors`` raises for a corrupt file.
    """
    with open_set_file(path) as handle:
        info = handle.metadata
        shape = handle.shape("images")
        labels = np.asarray(handle.tensor("labels"))
        mean = np.asarray(info.get("mean", []), dtype=np.float64)
        std = np.asarray(info.get("std", []), dtype=np.float64)
        _check_layout(shape, labels, mean, std)
        soft = labels.ndim == 2
        class_ids = labels.argmax(axis=1) if soft else labels.astype(np.int64)
        num_classes = int(info.get("num_classes") or (int(class_ids.max()) + 1 if class_ids.size else 0))
        classes = sorted(int(value) for value in np.unique(class_ids))[:max_classes]
        images = []
        for class_id in classes:
            indices = np.flatnonzero(class_ids == class_id)[:max_per_class]
            images.append([_denormalize(handle.rows("images", int(i), int(i) + 1)[0], mean, std) for i in indices])
    return SetPreview(images, classes, num_classes, int(shape[0]), soft)


def _check_layout(shape: Sequence[int], labels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    if len(shape) != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {list(shape)}")
    channels = shape[1]
    if channels not in (1, 3):
        raise ValueError(f"can only show 1 or 3 channels, got {channels}")
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"metadata mean/std need {channels} values, got {mean.tolist()} / {std.tolist()}")
    if labels.ndim not in (1, 2) or labels.shape[0] != shape[0]:
        raise ValueError(f"labels of shape {list(labels.shape)} do not match {shape[0]} images")


def _denormalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """C x H x W normalized -> H x W x C in ``[0, 1]``."""
    pixels = image.astype(np.float64) * std[:, None, None] + mean[:, None, None]
    return np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0).transpose(1, 2, 0)


def _tile(image: np.ndarray, size: int) -> Image.Image:
    pixels = np.round(image * 255).astype(np.uint8)
    tile = Image.fromarray(pixels[..., 0], mode="L") if pixels.shape[2] == 1 else Image.fromarray(pixels, "RGB")
    height, width = pixels.shape[:2]
    if (height, width) == (size, size):
        return tile.convert("RGB")
    resample = Image.Resampling.NEAREST if size >= max(height, width) else Image.Resampling.BILINEAR
    return tile.resize((size, size), resample).convert("RGB")


def tile_size(height: int, width: int) -> int:
    """Pixels per tile side: small images scaled up by a whole factor, large ones down."""
    side = max(height, width)
    if side > MAX_TILE_PIXELS:
        return MAX_TILE_PIXELS
    return side * max(1, math.ceil(MIN_TILE_PIXELS / side))


def grid_png(preview: SetPreview) -> bytes:
    """Render a preview as a PNG: one row per class (its id at the left), one column per image."""
    if not preview.images or not any(preview.images):
        raise ValueError("the set has no images to show")
    first = next(row[0] for row in preview.images if row)
    size = tile_size(*first.shape[:2])
    columns = max(len(row) for row in preview.images)
    width = _LABEL_WIDTH + columns * (size + _GAP)
    height = len(preview.images) * (size + _GAP) + _GAP
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for row_index, (class_id, row) in enumerate(zip(preview.classes, preview.images, strict=True)):
        top = _GAP + row_index * (size + _GAP)
        draw.text((3, top + size // 2 - 6), str(class_id), fill=_LABEL_COLOR, font=font)
        for column_index, image in enumerate(row):
            canvas.paste(_tile(image, size), (_LABEL_WIDTH + column_index * (size + _GAP), top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _set_file(results_dir: Path, set_path: str) -> Path:
    """The set file of a record, which must lie inside the results folder."""
    candidate = (results_dir / set_path).resolve()
    if not candidate.is_relative_to(results_dir.resolve()):
        raise ValueError(f"set_path {set_path!r} points outside the results folder")
    return candidate


def synthetic_set_grids(
    records: Iterable[ResultRecord],
    results_dir: StrPath,
    *,
    max_classes: int = MAX_CLASSES,
    max_per_class: int = MAX_PER_CLASS,
) -> tuple[list[ImageGrid], list[GridNote]]:
    """One image grid per (dataset, method, budget) from the saved sets; never raises for a bad file.

    Of the records of a (dataset, method, budget), the one with the lowest seed (then protocol,
    then cell key) whose set file reads is shown. Reference records (the full dataset) have no
    saved set, and sets that are not images (graph sets) have no grid: both are left out silently.

    Returns:
        The grids, ordered by dataset, method (``random`` first) and budget; and a note for every
        (dataset, method, budget) that has no readable set, naming each file tried and why.
    """
    root = Path(results_dir)
    groups: dict[tuple[str, str, BudgetKey], list[ResultRecord]] = defaultdict(list)
    for record in records:
        image_set = record.set_path is None or record.set_path.endswith(SET_FILE_SUFFIX)
        if record.family != REFERENCE_FAMILY and image_set:
            groups[(record.dataset, record.method, BudgetKey.of(record.ipc, record.fraction))].append(record)
    grids: list[ImageGrid] = []
    notes: list[GridNote] = []
    for dataset, method, budget in sorted(groups, key=lambda key: (key[0], key[1] != RANDOM_METHOD, key[1], key[2])):
        candidates = sorted(groups[(dataset, method, budget)], key=lambda r: (r.seed, r.protocol, r.cell_key))
        reasons: list[str] = []
        for record in candidates:
            grid = _try_grid(record, root, reasons, max_classes=max_classes, max_per_class=max_per_class)
            if grid is not None:
                grids.append(grid)
                break
        else:
            message = "; ".join(dict.fromkeys(reasons))
            logger.warning("no image grid for %s %s %s: %s", dataset, method, budget.label, message)
            notes.append(GridNote(dataset, method, budget.label, message))
    return grids, notes


def _try_grid(
    record: ResultRecord, root: Path, reasons: list[str], *, max_classes: int, max_per_class: int
) -> ImageGrid | None:
    if record.set_path is None:
        reasons.append(f"record {record.cell_key} has no saved set")
        return None
    try:
        path = _set_file(root, record.set_path)
        preview = read_set_preview(path, max_classes=max_classes, max_per_class=max_per_class)
        png = grid_png(preview)
    # A set file can fail in many ways (missing, truncated, foreign, odd dtype); each one only
    # costs its grid, so every error is turned into a note.
    except Exception as error:  # noqa: BLE001
        reasons.append(f"{record.set_path}: {_describe_error(error)}")
        return None
    return ImageGrid(
        dataset=record.dataset,
        method=record.method,
        budget=record.budget,
        seed=record.seed,
        cell_key=record.cell_key,
        set_path=record.set_path,
        png=png,
        classes_shown=len(preview.classes),
        num_classes=preview.num_classes,
        num_images=preview.num_images,
        max_per_class=max(len(row) for row in preview.images),
        soft_labels=preview.soft_labels,
    )


def _describe_error(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "file missing"
    text = str(error).strip() or type(error).__name__
    return f"unreadable ({text})"
