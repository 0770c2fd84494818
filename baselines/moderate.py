"""Moderate-DS (Xia et al., ICLR 2023; ``tmllab/2023_ICLR_Moderate-DS/selection.py``).

Score every image by the Euclidean distance of its proxy features to its class centre, the
per-dimension median of the class's features, and keep the images of moderate distance: sorted
by distance, the band of ranks centred on the median rank, dropping the closest and the farthest.
The official code ranks all images together (``balanced=False``); by default the band is taken
within every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from baselines._budget import selection_groups
from baselines._proxy import ProxyConfig, ProxySelector, embeddings
from baselines.selection import Selection
from data import ImageDataset
from data.methods import register_method
from data.synthetic import Budget


@dataclass(frozen=True)
class ModerateConfig(ProxyConfig):
    """Moderate-DS has no options beyond the proxy's and ``balanced``."""


def median_distances(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Distance of every row to the per-dimension median of its class."""
    distances = torch.zeros(len(features))
    for label in range(num_classes):
        members = torch.nonzero(labels == label, as_tuple=True)[0]
        if len(members) == 0:
            continue
        values = features[members].double()
        distances[members] = (values - feature_median(values)).norm(dim=1).float()
    return distances


def feature_median(values: Tensor) -> Tensor:
    """Per-dimension median, averaging the two middle values of an even count (as numpy does;
    ``torch.median`` would take the lower one)."""
    ordered = values.sort(dim=0).values
    n = len(values)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def middle_band(scores: Tensor, count: int) -> Tensor:
    """Positions of the ``count`` scores whose ranks are centred on the median rank."""
    order = torch.argsort(scores, stable=True)
    start = round((len(scores) - count) / 2)
    return order[start : start + count]


@register_method("moderate")
class ModerateSelector(ProxySelector):
    """Moderate-DS on proxy features. Scores: distance to the class median (lower = more typical)."""

    config_class = ModerateConfig
    config: ModerateConfig

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        features = embeddings(self.proxy(train, seed=seed, device=device).model, train.images, device=device)
        distances = median_distances(features, train.labels, train.num_classes)
        chosen = [
            members[middle_band(distances[members], count)]
            for members, count in selection_groups(train, budget, balanced=self.config.balanced)
        ]
        return Selection(indices=torch.sort(torch.cat(chosen)).values, scores=distances)
