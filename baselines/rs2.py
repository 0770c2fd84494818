"""RS2: repeated random sampling (Okanovic et al., ICLR 2024), a training-time sampler.

RS2 keeps the whole training pool and trains each round on a fresh random subset of the
budget's size, without replacement across rounds (every image is used once before any repeats).
The evaluation protocol runs the sampler (``evaluation.protocols.rs2_schedule``); the records
state the schedule: ``equal_epochs`` (as many rounds as the protocol's epochs for a set of that
size, so as many steps as a static subset gets) or ``equal_iterations`` (as many optimizer steps
as the whole-data run, as RS2 and CCS evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from data import ImageDataset
from data.methods import Family, Method, MethodConfig, register_method
from data.provenance import ResourceMeter
from data.synthetic import Budget, SyntheticSet


@dataclass(frozen=True)
class RS2Config(MethodConfig):
    """``schedule``: how many rounds the protocol trains (see the module docstring)."""

    schedule: Literal["equal_epochs", "equal_iterations"] = "equal_epochs"


@register_method("rs2")
class RepeatedRandomSampling(Method):
    """Per-round random subsets of the whole pool at the budget's size."""

    family: ClassVar[Family] = "selection"
    config_class = RS2Config

    def condense(
        self,
        train: ImageDataset,
        budget: Budget,
        *,
        seed: int,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> SyntheticSet:
        if self.config.schedule not in ("equal_epochs", "equal_iterations"):
            raise ValueError(f"unknown rs2 schedule {self.config.schedule!r}; valid: equal_epochs, equal_iterations")
        with ResourceMeter(torch.device(device)) as meter:
            per_round = int(budget.per_class_counts(train.class_counts()).sum())
        synthetic = SyntheticSet(
            images=train.images,
            labels=train.labels,
            num_classes=train.num_classes,
            mean=train.mean,
            std=train.std,
            budget=budget,
            sampler={"name": "rs2", "per_round": per_round, "schedule": self.config.schedule},
            provenance=self.provenance(train, seed, meter),
        )
        synthetic.validate()
        return synthetic
