"""TDDS: Temporal Dual-Depth Scoring (Zhang et al., CVPR 2024; methods.md 13.10).

From the proxy's training outputs over the first ``trajectory_len`` epochs (``T``):

1. First depth: every step's contribution ``c_t = sum_k |p_t,k (log p_t,k - log p_{t-1},k)|``
   (the proxy records it as the ``change`` dynamics).
2. Second depth: for every window of ``window`` consecutive epochs starting at ``k = 0 .. T - K``,
   the norm of the deviations of the window's ``K - 1`` contributions from their mean; the
   window scores are combined with weights ``decay * (1 - decay)^(T - K - k)``.

The highest scores are kept (``importance_evaluation.py`` sorts ascending and keeps the tail).
The official code ranks all images together (``balanced=False``); by default within every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from baselines._proxy import ProxyConfig
from baselines.scores import ScoreSelector
from data import ImageDataset
from data.methods import register_method


@dataclass(frozen=True)
class TDDSConfig(ProxyConfig):
    """Official ``importance_evaluation.py`` settings of the README: ``trajectory_len`` 30,
    ``window`` 10, ``decay`` 0.9. ``trajectory_len`` may not exceed ``proxy_epochs``."""

    trajectory_len: int = 30
    window: int = 10
    decay: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.window <= self.trajectory_len:
            raise ValueError(f"need 2 <= window <= trajectory_len, got {self.window} and {self.trajectory_len}")
        if self.trajectory_len > self.proxy_epochs:
            raise ValueError(
                f"trajectory_len={self.trajectory_len} needs at least that many proxy epochs "
                f"(proxy_epochs={self.proxy_epochs})"
            )
        if not 0 < self.decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {self.decay}")


def tdds_scores(change: Tensor, *, trajectory_len: int, window: int, decay: float) -> Tensor:
    """TDDS scores from ``epochs x N`` per-step contributions (row ``t`` = change from ``t-1``)."""
    total = torch.zeros(change.shape[1], dtype=torch.float64)
    for start in range(trajectory_len - window + 1):
        steps = change[start + 1 : start + window].double()  # the K - 1 transitions inside the window
        variability = (steps - steps.mean(dim=0)).norm(dim=0)
        total += variability * decay * (1.0 - decay) ** (trajectory_len - window - start)
    return total


@register_method("tdds")
class TDDSSelector(ScoreSelector):
    """Keep the highest-TDDS images. Scores: the TDDS score."""

    config_class = TDDSConfig
    config: TDDSConfig

    def importance(self, train: ImageDataset, *, seed: int, device: torch.device | str = "cpu") -> Tensor:
        change = self.proxy(train, seed=seed, device=device).dynamics["change"]
        config = self.config
        return tdds_scores(change, trajectory_len=config.trajectory_len, window=config.window, decay=config.decay)
