"""Score-based pruning: keep the images with the highest importance score.

* ``forgetting`` (Toneva et al. 2019; DeepCore ``forgetting.py``): how often an image went from
  correctly to wrongly classified between two consecutive presentations while the proxy trained.
* ``el2n`` (Paul et al. 2021, as CCS computes it): ``||softmax - onehot||_2`` of the training
  outputs summed over the first ``epochs`` epochs of the proxy.
* ``grand`` (Paul et al. 2021, as DeepCore computes it): the norm of the last-layer gradient of
  the loss after the proxy's training, averaged over ``repeats`` independently seeded proxies.

Scores are computed on the whole training set; the highest are kept within every class (or over
the whole set with ``balanced=False``), ties broken at random from the seed.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from baselines._budget import selection_groups, top_k
from baselines._proxy import ProxyConfig, ProxySelector, last_layer_gradients
from baselines.selection import Selection
from data import ImageDataset
from data.methods import register_method
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget


class ScoreSelector(ProxySelector):
    """Keep the images with the highest :meth:`importance` (per class by default)."""

    @abstractmethod
    def importance(self, train: ImageDataset, *, seed: int, device: torch.device | str = "cpu") -> Tensor:
        """One score per training image; higher is kept first."""

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        scores = self.importance(train, seed=seed, device=device).float().cpu()
        if scores.shape != (len(train),):
            raise ValueError(f"{self.name} produced {tuple(scores.shape)} scores for {len(train)} images")
        generator = make_generator(derive_seed(self.name, "ties", seed))
        chosen = [
            members[top_k(scores[members], count, generator)]
            for members, count in selection_groups(train, budget, balanced=self.config.balanced)
        ]
        return Selection(indices=torch.sort(torch.cat(chosen)).values, scores=scores)


# -- forgetting ------------------------------------------------------------------------------


def forgetting_counts(correct: Tensor) -> Tensor:
    """Forgetting events per sample from an ``epochs x N`` correctness record.

    An event is a presentation where the sample is misclassified after being classified
    correctly at its previous presentation; before the first presentation a sample counts as
    not correct (DeepCore and CCS start ``last_acc`` at 0).
    """
    right = correct.bool()
    previous = torch.cat([torch.zeros_like(right[:1]), right[:-1]])
    return (previous & ~right).sum(dim=0)


@dataclass(frozen=True)
class ForgettingConfig(ProxyConfig):
    """``unlearned_first``: rank samples never classified correctly above all others (Toneva's
    convention); the default counts them as zero events, as DeepCore and CCS do."""

    unlearned_first: bool = False


@register_method("forgetting")
class ForgettingSelector(ScoreSelector):
    """Keep the most forgotten images. Scores: forgetting counts (never-learned images get
    ``epochs + 1`` when ``unlearned_first``)."""

    config_class = ForgettingConfig
    config: ForgettingConfig

    def importance(self, train: ImageDataset, *, seed: int, device: torch.device | str = "cpu") -> Tensor:
        correct = self.proxy(train, seed=seed, device=device).dynamics["correct"]
        counts = forgetting_counts(correct).float()
        if self.config.unlearned_first:
            never_learned = ~correct.bool().any(dim=0)
            counts[never_learned] = float(correct.shape[0] + 1)
        return counts


# -- EL2N --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EL2NConfig(ProxyConfig):
    """``epochs``: training epochs whose EL2N is summed (CCS ``max_epoch=10``); ``repeats``:
    independently seeded proxies averaged (Paul et al. average 10 runs; CCS uses one)."""

    epochs: int = 10
    repeats: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.epochs <= self.proxy_epochs:
            raise ValueError(f"epochs must be in [1, proxy_epochs={self.proxy_epochs}], got {self.epochs}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be positive, got {self.repeats}")


@register_method("el2n")
class EL2NSelector(ScoreSelector):
    """Keep the highest-EL2N (hardest early) images. Scores: EL2N summed over the first epochs."""

    config_class = EL2NConfig
    config: EL2NConfig

    def importance(self, train: ImageDataset, *, seed: int, device: torch.device | str = "cpu") -> Tensor:
        total = torch.zeros(len(train))
        for repeat in range(self.config.repeats):
            el2n = self.proxy(train, seed=seed, device=device, repeat=repeat).dynamics["el2n"]
            total += el2n[: self.config.epochs].sum(dim=0)
        return total / self.config.repeats


# -- GraNd -------------------------------------------------------------------------------------


def grand_scores(gradients: Tensor, features: Tensor) -> Tensor:
    """``||[g, g e^T]||_2 = ||g|| sqrt(1 + ||e||^2)``: the last-layer gradient norm per sample."""
    return gradients.double().norm(dim=1) * torch.sqrt(1.0 + features.double().pow(2).sum(dim=1))


@dataclass(frozen=True)
class GraNdConfig(ProxyConfig):
    """``repeats``: independently seeded proxies whose scores are averaged (DeepCore 10);
    ``softmax_outputs``: apply the cross-entropy to softmax outputs, as DeepCore's code does
    (default off: the loss of Paul et al.)."""

    repeats: int = 10
    softmax_outputs: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.repeats < 1:
            raise ValueError(f"repeats must be positive, got {self.repeats}")


@register_method("grand")
class GraNdSelector(ScoreSelector):
    """Keep the highest-GraNd images. Scores: the gradient norm averaged over the repeats."""

    config_class = GraNdConfig
    config: GraNdConfig

    def importance(self, train: ImageDataset, *, seed: int, device: torch.device | str = "cpu") -> Tensor:
        total = torch.zeros(len(train), dtype=torch.float64)
        for repeat in range(self.config.repeats):
            model = self.proxy(train, seed=seed, device=device, repeat=repeat).model
            gradients, features = last_layer_gradients(
                model, train.images, train.labels, softmax_outputs=self.config.softmax_outputs, device=device
            )
            total += grand_scores(gradients, features)
        return (total / self.config.repeats).float()
