"""The two rows every table shows: ``random`` (the floor to beat) and ``full`` (the ceiling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from baselines.selection import Selection, Selector, class_balanced_random
from data import ImageDataset
from data.methods import Family, MethodConfig, register_method
from data.seeding import make_generator
from data.synthetic import Budget


@dataclass(frozen=True)
class RandomConfig(MethodConfig):
    """``balanced``: draw the budget from every class (default); else uniformly over all images
    (only for fraction budgets)."""

    balanced: bool = True


@register_method("random")
class RandomSelection(Selector):
    """A uniformly random real subset at the budget (DeepCore ``Uniform``)."""

    config_class = RandomConfig

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        generator = make_generator(seed)
        if self.config.balanced or budget.ipc is not None:
            return Selection(indices=class_balanced_random(train, budget, generator))
        keep = int(budget.per_class_counts(torch.tensor([len(train)]))[0])
        return Selection(indices=torch.sort(torch.randperm(len(train), generator=generator)[:keep]).values)


@dataclass(frozen=True)
class FullConfig(MethodConfig):
    """The whole training set has no options."""


@register_method("full")
class FullDataset(Selector):
    """The whole training set: the upper bound. Run once per dataset, whatever the budget."""

    family: ClassVar[Family] = "reference"
    config_class = FullConfig
    uses_budget: ClassVar[bool] = False

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        return Selection(indices=torch.arange(len(train)))
