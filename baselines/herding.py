"""Herding (Welling 2009; iCaRL): greedily keep the running mean of the selection near the mean.

Features are the penultimate embeddings of the proxy model. At step ``i`` (0-based) the rule
adds ``argmin_x ||(i + 1) mu - sum_{selected} f - f(x)||`` over the images not yet chosen, which
keeps the mean of the selected features closest to ``mu``, the mean of the group (the class, or
the whole set when selecting globally).

``variant="deepcore"`` reproduces DeepCore's ``herding.py``, which computes the same distance
but takes its ``argmax`` (the farthest image at every step); use it only to reproduce DeepCore
or RS2 numbers (methods.md 13.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from baselines._budget import selection_groups
from baselines._proxy import ProxyConfig, ProxySelector, embeddings
from baselines.selection import Selection
from data import ImageDataset
from data.methods import register_method
from data.synthetic import Budget

HerdingVariant = Literal["welling", "deepcore"]
HERDING_VARIANTS = ("welling", "deepcore")


@dataclass(frozen=True)
class HerdingConfig(ProxyConfig):
    """``variant``: ``"welling"`` (the argmin rule) or ``"deepcore"`` (DeepCore's argmax)."""

    variant: HerdingVariant = "welling"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in HERDING_VARIANTS:
            raise ValueError(f"variant must be one of {HERDING_VARIANTS}, got {self.variant!r}")


def herding_order(features: Tensor, count: int, *, variant: HerdingVariant = "welling") -> Tensor:
    """Positions of the ``count`` rows of ``features`` chosen by herding, in the order chosen."""
    if not 0 <= count <= len(features):
        raise ValueError(f"cannot herd {count} of {len(features)} points")
    points = features.double()
    mean = points.mean(dim=0)
    squared_norms = (points * points).sum(dim=1)
    chosen_sum = torch.zeros_like(mean)
    available = torch.ones(len(points), dtype=torch.bool)
    order = []
    for step in range(count):
        target = (step + 1) * mean - chosen_sum
        # ||target - x||^2 up to the constant ||target||^2.
        distance = squared_norms - 2.0 * (points @ target)
        if variant == "welling":
            pick = int(torch.where(available, distance, torch.inf).argmin())
        else:
            pick = int(torch.where(available, distance, -torch.inf).argmax())
        order.append(pick)
        available[pick] = False
        chosen_sum += points[pick]
    return torch.tensor(order, dtype=torch.long)


@register_method("herding")
class HerdingSelector(ProxySelector):
    """Herding on proxy features, per class by default.

    Scores: the selection priority (``count - step`` for the image chosen at ``step``, 0 for
    images not chosen), so higher means chosen earlier.
    """

    config_class = HerdingConfig
    config: HerdingConfig

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        features = embeddings(self.proxy(train, seed=seed, device=device).model, train.images, device=device)
        scores = torch.zeros(len(train))
        chosen = []
        for members, count in selection_groups(train, budget, balanced=self.config.balanced):
            order = members[herding_order(features[members], count, variant=self.config.variant)]
            scores[order] = torch.arange(count, 0, -1, dtype=torch.float32)
            chosen.append(order)
        return Selection(indices=torch.sort(torch.cat(chosen)).values, scores=scores)
