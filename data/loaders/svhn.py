"""SVHN cropped digits from MATLAB ``*_32x32.mat`` files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import Tensor

from data.datasets import DIGIT_SPLIT_OPTIONS, RawSplits, missing_files_error, register_dataset
from data.loaders import _files as common
from data.untrusted import BadFileError

logger = logging.getLogger(__name__)

# Official normalization constants (methods.md section 0.1).
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, Tensor]:
    """One SVHN ``*_32x32.mat`` file as ``uint8`` images ``N x 3 x 32 x 32`` and labels (10 -> 0)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises several unrelated types on a bad file
        raise BadFileError(path, f"cannot be read as an SVHN file: {err!r} (truncated or corrupt file?)") from None
    if "X" not in mat or "y" not in mat:
        variables = sorted(k for k in mat if not k.startswith("__"))
        raise BadFileError(path, f"expected variables 'X' and 'y', found {variables}")
    images, labels = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise BadFileError(path, f"'X' must be uint8 32 x 32 x 3 x N, got {images.dtype} {images.shape}")
    images = images.transpose(3, 2, 0, 1)  # H x W x C x N -> N x C x H x W
    common.check_count(images, labels, path)
    labels = np.where(labels == 10, 0, labels)  # SVHN stores digit 0 as label 10
    return images, common.to_labels(labels, 10, path)


@register_dataset("svhn", split_options=DIGIT_SPLIT_OPTIONS)
def load_svhn(root: Path | None = None, download: bool = False) -> RawSplits:
    """SVHN cropped digits (73,257 train / 26,032 test, 3x32x32); ``extra`` is not used."""
    required = ["train_32x32.mat", "test_32x32.mat"]
    dirs = common.search_dirs(root, ["", "svhn"])
    probe = common.files_probe(required)
    found = common.find_first(dirs, probe)
    if found is None and download:
        target = common.torchvision_download("SVHN", root, [{"split": "train"}, {"split": "test"}])
        dirs = [target]
        found = common.find_first(dirs, probe)
    if found is None:
        expected = f"root/{{{', '.join(required)}}} or root/svhn/ ({common.searched(dirs)})"
        raise missing_files_error("svhn", root, expected)
    directory, files = found
    logger.info("svhn: loading .mat files from %s", directory)
    train_images, train_labels = _read_svhn_mat(files["train_32x32.mat"])
    test_images, test_labels = _read_svhn_mat(files["test_32x32.mat"])
    return RawSplits(
        train_images=common.to_pixels(train_images),
        train_labels=train_labels,
        test_images=common.to_pixels(test_images),
        test_labels=test_labels,
        class_names=common.DIGIT_CLASSES,
        mean=SVHN_MEAN,
        std=SVHN_STD,
    )
