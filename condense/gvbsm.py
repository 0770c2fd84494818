"""G-VBSM (Shao et al., CVPR 2024) and EDC (Shao et al., NeurIPS 2024): multi-backbone statistic matching.

* **Squeeze**: every observer (a registry model) is trained on the whole training split as the
  official ``squeeze/train.py``: SGD lr 0.05, momentum 0.9, no weight decay, batch 64, a constant
  lr, ``RandomCrop`` (an eighth of the side as padding) and flips. The observers are cached
  teachers (:mod:`evaluation.teachers`), shared with the evaluation protocols that label with the
  same ensemble (``soft_gvbsm``, ``soft_edc``).
* **Statistics**: one pass per observer over the augmented training set gives the reference of
  every BatchNorm and convolution (cached, :func:`condense.statistic_matching.load_or_compute_statistics`).
* **Recover** (:func:`condense.recover.recover`): the images, ordered class-major, are optimized in
  batches of ``batch_size`` (one batch holds all ipc images of ``batch_size / ipc`` classes), with
  Adam (betas 0.5, 0.9), a cosine lr without warm-up, one observer per iteration in turn (the turn
  counter runs across batches), ``CE + r_loss sum_l w_l d_l`` with the first hooked layer weighted
  ``first_multiplier``, each ``d_l`` in score-distillation form with EMA rate ``momentum`` and conv
  terms dropped with probability ``drop_rate`` (:class:`condense.statistic_matching.StatisticMatcher`),
  plus ``dd_weight`` times the data densification of the augmented batch; the pixels are clipped
  to the valid range after each step and the last iterate is kept.
* **Relabel** is the evaluation's job: ``protocol=soft_gvbsm`` replays FKD-style stored ensemble
  logits (MSE + 0.15 CE), ``protocol=soft_edc`` labels every batch with the online ensemble and
  tests the student's EMA (MSE + 0.025 CE).

G-VBSM's per-step augmentation is ``RandomCrop(size, 4)`` and a flip (one draw for the batch),
then a roll by up to ``jitter`` pixels. EDC (``shaoshitong/EDC`` ``recover/recover.py``) starts
from real images of the class (randomly flipped), crops with ``RandomResizedCrop(scale 0.5-1)``
and a flip, matches each statistic half against the global reference and half against the
batch's classes (``class_weight`` 0.5), drops nothing, has no densification term and uses eight
observers on CIFAR (three more ConvNets).

Not reproduced: the 8-bit PNG round trip of the saved images (the set keeps float pixels);
EDC's flatness regularization, which the shipped scripts never turn on (``--flatness``); the
ImageNet observers (torchvision's pretrained ResNet-18, MobileNetV2, EfficientNet-B0,
ShuffleNetV2, AlexNet), which need weights from outside (give cached teachers by ``path``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

from condense._data import class_labels, initial_images
from condense._synthesizer import IPCDistiller
from condense.recover import RecoverSettings, RecoverTrace, recover
from condense.sre2l import flips_for
from condense.statistic_matching import StatisticMatcher, densification_loss, load_or_compute_statistics
from data import ImageDataset
from data.image import pixel_bounds
from data.methods import MethodConfig, register_method
from data.provenance import ResourceMeter, add_precomputed
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget, SyntheticSet
from evaluation.augment import crop_padding
from evaluation.models import list_models
from evaluation.teachers import Teacher, TeacherConfig, charge_teachers, load_or_train_teacher

logger = logging.getLogger(__name__)

#: G-VBSM's CIFAR/Tiny observers (``aux_teacher``): ResNet18, ConvNetW128, MobileNetV2, WRN_16_2, ShuffleNetV2_0_5.
GVBSM_OBSERVERS = ("resnet18_bn", "convnet3", "mobilenetv2_0_5", "wrn16_2", "shufflenetv2_0_5")
#: EDC's CIFAR observers: G-VBSM's and ConvNetD1, ConvNetD2, ConvNetW32.
EDC_OBSERVERS = (*GVBSM_OBSERVERS, "convnetd1", "convnetd2", "convnetw32")


@dataclass(frozen=True)
class GVBSMConfig(MethodConfig):
    """G-VBSM with the official CIFAR-100 IPC 10 recipe (``squeeze.sh``, ``recover.sh``).

    Attributes:
        observers: the backbones whose statistics are matched, in turn (official five).
        squeeze_epochs: observer training epochs (official 50; CIFAR-10 script 5).
        squeeze_lr: observer SGD lr (official 0.05, momentum 0.9, constant).
        squeeze_weight_decay: observer weight decay (official 0).
        squeeze_batch_size: observer batch (official 64).
        iterations: Adam steps per batch (official 4000).
        lr: Adam lr (official 0.05; ImageNet 0.1), cosine to 0.
        batch_size: images optimized together, class-major (official 100).
        r_loss: weight of the statistic term (official 0.01).
        first_multiplier: weight of the first hooked layer (official 10).
        momentum: EMA rate of the score-distillation form (official ``training-momentum`` 0.8).
        drop_rate: probability of dropping a convolution's term (official 0.4).
        class_weight: EDC's category-aware weight (G-VBSM: 0, global statistics only).
        dd_weight: weight of data densification (official ``nuc-norm`` 1).
        tau: densification temperature (official 4).
        dd_pool: side the images are pooled to before the Gram matrix (official 32).
        jitter: roll by ``[0, jitter]`` pixels per step (official 32).
        pad_crop: ``RandomCrop`` padding per step (``None``: an eighth of the side, the official
            4 on 32x32 and 8 on 64x64; 0: none).
        crop: ``RandomResizedCrop`` per step instead (EDC).
        min_scale: its lower scale.
        flip: random flips per step (``None``: the dataset's policy, none on digits).
        init: ``noise`` (N(0, 1) in normalized space) or ``real`` (EDC: a random image of the class).
        statistics_batch: batch of the statistics pass (official 64).
    """

    observers: tuple[str, ...] = GVBSM_OBSERVERS
    squeeze_epochs: int = 50
    squeeze_lr: float = 0.05
    squeeze_weight_decay: float = 0.0
    squeeze_batch_size: int = 64
    iterations: int = 4000
    lr: float = 0.05
    batch_size: int = 100
    r_loss: float = 0.01
    first_multiplier: float = 10.0
    momentum: float = 0.8
    drop_rate: float = 0.4
    class_weight: float = 0.0
    dd_weight: float = 1.0
    tau: float = 4.0
    dd_pool: int = 32
    jitter: int = 32
    pad_crop: int | None = None
    crop: bool = False
    min_scale: float = 0.08
    flip: bool | None = None
    init: Literal["noise", "real"] = "noise"
    statistics_batch: int = 64

    def __post_init__(self) -> None:
        if not self.observers:
            raise ValueError("observers: at least one backbone is needed")
        unknown = [name for name in self.observers if name not in list_models()]
        if unknown:
            raise ValueError(f"unknown observer model(s) {unknown}; valid models: {', '.join(list_models())}")
        if self.iterations < 1 or self.squeeze_epochs < 1 or self.dd_pool < 1:
            raise ValueError("iterations, squeeze_epochs and dd_pool must be positive")
        for name in ("lr", "squeeze_lr", "tau"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not 0 <= self.drop_rate < 1 or not 0 <= self.class_weight <= 1:
            raise ValueError(
                f"drop_rate must be in [0, 1) and class_weight in [0, 1], got {self.drop_rate}, {self.class_weight}"
            )
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.init not in ("noise", "real"):
            raise ValueError(f"unknown init {self.init!r}; valid: noise, real")

    def observer_config(self, model: str) -> TeacherConfig:
        """The cached teacher of observer ``model`` (the official squeeze recipe)."""
        return TeacherConfig(
            model=model,
            epochs=self.squeeze_epochs,
            lr=self.squeeze_lr,
            momentum=0.9,
            weight_decay=self.squeeze_weight_decay,
            batch_size=self.squeeze_batch_size,
            augmentation="crop_flip",
            decay_factor=1.0,
        )


@dataclass(frozen=True)
class EDCConfig(GVBSMConfig):
    """EDC with the official CIFAR-100 recipe (``Branch_CIFAR_100/recover/recover.sh``, ``recover.py``).

    EDC's changes to G-VBSM's defaults: eight observers, 2000 iterations, no conv drop, soft
    category-aware matching (``class_weight`` 0.5), ``RandomResizedCrop(0.5-1)`` without roll
    jitter or padded crop, real-image initialization and no densification term.
    """

    observers: tuple[str, ...] = EDC_OBSERVERS
    iterations: int = 2000
    drop_rate: float = 0.0
    class_weight: float = 0.5
    dd_weight: float = 0.0
    jitter: int = 0
    pad_crop: int | None = 0
    crop: bool = True
    min_scale: float = 0.5
    init: Literal["noise", "real"] = "real"


@register_method("gvbsm")
class GVBSM(IPCDistiller):
    """Recover images that match the statistics of several observers in turn; the protocol relabels."""

    config_class = GVBSMConfig
    config: GVBSMConfig

    def settings(self, train: ImageDataset) -> RecoverSettings:
        """The recovery hyperparameters for ``train``."""
        c = self.config
        return RecoverSettings(
            iterations=c.iterations,
            lr=c.lr,
            r_bn=c.r_loss,
            first_bn_multiplier=c.first_multiplier,
            jitter=c.jitter,
            flip=flips_for(c.flip, train),
            crop=c.crop,
            min_scale=c.min_scale,
            pad_crop=crop_padding(train.image_shape[1:]) if c.pad_crop is None else c.pad_crop,
        )

    def observers(self, train: ImageDataset, device: torch.device, progress: bool) -> list[Teacher]:
        """The trained observers (from the teacher cache, or trained now)."""
        return [
            load_or_train_teacher(self.config.observer_config(model), train, device=device, progress=progress)
            for model in self.config.observers
        ]

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
        budget = Budget(ipc=ipc)
        device = torch.device(device)
        c = self.config
        settings = self.settings(train)
        with ResourceMeter(device) as meter:
            observers = self.observers(train, device, progress)
            class_wise = c.class_weight > 0
            statistics = [
                load_or_compute_statistics(
                    teacher, train, class_wise=class_wise, batch_size=c.statistics_batch, device=device
                )
                for teacher in observers
            ]
            labels = class_labels(train.num_classes, ipc)
            images = self.initial_images(train, ipc, make_generator(derive_seed(self.name, seed, "init"), "cpu"))
            bounds = pixel_bounds(train.mean, train.std, device=device)
            trace = RecoverTrace()
            matchers = [
                StatisticMatcher(
                    teacher.model,
                    stats,
                    momentum=c.momentum,
                    drop_rate=c.drop_rate,
                    class_weight=c.class_weight,
                    rng=random.Random(derive_seed(self.name, seed, "drop", index)),
                )
                for index, (teacher, stats) in enumerate(zip(observers, [s.layers for s in statistics], strict=True))
            ]
            densify = None
            if c.dd_weight:

                def densify(batch: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
                    return c.dd_weight * densification_loss(batch, targets, tau=c.tau, pool=c.dd_pool)

            recovered = []
            started = time.perf_counter()
            try:
                for batch_index, first in enumerate(range(0, len(images), c.batch_size)):
                    targets = labels[first : first + c.batch_size].to(device)
                    for matcher in matchers:
                        matcher.set_targets(targets)
                    recovered.append(
                        recover(
                            [teacher.model for teacher in observers],
                            images[first : first + c.batch_size].to(device),
                            targets,
                            settings,
                            seed=derive_seed(self.name, seed, "recover", batch_index),
                            bounds=bounds,
                            trace=trace,
                            matchers=matchers,
                            first_turn=batch_index * c.iterations,
                            extra_loss=densify,
                        ).cpu()
                    )
                    logger.info("%s: batch %d recovered (%d images)", self.name, batch_index + 1, len(targets))
            finally:
                for matcher in matchers:
                    matcher.remove()
            recover_seconds = time.perf_counter() - started
        provenance = self.provenance(train, seed, meter)
        charge_teachers(provenance, observers)
        add_precomputed(
            provenance,
            "statistics",
            seconds=sum(s.seconds for s in statistics),
            cache_hit=all(s.cache_hit for s in statistics),
        )
        provenance["observers"] = [teacher.describe() for teacher in observers]
        provenance["distillation"] = {
            **_summary(trace, settings),
            "seconds_per_iteration": recover_seconds / max(len(trace.ce), 1),
        }
        synthetic = SyntheticSet(
            images=torch.cat(recovered),
            labels=labels,
            num_classes=train.num_classes,
            mean=train.mean,
            std=train.std,
            budget=budget,
            provenance=provenance,
        )
        synthetic.validate(image_shape=train.image_shape, check_budget=True)
        return synthetic

    def initial_images(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> torch.Tensor:
        """Noise, or (EDC) a random image of each slot's class, flipped at random where allowed."""
        images = initial_images(train, ipc, self.config.init, generator)
        if self.config.init == "real" and train.flip:
            flips = torch.rand(len(images), generator=generator) < 0.5
            images[flips] = images[flips].flip(3)
        return images


def _summary(trace: RecoverTrace, settings: RecoverSettings) -> dict[str, Any]:
    """The provenance of a recovery: the first and last losses of each term."""

    def ends(values: list[float]) -> tuple[float | None, float | None]:
        return (values[0], values[-1]) if values else (None, None)

    (ce_first, ce_last), (stat_first, stat_last), (dd_first, dd_last) = (
        ends(trace.ce),
        ends(trace.bn),
        ends(trace.extra),
    )
    return {
        "iterations": settings.iterations,
        "steps": len(trace.ce),
        "ce_first": ce_first,
        "ce_last": ce_last,
        "statistic_first": stat_first,
        "statistic_last": stat_last,
        "densification_first": dd_first,
        "densification_last": dd_last,
    }


@register_method("edc")
class EDC(GVBSM):
    """G-VBSM with EDC's design choices (real init, soft category-aware matching, weak crops)."""

    config_class = EDCConfig
    config: EDCConfig
