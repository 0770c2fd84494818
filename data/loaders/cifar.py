"""CIFAR-10 and CIFAR-100 from pickled batches.

The batches are read with a restricted unpickler that only rebuilds numpy arrays and plain containers,
so a crafted file cannot run code.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from data.datasets import RawSplits, missing_files_error, register_dataset
from data.loaders import _files as common
from data.untrusted import BadFileError

logger = logging.getLogger(__name__)

# Official normalization constants (methods.md section 0.1).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)


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
        BadFileError: the file is truncated or not a pickle.
    """
    try:
        with path.open("rb") as handle:
            return _RestrictedUnpickler(handle, encoding="bytes").load()
    except _ForbiddenGlobalError as err:
        raise pickle.UnpicklingError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError) as err:
        raise BadFileError(path, f"cannot be unpickled: {err!r} (truncated or corrupt file?)") from None


def _pickle_field(payload: Any, key: str, path: Path) -> Any:
    """``payload[key]`` for a dict with ``bytes`` (or ``str``) keys, with a clear error otherwise."""
    if not isinstance(payload, dict):
        raise BadFileError(path, f"expected a pickled dict, got {type(payload).__name__}")
    for candidate in (key.encode(), key):
        if candidate in payload:
            return payload[candidate]
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in payload)
    raise BadFileError(path, f"missing key {key!r} (found {keys})")


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, Tensor]:
    """One CIFAR batch as ``uint8`` images ``N x 3 x 32 x 32`` and ``int64`` labels."""
    payload = _load_pickle(path)
    data = _pickle_field(payload, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise BadFileError(path, f"'data' must be a uint8 array of shape N x 3072, got {dtype} {shape}")
    labels = np.asarray(_pickle_field(payload, label_key, path))
    common.check_count(data, labels, path)
    return data.reshape(-1, 3, 32, 32), common.to_labels(labels, num_classes, path)


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
    dirs = common.search_dirs(root, [folder])
    probe = common.files_probe(required)
    found = common.find_first(dirs, probe)
    if found is None and download:
        target = common.torchvision_download(torchvision_class, root, [{"train": True}])
        dirs = [target / folder]
        found = common.find_first(dirs, probe)
    if found is None:
        expected = f"root/{folder}/{{{', '.join(required)}}} ({common.searched(dirs)})"
        raise missing_files_error(name, root, expected)
    directory, files = found
    logger.info("%s: loading batches from %s", name, directory)
    train = [_read_cifar_batch(files[f], label_key, num_classes) for f in train_files]
    test_images, test_labels = _read_cifar_batch(files[test_file], label_key, num_classes)
    meta_path = files[meta_file]
    names = _pickle_field(_load_pickle(meta_path), names_key, meta_path)
    class_names = _decode_names(names, meta_path, num_classes)
    return RawSplits(
        train_images=common.to_pixels(np.concatenate([images for images, _ in train])),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=common.to_pixels(test_images),
        test_labels=test_labels,
        class_names=class_names,
        mean=stats[0],
        std=stats[1],
    )


@register_dataset("cifar10")
def load_cifar10(root: Path | None = None, download: bool = False) -> RawSplits:
    """CIFAR-10 (50,000 train / 10,000 test, 3x32x32) from ``root/cifar-10-batches-py/``."""
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
def load_cifar100(root: Path | None = None, download: bool = False) -> RawSplits:
    """CIFAR-100 with its 100 fine labels (50,000 train / 10,000 test) from ``root/cifar-100-python/``."""
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
