"""Decoders of parametrized sets: stored images that expand into more training images.

``compensators`` (INFER): base images plus compensators shared by all classes, each added to
every image of its base set; the stored soft labels cover every decoded image.

``partition`` (IDC's multi-formation, used by IDM as "partition and expansion"): each stored image
is a ``factor x factor`` mosaic of down-sampled images; decoding cuts the cells out and up-samples
each back to full size (bilinear), so a set of N stored images trains on ``N * factor**2`` images
under the storage budget of N.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from data.image import clamp_to_bounds

#: A set dataclass with a ``decoder`` field (``data.synthetic.SyntheticSet``, not imported: it imports this).
SetT = TypeVar("SetT")


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


def check_partitionable(name: str, image_shape: tuple[int, ...] | torch.Size, factor: int) -> None:
    """Raise ``ValueError`` unless dataset ``name``'s images (``... x H x W``) split into ``factor x factor`` cells."""
    height, width = image_shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"{name} images ({height}x{width}) do not split into {factor}x{factor} cells")


def partitioned(synthetic: SetT, factor: int) -> SetT:
    """``synthetic`` marked as stored in ``factor x factor`` mosaics (unchanged for factor 1), so the
    evaluation trains on the expanded images."""
    if factor == 1:
        return synthetic
    return dataclasses.replace(synthetic, decoder={"name": "partition", "factor": factor})  # type: ignore[type-var]


def downscale_into_cells(images: list[Tensor], factor: int, mode: str = "bilinear") -> Tensor:
    """The inverse layout: ``factor**2`` equally shaped batches down-sampled (``mode``, as
    ``F.interpolate`` takes it) into one mosaic batch."""
    if len(images) != factor * factor:
        raise ValueError(f"need {factor * factor} batches for a {factor}x{factor} mosaic, got {len(images)}")
    height, width = images[0].shape[-2:]
    cell_h, cell_w = height // factor, width // factor
    mosaic = torch.zeros_like(images[0])
    for index, batch in enumerate(images):
        row, col = divmod(index, factor)
        corners = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        small = F.interpolate(batch, size=(cell_h, cell_w), mode=mode, **corners)
        mosaic[..., row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = small
    return mosaic


def compensated_images(
    images: Tensor, compensators: Tensor, architectures: int, bounds: tuple[Tensor, Tensor]
) -> Tensor:
    """The base images, then ``x_j + u_{j,m}`` for every base set ``j`` and compensator ``m``, clipped.

    ``images`` hold ``S`` base sets of equal size (base set ``j`` is the ``j``-th block of rows),
    ``compensators`` the ``S * architectures`` compensators (index ``j * architectures + m``).
    """
    if len(compensators) % architectures:
        raise ValueError(f"{len(compensators)} compensators do not split over {architectures} architectures")
    base_sets = len(compensators) // architectures
    if base_sets == 0 or len(images) % base_sets:
        raise ValueError(f"{len(images)} base images do not split into {base_sets} base sets")
    per_set = len(images) // base_sets
    decoded = [images]
    for j in range(base_sets):
        base = images[j * per_set : (j + 1) * per_set]
        for m in range(architectures):
            compensated = base + compensators[j * architectures + m]
            decoded.append(clamp_to_bounds(compensated, bounds))
    return torch.cat(decoded)


def expand_compensators(
    images: Tensor,
    labels: Tensor,
    *,
    architectures: int,
    extras: dict[str, Tensor],
    bounds: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor]:
    """INFER's sets: :func:`compensated_images` with ``extras["compensators"]``, labelled by
    ``extras["decoded_logits"]`` (the teachers' mean logits, one row per decoded image; the soft
    protocols take rows that are not probabilities as logits)."""
    compensators = extras.get("compensators")
    soft = extras.get("decoded_logits")
    if compensators is None or soft is None:
        raise ValueError("a 'compensators' set needs the extras 'compensators' and 'decoded_logits'")
    out = compensated_images(images, compensators, architectures, bounds)
    if soft.ndim != 2 or len(soft) != len(out):
        raise ValueError(f"decoded_logits has shape {tuple(soft.shape)}, expected ({len(out)}, num_classes)")
    return out, soft.float()


def compensator_image_count(images: Tensor, extras: dict[str, Tensor]) -> int:
    """Stored image-sized tensors of a compensator set (base images plus compensators)."""
    compensators = extras.get("compensators")
    return len(images) + (len(compensators) if compensators is not None else 0)


#: Decoder name -> function(images, labels, **options, [extras, bounds]) -> (images, labels).
DECODERS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "partition": expand_partitions,
    "compensators": expand_compensators,
}
#: Decoders that also read the set's extras and pixel bounds.
_NEEDS_CONTEXT = frozenset({"compensators"})


def decode(
    images: Tensor,
    labels: Tensor,
    decoder: dict[str, Any],
    *,
    extras: dict[str, Tensor] | None = None,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Apply ``decoder`` (``{"name": ..., **options}``) to a stored set's images and labels."""
    options = dict(decoder)
    name = options.pop("name", None)
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; valid: {', '.join(DECODERS)}")
    if name in _NEEDS_CONTEXT:
        if bounds is None:
            bounds = (torch.full((1,), -float("inf")), torch.full((1,), float("inf")))
        options.update(extras=extras or {}, bounds=bounds)
    return DECODERS[name](images, labels, **options)
