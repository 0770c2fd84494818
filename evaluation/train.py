"""The training loop of the evaluation protocols (hard or soft labels) and test accuracy."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from data.numerics import FP32, Numerics
from evaluation.parallel import DataParallel, single_or

logger = logging.getLogger(__name__)

Augment = Callable[[Tensor, torch.Generator], Tensor]
#: ``(epoch, generator) -> indices`` of the images trained on in that epoch, in batch order.
EpochSampler = Callable[[int, torch.Generator], Tensor]


@dataclass(frozen=True)
class TrainRecipe:
    """SGD with momentum and one step decay of the learning rate at ``decay_at`` of the epochs."""

    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    decay_at: float = 0.5
    decay_factor: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.decay_at <= 1:
            raise ValueError(f"decay_at is a share of the epochs, in [0, 1]; got {self.decay_at}")
        if not 0 <= self.decay_factor <= 1:
            raise ValueError(f"decay_factor scales the learning rate down, in [0, 1]; got {self.decay_factor}")


@dataclass(frozen=True)
class TrainStats:
    """What one training run did."""

    final_loss: float
    seconds: float
    steps: int
    images_seen: int


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy against a probability matrix (rows summing to one)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def classification_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """CE for integer targets, soft-target CE for a float matrix of probabilities."""
    if targets.is_floating_point():
        return soft_cross_entropy(logits, targets)
    return F.cross_entropy(logits, targets)


def train_classifier(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    recipe: TrainRecipe,
    *,
    generator: torch.Generator,
    augment: Augment | None = None,
    sampler: EpochSampler | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    description: str = "train",
    parallel: DataParallel | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    numerics: Numerics = FP32,
) -> TrainStats:
    """Train ``model`` in place on ``images``/``targets`` following ``recipe``.

    ``on_epoch_end(epoch)`` (0-based) runs after every epoch, e.g. to test the model there; it
    must leave the model in train mode.

    Every epoch visits a fresh permutation of all images drawn from ``generator``, or the
    indices ``sampler(epoch, generator)`` returns (a per-epoch subset, as RS2 trains);
    ``augment(batch, generator)`` is applied to every batch when given. Under ``parallel``
    (torchrun) each rank trains on its part of every batch (see :mod:`evaluation.parallel`);
    ``model`` must have been through ``parallel.prepare``. ``numerics`` sets the forward passes'
    precision and the layout of the model and of every (augmented) batch; weights, optimizer
    state and the loss stay fp32.
    """
    parallel = single_or(parallel)
    device = torch.device(device)
    numerics.model(model.to(device)).train()
    images = images.to(device)
    targets = targets.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    decay_epoch = int(recipe.epochs * recipe.decay_at)
    n = len(images)
    steps = 0
    images_seen = 0
    loss_value = float("nan")
    start = time.perf_counter()
    bar = tqdm(range(recipe.epochs), desc=description, disable=not (progress and parallel.is_main), leave=False)
    for epoch in bar:
        if epoch == decay_epoch and epoch > 0:
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * recipe.decay_factor
        if sampler is None:
            order = torch.randperm(n, generator=generator, device=generator.device).to(device)
        else:
            order = sampler(epoch, generator).to(device)
        images_seen += len(order)
        for start_index in range(0, len(order), recipe.batch_size):
            batch = order[start_index : start_index + recipe.batch_size]
            inputs = images[batch]
            if augment is not None:
                inputs = augment(inputs, generator)
            with parallel.batch(len(batch)), numerics.autocast(device):
                logits = model(numerics.batch(parallel.local(inputs)))
            loss = classification_loss(logits.float(), parallel.local(targets[batch]))
            loss = loss * parallel.share(len(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parallel.sync_gradients(model.parameters())
            optimizer.step()
            steps += 1
        loss_value = parallel.sum(float(loss.detach()))
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"{description}: training loss became {loss_value} at epoch {epoch}")
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return TrainStats(final_loss=loss_value, seconds=time.perf_counter() - start, steps=steps, images_seen=images_seen)


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
    parallel: DataParallel | None = None,
    numerics: Numerics = FP32,
) -> float:
    """Top-1 accuracy of ``model`` as a fraction in ``[0, 1]`` (under ``parallel``, each rank
    counts its part of the images and the counts are summed), with the forward passes'
    ``numerics``."""
    parallel = single_or(parallel)
    device = torch.device(device)
    numerics.model(model.to(device)).eval()
    total = len(images)
    images, labels = parallel.local(images), parallel.local(labels)
    correct = 0
    for start in range(0, len(images), batch_size):
        with numerics.autocast(device):
            logits = model(numerics.batch(images[start : start + batch_size].to(device)))
        correct += int((logits.argmax(dim=1).cpu() == labels[start : start + batch_size].cpu()).sum())
    if parallel.replicated(total):
        return correct / max(total, 1)
    return parallel.sum(correct) / max(total, 1)
