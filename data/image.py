"""In-memory image classification datasets and class-balanced splitting."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(eq=False)
class ImageDataset:
    """Normalized images ``N x C x H x W`` (float32) with integer labels.

    Attributes:
        images: normalized image tensor.
        labels: ``int64`` class labels of shape ``N``.
        num_classes: number of classes of the dataset (not only those present).
        mean: per-channel mean used for normalization.
        std: per-channel std used for normalization.
        name: registry name of the dataset.
        class_names: human-readable class names, ``num_classes`` of them.
        split: ``"train"``, ``"val"`` or ``"test"``.
        flip: whether a horizontal flip keeps an image's class (false for digits); augmentations
            (DSA's ``flip``, crop-and-flip) read it. Part of the fingerprint when false.
    """

    images: Tensor
    labels: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    class_names: tuple[str, ...]
    split: str = "train"
    flip: bool = True
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(self.images.shape)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError("labels must be a 1-D tensor with one label per image")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError("mean and std need one value per channel")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_indices(self, label: int) -> Tensor:
        """Indices of the images of class ``label``."""
        return torch.nonzero(self.labels == label, as_tuple=True)[0]

    def class_counts(self) -> Tensor:
        """Number of images per class, length ``num_classes``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: Tensor | Sequence[int], split: str | None = None) -> ImageDataset:
        """A new dataset holding ``indices`` (same metadata)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            name=self.name,
            class_names=self.class_names,
            split=split or self.split,
            flip=self.flip,
        )

    def denormalize(self, images: Tensor) -> Tensor:
        """Map normalized images back to ``[0, 1]`` pixel space (clamped)."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def fingerprint(self) -> str:
        """SHA-256 of the image bytes, labels and a false flip policy (hex, first 16 characters).

        A dataset that must not be flipped hashes apart from the same images that may be, so
        caches trained under one augmentation policy are never reused under the other.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(self.images.detach().cpu().contiguous().numpy().tobytes())
            digest.update(self.labels.detach().cpu().contiguous().numpy().tobytes())
            if not self.flip:
                digest.update(b"flip=false")
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


def pixel_bounds(
    mean: Sequence[float],
    std: Sequence[float],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Per-channel bounds of valid pixels (0 and 1 before normalization), as ``1 x C x 1 x 1`` tensors."""
    mean_t = torch.tensor(mean, device=device, dtype=dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device, dtype=dtype).view(1, -1, 1, 1)
    return (0 - mean_t) / std_t, (1 - mean_t) / std_t


def clamp_to_bounds(images: Tensor, bounds: tuple[Tensor, Tensor]) -> Tensor:
    """``images`` clipped to per-channel ``(low, high)`` bounds (as :func:`pixel_bounds` gives them)."""
    return torch.maximum(torch.minimum(images, bounds[1]), bounds[0])


def class_balanced_indices(
    labels: Tensor, num_classes: int, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Split indices into (kept, held-out) with ``fraction`` of every class held out.

    Each class keeps at least one image on each side when it has two or more.

    Args:
        labels: integer labels.
        num_classes: number of classes.
        fraction: share of each class that goes to the held-out side, in ``[0, 1)``.
        generator: seeded generator; the split depends only on it and the labels.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    kept, held = [], []
    for label in range(num_classes):
        members = torch.nonzero(labels == label, as_tuple=True)[0]
        order = members[torch.randperm(len(members), generator=generator)]
        count = round(fraction * len(order))
        if fraction > 0 and len(order) >= 2:
            count = min(max(count, 1), len(order) - 1)
        held.append(order[:count])
        kept.append(order[count:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values
