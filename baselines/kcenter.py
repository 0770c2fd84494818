"""K-Center Greedy (Sener & Savarese 2018; DeepCore ``kCenterGreedy``).

Starting from one uniformly random image of the group, repeatedly add the image farthest
(Euclidean, proxy features) from everything chosen so far: ``argmax_x min_{s in S} ||f(x) - f(s)||``.
The greedy rule is a 2-approximation of the minimum covering radius.
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
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget


@dataclass(frozen=True)
class KCenterConfig(ProxyConfig):
    """K-center greedy has no options beyond the proxy's and ``balanced``."""


def kcenter_order(features: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Positions of the ``count`` rows chosen by k-center greedy, in the order chosen."""
    if not 0 <= count <= len(features):
        raise ValueError(f"cannot choose {count} centers among {len(features)} points")
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    points = features.double()
    first = int(torch.randint(len(points), (1,), generator=generator))
    order = [first]
    nearest = (points - points[first]).norm(dim=1)
    nearest[first] = -1.0  # chosen: never the farthest again
    for _ in range(count - 1):
        pick = int(nearest.argmax())
        order.append(pick)
        nearest = torch.minimum(nearest, (points - points[pick]).norm(dim=1))
        nearest[pick] = -1.0
    return torch.tensor(order, dtype=torch.long)


def covering_radius(features: Tensor, centers: Tensor) -> float:
    """``max_x min_{c in centers} ||f(x) - f(c)||`` over all rows of ``features``."""
    return float(torch.cdist(features.double(), features[centers].double()).min(dim=1).values.max())


@register_method("kcenter")
class KCenterSelector(ProxySelector):
    """K-center greedy on proxy features, per class by default.

    Scores: the selection priority (``count - step`` for the image chosen at ``step``, 0 for
    images not chosen), so higher means chosen earlier.
    """

    config_class = KCenterConfig
    config: KCenterConfig

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        features = embeddings(self.proxy(train, seed=seed, device=device).model, train.images, device=device)
        generator = make_generator(derive_seed("kcenter", seed))
        scores = torch.zeros(len(train))
        chosen = []
        for members, count in selection_groups(train, budget, balanced=self.config.balanced):
            order = members[kcenter_order(features[members], count, generator)]
            scores[order] = torch.arange(count, 0, -1, dtype=torch.float32)
            chosen.append(order)
        return Selection(indices=torch.sort(torch.cat(chosen)).values, scores=scores)
