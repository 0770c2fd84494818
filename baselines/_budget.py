"""Budget bookkeeping shared by the selectors: selection groups, top-k with seeded tie-breaks,
and integer allocation of a count over bins."""

from __future__ import annotations

import torch
from torch import Tensor

from data import ImageDataset
from data.synthetic import Budget


def selection_groups(train: ImageDataset, budget: Budget, *, balanced: bool) -> list[tuple[Tensor, int]]:
    """The groups a selector chooses within, each as (training indices, how many to keep).

    Class-balanced (``balanced`` or any IPC budget): one group per class with the budget's
    per-class count. Global (a fraction budget with ``balanced=False``): one group holding every
    image, keeping ``round(fraction * N)``.
    """
    if balanced or budget.ipc is not None:
        counts = budget.per_class_counts(train.class_counts())
        return [
            (train.class_indices(label), int(counts[label]))
            for label in range(train.num_classes)
            if int(counts[label]) > 0
        ]
    keep = int(budget.per_class_counts(torch.tensor([len(train)]))[0])
    return [(torch.arange(len(train)), keep)]


def top_k(scores: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Positions of the ``k`` highest ``scores``; ties are broken uniformly at random."""
    shuffled = torch.randperm(len(scores), generator=generator)
    order = torch.argsort(scores[shuffled], descending=True, stable=True)
    return shuffled[order[:k]]


def allocate_proportionally(total: int, sizes: Tensor, generator: torch.Generator) -> Tensor:
    """Split ``total`` over bins proportionally to ``sizes`` (largest remainder, random ties).

    Never gives a bin more than its size; ``total`` must not exceed ``sizes.sum()``.
    """
    sizes = sizes.long()
    if total > int(sizes.sum()):
        raise ValueError(f"cannot allocate {total} over bins holding {int(sizes.sum())}")
    if total == 0 or int(sizes.sum()) == 0:
        return torch.zeros_like(sizes)
    exact = sizes.double() * total / float(sizes.sum())
    counts = torch.floor(exact).long().clamp(max=sizes)
    remainder = exact - counts.double()
    return fill_remainder(counts, sizes, total, generator, priority=remainder)


def fill_remainder(
    counts: Tensor, sizes: Tensor, total: int, generator: torch.Generator, *, priority: Tensor | None = None
) -> Tensor:
    """Add one to bins with spare room until ``counts`` sums to ``total``.

    Bins are taken in descending ``priority`` (random order among ties, or fully random without
    a priority), one per pass, so the shortfall is spread as evenly as the room allows.
    """
    counts = counts.clone()
    while int(counts.sum()) < total:
        room = counts < sizes
        if not bool(room.any()):
            raise ValueError(f"bins hold {int(sizes.sum())} items, fewer than {total}")
        candidates = torch.nonzero(room, as_tuple=True)[0]
        keys = priority[candidates] if priority is not None else torch.zeros(len(candidates), dtype=torch.float64)
        order = candidates[top_k(keys, len(candidates), generator)]
        for position in order[: total - int(counts.sum())]:
            counts[position] += 1
    return counts
