"""INFER: inter-class feature compensators (Zhang, Du, Liu, Zhou; ICLR 2025).

"One instance for all classes": instead of one synthetic image per class, INFER stores real base
images and a few *universal feature compensators* (UFCs), each shared by every class:

1. ``M`` BatchNorm teachers of different architectures, trained on the whole training split
   (cached; their cost is charged as the ``teacher`` product).
2. The budget: ``ipc_init = int(ipc / (M / K + 1))`` base sets (K classes), each one random real
   image per class, and one compensator per (base set, teacher): ``ipc_init * (K + M) <= ipc * K``
   stored images.
3. For base set ``j`` and teacher ``m`` the compensator ``u`` (one image, initialized to 0) is
   optimized by :func:`condense.recover.recover` on ``x_{j,c} + u`` for every class ``c`` at once:
   CE to ``c`` plus ``r_bn`` times teacher ``m``'s BN matching (first layer x10), Adam with betas
   0.5/0.9 and a cosine lr, roll jitter.
4. The training images are the base images plus every ``x_{j,c} + u_{j,m}`` (clipped to the pixel
   range): ``ipc_init * K * (M + 1)`` images from ``ipc_init * (K + M)`` stored ones (the set's
   ``compensators`` decoder expands them; ``data.decoders``).
5. Static soft labels: the mean of the ``M`` teachers' logits on every decoded image (no
   augmentation), stored once per image as fp16 probabilities. Under mixing augmentations the
   students' targets are the linear interpolation of the stored labels (the ``stored``
   label source), so no per-epoch labels are stored; these bytes and the compensators' count in
   the set's size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from condense._synthesizer import IPCDistiller
from condense.recover import (
    RecoverSettings,
    RecoverTrace,
    bn_distance,
    recover,
    require_batchnorm,
)
from condense.recover import teacher_config as make_teacher_config
from condense.sre2l import flips_for
from data import ImageDataset
from data.decoders import compensated_images
from data.image import pixel_bounds
from data.methods import MethodConfig, register_method
from data.provenance import ResourceMeter
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget, SyntheticSet
from evaluation.teachers import charge_teachers, load_or_train_teachers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class INFERConfig(MethodConfig):
    """INFER with the official CIFAR recipe (``sh/ufc_cifar.sh``).

    Attributes:
        teacher_models: the ``M`` BN teachers (official CIFAR: ResNet-18, MobileNetV2,
            EfficientNet-B0, ShuffleNetG2; the registry's BN networks stand in for the last three).
        teacher_epochs: teacher epochs (official 200).
        teacher_lr: teacher SGD lr (momentum 0.9, weight decay 5e-4, x0.1 at half-way).
        teacher_batch_size: teacher batch.
        iterations: compensator steps (official CIFAR 1000, ImageNet 2000).
        lr: Adam lr (official 0.25).
        r_bn: BN-matching weight (official CIFAR 1, ImageNet 0.01).
        first_bn_multiplier: weight of the first BN layer (official 10).
        jitter: roll jitter in pixels (official CIFAR 4, ImageNet 32).
        flip: random horizontal flips (``None``: on, except on digit datasets).
    """

    teacher_models: tuple[str, ...] = ("resnet18_bn", "convnet_bn", "vgg11_bn", "alexnet_bn")
    teacher_epochs: int = 200
    teacher_lr: float = 0.1
    teacher_batch_size: int = 128
    iterations: int = 1000
    lr: float = 0.25
    r_bn: float = 1.0
    first_bn_multiplier: float = 10.0
    jitter: int = 4
    flip: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "teacher_models", tuple(self.teacher_models))
        if not self.teacher_models:
            raise ValueError("INFER needs at least one teacher model")
        if self.iterations < 1 or self.teacher_epochs < 1 or self.teacher_batch_size < 1:
            raise ValueError("iterations, teacher_epochs and teacher_batch_size must be positive")
        for name in ("lr", "teacher_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.r_bn < 0 or self.jitter < 0:
            raise ValueError("r_bn and jitter must be >= 0")


def base_sets_for(ipc: int, num_classes: int, architectures: int) -> int:
    """INFER's ``ipc_init = int(ipc / (M / K + 1))``: base sets that fit the budget with their compensators."""
    return int(ipc / (architectures / num_classes + 1))


@register_method("infer")
class INFER(IPCDistiller):
    """Real base images plus compensators shared by all classes, with static ensemble soft labels."""

    label_type = "soft"
    config_class = INFERConfig
    config: INFERConfig

    def distill(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """Base images and compensators within ``ipc`` stored images per class."""
        Budget(ipc=ipc)  # validates ipc
        device = torch.device(device)
        c = self.config
        classes, architectures = train.num_classes, len(c.teacher_models)
        base_sets = base_sets_for(ipc, classes, architectures)
        if base_sets < 1:
            smallest = math.ceil(architectures / classes + 1)
            raise ValueError(
                f"infer with {architectures} teachers and {classes} classes needs ipc >= {smallest} "
                f"(ipc_init = int(ipc / (M/K + 1)) is 0 at ipc={ipc})"
            )
        for model in c.teacher_models:  # every teacher checked before any is trained
            require_batchnorm(model, train)
        recipe = (c.teacher_epochs, c.teacher_lr, c.teacher_batch_size)
        configs = [make_teacher_config(model, *recipe) for model in c.teacher_models]
        ensemble, teachers = load_or_train_teachers(
            configs,
            train,
            device=device,
            progress=progress,
        )
        settings = RecoverSettings(
            iterations=c.iterations,
            lr=c.lr,
            r_bn=c.r_bn,
            first_bn_multiplier=c.first_bn_multiplier,
            jitter=c.jitter,
            flip=flips_for(c.flip, train),
        )
        generator = make_generator(derive_seed(self.name, seed, "base"), "cpu")
        # Base set j holds one distinct random real image of every class.
        picks = []
        for label in range(classes):
            pool = torch.nonzero(train.labels == label).flatten()
            if len(pool) < base_sets:
                raise ValueError(f"class {label} has {len(pool)} images; infer needs {base_sets}")
            picks.append(pool[torch.randperm(len(pool), generator=generator)[:base_sets]])
        order = torch.stack(picks, dim=1).flatten()  # j-major: base set j is rows jK .. jK+K-1
        base = train.images[order].to(device)
        labels = torch.arange(classes).repeat(base_sets)
        traces = [RecoverTrace() for _ in teachers]
        compensators = []
        with ResourceMeter(device) as meter:
            for j in range(base_sets):
                base_j = base[j * classes : (j + 1) * classes]
                for m, teacher in enumerate(teachers):
                    compensator = recover(
                        teacher.model,
                        torch.zeros((1, *train.image_shape), device=device),
                        labels[:classes].to(device),
                        settings,
                        seed=derive_seed(self.name, seed, "ufc", j, m),
                        compose=lambda u, base_j=base_j: base_j + u,
                        trace=traces[m],
                    )
                    compensators.append(compensator.cpu())
                logger.info("%s: base set %d/%d compensated", self.name, j + 1, base_sets)
            bounds = pixel_bounds(train.mean, train.std)
            decoded_images = compensated_images(base.cpu(), torch.cat(compensators), architectures, bounds)
            with torch.no_grad():
                logits = torch.cat([ensemble(chunk.to(device)).cpu() for chunk in decoded_images.split(1024)])
        stored = SyntheticSet(
            images=base.cpu(),
            labels=labels,
            num_classes=classes,
            mean=train.mean,
            std=train.std,
            budget=Budget(ipc=ipc),
            extras={
                "compensators": torch.cat(compensators),
                # Static labels: the teachers' mean logits on every decoded image, in fp16 (official).
                "decoded_logits": logits.to(torch.float16),
            },
            decoder={"name": "compensators", "architectures": architectures},
        )
        provenance = self.provenance(train, seed, meter)
        charge_teachers(provenance, teachers)
        provenance["teachers"] = [t.describe() for t in teachers]
        provenance["distillation"] = {
            "base_sets": base_sets,
            "architectures": architectures,
            "compensators": len(compensators),
            "stored_images": base_sets * (classes + architectures),
            "training_images": len(decoded_images),
            "iterations": c.iterations,
            "steps": sum(len(trace.ce) for trace in traces),
            "ce_last": [trace.ce[-1] for trace in traces],
            "bn_first": [trace.bn[0] for trace in traces],
            "bn_last": [trace.bn[-1] for trace in traces],
            # Per base set, as the compensators saw them.
            "bn_base_images": [bn_distance(t.model, base, c.first_bn_multiplier, batch=classes) for t in teachers],
            "label_agreement": float(
                (logits.argmax(1) == torch.arange(classes).repeat(len(decoded_images) // classes)).float().mean()
            ),
        }
        stored.provenance = provenance
        stored.validate(image_shape=train.image_shape, check_budget=True)
        return stored
