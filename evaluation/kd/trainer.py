"""The teacher-student trainer, usable on its own::

    from data import load_dataset
    from evaluation.kd import StudentRecipe, distill
    from evaluation.teachers import TeacherConfig, load_or_train_teacher

    train, val, test = load_dataset("digits", seed=0)
    teacher = load_or_train_teacher(TeacherConfig(model="convnet3"), train, test=test)
    student, stats = distill(train, teacher.model, student="convnetw32", method="dkd", seed=0,
                             recipe=StudentRecipe(epochs=60))

Each batch is augmented once and the same tensor goes to the teacher and the student; the
teacher runs in eval mode without gradients; extra trainable parts of the loss (projectors,
embeddings) are optimized with the student.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from data import ImageDataset
from data.seeding import derive_seed, make_generator, seeded_torch
from evaluation.augment import dsa_augmenter
from evaluation.kd.hooks import FeatureHooks
from evaluation.kd.losses import KDBatch, KDLoss, create_kd_loss
from evaluation.models import create_model
from evaluation.parallel import DataParallel, single_or
from evaluation.train import LossWatch

logger = logging.getLogger(__name__)

Augment = Callable[[Tensor, torch.Generator], Tensor]
SCHEDULES = ("step", "cosine", "epoch_cosine", "constant")


@dataclass(frozen=True)
class StudentRecipe:
    """Optimizer and schedule of a student.

    Attributes:
        epochs: passes over the training images.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adamw"``.
        lr: initial learning rate.
        momentum: SGD momentum (ignored by AdamW).
        weight_decay: weight decay (decoupled for AdamW).
        batch_size: images per step.
        schedule: ``"step"`` (x ``decay_factor`` at ``decay_at`` of the epochs), ``"cosine"``
            (per step, to zero), ``"epoch_cosine"`` (per epoch, ``lr (1 + cos(pi e / (s E))) / 2``
            with ``s`` = ``cosine_stretch``: G-VBSM's schedule at 1, EDC's smoothed one at 2) or
            ``"constant"``.
        decay_at: fraction of the epochs where the step schedule decays.
        decay_factor: the step schedule's factor.
        cosine_stretch: ``epoch_cosine``'s stretch ``s``.
        decay_all_parameters: weight decay on every parameter; false exempts the one-dimensional
            ones (biases, norm weights), as the FKD trainers of SRe2L/G-VBSM/EDC do.
    """

    epochs: int
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    schedule: Literal["step", "cosine", "epoch_cosine", "constant"] = "step"
    decay_at: float = 0.5
    decay_factor: float = 0.1
    cosine_stretch: float = 1.0
    decay_all_parameters: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs}, {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid optimizers: sgd, adamw")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


@dataclass(frozen=True)
class StudentStats:
    """What one student run did."""

    final_loss: float
    seconds: float
    steps: int


def make_optimizer(parameters: list[nn.Parameter], recipe: StudentRecipe) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW as the recipe says (one-dimensional parameters undecayed unless
    ``decay_all_parameters``)."""
    groups: list[dict[str, Any]] = [{"params": parameters}]
    if not recipe.decay_all_parameters:
        groups = [
            {"params": [p for p in parameters if p.dim() > 1]},
            {"params": [p for p in parameters if p.dim() <= 1], "weight_decay": 0.0},
        ]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def lr_at(recipe: StudentRecipe, epoch: int, step: int, total_steps: int) -> float:
    """The learning rate of ``step`` (counted from 0) in ``epoch``."""
    if recipe.schedule == "cosine":
        return 0.5 * recipe.lr * (1 + math.cos(math.pi * step / max(total_steps, 1)))
    if recipe.schedule == "epoch_cosine":
        return 0.5 * recipe.lr * (1 + math.cos(math.pi * epoch / (recipe.cosine_stretch * recipe.epochs)))
    if recipe.schedule == "step":
        decay_epoch = int(recipe.epochs * recipe.decay_at)
        return recipe.lr * (recipe.decay_factor if 0 < decay_epoch <= epoch else 1.0)
    return recipe.lr


def run_epochs(
    parameters: list[nn.Parameter],
    recipe: StudentRecipe,
    num_images: int,
    generator: torch.Generator,
    step: Callable[[int, Tensor], Tensor],
    *,
    progress: bool = False,
    description: str = "student",
    orders: list[Tensor] | None = None,
    parallel: DataParallel | None = None,
    after_step: Callable[[], None] | None = None,
) -> StudentStats:
    """The optimization loop shared by the trainers.

    Every epoch draws a permutation of ``num_images`` from ``generator`` (or takes
    ``orders[epoch]``), cuts it into batches, and calls ``step(epoch, batch_indices)`` for the
    loss, which is back-propagated into ``parameters``. Under ``parallel`` (torchrun), ``step``
    gets the whole global batch and returns the mean loss of this rank's part of it
    (``parallel.local``); the loop weights it and sums the gradients over the ranks.
    ``after_step`` runs after every optimizer step (a parameter average's update).
    """
    parallel = single_or(parallel)
    optimizer = make_optimizer(parameters, recipe)
    steps_per_epoch = math.ceil(num_images / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    steps = 0
    watch = LossWatch(description, recipe.epochs, parallel)
    start = time.perf_counter()
    for epoch in tqdm(range(recipe.epochs), desc=description, disable=not (progress and parallel.is_main), leave=False):
        order = orders[epoch] if orders is not None else torch.randperm(num_images, generator=generator)
        for first in range(0, num_images, recipe.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(recipe, epoch, steps, total)
            batch = order[first : first + recipe.batch_size]
            with parallel.batch(len(batch)):
                loss = step(epoch, batch) * parallel.share(len(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parallel.sync_gradients(parameters)
            optimizer.step()
            if after_step is not None:
                after_step()
            steps += 1
        watch.add(epoch, loss)
    (final_loss,) = watch.final_losses()
    return StudentStats(final_loss=final_loss, seconds=time.perf_counter() - start, steps=steps)


def distill_student(
    student: nn.Module,
    teacher: nn.Module,
    images: Tensor,
    labels: Tensor,
    loss: KDLoss,
    recipe: StudentRecipe,
    *,
    generator: torch.Generator,
    augment: Augment | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> StudentStats:
    """Train ``student`` in place to match ``teacher`` on ``images`` with the KD ``loss``.

    Args:
        student: the network trained.
        teacher: a trained network (put in eval mode, never updated).
        images: training images ``N x C x H x W``.
        labels: integer ground-truth labels ``N``.
        loss: a KD loss from :func:`evaluation.kd.create_kd_loss`.
        recipe: optimizer and schedule.
        generator: batch order and augmentation randomness.
        augment: ``augment(batch, generator)`` applied once per batch, fed to both networks.
        device: where to train.
        progress: show a progress bar.
    """
    device = torch.device(device)
    student.to(device).train()
    teacher.to(device).eval()
    loss.to(device)
    images, labels = images.to(device), labels.to(device)
    student_hooks = FeatureHooks(student, loss.student_layers)
    teacher_hooks = FeatureHooks(teacher, loss.teacher_layers)
    with student_hooks, teacher_hooks:
        if loss.student_layers or loss.teacher_layers:
            probe = images[: min(len(images), recipe.batch_size)]
            with torch.no_grad():
                was_training = student.training
                student.eval()
                student(probe)
                student.train(was_training)
                teacher(probe)
            loss.prepare(student_hooks.features, teacher_hooks.features, num_samples=len(images), labels=labels)
            loss.to(device)
        parameters = [p for p in student.parameters() if p.requires_grad]
        parameters += [p for p in loss.parameters() if p.requires_grad]

        def step(epoch: int, batch: Tensor) -> Tensor:
            batch = batch.to(device)
            inputs = images[batch]
            if augment is not None:
                inputs = augment(inputs, generator)
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            teacher_features = dict(teacher_hooks.features)
            student_logits = student(inputs)
            terms = loss(
                KDBatch(
                    student_logits=student_logits,
                    teacher_logits=teacher_logits,
                    targets=labels[batch],
                    student_features=dict(student_hooks.features),
                    teacher_features=teacher_features,
                    indices=batch,
                    epoch=epoch,
                )
            )
            return sum(terms.values())  # type: ignore[return-value]

        return run_epochs(
            parameters, recipe, len(images), generator, step, progress=progress, description=f"distill:{loss.name}"
        )


def distill(
    train: ImageDataset,
    teacher: nn.Module,
    *,
    student: str = "convnet3",
    method: str = "kd",
    recipe: StudentRecipe,
    seed: int,
    augmentation: Literal["dsa", "none"] = "dsa",
    device: torch.device | str = "cpu",
    progress: bool = False,
    **loss_options: Any,
) -> tuple[nn.Module, StudentStats]:
    """Distill a fresh ``student`` (registry name) from ``teacher`` on ``train`` with KD ``method``."""
    device = torch.device(device)
    with seeded_torch(derive_seed("student", seed, student), device):
        network = create_model(
            student, in_channels=train.image_shape[0], num_classes=train.num_classes, image_size=train.image_shape[1:]
        )
    loss = create_kd_loss(method, **loss_options)
    stats = distill_student(
        network,
        teacher,
        train.images,
        train.labels,
        loss,
        recipe,
        generator=make_generator(derive_seed("distill", seed, method), "cpu"),
        augment=dsa_augmenter(train.flip) if augmentation == "dsa" else None,
        device=device,
        progress=progress,
    )
    return network, stats
