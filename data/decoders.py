"""Decoders of parametrized sets: stored images that expand into more training images.

``partition`` (IDC's multi-formation, used by IDM as "partition and expansion"): each stored image
is a ``factor x factor`` mosaic of down-sampled images; decoding cuts the cells out and up-samples
each back to full size (bilinear), so a set of N stored images trains on ``N * factor**2`` images
under the storage budget of N.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def expand_partitions(images: Tensor, labels: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Cut every image into ``factor x factor`` cells and up-sample each to the full size.

    Returns the cells grouped by position (all top-left cells first, as the reference
    ``number_sign_augment``) and the labels repeated to match (hard or soft).
    """
    if factor < 1:
        raise ValueError(f"factor must be positive, got {factor}")
    if factor == 1:
        return images, labels
    height, width = images.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"a {height}x{width} image does not split into {factor}x{factor} cells")
    cell_h, cell_w = height // factor, width // factor
    cells = [
        F.interpolate(
            images[..., row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w],
            size=(height, width),
            mode="bilinear",
            align_corners=False,
        )
        for row in range(factor)
        for col in range(factor)
    ]
    repeats = (factor * factor,) + (1,) * (labels.ndim - 1)
    return torch.cat(cells), labels.repeat(*repeats)


def downscale_into_cells(images: list[Tensor], factor: int) -> Tensor:
    """The inverse layout: ``factor**2`` equally shaped batches down-sampled into one mosaic batch."""
    if len(images) != factor * factor:
        raise ValueError(f"need {factor * factor} batches for a {factor}x{factor} mosaic, got {len(images)}")
    height, width = images[0].shape[-2:]
    cell_h, cell_w = height // factor, width // factor
    mosaic = torch.zeros_like(images[0])
    for index, batch in enumerate(images):
        row, col = divmod(index, factor)
        small = F.interpolate(batch, size=(cell_h, cell_w), mode="bilinear", align_corners=False)
        mosaic[..., row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = small
    return mosaic


#: Decoder name -> function(images, labels, **options) -> (images, labels).
DECODERS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {"partition": expand_partitions}


def decode(images: Tensor, labels: Tensor, decoder: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Apply ``decoder`` (``{"name": ..., **options}``) to a stored set's images and labels."""
    options = dict(decoder)
    name = options.pop("name", None)
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; valid: {', '.join(DECODERS)}")
    return DECODERS[name](images, labels, **options)
