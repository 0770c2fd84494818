"""The selector interface: pick real training images; wrapped so it yields a SyntheticSet."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from data import ImageDataset
from data.methods import Family, Method
from data.provenance import ResourceMeter
from data.synthetic import Budget, SyntheticSet


@dataclass(frozen=True)
class Selection:
    """Chosen training indices (sorted) and, where the selector scores, every image's score."""

    indices: Tensor
    scores: Tensor | None = None


class Selector(Method):
    """A method that keeps a subset of the real training images."""

    family: ClassVar[Family] = "selection"

    def charge_precomputed(self, provenance: dict[str, Any]) -> None:
        """Add the cost of the cached products the last selection used (none by default)."""

    @abstractmethod
    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        """Choose which training images to keep under ``budget``."""

    def condense(
        self,
        train: ImageDataset,
        budget: Budget,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        """Run :meth:`select` and wrap the chosen images as a validated set.

        A method that does not use the budget (``full``) keeps the whole set, whatever was asked.
        """
        budget = budget if self.uses_budget else Budget()
        with ResourceMeter(torch.device(device)) as meter:
            selection = self.select(train, budget, seed=seed, device=device)
        indices = selection.indices.long().cpu()
        if len(indices) == 0:
            raise ValueError(f"{self.name} selected no images")
        if len(torch.unique(indices)) != len(indices):
            raise ValueError(f"{self.name} selected some images more than once")
        if indices.min() < 0 or indices.max() >= len(train):
            raise ValueError(f"{self.name} selected indices outside the training set")
        extras = {"indices": indices}
        if selection.scores is not None:
            extras["scores"] = selection.scores.detach().float().cpu()
        synthetic = SyntheticSet(
            images=train.images[indices].clone(),
            labels=train.labels[indices].clone(),
            num_classes=train.num_classes,
            mean=train.mean,
            std=train.std,
            budget=budget,
            extras=extras,
            provenance=self.provenance(train, seed, meter),
        )
        self.charge_precomputed(synthetic.provenance)
        synthetic.validate(check_budget=budget.ipc is not None and bool((train.class_counts() >= budget.ipc).all()))
        return synthetic


def class_balanced_random(train: ImageDataset, budget: Budget, generator: torch.Generator) -> Tensor:
    """Uniformly random indices, the budget's count drawn from every class (sorted)."""
    counts = budget.per_class_counts(train.class_counts())
    chosen = []
    for label in range(train.num_classes):
        members = train.class_indices(label)
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[: int(counts[label])]])
    return torch.sort(torch.cat(chosen)).values
