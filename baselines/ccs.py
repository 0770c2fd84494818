"""CCS: Coverage-centric Coreset Selection (Zheng et al., ICLR 2023; methods.md 13.6).

1. Score every image by AUM, the probability margin ``p_y - max_{k != y} p_k`` summed over all
   epochs of the proxy's training.
2. Hard cut-off: drop the ``beta`` fraction of images with the lowest AUM (the hardest, likely
   mislabeled ones).
3. Stratified sampling: split the remaining scores into ``bins`` equal-width strata; give the
   budget to the strata in ascending order of size, each ``min(size, remaining // strata left)``;
   sample uniformly within each stratum.

The official code cuts and samples over the whole training set; here both steps run within each
class by default (``balanced=False`` gives the official global form). ``beta=None`` chooses the
cut-off from the pruning rate ``p = 1 - kept fraction``: 0.3 at ``p >= 0.9`` (CCS README,
CIFAR-10 at 90%), 0.2 at ``p >= 0.8`` (the ImageNet value at 80%), 0.1 at ``p >= 0.7`` and 0 below
(interpolated for this suite; the paper tunes beta per dataset and rate). The cut-off never
removes so many images that the budget cannot be met.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from baselines._budget import fill_remainder, selection_groups
from baselines._proxy import ProxyConfig, ProxySelector
from baselines.selection import Selection
from data import ImageDataset
from data.methods import register_method
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget

logger = logging.getLogger(__name__)

#: (pruning rate at least, beta) pairs of the automatic cut-off, highest first.
BETA_SCHEDULE = ((0.9, 0.3), (0.8, 0.2), (0.7, 0.1), (0.0, 0.0))


@dataclass(frozen=True)
class CCSConfig(ProxyConfig):
    """``beta``: hard cut-off fraction (``None``: by pruning rate, see the module doc);
    ``bins``: number of equal-width strata (official 50)."""

    beta: float | None = None
    bins: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta is not None and not 0 <= self.beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")
        if self.bins < 1:
            raise ValueError(f"bins must be positive, got {self.bins}")


def auto_beta(pruning_rate: float) -> float:
    """The cut-off the schedule :data:`BETA_SCHEDULE` gives a pruning rate."""
    for threshold, beta in BETA_SCHEDULE:
        if pruning_rate >= threshold - 1e-9:
            return beta
    return 0.0


def strata(scores: Tensor, bins: int) -> Tensor:
    """The equal-width stratum (``0 .. bins-1``) of every score over ``[min, max]``."""
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        return torch.zeros(len(scores), dtype=torch.long)
    position = (scores.double() - low) / (high - low) * bins
    return position.floor().long().clamp(0, bins - 1)


def allocate_to_strata(total: int, sizes: Tensor, generator: torch.Generator) -> Tensor:
    """CCS's allocation: strata in ascending size get ``min(size, remaining // strata left)``.

    Any shortfall (only possible when larger strata are full) goes one per stratum to strata
    with room, in random order.
    """
    order = torch.argsort(sizes, stable=True)
    counts = torch.zeros_like(sizes)
    remaining = total
    for position, stratum in enumerate(order.tolist()):
        share = min(int(sizes[stratum]), remaining // (len(order) - position))
        counts[stratum] = share
        remaining -= share
    return fill_remainder(counts, sizes, total, generator)


def stratified_sample(scores: Tensor, count: int, bins: int, generator: torch.Generator) -> Tensor:
    """Positions of ``count`` items sampled by CCS's stratified sampling over ``scores``."""
    stratum = strata(scores, bins)
    sizes = torch.bincount(stratum, minlength=bins)
    counts = allocate_to_strata(count, sizes, generator)
    chosen = []
    for index in range(bins):
        members = torch.nonzero(stratum == index, as_tuple=True)[0]
        chosen.append(members[torch.randperm(len(members), generator=generator)[: int(counts[index])]])
    return torch.cat(chosen)


def ccs_select(
    scores: Tensor, count: int, *, beta: float, bins: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """CCS within one group: drop the lowest-``beta`` scores, then stratified-sample ``count``.

    Returns:
        (chosen positions, dropped positions).
    """
    n = len(scores)
    dropped_count = min(int(beta * n), n - count)
    if dropped_count < int(beta * n):
        logger.info(
            "CCS: cut-off reduced from %d to %d images to keep %d of %d", int(beta * n), dropped_count, count, n
        )
    order = torch.argsort(scores, stable=True)
    dropped, kept = order[:dropped_count], order[dropped_count:]
    chosen = kept[stratified_sample(scores[kept], count, bins, generator)]
    return chosen, dropped


@register_method("ccs")
class CCSSelector(ProxySelector):
    """CCS on the proxy's AUM. Scores: AUM (higher = easier)."""

    config_class = CCSConfig
    config: CCSConfig

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        aum = self.proxy(train, seed=seed, device=device).dynamics["margin"].sum(dim=0)
        generator = make_generator(derive_seed("ccs", seed))
        chosen = []
        for members, count in selection_groups(train, budget, balanced=self.config.balanced):
            beta = self.config.beta if self.config.beta is not None else auto_beta(1.0 - count / len(members))
            positions, _ = ccs_select(aum[members], count, beta=beta, bins=self.config.bins, generator=generator)
            chosen.append(members[positions])
        return Selection(indices=torch.sort(torch.cat(chosen)).values, scores=aum)
