"""Datasets stored as image files: Tiny ImageNet and torchvision ``ImageFolder`` layouts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from data.datasets import RawSplits, default_data_root, missing_files_error, register_dataset
from data.loaders import _files as common
from data.untrusted import BadFileError

logger = logging.getLogger(__name__)

# Official normalization constants (methods.md section 0.1).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# Same suffixes as torchvision's ``IMG_EXTENSIONS`` (matched case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _image_header(path: Path) -> tuple[tuple[int, int], str]:
    """``(width, height)`` and PIL mode of an image, read from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise BadFileError(path, f"cannot be read as an image: {err}") from None


def _decode_images(paths: Sequence[Path], mode: str, size: tuple[int, int], resize: bool) -> np.ndarray:
    """Decode ``paths`` into a ``uint8`` array ``N x C x H x W``.

    Args:
        paths: image files.
        mode: PIL mode to convert to (``"L"`` or ``"RGB"``).
        size: ``(width, height)`` every image must have (after resizing when ``resize``).
        resize: resize images of another size (bilinear, antialiased) instead of raising.
    """
    from PIL import Image

    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), size[1], size[0], channels), dtype=np.uint8)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != size:
                    if not resize:
                        width, height = image.size
                        raise BadFileError(path, f"an image of {width}x{height}, expected {size[0]}x{size[1]}")
                    image = image.resize(size, Image.Resampling.BILINEAR)
                out[index] = np.asarray(image).reshape(size[1], size[0], channels)
        except (OSError, SyntaxError, Image.DecompressionBombError) as err:
            raise BadFileError(path, f"cannot be decoded as an image: {err} (truncated or corrupt file?)") from None
    return out.transpose(0, 3, 1, 2)


def _read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@register_dataset("tiny_imagenet")
def load_tiny_imagenet(root: Path | None = None, download: bool = False) -> RawSplits:
    """Tiny ImageNet (200 classes, 100,000 train / 10,000 test, 3x64x64) from ``root/tiny-imagenet-200/``.

    The official ``val`` split is used as the test split (the official test split has no labels).
    Labels follow the sorted WordNet ids, as ``torchvision.datasets.ImageFolder`` would number them.
    Class names come from ``words.txt`` when present, else the WordNet ids. There is no download.
    """
    folder = "tiny-imagenet-200"
    dirs = common.search_dirs(root, [folder])

    def probe(directory: Path) -> Path | None:
        has_all = (directory / "wnids.txt").is_file() and (directory / "train").is_dir()
        return directory if has_all and (directory / "val" / "val_annotations.txt").is_file() else None

    found = common.find_first(dirs, probe)
    if found is None:
        expected = (
            f"root/{folder}/{{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
            f"val/val_annotations.txt}} (unzip {TINY_IMAGENET_URL} into root; {common.searched(dirs)})"
        )
        raise missing_files_error("tiny_imagenet", root, expected, download_hint=False)
    if download:
        logger.info("tiny_imagenet: download=True ignored, the files are present")
    directory = found[0]
    logger.info("tiny_imagenet: loading images from %s", directory)
    wnids = sorted(set(_read_lines(directory / "wnids.txt")))
    index = {wnid: i for i, wnid in enumerate(wnids)}
    words: dict[str, str] = {}
    if (directory / "words.txt").is_file():
        for line in _read_lines(directory / "words.txt"):
            wnid, _, text = line.partition("\t")
            words[wnid] = text.strip()
    class_names = tuple(words.get(wnid) or wnid for wnid in wnids)

    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        image_dir = directory / "train" / wnid / "images"
        files = sorted(p for p in image_dir.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"tiny_imagenet: no training images in {image_dir}")
        train_paths += files
        train_labels += [index[wnid]] * len(files)

    annotations = directory / "val" / "val_annotations.txt"
    test_paths: list[Path] = []
    test_labels: list[int] = []
    for number, line in enumerate(_read_lines(annotations), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ValueError(f"{annotations}:{number}: expected '<file>\\t<wnid>...' with a wnid listed in wnids.txt")
        test_paths.append(directory / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])
    missing = [p for p in test_paths if not p.is_file()]
    if missing:
        raise ValueError(f"{annotations} names {len(missing)} missing images, e.g. {missing[0]}")

    size = (64, 64)
    return RawSplits(
        train_images=common.to_pixels(_decode_images(train_paths, "RGB", size, resize=False)),
        train_labels=common.to_labels(np.array(train_labels), len(wnids), directory / "train"),
        test_images=common.to_pixels(_decode_images(test_paths, "RGB", size, resize=False)),
        test_labels=common.to_labels(np.array(test_labels), len(wnids), annotations),
        class_names=class_names,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _scan_image_folder(split_dir: Path) -> dict[str, list[Path]]:
    """``{class: sorted image files}`` of a torchvision ``ImageFolder`` split (hidden folders skipped)."""
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"imagefolder: no class folders in {split_dir} (expected {split_dir}/<class>/...)")
    found: dict[str, list[Path]] = {}
    for name in classes:
        files = sorted(p for p in (split_dir / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(
                f"imagefolder: class folder {split_dir / name} holds no {'/'.join(IMAGE_EXTENSIONS)} images"
            )
        found[name] = files
    return found


@register_dataset("imagefolder")
def load_image_folder(
    root: Path | None = None,
    download: bool = False,
    *,
    image_size: int | None = None,
    channels: int | None = None,
) -> RawSplits:
    """A dataset in torchvision ``ImageFolder`` layout: ``root/train/<class>/*``, ``root/test/<class>/*``.

    ``root/val`` is accepted as the test folder when ``root/test`` is absent. Labels follow the sorted
    class folder names; the test split must have the same classes. ``mean``/``std`` are left to the caller
    (computed on train).

    Args:
        root: the folder holding ``train/`` and ``test/`` (the default data root when ``None``).
        download: unsupported; the files must be present.
        image_size: resize every image to ``image_size x image_size``; when ``None`` all images must
            already share one size.
        channels: 1 for grayscale, 3 for RGB; default RGB unless every image is grayscale.
    """
    is_size = isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 1
    if image_size is not None and not is_size:
        raise ValueError(f"imagefolder: image_size must be a positive integer or None, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"imagefolder: channels must be 1, 3 or None, got {channels!r}")
    base = root if root is not None else default_data_root()
    train_dir = base / "train"
    test_dir = next((base / n for n in ("test", "val") if (base / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise missing_files_error(
            "imagefolder",
            root,
            "root/train/<class>/*.png|jpg|... and root/test/<class>/... (or root/val/<class>/...)",
            download_hint=False,
        )
    if download:
        logger.info("imagefolder: download=True ignored, the files are read from %s", base)
    train, test = _scan_image_folder(train_dir), _scan_image_folder(test_dir)
    if list(train) != list(test):
        only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
        raise ValueError(
            f"imagefolder: class folders differ between {train_dir} and {test_dir} "
            f"(only in train: {only_train}; only in test: {only_test})"
        )
    class_names = tuple(train)
    train_paths = [p for name in class_names for p in train[name]]
    test_paths = [p for name in class_names for p in test[name]]
    train_labels = np.array([i for i, name in enumerate(class_names) for _ in train[name]], dtype=np.int64)
    test_labels = np.array([i for i, name in enumerate(class_names) for _ in test[name]], dtype=np.int64)

    headers = [_image_header(p) for p in train_paths + test_paths]
    if channels is None:
        channels = 1 if all(mode in _GRAYSCALE_MODES for _, mode in headers) else 3
    if image_size is None:
        sizes: dict[tuple[int, int], int] = {}
        for image_shape, _ in headers:
            sizes[image_shape] = sizes.get(image_shape, 0) + 1
        if len(sizes) > 1:
            listed = ", ".join(f"{w}x{h} ({n} images)" for (w, h), n in sorted(sizes.items()))
            raise ValueError(
                f"imagefolder: images under {base} have different sizes: {listed}; pass image_size=N "
                "(dataset.image_size=N) to resize them to N x N"
            )
        size = next(iter(sizes))
    else:
        size = (int(image_size), int(image_size))
    mode = "L" if channels == 1 else "RGB"
    logger.info(
        "imagefolder: %d classes, %d train / %d test images from %s (%s, %dx%d)",
        len(class_names),
        len(train_paths),
        len(test_paths),
        base,
        mode,
        *size,
    )
    return RawSplits(
        train_images=common.to_pixels(_decode_images(train_paths, mode, size, resize=image_size is not None)),
        train_labels=torch.from_numpy(train_labels),
        test_images=common.to_pixels(_decode_images(test_paths, mode, size, resize=image_size is not None)),
        test_labels=torch.from_numpy(test_labels),
        class_names=class_names,
    )
