"""DQ: Dataset Quantization, sample side (Zhou et al., ICCV 2023; methods.md 13.9).

1. Bin generation (``quantize_sample.py``): within every class, split the images into ``bins``
   non-overlapping bins of (nearly) equal size, one after the other, each chosen by greedy
   GraphCut maximisation on the images not yet binned: the gain of image ``x`` given the bin so
   far ``S`` is ``lam * sum_{j in pool} s(x, j) - 2 * sum_{s in S} s(x, s)``, with ``s`` the
   cosine similarity mapped to ``[0, 1]`` (``0.5 + 0.5 cos``) of the last-layer gradient
   features ``[dL/dz, e (x) dL/dz]`` of the proxy (DQ's code applies the cross-entropy to
   softmax outputs; ``softmax_outputs=False`` uses the plain loss). The last bin takes the rest.
2. Bin sampling (``quantize_bin.py``): sample uniformly from every bin, the budget shared over
   the bins in proportion to their sizes.

DQ itself uses an ImageNet-pretrained ResNet-18 without training on the target data; this suite
uses the proxy trained on the training set, like the other selectors. The optional pixel
quantisation (MAE patch reconstruction) is not part of this selector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from baselines._budget import allocate_proportionally, selection_groups
from baselines._proxy import ProxyConfig, ProxySelector, last_layer_gradients
from baselines.selection import Selection
from data import ImageDataset
from data.methods import register_method
from data.seeding import derive_seed, make_generator
from data.synthetic import Budget

#: GraphCut needs the group's full similarity matrix; above this many images it would not fit.
MAX_GROUP_SIZE = 30_000


@dataclass(frozen=True)
class DQConfig(ProxyConfig):
    """``bins``: number of bins (DQ ``num_exp`` 10, each 10% of the data); ``lam``: GraphCut
    lambda (1); ``softmax_outputs``: the gradient features use cross-entropy on softmax
    outputs, as DQ's code does."""

    bins: int = 10
    lam: float = 1.0
    softmax_outputs: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bins < 1:
            raise ValueError(f"bins must be positive, got {self.bins}")


def gradient_similarity(gradients: Tensor, features: Tensor) -> Tensor:
    """``0.5 + 0.5 cos`` between the last-layer gradients ``[g, g e^T]`` of every pair.

    Uses ``<[g, g e^T], [g', g' e'^T]> = <g, g'> (1 + <e, e'>)`` so the ``K x D`` gradients are
    never materialized.
    """
    g = gradients.float()
    e = features.float()
    gram = g @ g.T
    gram.mul_(e @ e.T + 1.0)
    norms = gram.diagonal().clamp(min=0).sqrt()
    denominator = norms[:, None] * norms[None, :]
    cosine = torch.where(denominator > 0, gram / denominator.clamp(min=1e-30), torch.zeros_like(gram))
    return cosine.clamp_(-1.0, 1.0).mul_(0.5).add_(0.5)


def graphcut_greedy(similarity: Tensor, pool: Tensor, count: int, *, lam: float = 1.0) -> Tensor:
    """Greedy GraphCut: ``count`` positions from the boolean ``pool``, in the order chosen."""
    pool_positions = torch.nonzero(pool, as_tuple=True)[0]
    if count > len(pool_positions):
        raise ValueError(f"cannot choose {count} of {len(pool_positions)} pooled items")
    coverage = similarity[pool_positions].double().sum(dim=0)
    redundancy = torch.zeros(len(similarity), dtype=torch.float64)
    candidates = pool.clone()
    order = []
    for _ in range(count):
        gain = lam * coverage - 2.0 * redundancy
        pick = int(torch.where(candidates, gain, -torch.inf).argmax())
        order.append(pick)
        candidates[pick] = False
        redundancy += similarity[pick].double()
    return torch.tensor(order, dtype=torch.long)


def graphcut_bins(similarity: Tensor, bins: int, *, lam: float = 1.0) -> Tensor:
    """The bin (``0 .. bins-1``) of every item: bins filled one after the other by GraphCut on
    what is left; sizes ``round(left / bins left)``, the last bin takes the rest."""
    n = len(similarity)
    assignment = torch.full((n,), bins - 1, dtype=torch.long)
    pool = torch.ones(n, dtype=torch.bool)
    for index in range(bins - 1):
        left = int(pool.sum())
        size = round(left / (bins - index))
        if size == 0:
            continue
        chosen = graphcut_greedy(similarity, pool, size, lam=lam)
        assignment[chosen] = index
        pool[chosen] = False
    return assignment


@register_method("dq")
class DQSelector(ProxySelector):
    """Dataset Quantization (GraphCut bins, uniform sampling within). Scores: bin index."""

    config_class = DQConfig
    config: DQConfig

    def select(
        self, train: ImageDataset, budget: Budget, *, seed: int, device: torch.device | str = "cpu"
    ) -> Selection:
        model = self.proxy(train, seed=seed, device=device).model
        gradients, features = last_layer_gradients(
            model, train.images, train.labels, softmax_outputs=self.config.softmax_outputs, device=device
        )
        generator = make_generator(derive_seed("dq", seed))
        bin_of = torch.zeros(len(train))
        chosen = []
        for members, count in selection_groups(train, budget, balanced=self.config.balanced):
            if len(members) > MAX_GROUP_SIZE:
                raise ValueError(
                    f"dq needs a {len(members)}^2 similarity matrix for one group; select per class "
                    f"(balanced=true) or use a training set with at most {MAX_GROUP_SIZE} images per group"
                )
            assignment = graphcut_bins(
                gradient_similarity(gradients[members], features[members]), self.config.bins, lam=self.config.lam
            )
            bin_of[members] = assignment.float()
            sizes = torch.bincount(assignment, minlength=self.config.bins)
            counts = allocate_proportionally(count, sizes, generator)
            for index in range(self.config.bins):
                in_bin = torch.nonzero(assignment == index, as_tuple=True)[0]
                picked = in_bin[torch.randperm(len(in_bin), generator=generator)[: int(counts[index])]]
                chosen.append(members[picked])
        return Selection(indices=torch.sort(torch.cat(chosen)).values, scores=bin_of)
