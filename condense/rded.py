"""RDED: realistic and diverse efficient distillation (Sun, Shi, Yu, Lin; CVPR 2024).

No optimization. An observer (a teacher trained on the whole training split) scores random crops
of real images; per class:

1. take ``mipc`` random real images of the class;
2. draw ``num_crop`` square random-resized crops of each (scale ``min_scale``-1, side
   ``size // factor``), zero-pad each to the full size in normalized space (the dataset's mean
   colour, as the official ``synthesize/utils.py`` pads normalized crops with ``F.pad``) and
   score it by the observer's loss ``-log p(c | crop)``; keep each image's lowest-loss crop
   (realism);
3. keep the ``ipc * factor**2`` lowest-loss crops of the class, one per source image (diversity:
   at most one crop of any image);
4. stitch groups of ``factor**2`` crops into a ``factor x factor`` mosaic: ``ipc`` images.

Labels are the evaluation's job (RDED trains students on online teacher labels: the ``soft``
protocol). ``factor`` 1 (CIFAR and Tiny settings) keeps the best crops themselves, resized to the
full size.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from condense._data import class_labels
from condense._synthesizer import IPCDistiller
from condense.recover import teacher_config
from data import ImageDataset
from data.methods import MethodConfig, register_method
from data.provenance import ResourceMeter
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget, SyntheticSet
from evaluation.teachers import charge_teachers, load_or_train_teacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RDEDConfig(MethodConfig):
    """RDED with the official CIFAR defaults (``argument.py`` and ``scripts/``).

    Attributes:
        observer_model: the observer (official CIFAR: ConvNet-3 or ResNet-18 with a 3x3 stem).
        observer_epochs: observer training epochs on the whole training split.
        observer_lr: observer SGD lr (momentum 0.9, weight decay 5e-4, x0.1 at half-way).
        observer_batch_size: observer training batch.
        factor: mosaic side (official: 1 for CIFAR and Tiny, 2 for ImageNet).
        num_crop: crops scored per real image (official 5).
        mipc: real images drawn per class (official 300; fewer when the class is smaller).
        min_scale: lower area scale of the crops (official 0.08; upper 1, aspect ratio 1).
        score_batch: crops scored per forward pass (memory only).
    """

    observer_model: str = "convnet3"
    observer_epochs: int = 50
    observer_lr: float = 0.05
    observer_batch_size: int = 64
    factor: int = 1
    num_crop: int = 5
    mipc: int = 300
    min_scale: float = 0.08
    score_batch: int = 1024

    def __post_init__(self) -> None:
        for name in ("observer_epochs", "observer_batch_size", "factor", "num_crop", "mipc", "score_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")


def square_crop(image: Tensor, side: int, min_scale: float, rng: random.Random) -> Tensor:
    """A square random-resized crop of ``image`` (``C x H x W``), resized to ``side x side``."""
    height, width = image.shape[-2:]
    area = height * width
    crop_side = min(height, width)
    top = left = 0
    for _ in range(10):
        candidate = round(math.sqrt(area * rng.uniform(min_scale, 1.0)))
        if 0 < candidate <= min(height, width):
            crop_side = candidate
            top, left = rng.randint(0, height - candidate), rng.randint(0, width - candidate)
            break
    crop = image[:, top : top + crop_side, left : left + crop_side].unsqueeze(0)
    return F.interpolate(crop, size=(side, side), mode="bilinear", align_corners=False)[0]


def pad_to(crops: Tensor, height: int, width: int, fill: Tensor) -> Tensor:
    """Centre ``crops`` (``N x C x h x w``) on a canvas of ``fill`` (``1 x C x 1 x 1``) of full size."""
    canvas = fill.expand(len(crops), crops.shape[1], height, width).clone()
    top, left = (height - crops.shape[2]) // 2, (width - crops.shape[3]) // 2
    canvas[:, :, top : top + crops.shape[2], left : left + crops.shape[3]] = crops
    return canvas


@torch.no_grad()
def crop_losses(observer: nn.Module, crops: Tensor, label: int, batch: int, device: torch.device) -> Tensor:
    """``-log p(label | crop)`` for every crop."""
    losses = []
    for chunk in crops.split(batch):
        logits = observer(chunk.to(device))
        target = torch.full((len(chunk),), label, device=device)
        losses.append(F.cross_entropy(logits, target, reduction="none").cpu())
    return torch.cat(losses)


def stitch(crops: Tensor, factor: int, height: int, width: int) -> Tensor:
    """Consecutive groups of ``factor**2`` crops as ``factor x factor`` mosaics of full size."""
    if factor == 1:
        return F.interpolate(crops, size=(height, width), mode="bilinear", align_corners=False)
    cell_h, cell_w = height // factor, width // factor
    cells = F.interpolate(crops, size=(cell_h, cell_w), mode="bilinear", align_corners=False)
    groups = cells.view(len(crops) // (factor * factor), factor * factor, *cells.shape[1:])
    mosaic = crops.new_zeros(len(groups), crops.shape[1], height, width)
    for index in range(factor * factor):
        row, col = divmod(index, factor)
        mosaic[..., row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = groups[:, index]
    return mosaic


@register_method("rded")
class RDED(IPCDistiller):
    """Score real crops with an observer, keep the realistic and diverse ones, stitch them."""

    config_class = RDEDConfig
    config: RDEDConfig

    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """``ipc`` stitched images per class."""
        Budget(ipc=ipc)  # validates ipc
        device = torch.device(device)
        c = self.config
        height, width = train.image_shape[1:]
        if height % c.factor or width % c.factor:
            raise ValueError(f"a {height}x{width} image does not split into {c.factor}x{c.factor} cells")
        observer = load_or_train_teacher(
            teacher_config(c.observer_model, c.observer_epochs, c.observer_lr, c.observer_batch_size),
            train,
            device=device,
            progress=progress,
        )
        cells = c.factor * c.factor
        side = min(height, width) // c.factor
        mean_colour = torch.zeros(1, train.images.shape[1], 1, 1)  # 0 in normalized space
        generator = make_generator(derive_seed(self.name, seed, "images"), "cpu")
        rng = random.Random(derive_seed(self.name, seed, "crops"))
        images, kept_losses = [], []
        crops_scored = 0
        with ResourceMeter(device) as meter:
            for label in range(train.num_classes):
                pool = torch.nonzero(train.labels == label).flatten()
                need = ipc * cells
                if len(pool) < need:
                    raise ValueError(
                        f"class {label} of {train.name} has {len(pool)} images; rded at ipc={ipc} and "
                        f"factor={c.factor} needs {need} distinct source images"
                    )
                chosen = pool[torch.randperm(len(pool), generator=generator)[: max(c.mipc, need)]]
                crops = torch.stack(
                    [square_crop(train.images[i], side, c.min_scale, rng) for i in chosen for _ in range(c.num_crop)]
                )
                scored = crops if c.factor == 1 else pad_to(crops, height, width, mean_colour)
                losses = crop_losses(observer.model, scored, label, c.score_batch, device).view(len(chosen), c.num_crop)
                best_loss, best_crop = losses.min(dim=1)  # realism: each image's most typical crop
                order = torch.argsort(best_loss)[:need]  # diversity: one crop per source image
                selected = crops.view(len(chosen), c.num_crop, *crops.shape[1:])[order, best_crop[order]]
                images.append(stitch(selected, c.factor, height, width))
                kept_losses.append(best_loss[order])
                crops_scored += len(crops)
        set_images = torch.cat(images)
        labels = class_labels(train.num_classes, ipc)
        provenance = self.provenance(train, seed, meter)
        charge_teachers(provenance, [observer])
        provenance["teacher"] = observer.describe()
        all_kept = torch.cat(kept_losses)
        provenance["distillation"] = {
            "kept_crop_loss_mean": float(all_kept.mean()),
            "kept_crop_loss_max": float(all_kept.max()),
            "crops_scored": crops_scored,
        }
        synthetic = SyntheticSet(
            images=set_images,
            labels=labels,
            num_classes=train.num_classes,
            mean=train.mean,
            std=train.std,
            budget=Budget(ipc=ipc),
            provenance=provenance,
        )
        synthetic.validate(image_shape=train.image_shape, check_budget=True)
        return synthetic
