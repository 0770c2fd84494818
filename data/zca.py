"""ZCA whitening of images, fitted on a training set (the official MTT/FTD/DATM CIFAR preprocessing).

The transform matches kornia's ``ZCAWhitening(eps=0.1)`` as the official trajectory-matching
code uses it: fitted on the raw ``[0, 1]`` pixels (its CIFAR loader skips ``Normalize`` when
``--zca`` is set). With the centred data matrix ``X`` (N x D) of raw pixels,
``C = X^T X / (N - 1) = U diag(S) U^T`` and ``W = U diag(1 / sqrt(S + eps)) U^T``, an image ``x``
becomes ``(x - mean) W``. ``eps`` regularizes the small eigenvalues, so the result is a strong
high-pass filter rather than exact whitening. Fitting the same ``eps`` on mean/std-normalized
CIFAR images would whiten about 25x harder, since their variances are ~1/std^2 larger.

The suite's datasets hold normalized images, so :meth:`ZCAWhitening.fit_on_pixels` folds the
normalization into the transform: for a normalized image ``n`` with raw pixels ``x = n * s + m``,
``(x - mean_x) W = (n - mean_n) diag(s) W``. The stored transform applies to normalized images
and gives exactly what kornia gives on the raw ones.

A synthesizer that whitens stores the fitted transform in its set (:func:`store`), and the
evaluation whitens the test images with the same transform (:func:`whiten_like`): experts,
distillation and evaluation all see one consistent input space.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from data.image import ImageDataset

#: Keys of the fitted transform in a SyntheticSet's extras.
MEAN_KEY, MATRIX_KEY = "zca_mean", "zca_matrix"
#: Official regularization (``ZCAWhitening(eps=0.1)``).
DEFAULT_REGULARIZATION = 0.1


@dataclass(frozen=True)
class ZCAWhitening:
    """A fitted ZCA transform of flattened images."""

    mean: Tensor  # D
    matrix: Tensor  # D x D (symmetric when fitted on the space it is applied to)

    @classmethod
    def fit(cls, images: Tensor, regularization: float = DEFAULT_REGULARIZATION) -> ZCAWhitening:
        """Fit on ``images`` (N x C x H x W), in float64 for a stable eigendecomposition."""
        if images.ndim != 4 or len(images) < 2:
            raise ValueError(f"ZCA needs an N x C x H x W batch with N >= 2, got {tuple(images.shape)}")
        if not regularization > 0:
            raise ValueError(f"regularization must be positive, got {regularization}")
        flat = images.reshape(len(images), -1).double()
        mean = flat.mean(dim=0)
        centred = flat - mean
        covariance = centred.T @ centred / (len(flat) - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        scale = (eigenvalues.clamp_min(0) + regularization).rsqrt()
        matrix = (eigenvectors * scale) @ eigenvectors.T
        return cls(mean=mean.float(), matrix=matrix.float())

    @classmethod
    def fit_on_pixels(cls, dataset: ImageDataset, regularization: float = DEFAULT_REGULARIZATION) -> ZCAWhitening:
        """Fit on ``dataset``'s raw pixels (the official space); the result whitens its normalized images."""
        images = dataset.images.double()
        channels = images.shape[1]
        mean = torch.tensor(dataset.mean, dtype=torch.float64).view(1, channels, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float64).view(1, channels, 1, 1)
        raw = cls.fit(images * std + mean, regularization)
        pixel_scale = std.expand(1, *images.shape[1:]).reshape(-1)  # s of every flattened value
        normalized_mean = images.reshape(len(images), -1).mean(dim=0)
        matrix = pixel_scale[:, None] * raw.matrix.double()
        return cls(mean=normalized_mean.float(), matrix=matrix.float())

    def __call__(self, images: Tensor) -> Tensor:
        """Whiten ``images`` (N x C x H x W) with the fitted transform."""
        flat = images.reshape(len(images), -1)
        if flat.shape[1] != len(self.mean):
            raise ValueError(f"ZCA was fitted on {len(self.mean)} values per image, got {flat.shape[1]}")
        mean, matrix = self.mean.to(images.device), self.matrix.to(images.device)
        return ((flat - mean) @ matrix).reshape(images.shape)

    def extras(self) -> dict[str, Tensor]:
        """The transform as SyntheticSet extras."""
        return {MEAN_KEY: self.mean, MATRIX_KEY: self.matrix}


def whiten_dataset(dataset: ImageDataset, zca: ZCAWhitening) -> ImageDataset:
    """A copy of ``dataset`` with whitened images (same labels, name and normalization stats)."""
    return dataclasses.replace(dataset, images=zca(dataset.images), _fingerprint=None)


def stored_whitening(extras: dict[str, Tensor]) -> ZCAWhitening | None:
    """The transform a set carries in its extras, if any."""
    if MEAN_KEY not in extras and MATRIX_KEY not in extras:
        return None
    if MEAN_KEY not in extras or MATRIX_KEY not in extras:
        raise ValueError(f"a ZCA set needs both {MEAN_KEY!r} and {MATRIX_KEY!r} in its extras")
    return ZCAWhitening(mean=extras[MEAN_KEY], matrix=extras[MATRIX_KEY])


def whiten_like(extras: dict[str, Tensor], dataset: ImageDataset) -> ImageDataset:
    """``dataset`` whitened with the set's stored transform, or unchanged when it has none."""
    zca = stored_whitening(extras)
    return dataset if zca is None else whiten_dataset(dataset, zca)
