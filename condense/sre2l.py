"""SRe2L (Yin, Xing, Shen; NeurIPS 2023) and CDA (Yin & Shen, TMLR 2024): squeeze, recover, relabel.

* **Squeeze**: a BatchNorm teacher trained on the whole training split (cached, shared by every
  cell that asks for the same recipe; its cost is charged as the ``teacher`` product).
* **Recover**: for every ipc index and every batch of (up to ``batch_size``) classes, one image
  per class starts as Gaussian noise in normalized space and is optimized by
  :func:`condense.recover.recover` (CE + ``r_bn`` BN matching, first layer x10, Adam with betas
  0.5/0.9 and a cosine lr, jitter/flip and, for ImageNet-style recipes, random-resized crops;
  clipped to the valid pixel range after each step).
* **Relabel** is the evaluation's job: the soft-label protocols label the recovered images with
  the protocol's teacher, per batch (``soft``), once per image (``soft_stored``) or as an FKD-style
  replay store of per-epoch crops and logits (``soft_replay``, SRe2L's ``relabel``). With
  ``relabel="stored"`` the set also carries the squeeze teacher's soft label per image.

CDA changes only the crop: its lower scale follows an easy-to-hard curriculum
(:func:`condense.recover.crop_curriculum`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from condense._data import class_labels
from condense._synthesizer import IPCDistiller
from condense.recover import (
    CURRICULA,
    RecoverSettings,
    RecoverTrace,
    bn_distance,
    class_batches,
    class_bn_statistics,
    recover,
    require_batchnorm,
    teacher_config,
)
from data import ImageDataset
from data.image import pixel_bounds
from data.methods import MethodConfig, register_method
from data.provenance import ResourceMeter
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget, SyntheticSet
from evaluation.teachers import charge_teachers, load_or_train_teacher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SRe2LConfig(MethodConfig):
    """SRe2L with the official CIFAR recipe (``squeeze_cifar.py``, ``recover_cifar.sh``).

    Attributes:
        squeeze_model: the BN teacher (official: ResNet-18 with a 3x3 stem, no max-pool).
        squeeze_epochs: teacher epochs (official 200).
        squeeze_lr: teacher SGD lr (official 0.1, momentum 0.9, weight decay 5e-4; here one x0.1
            step at half-way instead of the official cosine).
        squeeze_batch_size: teacher batch (official 128).
        iterations: recovery steps per batch (official CIFAR 1000; ImageNet and Tiny 4000).
        lr: recovery Adam lr (official 0.25; Tiny 0.1).
        r_bn: BN-matching weight (official 0.01; Tiny 1).
        first_bn_multiplier: weight of the first BN layer (official 10).
        batch_size: classes recovered together, one image each (official 100).
        jitter: roll jitter in pixels (official CIFAR 4, ImageNet 32).
        flip: random horizontal flips (``None``: on, except on digit datasets).
        crop: random-resized crops per step (official: ImageNet yes, CIFAR no).
        min_scale: lower scale of those crops (official 0.08).
        relabel: ``none`` (hard labels; the protocol relabels) or ``stored`` (the set carries the
            squeeze teacher's probabilities on each recovered image).
        class_wise: LPLD's recovery (Xiao & He, NeurIPS 2024, ``data_synthesis_tiny_class.py``):
            batches of up to ``batch_size`` images of one class, whose BN statistics are matched
            to that class's (:func:`condense.recover.class_bn_statistics`) instead of the
            running ones; off: SRe2L's batches of one image per class.
        signed_jitter: draw the roll from ``[-jitter, jitter]`` (LPLD) instead of ``[0, jitter]``.
    """

    squeeze_model: str = "resnet18_bn"
    squeeze_epochs: int = 200
    squeeze_lr: float = 0.1
    squeeze_batch_size: int = 128
    iterations: int = 1000
    lr: float = 0.25
    r_bn: float = 0.01
    first_bn_multiplier: float = 10.0
    batch_size: int = 100
    jitter: int = 4
    flip: bool | None = None
    crop: bool = False
    min_scale: float = 0.08
    relabel: Literal["none", "stored"] = "none"
    class_wise: bool = False
    signed_jitter: bool = False
    added_fields: ClassVar[frozenset[str]] = frozenset({"class_wise", "signed_jitter"})

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.squeeze_epochs < 1:
            raise ValueError("iterations, batch_size and squeeze_epochs must be positive")
        for name in ("lr", "squeeze_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.r_bn < 0 or self.jitter < 0:
            raise ValueError("r_bn and jitter must be >= 0")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.relabel not in ("none", "stored"):
            raise ValueError(f"relabel must be 'none' or 'stored', got {self.relabel!r}")


@dataclass(frozen=True)
class CDAConfig(SRe2LConfig):
    """CDA: SRe2L with the crop curriculum (Tiny-ImageNet command of the CDA README).

    Attributes:
        curriculum: ``cosine`` (official default), ``linear`` or ``step``.
        milestone: share of the iterations over which the lower crop scale goes from 1 to
            ``min_scale`` (official 1).
    """

    squeeze_epochs: int = 50
    iterations: int = 4000
    lr: float = 0.4
    r_bn: float = 0.05
    crop: bool = True
    curriculum: Literal["cosine", "linear", "step"] = "cosine"
    milestone: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.curriculum not in CURRICULA:
            raise ValueError(f"unknown curriculum {self.curriculum!r}; valid: {', '.join(CURRICULA)}")
        if not 0 <= self.milestone <= 1:
            raise ValueError(f"milestone must be in [0, 1], got {self.milestone}")
        if not self.crop:
            raise ValueError("CDA's curriculum acts on the random-resized crop: crop must be true")


def flips_for(flip: bool | None, train: ImageDataset) -> bool:
    """``flip`` or, when ``None``, the dataset's flip policy."""
    return train.flip if flip is None else bool(flip)


@register_method("sre2l")
class SRe2L(IPCDistiller):
    """Squeeze a BN teacher, recover images from its statistics; the protocol relabels."""

    config_class = SRe2LConfig
    config: SRe2LConfig

    def settings(self, train: ImageDataset) -> RecoverSettings:
        """The recovery hyperparameters for ``train``."""
        c = self.config
        return RecoverSettings(
            iterations=c.iterations,
            lr=c.lr,
            r_bn=c.r_bn,
            first_bn_multiplier=c.first_bn_multiplier,
            jitter=c.jitter,
            flip=flips_for(c.flip, train),
            crop=c.crop,
            min_scale=c.min_scale,
            signed_jitter=c.signed_jitter,
        )

    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """Recover ``ipc`` images per class of ``train``."""
        Budget(ipc=ipc)  # validates ipc
        device = torch.device(device)
        c = self.config
        require_batchnorm(c.squeeze_model, train)
        teacher = load_or_train_teacher(
            teacher_config(c.squeeze_model, c.squeeze_epochs, c.squeeze_lr, c.squeeze_batch_size),
            train,
            device=device,
            progress=progress,
        )
        settings = self.settings(train)
        bounds = pixel_bounds(train.mean, train.std, device=device)
        trace = RecoverTrace()
        per_class: list[list[torch.Tensor]] = [[] for _ in range(train.num_classes)]
        noise_generator = make_generator(derive_seed(self.name, seed, "init"), "cpu")
        with ResourceMeter(device) as meter:
            if c.class_wise:
                _class_wise(
                    self.name, c, train, ipc, teacher, settings, seed, bounds, trace, per_class, noise_generator, device
                )
            else:
                for index in range(ipc):
                    for classes in class_batches(train.num_classes, c.batch_size):
                        noise = torch.randn((len(classes), *train.image_shape), generator=noise_generator).to(device)
                        labels = torch.tensor(classes, device=device)
                        images = recover(
                            teacher.model,
                            noise,
                            labels,
                            settings,
                            seed=derive_seed(self.name, seed, "recover", index, classes[0]),
                            bounds=bounds,
                            trace=trace,
                        )
                        for row, label in enumerate(classes):
                            per_class[label].append(images[row].cpu())
                    logger.info("%s: ipc index %d/%d recovered", self.name, index + 1, ipc)
        images = torch.stack([image for rows in per_class for image in rows])
        labels = class_labels(train.num_classes, ipc)
        provenance = self.provenance(train, seed, meter)
        charge_teachers(provenance, [teacher])
        provenance["teacher"] = teacher.describe()
        provenance["distillation"] = recovery_summary(trace, settings, teacher.model, images, device)
        synthetic = SyntheticSet(
            images=images,
            labels=labels,
            num_classes=train.num_classes,
            mean=train.mean,
            std=train.std,
            budget=Budget(ipc=ipc),
            provenance=provenance,
        )
        synthetic.validate(image_shape=train.image_shape, check_budget=True)
        if c.relabel == "stored":
            # The budget is checked on the recovered classes: the teacher may disagree with some.
            with torch.no_grad():
                soft = F.softmax(teacher.model(images.to(device)), dim=1).cpu()
            synthetic = dataclasses.replace(synthetic, labels=soft)
            synthetic.validate(image_shape=train.image_shape, check_budget=False)
        return synthetic


def _class_wise(
    name: str,
    config: SRe2LConfig,
    train: ImageDataset,
    ipc: int,
    teacher: Any,
    settings: RecoverSettings,
    seed: int,
    bounds: tuple[torch.Tensor, torch.Tensor],
    trace: RecoverTrace,
    per_class: list[list[torch.Tensor]],
    noise_generator: torch.Generator,
    device: torch.device,
) -> None:
    """LPLD's recovery: per class, chunks of up to ``batch_size`` images matched to the class's BN statistics.

    The chunks hold exactly ``ipc`` images (the official loop makes every chunk full-size and can
    overshoot ``ipc``). The class statistics depend on the teacher only (their pass is seeded by
    the teacher's seed), so every cell of a teacher matches the same ones.
    """
    statistics = class_bn_statistics(
        teacher.model,
        train.images,
        train.labels,
        train.num_classes,
        generator=make_generator(derive_seed("class-bn-statistics", teacher.config.seed), "cpu"),
        flip=settings.flip,
        device=device,
    )
    for label in range(train.num_classes):
        reference = [(means[label], variances[label]) for means, variances in statistics]
        for first in range(0, ipc, config.batch_size):
            count = min(config.batch_size, ipc - first)
            noise = torch.randn((count, *train.image_shape), generator=noise_generator).to(device)
            images = recover(
                teacher.model,
                noise,
                torch.full((count,), label, device=device),
                settings,
                seed=derive_seed(name, seed, "recover-class", label, first),
                bounds=bounds,
                trace=trace,
                bn_reference=reference,
            )
            per_class[label].extend(images.cpu())
        logger.info("%s: class %d/%d recovered", name, label + 1, train.num_classes)


def recovery_summary(
    trace: RecoverTrace, settings: RecoverSettings, teacher: torch.nn.Module, images: torch.Tensor, device: torch.device
) -> dict[str, Any]:
    """The provenance of a recovery: loss curve ends, crop scales, BN loss of the result."""
    steps = len(trace.ce)
    return {
        "iterations": settings.iterations,
        "steps": steps,
        "settings": dataclasses.asdict(settings),
        "ce_first": trace.ce[0] if trace.ce else None,
        "ce_last": trace.ce[-1] if trace.ce else None,
        "bn_first": trace.bn[0] if trace.bn else None,
        "bn_last": trace.bn[-1] if trace.bn else None,
        "bn_final_set": bn_distance(teacher, images.to(device), settings.first_bn_multiplier),
        "crop_scale_first": trace.crop_scales[0] if trace.crop_scales else None,
        "crop_scale_last": trace.crop_scales[-1] if trace.crop_scales else None,
    }


@register_method("cda")
class CDA(SRe2L):
    """SRe2L's recovery with CDA's easy-to-hard curriculum on the random-resized-crop scale."""

    config_class = CDAConfig
    config: CDAConfig

    def settings(self, train: ImageDataset) -> RecoverSettings:
        """SRe2L's settings plus the curriculum."""
        return dataclasses.replace(
            super().settings(train), curriculum=self.config.curriculum, milestone=self.config.milestone
        )
