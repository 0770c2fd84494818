"""The training loop of the evaluation protocols (hard or soft labels) and test accuracy."""

from __future__ import annotations

import logging
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


#: Epochs between the checks that the training loss is finite. A check waits for the device, so
#: checking every epoch would stall a GPU on every step when a small set makes one-step epochs.
FINITE_CHECK_EVERY = 25


class LossWatch:
    """Collects each epoch's training loss on the device and checks it every
    :data:`FINITE_CHECK_EVERY` epochs and at the last one, raising ``FloatingPointError`` with the
    first non-finite epoch. The loss may be one value or one per model (vectorized training).
    Under ``parallel`` the ranks check together and all raise if any rank's loss broke.
    """

    def __init__(self, description: str, epochs: int, parallel: DataParallel | None = None) -> None:
        self.description = description
        self.epochs = epochs
        self.parallel = single_or(parallel)
        self._pending: list[Tensor] = []
        self._first_pending = 0
        self.last: Tensor | None = None

    def add(self, epoch: int, loss: Tensor) -> None:
        if not self._pending:
            self._first_pending = epoch
        self._pending.append(loss.detach().float().reshape(-1))
        if (epoch + 1) % FINITE_CHECK_EVERY == 0 or epoch == self.epochs - 1:
            self.check()

    def check(self) -> None:
        if not self._pending:
            return
        values = torch.stack(self._pending).cpu()  # the one wait for the device
        self._pending = []
        broken = ~torch.isfinite(values).all(dim=1)
        if self.parallel.sum(float(broken.sum())) > 0:
            if broken.any():
                row = int(broken.nonzero()[0])
                bad = values[row][~torch.isfinite(values[row])][0]
                where = f"became {float(bad)} at epoch {self._first_pending + row}"
            else:
                where = f"broke on another rank by epoch {self._first_pending + len(values) - 1}"
            raise FloatingPointError(f"{self.description}: training loss {where}")
        self.last = values[-1]

    def final_losses(self) -> list[float]:
        """The last epoch's loss per model (summed over the ranks); NaN before any epoch."""
        self.check()
        if self.last is None:
            return [float("nan")]
        return [self.parallel.sum(float(value)) for value in self.last]


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
    watch = LossWatch(description, recipe.epochs, parallel)
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
        watch.add(epoch, loss)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    (final_loss,) = watch.final_losses()
    return TrainStats(final_loss=final_loss, seconds=time.perf_counter() - start, steps=steps, images_seen=images_seen)


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
