"""Networks of a distillation: freshly sampled under a seed, BatchNorm helpers, class-mean features."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from data import ImageDataset
from data.seeding import seeded_torch
from evaluation.models import create_model


def sample_network(
    model: str, train: ImageDataset, seed: int, device: torch.device | str = "cpu", **options: Any
) -> nn.Module:
    """A freshly initialized ``model`` for ``train``'s images, built under ``seed``.

    The caller's global RNG is left as it was (:func:`data.seeding.seeded_torch`).
    """
    with seeded_torch(seed, device):
        net = create_model(
            model,
            in_channels=train.image_shape[0],
            num_classes=train.num_classes,
            image_size=train.image_shape[1:],
            **options,
        )
    return net.to(device)


def has_batchnorm(net: nn.Module) -> bool:
    """True when ``net`` holds a BatchNorm layer (running statistics mix the batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def set_batchnorm_eval(net: nn.Module) -> None:
    """Freeze the running statistics of every BatchNorm layer (the rest stays as it is)."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per-class mean rows of ``features`` (``num_classes x D``; labels index the classes)."""
    flat = features.reshape(len(features), -1)
    sums = torch.zeros(num_classes, flat.shape[1], dtype=flat.dtype, device=flat.device).index_add(0, labels, flat)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).to(flat.dtype)
    return sums / counts.unsqueeze(1)
