"""DATM: Difficulty-Aligned Trajectory Matching (Guo et al., ICLR 2024).

MTT/FTD with (``distill/DATM.py`` and ``configs/`` of NUS-HPC-AI-Lab/DATM):

1. flat (GSAM) experts, as FTD (``buffer_FTD.py``, 100 epochs);
2. initialization with real images that the experts (final epoch) classify correctly
   (``pix_init: samples_predicted_correctly``);
3. learnable soft labels, initialized to the average final-epoch logits of the experts that
   classify the image correctly, trained with SGD (``lr_y``, momentum 0.9); the student and the
   evaluation both train with soft cross-entropy on ``softmax(logits)``; the set stores the
   probabilities;
4. a difficulty-aligned start-epoch window ``[min_start_epoch, upper)`` whose upper bound grows
   linearly from ``current_max_start_epoch`` to ``max_start_epoch`` over ``expansion_end_epoch``
   iterations (``Sequential_Generation``), so matching moves from early (easy) to later
   trajectories;
5. the skip rule: images, labels and lr are updated only when the loss is at most ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from condense._run import DistillationRun
from condense.experts import ExpertTrajectories, expert_logits
from condense.ftd import FlatExpertsMixin
from condense.mtt import TrajectoryConfig, TrajectoryState, TrajectorySynthesizer
from data import ImageDataset
from data.methods import register_method
from data.seeding import make_generator


@dataclass(frozen=True)
class DATMConfig(TrajectoryConfig):
    """DATM with the official CIFAR-10 IPC 10 config (other settings: ``configs/method/datm.yaml``).

    Attributes:
        iterations: 10000.
        lr_img: 100.
        syn_steps: 80.
        expert_epochs: 2.
        batch_syn: 100 (IPC-dependent; capped at the set size).
        lr_lr: 1e-5.
        expert_train_epochs: 100 (the DATM buffer).
        min_start_epoch: lower bound of the start epoch (0; 20 for CIFAR-100 IPC 50).
        current_max_start_epoch: initial upper bound of the window (10).
        max_start_epoch: final (exclusive) upper bound (20).
        expansion_end_epoch: iteration at which the window reaches ``max_start_epoch`` (1000).
        sequential_generation: grow the window (True); False: ``[min, max)`` throughout.
        pix_init: ``"correct"`` (real images the experts classify correctly) or ``"real"``.
        soft_labels: learn soft labels (True).
        lr_y: soft-label learning rate (2.0), SGD momentum ``momentum_y`` (0.9).
        threshold: skip the update when the loss exceeds it (1.0).
        rho: GSAM radius of the experts (0.01).
        alpha: GSAM alpha of the experts (0.3, README).
        adaptive: GSAM adaptive perturbation (True).
        zca: ZCA whitening (True: every official DATM config, Tiny-ImageNet's too).
    """

    iterations: int = 10000
    lr_img: float = 100.0
    syn_steps: int = 80
    expert_epochs: int = 2
    batch_syn: int | None = 100
    lr_lr: float = 1e-5
    expert_train_epochs: int = 100
    min_start_epoch: int = 0
    current_max_start_epoch: int = 10
    max_start_epoch: int = 20
    expansion_end_epoch: int = 1000
    sequential_generation: bool = True
    pix_init: Literal["correct", "real"] = "correct"
    soft_labels: bool = True
    lr_y: float = 2.0
    momentum_y: float = 0.9
    threshold: float = 1.0
    rho: float = 0.01
    alpha: float = 0.3
    adaptive: bool = True
    zca: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.min_start_epoch < self.max_start_epoch:
            raise ValueError("need 0 <= min_start_epoch < max_start_epoch")
        if self.sequential_generation and not (
            self.min_start_epoch < self.current_max_start_epoch <= self.max_start_epoch
        ):
            raise ValueError("need min_start_epoch < current_max_start_epoch <= max_start_epoch")
        if self.expansion_end_epoch < 1:
            raise ValueError("expansion_end_epoch must be positive")
        if self.pix_init not in ("correct", "real"):
            raise ValueError(f"pix_init must be 'correct' or 'real', got {self.pix_init!r}")


def difficulty_window(config: DATMConfig, iteration: int) -> tuple[int, int]:
    """``[low, high)`` of the start epoch at ``iteration`` (DATM's ``Sequential_Generation``)."""
    if not config.sequential_generation:
        return config.min_start_epoch, config.max_start_epoch
    growth = (config.max_start_epoch - config.current_max_start_epoch) * iteration // config.expansion_end_epoch
    return config.min_start_epoch, min(config.current_max_start_epoch + growth, config.max_start_epoch)


def correctly_classified_init(
    train: ImageDataset, experts: ExpertTrajectories, ipc: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Per class, ``ipc`` random real images the final-epoch experts classify correctly, and their logits.

    An image counts as correct when at least one expert classifies it correctly (the reference
    cycles through experts); images the first expert gets right come first. A class with too few
    correct images is filled with other images of the class. The logits are the mean over the
    experts that classify the image correctly (over all experts for fill-ins).
    """
    images, logits = [], []
    for label in range(train.num_classes):
        members = train.class_indices(label)
        members = members[torch.randperm(len(members), generator=generator)]
        if len(members) < ipc:
            raise ValueError(f"class {label} has {len(members)} images, fewer than ipc={ipc}")
        candidates = train.images[members].to(device)
        all_logits = expert_logits(experts, train, candidates)  # E x n x K
        correct = all_logits.argmax(dim=2) == label  # E x n
        priority = correct[0].long() * 2 + correct.any(dim=0).long()
        order = torch.argsort(-priority, stable=True)[:ipc]
        chosen_correct = correct[:, order].float()  # E x ipc
        weights = torch.where(chosen_correct.sum(0, keepdim=True) > 0, chosen_correct, torch.ones_like(chosen_correct))
        mean_logits = (all_logits[:, order] * weights.unsqueeze(2)).sum(0) / weights.sum(0).unsqueeze(1)
        images.append(candidates[order])
        logits.append(mean_logits)
    return torch.cat(images), torch.cat(logits)


@register_method("datm")
class DATM(FlatExpertsMixin, TrajectorySynthesizer):
    """Difficulty-aligned trajectory matching with learnable soft labels and the skip rule."""

    config_class = DATMConfig
    config: DATMConfig
    label_type = "soft"

    def prepare(self, run: DistillationRun, state: TrajectoryState) -> None:
        generator = make_generator(run.derived_seed("datm-init"), "cpu")
        images, logits = correctly_classified_init(run.train, state.experts, run.ipc, generator, run.device)
        if self.config.pix_init == "correct":
            with torch.no_grad():
                run.images.copy_(images)
        else:
            logits = expert_logits(state.experts, run.train, run.images.detach()).mean(dim=0)
        if self.config.soft_labels:
            state.label_logits = logits.detach().clone().requires_grad_(True)

    def extra_optimizers(self, state: TrajectoryState) -> list[torch.optim.Optimizer]:
        if state.label_logits is None:
            return []
        return [torch.optim.SGD([state.label_logits], lr=self.config.lr_y, momentum=self.config.momentum_y)]

    def targets(self, run: DistillationRun, state: TrajectoryState) -> Tensor:
        if state.label_logits is None:
            return run.labels
        return torch.softmax(state.label_logits, dim=1)

    def start_epoch_bounds(self, iteration: int) -> tuple[int, int]:
        return difficulty_window(self.config, iteration)

    def accept(self, loss: float) -> bool:
        return loss <= self.config.threshold
