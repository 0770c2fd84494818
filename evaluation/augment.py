"""Differentiable Siamese Augmentation (DSA), the augmentation of the DC-family protocol.

One op is drawn per call from the strategy (mode 'S'; ``color`` expands to brightness,
saturation and contrast in sequence). Every op is differentiable with respect to the images.
With ``shared=True`` the whole batch uses one draw of the parameters, and two calls with
generators in the same state apply the identical transform (the siamese use in DSA/DM);
with ``shared=False`` (evaluation) each image gets its own parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
NO_FLIP_STRATEGY = "color_crop_cutout_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """Parameter ranges of the reference ``ParamDiffAug``."""

    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def strategy_for(flip: bool) -> str:
    """The reference strategy, without its flip for a dataset whose flips change the class
    (``ImageDataset.flip``: false for digits, MNIST and SVHN by default)."""
    return DEFAULT_STRATEGY if flip else NO_FLIP_STRATEGY


def _uniform(n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device=like.device, dtype=like.dtype)


def _draw(n: int, batch: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """``n`` uniform draws expanded to ``batch`` (shared) or ``batch`` draws (per sample)."""
    values = _uniform(n, generator, like)
    return values.expand(batch) if n == 1 else values


def _brightness(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    r = _draw(n, len(x), g, x).view(-1, 1, 1, 1)
    return x + (r - 0.5) * p.brightness


def _saturation(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    r = _draw(n, len(x), g, x).view(-1, 1, 1, 1)
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (r * p.saturation) + mean


def _contrast(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    r = _draw(n, len(x), g, x).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r + p.contrast) + mean


def _affine(x: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def _scale(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    sx = _draw(n, len(x), g, x) * (p.ratio_scale - 1.0 / p.ratio_scale) + 1.0 / p.ratio_scale
    sy = _draw(n, len(x), g, x) * (p.ratio_scale - 1.0 / p.ratio_scale) + 1.0 / p.ratio_scale
    zeros = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zeros, zeros], 1), torch.stack([zeros, sy, zeros], 1)], 1)
    return _affine(x, theta)


def _rotate(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    angle = (_draw(n, len(x), g, x) - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    cos, sin, zeros = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zeros], 1), torch.stack([-sin, cos, zeros], 1)], 1)
    return _affine(x, theta)


def _flip(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    flip = (_draw(n, len(x), g, x) < p.prob_flip).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def _crop(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    """Integer translation by up to ``ratio_crop_pad`` of the size; vacated pixels are zero."""
    _, _, h, w = x.shape
    sx, sy = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
    tx = torch.floor(_draw(n, len(x), g, x) * (2 * sx + 1)) - sx
    ty = torch.floor(_draw(n, len(x), g, x) * (2 * sy + 1)) - sy
    # A shift of k pixels is 2k/(size-1) in align_corners=True coordinates; nearest is exact.
    ones, zeros = torch.ones_like(tx), torch.zeros_like(tx)
    theta = torch.stack(
        [
            torch.stack([ones, zeros, -2 * ty / max(w - 1, 1)], 1),
            torch.stack([zeros, ones, -2 * tx / max(h - 1, 1)], 1),
        ],
        1,
    )
    return _affine(x, theta, mode="nearest")


def _cutout(x: Tensor, p: DSAParams, g: torch.Generator, n: int) -> Tensor:
    _, _, h, w = x.shape
    ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
    cy = torch.floor(_draw(n, len(x), g, x) * (h + (1 - ch % 2)))
    cx = torch.floor(_draw(n, len(x), g, x) * (w + (1 - cw % 2)))
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    top = (cy - ch // 2).view(-1, 1, 1)
    left = (cx - cw // 2).view(-1, 1, 1)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {
    "color": (_brightness, _saturation, _contrast),
    "crop": (_crop,),
    "cutout": (_cutout,),
    "flip": (_flip,),
    "scale": (_scale,),
    "rotate": (_rotate,),
}


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Split ``"color_crop_..."`` into op names, rejecting unknown ones."""
    names = tuple(s for s in strategy.split("_") if s)
    unknown = [s for s in names if s not in _OPS]
    if unknown or not names:
        raise ValueError(f"unknown DSA op(s) {unknown or strategy!r}; valid ops: {', '.join(_OPS)}")
    return names


def dsa_augment(
    images: Tensor,
    strategy: str,
    generator: torch.Generator,
    *,
    shared: bool = False,
    params: DSAParams = DSAParams(),
) -> Tensor:
    """Apply one randomly drawn DSA op of ``strategy`` to ``images``.

    Args:
        images: normalized ``N x C x H x W`` batch (gradients flow through).
        strategy: underscore-joined op names, e.g. :data:`DEFAULT_STRATEGY`.
        generator: the source of randomness (a CPU or same-device generator).
        shared: one parameter draw for the whole batch (siamese use) instead of per image.
        params: the parameter ranges.
    """
    names = parse_strategy(strategy)
    choice = int(torch.randint(len(names), (1,), generator=generator, device=generator.device))
    return _apply(images, (names[choice],), generator, shared, params)


def _apply(
    images: Tensor, names: tuple[str, ...], generator: torch.Generator, shared: bool, params: DSAParams
) -> Tensor:
    """The ops ``names`` in order, each drawing its parameters once (``shared``) or per image."""
    draws = 1 if shared else len(images)
    out = images
    for name in names:
        for op in _OPS[name]:
            out = op(out, params, generator, draws)
    return out


def dsa_augment_every_op(
    images: Tensor,
    strategy: str,
    generator: torch.Generator,
    *,
    shared: bool = True,
    params: DSAParams = DSAParams(),
) -> Tensor:
    """Apply every op of ``strategy`` in its order (mode 'M'), each with its own draw.

    The form of IDC's ``DiffAug`` that NCFM matches through: for ``color_crop_cutout`` it
    always applies colour, then its one other op (crop), then cutout.
    """
    return _apply(images, parse_strategy(strategy), generator, shared, params)


def dsa_augmenter(flip: bool) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Per-image DSA with the reference strategy, flipping only where ``flip`` (the dataset's
    policy): the ``augment(batch, generator)`` of evaluation, teacher and student training."""
    strategy, params = strategy_for(flip), DSAParams()

    def augment(batch: Tensor, generator: torch.Generator) -> Tensor:
        return dsa_augment(batch, strategy, generator, shared=False, params=params)

    return augment


# ---------------------------------------------------------------------------------------------
# The torchvision-style per-image crops of the decoupled methods' pipelines


def _random_flips(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image mirrored with probability 1/2 (``RandomHorizontalFlip``)."""
    flips = (_uniform(len(images), generator, images) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flips, images.flip(3), images)


def random_crop_flip(images: Tensor, generator: torch.Generator, *, padding: int, flip: bool) -> Tensor:
    """``RandomCrop(size, padding)`` (zero padding) then ``RandomHorizontalFlip``, drawn per image.

    The training transform of CIFAR pipelines (G-VBSM's and EDC's squeeze and statistics passes:
    padding 4 on 32x32, 8 on 64x64). Zero padding of normalized images pads with the mean colour,
    as torchvision's ``fill=0`` after ``Normalize`` does not (it pads before): the padded border
    is the only difference.
    """
    n, _, h, w = images.shape
    if padding:
        padded = F.pad(images, (padding, padding, padding, padding))
        tops = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=generator.device).to(images.device)
        lefts = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=generator.device).to(images.device)
        rows = (tops.view(n, 1) + torch.arange(h, device=images.device)).view(n, 1, h, 1)
        cols = (lefts.view(n, 1) + torch.arange(w, device=images.device)).view(n, 1, 1, w)
        images = padded.gather(2, rows.expand(n, padded.shape[1], h, padded.shape[3]))
        images = images.gather(3, cols.expand(n, images.shape[1], h, w))
    return _random_flips(images, generator) if flip else images


def random_resized_crop_flip(
    images: Tensor, generator: torch.Generator, *, scale: tuple[float, float], flip: bool
) -> Tensor:
    """``RandomResizedCrop(size, scale, ratio 3/4-4/3)`` (bilinear) then ``RandomHorizontalFlip``, per image.

    Each image gets torchvision's box (ten tries of an area share in ``scale`` and a log-uniform
    aspect ratio; the whole image when none fits), resampled to the image size by bilinear
    ``grid_sample`` (no antialiasing).
    """
    n, _, h, w = images.shape
    tries = 10
    area = (
        h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, tries, generator=generator, device=generator.device))
    )
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(
        n, tries, generator=generator, device=generator.device
    )
    ratio = log_ratio.exp()
    crop_w = torch.sqrt(area * ratio).round()
    crop_h = torch.sqrt(area / ratio).round()
    fits = (crop_w > 0) & (crop_w <= w) & (crop_h > 0) & (crop_h <= h)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1, device=fits.device))
    pick = first.clamp_min(0).view(n, 1)
    crop_w = torch.where(first >= 0, crop_w.gather(1, pick).view(n), torch.full((n,), float(w), device=fits.device))
    crop_h = torch.where(first >= 0, crop_h.gather(1, pick).view(n), torch.full((n,), float(h), device=fits.device))
    top = torch.floor(torch.rand(n, generator=generator, device=generator.device) * (h - crop_h + 1))
    left = torch.floor(torch.rand(n, generator=generator, device=generator.device) * (w - crop_w + 1))
    # The box as an affine map of grid_sample's [-1, 1] output coordinates (align_corners=False).
    theta = torch.zeros(n, 2, 3, device=fits.device)
    theta[:, 0, 0] = crop_w / w
    theta[:, 0, 2] = (2 * left + crop_w) / w - 1
    theta[:, 1, 1] = crop_h / h
    theta[:, 1, 2] = (2 * top + crop_h) / h - 1
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _random_flips(images, generator) if flip else images


def crop_padding(image_size: tuple[int, int] | torch.Size) -> int:
    """The ``RandomCrop`` padding of CIFAR pipelines scaled to ``image_size``: an eighth of the side
    (4 on 32x32, 8 on 64x64, 3 on 28x28, 1 on 8x8)."""
    return max(1, min(int(image_size[0]), int(image_size[1])) // 8)


def crop_flip_augmenter(flip: bool) -> Callable[[Tensor, torch.Generator], Tensor]:
    """``RandomCrop`` with :func:`crop_padding` then a flip where ``flip``, per image: the
    ``augment(batch, generator)`` of a teacher trained as G-VBSM/EDC squeeze their observers."""

    def augment(batch: Tensor, generator: torch.Generator) -> Tensor:
        return random_crop_flip(batch, generator, padding=crop_padding(batch.shape[2:]), flip=flip)

    return augment


def randaugment(images: Tensor, generator: torch.Generator, *, mean: Tensor, std: Tensor) -> Tensor:
    """torchvision's ``RandAugment()`` (2 ops of magnitude 9 of 31) drawn per image on the pixels.

    The images are taken back to ``[0, 1]`` with ``mean``/``std`` (``C``-element tensors),
    augmented one by one under torch's global RNG seeded from ``generator`` (and restored after),
    and normalized again. EDC applies it to the PIL images before ``ToTensor``; the float version
    of torchvision's ops rounds differently.
    """
    mean, std = mean.view(1, -1, 1, 1).to(images), std.view(1, -1, 1, 1).to(images)
    pixels = (images * std + mean).clamp(0, 1)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    transform = v2.RandAugment()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        augmented = torch.stack([transform(image) for image in pixels.cpu()]).to(images.device)
    return (augmented - mean) / std
