"""Train a protocol's N evaluation models as one vectorized model (``torch.func`` + ``vmap``).

The models' parameters and buffers are stacked along a new first dimension and one vmapped
forward trains all of them per step. Every model keeps its own randomness, drawn exactly as
:func:`evaluation.train.train_classifier` draws it one model at a time: its initialization (the
models are built by the caller, each under its seed), and from its own generator, every epoch's
batch order (or its sampler's indices) followed by each batch's augmentation. The loss is the sum
of the models' mean losses, so each model's gradient is its own; SGD with momentum and weight
decay is elementwise, so the stacked optimizer applies each model's own update. The trained
weights are copied back into the models, which are then tested as usual. Results equal the
sequential loop's up to float summation order (a vmapped convolution runs as one grouped
convolution).

Where it pays: small sets on a GPU, where one model's step is bound by kernel launches. On a
2-core CPU it gained only on the tiniest sets (10 digits images) and lost from 100 images on, a
grouped convolution being slower than the models' convolutions one after another (see
``benchmarks/eval_vectorized.py``), so the protocols train sequentially unless asked.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from data.numerics import FP32, Numerics
from evaluation.train import Augment, EpochSampler, LossWatch, TrainRecipe, TrainStats, classification_loss


def can_vectorize(model: nn.Module) -> str | None:
    """Why ``model`` cannot train vectorized (dropout draws from the global generator), or ``None``."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            return f"{type(module).__name__} draws from the global random generator"
    return None


def train_classifiers_vectorized(
    models: Sequence[nn.Module],
    images: Tensor,
    targets: Tensor,
    recipe: TrainRecipe,
    *,
    generators: Sequence[torch.Generator],
    augment: Augment | None = None,
    samplers: Sequence[EpochSampler] | None = None,
    device: torch.device | str = "cpu",
    numerics: Numerics = FP32,
    on_epoch_end: Callable[[int], None] | None = None,
    description: str = "train",
) -> list[TrainStats]:
    """Train ``models`` (same architecture) in place, as ``train_classifier`` would one by one.

    Args:
        models: the initialized models; model ``i`` draws from ``generators[i]`` (and
            ``samplers[i]``).
        images, targets: the training set, shared by all models.
        recipe: the optimizer and schedule (the same for all).
        generators: one per model: batch orders and augmentation draws.
        augment: ``augment(batch, generator)`` applied to each model's batch.
        samplers: per-model epoch samplers (RS2), or ``None`` for fresh permutations.
        device: where to train.
        numerics: the forward passes' precision (the layout is NCHW: stacked weights are 5-d).
        on_epoch_end: called with the epoch after the trained weights are copied back into the
            models (for test checkpoints); it must leave them in train mode.
        description: names the run in errors.

    Raises:
        ValueError: models that cannot train vectorized, or mismatched generators/samplers.
    """
    if len(generators) != len(models) or (samplers is not None and len(samplers) != len(models)):
        raise ValueError("one generator (and sampler) per model")
    for model in models:
        reason = can_vectorize(model)
        if reason is not None:
            raise ValueError(f"{description}: cannot train {type(model).__name__} vectorized: {reason}")
    device = torch.device(device)
    for model in models:
        model.to(device).train()
    images, targets = images.to(device), targets.to(device)
    params, buffers = stack_module_state(list(models))
    template = copy.deepcopy(models[0]).to("meta")

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(template, (p, b), (x,))

    batched_forward = vmap(forward)
    optimizer = torch.optim.SGD(
        list(params.values()), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    decay_epoch = int(recipe.epochs * recipe.decay_at)
    n = len(images)
    steps = images_seen = 0
    watch = LossWatch(description, recipe.epochs)
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        if epoch == decay_epoch and epoch > 0:
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * recipe.decay_factor
        orders = [
            (torch.randperm(n, generator=g, device=g.device) if samplers is None else samplers[i](epoch, g)).to(device)
            for i, g in enumerate(generators)
        ]
        if len({len(order) for order in orders}) != 1:
            raise ValueError(f"{description}: the models' epochs differ in length; train them sequentially")
        images_seen += len(orders[0])
        # Each generator draws its epoch's order first, then its batches' augmentations in order:
        # the sequence train_classifier draws from it.
        batches_per_model = []
        for order, generator in zip(orders, generators, strict=True):
            batches = []
            for first in range(0, len(order), recipe.batch_size):
                index = order[first : first + recipe.batch_size]
                inputs = images[index]
                if augment is not None:
                    inputs = augment(inputs, generator)
                batches.append((inputs, index))
            batches_per_model.append(batches)
        for step_batches in zip(*batches_per_model, strict=True):
            inputs = torch.stack([inputs for inputs, _ in step_batches])
            with numerics.autocast(device):
                logits = batched_forward(params, buffers, inputs)
            per_model = [
                classification_loss(logits[i].float(), targets[index]) for i, (_, index) in enumerate(step_batches)
            ]
            optimizer.zero_grad(set_to_none=True)
            torch.stack(per_model).sum().backward()
            optimizer.step()
            steps += 1
        watch.add(epoch, torch.stack(per_model))
        if on_epoch_end is not None:
            copy_back(models, params, buffers)
            on_epoch_end(epoch)
    copy_back(models, params, buffers)
    seconds = time.perf_counter() - start
    losses = watch.final_losses() if recipe.epochs > 0 else [float("nan")] * len(models)
    return [TrainStats(final_loss=loss, seconds=seconds, steps=steps, images_seen=images_seen) for loss in losses]


def copy_back(models: Sequence[nn.Module], params: dict[str, Tensor], buffers: dict[str, Tensor]) -> None:
    """Write model ``i``'s slice of the stacked parameters and buffers into ``models[i]``."""
    with torch.no_grad():
        for i, model in enumerate(models):
            for name, tensor in model.named_parameters():
                tensor.copy_(params[name][i])
            for name, tensor in model.named_buffers():
                if name in buffers:
                    tensor.copy_(buffers[name][i])
